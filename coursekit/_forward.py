"""Compiled steps: a model's forward pass compiled once per model for any batch size, and the
decorator every per-model step of the package is compiled with.

``model.predict_on_batch`` retraces its function for every new batch shape (and TensorFlow warns
about it); occlusion, deletion curves and feature maps send batches of many sizes, so they use this.
"""
from __future__ import annotations

import functools
import weakref

import keras
import numpy as np
import tensorflow as tf

from . import _cache, _inputs, batching


def traced_once(**options):
    """``tf.function(**options)`` for a step that is built once per model (or layer) and traced once.

    TensorFlow counts traces per Python *code object*, not per compiled function: every model's
    step, built by the same ``def`` inside a builder, shares one count, and after five models in a
    kernel (exercise checks draw a new network each time; lesson 07 explains several copies) it
    warns "triggered tf.function retracing" although no step was traced twice. A
    ``functools.partial`` has no code object of its own, so each step is counted alone and a step
    that really retraces (new shapes without a signature) still warns. Use it in place of
    ``@tf.function(...)`` on a function defined inside a per-model builder.
    """
    def compile_step(step):
        return tf.function(functools.partial(step), **options)
    return compile_step



def _compiled(model: keras.Model):
    def build():
        spec = tf.TensorSpec((None, *_inputs.input_shape(model)), tf.float32)
        # A weak reference: the cache holds this step as long as the model lives; the step must
        # not keep the model alive in turn (it needs it only while it is traced).
        model_ref = weakref.ref(model)

        @traced_once(input_signature=[spec])
        def forward(images):
            return model_ref()(images, training=False)
        return forward
    return _cache.per_model(model, "forward", build)


def predict_all(model: keras.Model, batch: np.ndarray, batch_size: int | None = None) -> list[np.ndarray]:
    """Every output of ``model(batch)`` in inference mode, ``batch_size`` images at a time: float32 arrays.

    ``batch_size`` None: as many as fit the profile's memory budget for a forward pass
    (:func:`coursekit.batching.batch_size_for`).
    """
    forward = _compiled(model)
    batch = np.asarray(batch, dtype="float32")
    size = _inputs.chosen_batch_size(model, batch_size, batching.FORWARD, batch.shape[1:])
    parts = []
    for part in _inputs.batches(len(batch), size):
        outputs = forward(tf.constant(batch[part]))
        parts.append([np.asarray(out, dtype="float32") for out in (outputs if isinstance(outputs, (list, tuple))
                                                                   else [outputs])])
    return [np.concatenate(column) for column in zip(*parts)]


def predict(model: keras.Model, batch: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """``model(batch)`` for a model with one output, as one float32 array."""
    return predict_all(model, batch, batch_size)[0]
