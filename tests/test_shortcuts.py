"""Right for the right reasons: the gradient the penalty sees, and the training step."""
import keras
import numpy as np
import pytest

from coursekit import models, shortcuts


def linear_softmax(seed=0, pixels=6, classes=4):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((pixels,))
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(inputs))


def test_right_reasons_gradients_by_hand():
    # For logits z = W^T x + b:  d/dx sum_k log softmax_k(z) = W (1 - K p)
    model = linear_softmax()
    kernel, bias = model.layers[-1].get_weights()
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    z = x @ kernel + bias
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = (1 - kernel.shape[1] * p) @ kernel.T
    np.testing.assert_allclose(shortcuts.right_reasons_gradients(model, x), expected, rtol=1e-4, atol=1e-5)


def test_right_reasons_loss_by_hand():
    model = linear_softmax()
    kernel, bias = model.layers[-1].get_weights()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6)).astype("float32")
    labels = rng.integers(0, 4, size=5)
    masks = rng.uniform(size=(5, 6)) < 0.5
    z = x @ kernel + bias
    log_p = z - z.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    gradients = (1 - 4 * np.exp(log_p)) @ kernel.T
    from coursekit.models import pre_softmax
    cross_entropy, penalty, _ = shortcuts.right_reasons_loss(pre_softmax(model), x, labels, masks, penalty=7.0)
    np.testing.assert_allclose(float(cross_entropy), -log_p[np.arange(5), labels].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(penalty), 7.0 * ((masks * gradients) ** 2).sum() / 5, rtol=1e-4)


def test_the_penalty_silences_masked_inputs():
    # Feature 0 is a perfect shortcut, feature 1 the noisy real signal. Without the penalty the
    # model leans on feature 0; with it, feature 0's gradient (and weight) stays near zero.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=800)
    real = labels + rng.normal(scale=0.6, size=800)
    x = np.stack([labels * 2.0 - 1, real], axis=1).astype("float32")
    masks = np.zeros_like(x, dtype=bool)
    masks[:, 0] = True

    def shortcut_use(penalty):
        model = linear_softmax(seed=1, pixels=2, classes=2)
        history = shortcuts.train_right_reasons(model, x, labels, masks, epochs=4, penalty=penalty,
                                                learning_rate=0.1, batch_size=100)
        gradients = np.abs(shortcuts.right_reasons_gradients(model, x)).mean(axis=0)
        return gradients[0] / gradients[1], history.history

    free, free_log = shortcut_use(0.0)
    penalised, log = shortcut_use(10.0)
    assert free > 1.0 and penalised < 0.1 * free
    assert set(log) == {"loss", "penalty", "accuracy"} and log["penalty"][-1] < log["penalty"][0]
    assert max(free_log["penalty"]) == 0.0


def test_bad_shapes_are_explained():
    model = linear_softmax(pixels=6)
    x = np.zeros((4, 6), "float32")
    with pytest.raises(ValueError, match="masks"):
        shortcuts.train_right_reasons(model, x, np.zeros(4, int), np.zeros((4, 5), bool), epochs=1)
    with pytest.raises(ValueError, match="one label per image"):
        shortcuts.train_right_reasons(model, x, np.zeros(3, int), np.zeros((4, 6), bool), epochs=1)


def test_strided_cnn_shapes_and_padding():
    same, valid = models.strided_cnn("same"), models.strided_cnn("valid")
    assert same.get_layer("conv2").output.shape[1:] == (7, 7, 32)
    assert valid.get_layer("conv2").output.shape[1:] == (6, 6, 32)   # 28 -> 13 -> 6: the last row is never seen
    assert same.output_shape == (None, 10)
    with pytest.raises(ValueError, match="padding"):
        models.strided_cnn("causal")
