import keras
import numpy as np
import pytest
import tensorflow as tf
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.utils.scores import CategoricalScore

from coursekit import models, saliency


def top_left_model():
    """A model that only sees the top-left 6x6 pixels of a 16x16 image (the rest is cropped away)."""
    inputs = keras.Input((16, 16, 3))
    seen = keras.layers.Cropping2D(((0, 10), (0, 10)))(inputs)
    x = keras.layers.Conv2D(4, 3, activation="tanh")(seen)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_saliency_is_zero_where_the_model_does_not_look():
    keras.utils.set_random_seed(0)
    model = top_left_model()
    batch = np.random.default_rng(0).normal(size=(3, 16, 16, 3)).astype("float32")
    outside = np.ones((16, 16), bool)
    outside[:6, :6] = False
    for maps in (saliency.vanilla_saliency(model, batch),
                 saliency.vanilla_saliency(model, batch, class_index=2, positive_only=True),
                 saliency.smoothgrad(model, batch, samples=4)):
        assert maps.shape == (3, 16, 16)
        assert np.all(maps[:, outside] == 0)
        assert np.all(maps[:, ~outside].max(axis=1) == 1)  # normalised, and not zero inside


def test_vanilla_saliency_is_the_gradient_of_the_logit(mobilenet, cat_batch):
    model = mobilenet.model
    tabby = mobilenet.class_index("tabby")
    image = tf.constant(cat_batch)
    with tf.GradientTape() as tape:
        tape.watch(image)
        logit = models.pre_softmax(model)(image)[0, tabby]
    expected = np.abs(tape.gradient(logit, image).numpy()).max(axis=-1)
    ours = saliency.vanilla_saliency(model, cat_batch, class_index=tabby, normalize=False)
    assert np.allclose(ours, expected, rtol=1e-4, atol=1e-6)
    # tf-keras-vis on the same pre-softmax model computes the same map
    theirs = Saliency(models.pre_softmax(model), clone=False)(CategoricalScore([tabby]), cat_batch,
                                                               normalize_map=False)
    assert np.allclose(ours, np.asarray(theirs), rtol=1e-4, atol=1e-6)


def test_smoothgrad_without_noise_is_vanilla_and_its_noise_is_seeded(mobilenet, cat_batch):
    model = mobilenet.model
    vanilla = saliency.vanilla_saliency(model, cat_batch)
    assert np.allclose(saliency.smoothgrad(model, cat_batch, samples=2, noise=0.0), vanilla, atol=1e-5)
    first = saliency.smoothgrad(model, cat_batch, samples=3, seed=1)
    assert np.array_equal(first, saliency.smoothgrad(model, cat_batch, samples=3, seed=1))
    assert not np.allclose(first, saliency.smoothgrad(model, cat_batch, samples=3, seed=2))


def test_smoothgrad_averages_gradient_magnitudes_over_its_noisy_copies(mobilenet, cat_batch):
    """The map is the mean over the copies of |gradient| (max over channels), copy by copy; the
    noise of a copy depends on (seed, image, copy) alone, whatever the batch_size."""
    model = mobilenet.model
    batch = np.concatenate([cat_batch, cat_batch[:, ::-1]])
    samples, seed = 3, 7
    sigmas = (0.2 * (batch.max(axis=(1, 2, 3)) - batch.min(axis=(1, 2, 3)))).astype("float32")
    rows = np.repeat(np.arange(2, dtype="int32"), samples)
    noisy = saliency._noisy_copies(tf.constant(batch), tf.constant(rows), tf.constant(np.arange(6, dtype="int64")),
                                   tf.constant(sigmas[rows]), tf.constant(seed, tf.int64)).numpy()
    noise = noisy - batch[rows]
    assert np.allclose(noise.std(axis=(1, 2, 3)), sigmas[rows], rtol=0.02) and np.abs(noise.mean()) < 0.01
    assert not np.allclose(noise[0], noise[1], atol=0.1)                    # each copy its own noise
    for batch_size in (1, 4):      # the same batches of copies: the same float32 arithmetic
        gradients = saliency.input_gradients(model, noisy, class_index=[281] * 6, batch_size=batch_size)
        gradients = gradients.reshape(2, samples, *batch.shape[1:])
        for positive_only, part in ((False, np.abs), (True, lambda g: np.maximum(g, 0))):
            expected = part(gradients).mean(axis=1).max(axis=-1)
            got = saliency.smoothgrad(model, batch, class_index=281, samples=samples, seed=seed, normalize=False,
                                      positive_only=positive_only, batch_size=batch_size)
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    signed = np.abs(gradients.mean(axis=1)).max(axis=-1)     # the paper's signed average: a different map
    assert not np.allclose(signed, np.abs(gradients).mean(axis=1).max(axis=-1), rtol=0.05)


def test_saliency_bad_input(mobilenet, cat_batch):
    with pytest.raises(ValueError, match="out of range"):
        saliency.vanilla_saliency(mobilenet.model, cat_batch, class_index=1000)
    with pytest.raises(ValueError, match="takes images of shape"):
        saliency.smoothgrad(mobilenet.model, np.zeros((2, 100, 100, 3), "float32"))
    with pytest.raises(ValueError, match="samples must be at least 1"):
        saliency.smoothgrad(mobilenet.model, cat_batch, samples=0)
