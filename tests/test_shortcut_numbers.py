"""The decoy-MNIST findings of lesson 05, on the 5,000-digit sample (4,000 train / 1,000 test).

One CNN (``shortcuts.strided_cnn``) trained on decoy digits, one on clean digits, and the decoy
model repaired with the right-for-the-right-reasons penalty, trained as lesson 05 does (Adam at
3e-3, batch 64; 3 epochs here instead of the smoke profile's 2, for margin; the repair is one
epoch with the default penalty). Margins measured over training seeds 0-4 before relying on them:
drop 17-23 points, saliency share in the square 6-11 times the clean model's, Grad-CAM's share on
dark squares at most 0.010, the penalty winning back 79-89% of the drop. About 25 s on 2 cores:
these are the lesson's headline numbers.
"""
import keras
import numpy as np
import pytest

from coursekit import cam, data, metrics, models, saliency, shortcuts

SEED = 0
EPOCHS = 3
LEARNING_RATE = 3e-3


def train(images, labels):
    keras.utils.set_random_seed(SEED)
    model = shortcuts.strided_cnn()
    models.train(model, images, labels, epochs=EPOCHS, batch_size=64, learning_rate=LEARNING_RATE)
    return model


@pytest.fixture(scope="module")
def experiment(digits):
    (x_train, y_train), (x_test, y_test) = digits
    train_decoy, train_masks = data.decoy_mnist(x_train, y_train, seed=0)
    test_true, true_masks = data.decoy_mnist(x_test, y_test, seed=1)
    test_random, _ = data.decoy_mnist(x_test, seed=2)
    decoy = train(train_decoy, y_train)
    clean = train(x_train, y_train)
    repaired = keras.models.clone_model(decoy)
    repaired.set_weights(decoy.get_weights())
    keras.utils.set_random_seed(SEED)
    shortcuts.train_right_reasons(repaired, train_decoy, y_train, train_masks, epochs=1,
                                  learning_rate=LEARNING_RATE)
    accuracy = {name: (models.accuracy(model, test_true, y_test), models.accuracy(model, test_random, y_test))
                for name, model in (("decoy", decoy), ("repaired", repaired))}
    batch = test_true[..., None].astype("float32")
    share = {(name, method): metrics.mass_in_mask(explain(model, batch), true_masks)
             for name, model in (("decoy", decoy), ("clean", clean))
             for method, explain in (("saliency", saliency.vanilla_saliency), ("grad_cam", cam.grad_cam))}
    return accuracy, share, y_test


def test_the_decoy_model_loses_at_least_15_points_on_random_squares(experiment):
    accuracy, _, _ = experiment
    true_square, random_square = accuracy["decoy"]
    assert true_square > 0.9
    assert true_square - random_square >= 0.15


def test_saliency_in_the_square_is_at_least_twice_the_clean_models(experiment):
    _, share, _ = experiment
    assert share[("decoy", "saliency")].mean() >= 2 * share[("clean", "saliency")].mean()


def test_grad_cam_cannot_see_dark_squares(experiment):
    # Lesson 05's claim: Grad-CAM weighs by activations, and a nearly black square (digits 8, 9:
    # grey 55 and 30) activates nothing, so Grad-CAM puts almost no heat there although saliency
    # shows the model uses it. (Over all squares Grad-CAM's share is only 1.2-2 times the clean
    # model's, which is why the lesson does not rely on it.)
    _, share, labels = experiment
    dark = labels >= 8
    assert share[("decoy", "grad_cam")][dark].mean() < 0.02
    assert share[("decoy", "saliency")][dark].mean() > 5 * share[("decoy", "grad_cam")][dark].mean()


def test_the_gradient_penalty_wins_back_at_least_half_of_the_lost_accuracy(experiment):
    accuracy, _, _ = experiment
    lost = accuracy["decoy"][0] - accuracy["decoy"][1]
    regained = accuracy["repaired"][1] - accuracy["decoy"][1]
    assert regained >= 0.5 * lost
