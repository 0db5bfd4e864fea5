"""The decoy-MNIST findings of lesson 05, on the 5,000-digit sample (4,000 train / 1,000 test).

One CNN (``models.strided_cnn``) trained on decoy digits, one on clean digits, and the decoy
model repaired with the right-for-the-right-reasons penalty, trained as lesson 05 does (Adam at
3e-3, batch 64; 3 epochs here instead of the smoke profile's 2, for margin; the repair is one
epoch with the default penalty). Margins measured over training seeds 0-4 before relying on them:
drop 17-23 points, saliency share in the square 6-11 times the clean model's, Grad-CAM's share on
dark squares at most 0.010, the penalty winning back 79-89% of the drop. About 25 s on 2 cores:
these are the lesson's headline numbers.
"""
import keras

from coursekit import cam, data, metrics, models, saliency, shortcuts

SEED = 0
EPOCHS = 3
LEARNING_RATE = 3e-3


def train(images, labels):
    keras.utils.set_random_seed(SEED)
    model = models.strided_cnn()
    models.train(model, images, labels, epochs=EPOCHS, batch_size=64, learning_rate=LEARNING_RATE)
    return model


def run_experiment(digits):
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


# One test, not four: the models take most of the time, and pytest-xdist would train them once
# per worker if the checks were split into tests sharing a module fixture.
def test_decoy_mnist_findings_in_the_smoke_profile(digits):
    accuracy, share, labels = run_experiment(digits)

    # 1. The decoy model loses at least 15 accuracy points on random squares.
    true_square, random_square = accuracy["decoy"]
    assert true_square > 0.9, f"the decoy model did not learn: {true_square:.3f} with true squares"
    assert true_square - random_square >= 0.15, f"only {100 * (true_square - random_square):.1f} points lost"

    # 2. Its saliency puts at least twice the clean model's share inside the square.
    decoy_share, clean_share = share[("decoy", "saliency")].mean(), share[("clean", "saliency")].mean()
    assert decoy_share >= 2 * clean_share, f"saliency share {decoy_share:.3f} vs clean {clean_share:.3f}"

    # 3. Lesson 05's claim about Grad-CAM: it weighs by activations, and a nearly black square
    #    (digits 8, 9: grey 55 and 30) activates nothing, so Grad-CAM puts almost no heat there
    #    although saliency shows the model uses it. (Over all squares Grad-CAM's share is only
    #    1.2-2 times the clean model's, which is why neither the lesson nor this test relies on it.)
    dark = labels >= 8
    grad_cam_dark, saliency_dark = share[("decoy", "grad_cam")][dark].mean(), share[("decoy", "saliency")][dark].mean()
    assert grad_cam_dark < 0.02 and saliency_dark > 5 * grad_cam_dark, (grad_cam_dark, saliency_dark)

    # 4. One epoch with the gradient penalty wins back at least half of the lost accuracy.
    lost = true_square - random_square
    regained = accuracy["repaired"][1] - random_square
    assert regained >= 0.5 * lost, f"won back {regained / lost:.0%} of the lost accuracy"
