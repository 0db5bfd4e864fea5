"""A model's forward pass compiled once per model for any batch size.

``model.predict_on_batch`` retraces its function for every new batch shape (and TensorFlow warns
about it); occlusion, deletion curves and feature maps send batches of many sizes, so they use this.
"""
from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

from . import _cache, _inputs


def _inference(model: keras.Model, images):
    return model(images, training=False)


def _compiled(model: keras.Model):
    def build():
        spec = tf.TensorSpec((None, *_inputs.input_shape(model)), tf.float32)
        # A partial, not a lambda: TensorFlow counts traces per Python function by its code, so one
        # lambda traced once for each of several models (feature maps of other layers) was taken
        # for a function retracing, with a warning; each partial is a function of its own.
        return tf.function(functools.partial(_inference, model), input_signature=[spec])
    return _cache.per_model(model, "forward", build)


def predict_all(model: keras.Model, batch: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
    """Every output of ``model(batch)`` in inference mode, ``batch_size`` images at a time: float32 arrays."""
    forward = _compiled(model)
    batch = np.asarray(batch, dtype="float32")
    parts = []
    for part in _inputs.batches(len(batch), batch_size):
        outputs = forward(tf.constant(batch[part]))
        parts.append([np.asarray(out, dtype="float32") for out in (outputs if isinstance(outputs, (list, tuple))
                                                                   else [outputs])])
    return [np.concatenate(column) for column in zip(*parts)]


def predict(model: keras.Model, batch: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``model(batch)`` for a model with one output, as one float32 array."""
    return predict_all(model, batch, batch_size)[0]
