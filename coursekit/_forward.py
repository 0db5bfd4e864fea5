"""A model's forward pass compiled once per model for any batch size.

``model.predict_on_batch`` retraces its function for every new batch shape (and TensorFlow warns
about it); occlusion and deletion curves send batches of many sizes, so they use this instead.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import _cache


def predict(model: keras.Model, batch: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``model(batch)`` in inference mode, ``batch_size`` images at a time, as a float32 array."""
    def build():
        spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
        return tf.function(lambda images: model(images, training=False), input_signature=[spec])
    forward = _cache.per_model(model, "forward", build)
    batch = np.asarray(batch, dtype="float32")
    return np.concatenate([np.asarray(forward(tf.constant(batch[start:start + batch_size])), dtype="float32")
                           for start in range(0, len(batch), batch_size)])
