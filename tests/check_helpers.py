"""What the tests of every lesson's exercise checks share: how to run a check, and answers that
must never pass (a memorised one, an object equal to everything)."""
from __future__ import annotations

import hashlib

import numpy as np

from coursekit import checks
from coursekit.checks import core


def outcome(task_id: str, value) -> core.Outcome:
    """The outcome of checking ``value`` as the answer of ``task_id``, without printing."""
    return core.evaluate(checks.find(task_id), value)


def is_choice_task(task: core.Task) -> bool:
    """Whether ``task`` is a "select every true statement" question (made by ``choice_task``)."""
    return task.run.__qualname__.startswith("choice_task.")


class Memorised:
    """A hard-coded answer: it answers each call with what ``reference`` returned for the same
    arguments while ``recording`` (one check run), and with ``unknown`` (default: the first answer
    it recorded) for anything else. It knows every case of one check run, none of the next.

    Arguments are compared by their numbers; callables (models, functions) are left out of the
    comparison, since a check makes new ones every time.
    """

    def __init__(self, reference, unknown=None):
        self.reference, self.unknown, self.table, self.recording = reference, unknown, {}, True

    def __call__(self, *args):
        key = hashlib.sha256(b"|".join(np.asarray(a).tobytes() for a in args if not callable(a))).hexdigest()
        if self.recording:
            self.table[key] = self.reference(*args)
        if key in self.table:
            return self.table[key]
        return self.unknown if self.unknown is not None else next(iter(self.table.values()))


class AlwaysEqual:
    """An object equal to everything, returning itself when called: it must pass no check."""

    def __eq__(self, other):
        return True

    def __hash__(self):
        return 0

    def __call__(self, *args, **kwargs):
        return self


# ----------------------------------------------------------------------------- usual forms of a right answer

def _as_form(value, form: str):
    """``value`` (numbers: an array, a tensor, a float) in the usual form ``form``."""
    if form == "tensor":
        import tensorflow as tf
        return tf.constant(np.asarray(value))
    array = np.asarray(value)
    if form == "list":
        return array.tolist()
    if form == "0-d":
        return np.asarray(array.reshape(()) if array.size == 1 else array)
    if form == "numpy scalar":
        return array.reshape(()).dtype.type(array.reshape(()))
    if form in ("float64", "float32"):
        return array.astype(form)
    if form == "big-endian":
        return array.astype(array.dtype.newbyteorder(">"))
    raise ValueError(form)


def returning(form: str, answer):
    """``answer`` returning its result in another usual form: "float64", "float32", "tensor",
    "list", "big-endian" (any byte order), "0-d" (an array of no dimension), "numpy scalar"."""
    def variant(*args, **kwargs):
        return _as_form(answer(*args, **kwargs), form)
    variant.__name__ = f"{answer.__name__}[{form}]"
    return variant


def computing_in_float64(answer):
    """``answer`` working in float64: every float array or tensor it is given, converted first."""
    def variant(*args, **kwargs):
        def widened(value):
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                return value.astype("float64")
            if type(value).__module__.startswith("tensorflow") and getattr(value, "dtype", None) is not None \
                    and value.dtype.is_floating:
                import tensorflow as tf
                return tf.cast(value, tf.float64)
            return value
        return answer(*map(widened, args), **{k: widened(v) for k, v in kwargs.items()})
    variant.__name__ = f"{answer.__name__}[computed in float64]"
    return variant


def usual_forms(task_id: str, answer, forms) -> list:
    """pytest parameters ``(task_id, variant)``, one per form (see :func:`returning`), plus
    "computed in float64" when listed."""
    import pytest
    cases = []
    for form in forms:
        variant = computing_in_float64(answer) if form == "computed in float64" else returning(form, answer)
        cases.append(pytest.param(task_id, variant, id=f"{task_id}-{form}"))
    return cases
