"""The package's compiled steps: one per model, traced once, and no "retracing" warning from TensorFlow
when a kernel explains many models (exercise checks draw a new network each time; lesson 07 explains
randomised copies), while a step that really retraces still gets TensorFlow's warning."""
from __future__ import annotations

import contextlib
import gc
import logging
import weakref

import keras
import numpy as np
import tensorflow as tf

from coursekit import _forward, cam, features, filters, metrics, occlusion, saliency


@contextlib.contextmanager
def tensorflow_warnings():
    """Collect what TensorFlow logs (its logger does not always reach pytest's caplog)."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("tensorflow")
    handler = Collect(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def fresh_cnn(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(x))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def every_method(model, images):
    saliency.vanilla_saliency(model, images)
    saliency.smoothgrad(model, images, samples=2)
    saliency.integrated_gradients(model, images, steps=3)
    saliency.guided_backprop(model, images)
    cam.grad_cam(model, images)
    cam.grad_cam_plus_plus(model, images)
    occlusion.occlusion_map(model, images, patch=6, stride=6)
    metrics.deletion_curve(model, images, images.mean(axis=-1), steps=2)
    features.feature_maps(model, images, ["conv"])
    filters.filter_patterns(model, "conv", [0, 1], steps=1, size=12, progress=False)


def test_many_models_in_one_kernel_never_warn_of_retracing():
    images = np.random.default_rng(0).uniform(0, 1, (2, 12, 12, 3)).astype("float32")
    with tensorflow_warnings() as logged:
        for seed in range(7):          # TensorFlow warns from the fifth tracing of one code object
            every_method(fresh_cnn(seed), images)
            every_method(fresh_cnn(seed), images[:1])   # another batch size: no new trace either
    assert not [message for message in logged if "retracing" in message], logged


def test_a_step_that_really_retraces_still_gets_the_warning():
    @_forward.traced_once()          # no input signature: every new shape is a new trace
    def double(x):
        return 2 * x

    with tensorflow_warnings() as logged:
        for n in range(1, 8):
            double(tf.zeros((n,)))
    assert any("retracing" in message for message in logged)


def test_a_models_compiled_steps_do_not_keep_it_alive():
    model = fresh_cnn(0)
    images = np.zeros((2, 12, 12, 3), "float32")
    every_method(model, images)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
