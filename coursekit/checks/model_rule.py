"""The one rule for a Keras model given as an answer, the same for ``check()`` and for the grader.

Any ``keras.Model`` is a model, whatever it is built from: a functional model of the network's own
layers, one whose outputs pass through identity ``Lambda`` layers to get names, a subclass of
``keras.Model`` with a ``call`` of its own. A check asks :func:`is_model` and calls the model on
images; it never needs more.

In the notebook the model is the object itself. In the grader it is one of two things, decided
in the submission's kernel by :func:`grader_can_build`: a copy built in the grader from the saved
file, when every class in it is one of Keras' own (Keras' safe mode builds those without running
any of the student's code), or else a stand-in that calls the student's model in the kernel, as
any function answer is called (``remote_model``). Either way the check sees a model, so a model
that passes ``check()`` in class passes in the grader.
"""
from __future__ import annotations

from typing import Any


def foreign_classes(config) -> list[str]:
    """The classes in a Keras model's saved config (its ``config.json``) that are not Keras' own,
    or that carry code (``Lambda``): the grader never builds those in its own process."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            module, name = node.get("module"), node.get("class_name")
            if isinstance(module, str) and isinstance(name, str):
                if not (module == "keras" or module.startswith("keras.")) or name == "Lambda" or \
                        node.get("registered_name") not in (None, name):
                    found.append(f"{module}.{name}")
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return found


def grader_can_build(model) -> bool:
    """Whether the grader may build its own copy of ``model`` from the file Keras saves for it."""
    import keras
    try:
        config = keras.saving.serialize_keras_object(model)
    except Exception:  # noqa: BLE001 - a subclass whose config Keras cannot write: called where it lives
        return False
    return isinstance(config, dict) and not foreign_classes(config)


def is_model(value: Any) -> bool:
    """Whether ``value`` is a Keras model: the model itself, or the grader's stand-in for one."""
    if isinstance(value, type):
        return False   # a class, not a model
    if getattr(value, "remote_model", False) is True:
        return True
    if not any((getattr(klass, "__module__", "") or "").startswith("keras") for klass in type(value).__mro__):
        return False   # not a Keras object: no need to import Keras to know
    import keras
    return isinstance(value, keras.Model)
