"""A view of a classifier that outputs its logits and *shares* its weights.

``coursekit.models.pre_softmax`` copies the weights of a final ``Dense(..., activation="softmax")``
into a new layer, so a logits model made before (more) training goes stale. Training through the
logits (``coursekit.shortcuts``) and explainers that cache a logits model per model
(``coursekit.occlusion``) use this view instead: the final layer's own kernel and bias are read at
every call.
"""
from __future__ import annotations

import keras

from . import _cache


class _SharedLinear(keras.layers.Layer):
    """``dense``'s affine part, ``x @ kernel + bias``, with ``dense``'s own variables."""

    def __init__(self, dense: keras.layers.Dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, inputs):
        x = keras.ops.matmul(inputs, self.dense.kernel)
        return x if self.dense.bias is None else keras.ops.add(x, self.dense.bias)


def _ends_in_softmax(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def logits_view(model: keras.Model) -> keras.Model:
    """``model`` ending before its softmax, built once per model; the model itself if it has none.

    Handles a final ``Activation("softmax")`` layer and a final ``Dense`` layer with a softmax.
    """
    last = model.layers[-1]
    if not _ends_in_softmax(last):
        return model

    def build():
        if isinstance(last, keras.layers.Activation):
            logits = last.input
        elif isinstance(last, keras.layers.Dense):
            logits = _SharedLinear(last, name=f"{last.name}_logits")(last.input)
        else:
            raise TypeError(f"Model {model.name!r} ends in a {type(last).__name__} layer with a softmax; "
                            "only a Dense layer or an Activation('softmax') layer can be cut before "
                            "its softmax here. End the model in Dense(...) + Activation('softmax').")
        return keras.Model(model.inputs, logits, name=f"{model.name}_logits")

    return _cache.per_model(model, "logits_view", build)
