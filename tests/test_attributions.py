"""Integrated Gradients, Input x Gradient, Guided Backprop and Guided Grad-CAM (coursekit.saliency, coursekit.cam).

The thresholds on the real ImageNet model were measured on MobileNetV2 (224 px, ImageNet weights from
the offline cache), the smoke profile's model; each test says what it measured.
"""
from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from conftest import load_pretrained, unavailable
from coursekit import cam, data, metrics, models, saliency, sanity

# ----------------------------------------------------------------------------- models


def small_cnn(seed: int = 0) -> keras.Model:
    """A random ReLU CNN on 10x10 RGB images with 4 classes, ending in a Dense softmax.

    Its biases are random too: with zero biases a ReLU network is linear along every ray from 0,
    and Integrated Gradients from a zero baseline would be exact at any number of steps.
    """
    keras.utils.set_random_seed(seed)
    bias = keras.initializers.RandomNormal(stddev=0.3)
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", bias_initializer=bias)(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", bias_initializer=bias)(x)
    x = keras.layers.ReLU(max_value=6.0)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(12, activation="relu", bias_initializer=bias)(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x), name=f"small_cnn_{seed}")


def small_images(count: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (count, 10, 10, 3)).astype("float32")


def tiny_relu_network(activation=None, relu6: bool = False) -> keras.Model:
    """x (2 values, as a 1x2x1 image) -> Dense(3, no bias) -> ReLU (or ReLU6) -> Dense(2, no bias)."""
    inputs = keras.Input((1, 2, 1))
    x = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(3, use_bias=False, name="hidden")
    x = hidden(x)
    x = keras.layers.ReLU(max_value=6.0 if relu6 else None)(x) if activation is None else \
        keras.layers.Activation(activation)(x)
    out = keras.layers.Dense(2, use_bias=False, name="out")
    model = keras.Model(inputs, out(x), name="tiny")
    hidden.set_weights([W1])
    out.set_weights([W2])
    return model


W1 = np.array([[1.0, -2.0, 4.0], [0.5, 1.0, 1.0]], "float32")   # input (2) -> hidden (3)
W2 = np.array([[1.0, -1.0], [-2.0, 0.5], [3.0, 1.0]], "float32")  # hidden (3) -> classes (2)


def guided_by_hand(x: np.ndarray, c: int, top: float | None = None) -> np.ndarray:
    """Guided Backprop of class c through the tiny network, written out."""
    z = x @ W1
    active = (z > 0) if top is None else (z > 0) & (z < top)
    upstream = W2[:, c]
    return W1 @ (upstream * active * (upstream > 0))


@pytest.fixture(scope="module")
def mobilenet_v2():
    """(model, preprocessed cat and coffee (2, 224, 224, 3)): MobileNetV2 with ImageNet weights."""
    if "mobilenet_v2" in models.SPECS:
        net = load_pretrained("mobilenet_v2")
        model, preprocess = net.model, net.preprocess
    else:
        from keras.applications import mobilenet_v2
        try:
            model = keras.applications.MobileNetV2(weights="imagenet")
        except Exception as error:  # Keras reports a failed download as a bare Exception
            unavailable("pretrained mobilenet_v2", str(error))
        preprocess = mobilenet_v2.preprocess_input
    photos = np.stack([data.sample_image(name, size=(224, 224)) for name in ("cat", "coffee")]).astype("float32")
    return model, preprocess(photos)


def completeness_error(model, images, attributions, baseline) -> np.ndarray:
    """|sum of attributions - (logit(x) - logit(baseline))| / |logit(x) - logit(baseline)|, per image."""
    logits_model = models.pre_softmax(model)
    scores = np.asarray(logits_model(images))
    classes = scores.argmax(axis=1)
    rows = np.arange(len(images))
    gap = scores[rows, classes] - np.asarray(logits_model(baseline))[rows, classes]
    return np.abs(attributions.reshape(len(images), -1).sum(axis=1) - gap) / np.abs(gap)


# ----------------------------------------------------------------------------- Integrated Gradients

def test_path_points_cover_the_path_with_weights_summing_to_one():
    alphas, weights = saliency.path_points(4)
    assert alphas.tolist() == [0.125, 0.375, 0.625, 0.875] and weights.tolist() == [0.25] * 4
    alphas, weights = saliency.path_points(4, "trapezoid")
    assert alphas.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert weights.tolist() == [0.125, 0.25, 0.25, 0.25, 0.125]
    alphas, weights = saliency.path_points(4, "riemann_right")
    assert alphas.tolist() == [0.25, 0.5, 0.75, 1] and weights.sum() == 1
    with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
        saliency.path_points(0)
    with pytest.raises(ValueError, match="method must be one of"):
        saliency.path_points(4, "simpson")


def test_integrated_gradients_of_a_linear_model_is_input_times_weights():
    """For logit = sum(w * x), IG from a zero baseline is exactly w * x (any number of steps)."""
    inputs = keras.Input((4, 4, 2))
    logits = keras.layers.Dense(3, use_bias=False)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, logits)
    weights = model.layers[-1].get_weights()[0]                    # (32, 3)
    images = small_images(2, seed=1)[:, :4, :4, :2]
    attributions = saliency.integrated_gradients(model, images, class_index=1, steps=3)
    expected = images * weights[:, 1].reshape(4, 4, 2)
    np.testing.assert_allclose(attributions, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saliency.input_x_gradient(model, images, class_index=1), expected, rtol=1e-5, atol=1e-6)


def test_integrated_gradients_is_complete_on_a_small_cnn_and_converges():
    """small_cnn(1), 3 images in [0, 3], zero baseline: the worst relative completeness error
    measured 3.3% at 5 steps, 0.18% at 50 (the default), 0.03% at 200."""
    model, images = small_cnn(1), 3 * small_images(3, seed=1)
    errors = {steps: completeness_error(model, images, saliency.integrated_gradients(model, images, steps=steps),
                                        np.zeros_like(images)).max()
              for steps in (5, 50, 200)}
    assert errors[50] < 0.01, errors
    assert errors[200] < errors[50] < errors[5], errors


def test_integrated_gradients_is_complete_on_the_smoke_model(mobilenet_v2):
    """MobileNetV2, the cat, zero baseline, its top class: the relative completeness error measured
    40.6% at 10 steps, 6.3% at 50 (the default) and 4.3% at 100. (ReLU6 and batch normalisation
    make the path bumpy: the coffee cup's error measured 0.5% at 50 steps but 6.1% at 100.)"""
    model, images = mobilenet_v2
    cat = images[:1]
    errors = {steps: float(completeness_error(model, cat, saliency.integrated_gradients(model, cat, steps=steps),
                                              np.zeros_like(cat))[0])
              for steps in (10, 50, 100)}
    assert errors[50] < 0.1, errors
    assert errors[100] < errors[50] < errors[10], errors


def test_integrated_gradients_does_not_depend_on_batch_size():
    model, images = small_cnn(), small_images()
    whole = saliency.integrated_gradients(model, images, steps=10, batch_size=64)
    for batch_size in (1, 7, 11):
        np.testing.assert_allclose(saliency.integrated_gradients(model, images, steps=10, batch_size=batch_size),
                                   whole, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_baselines_and_classes():
    model, images = small_cnn(), small_images()
    grey = saliency.integrated_gradients(model, images, baseline=0.5, steps=20)
    same = saliency.integrated_gradients(model, images, baseline=np.full((10, 10, 3), 0.5), steps=20)
    np.testing.assert_allclose(grey, same, rtol=1e-6)
    assert completeness_error(model, images, grey, np.full_like(images, 0.5)).max() < 0.02
    blurred = saliency.integrated_gradients(model, images, baseline="blur", steps=20)
    assert completeness_error(model, images, blurred, metrics.blurred(images)).max() < 0.02
    # attributions are zero where the image equals the baseline
    partly = images.copy()
    partly[:, :5] = 0.5
    assert np.all(saliency.integrated_gradients(model, partly, baseline=0.5, steps=5)[:, :5] == 0)
    # None = each image's top class, fixed from the image (not from the points of the path)
    top = np.asarray(model(images)).argmax(axis=1)
    np.testing.assert_array_equal(saliency.integrated_gradients(model, images, steps=5),
                                  saliency.integrated_gradients(model, images, class_index=top.tolist(), steps=5))
    with pytest.raises(ValueError, match="baseline of shape .* does not fit"):
        saliency.integrated_gradients(model, images, baseline=np.zeros((5, 5, 3)))
    with pytest.raises(ValueError, match="baseline must be None"):
        saliency.integrated_gradients(model, images, baseline="black")


# ----------------------------------------------------------------------------- attribution maps

def test_attribution_map_sums_channels_then_takes_the_sign_asked_for():
    attributions = np.zeros((1, 2, 2, 3), "float32")
    attributions[0, 0, 0] = [1, 1, -4]     # sum -2
    attributions[0, 0, 1] = [0.5, 0.5, 0]  # sum 1
    attributions[0, 1, 1] = [3, -3, 0]     # sum 0: evidence that cancels
    np.testing.assert_array_equal(saliency.attribution_map(attributions), [[[1, 0.5], [0, 0]]])
    np.testing.assert_array_equal(saliency.attribution_map(attributions, "positive"), [[[0, 1], [0, 0]]])
    np.testing.assert_array_equal(saliency.attribution_map(attributions, "signed"), [[[-1, 0.5], [0, 0]]])
    np.testing.assert_array_equal(saliency.attribution_map(attributions[0], normalize=False), [[[2, 1], [0, 0]]])
    assert not saliency.attribution_map(np.zeros((1, 3, 3, 3))).any()
    with pytest.raises(ValueError, match=r"\(N, H, W, C\) or \(H, W, C\); got \(3, 3\)"):
        saliency.attribution_map(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="sign must be"):
        saliency.attribution_map(attributions, "both")


# ----------------------------------------------------------------------------- Guided Backprop

@pytest.mark.parametrize("x", [[1.0, 0.4], [-0.5, 2.0], [3.0, -1.0]])
def test_guided_backprop_equals_the_hand_computed_value(x):
    model = tiny_relu_network()
    image = np.asarray(x, "float32").reshape(1, 1, 2, 1)
    for c in (0, 1):
        got = saliency.guided_backprop(model, image, class_index=c).ravel()
        np.testing.assert_allclose(got, guided_by_hand(np.asarray(x), c), rtol=1e-6, atol=1e-7)
    # x = (1, 0.4): hidden z = (1.2, -1.6, 4.4); class 1 sends back (-1, 0.5, 1). The plain gradient
    # keeps -1 and 1 (z > 0): (3, 0.5); Guided Backprop keeps only the positive 1: (4, 1).
    if x == [1.0, 0.4]:
        plain = saliency.input_gradients(model, image, class_index=1).ravel()
        np.testing.assert_allclose(plain, [3.0, 0.5], rtol=1e-6)
        np.testing.assert_allclose(saliency.guided_backprop(model, image, class_index=1).ravel(), [4.0, 1.0],
                                   rtol=1e-6)


@pytest.mark.parametrize("build", [lambda: tiny_relu_network(relu6=True), lambda: tiny_relu_network("relu6")],
                         ids=["ReLU(max_value=6)", "Activation(relu6)"])
def test_guided_backprop_through_relu6_passes_nothing_back_above_six(build):
    model = build()
    x = np.array([2.0, 0.5], "float32")                  # hidden z = (2.25, -3.5, 8.5): the third is above 6
    got = saliency.guided_backprop(model, x.reshape(1, 1, 2, 1), class_index=0).ravel()
    np.testing.assert_allclose(got, guided_by_hand(x, 0, top=6.0), rtol=1e-6)
    assert not np.allclose(got, guided_by_hand(x, 0))   # the unit above 6 is cut off


def test_guided_backprop_leaves_the_model_and_its_gradients_unchanged():
    model, images = small_cnn(), small_images()
    layers_before = [layer for layer in model.layers]
    weights_before = [w.copy() for w in model.get_weights()]
    plain_before = saliency.vanilla_saliency(model, images)
    guided = saliency.guided_backprop(model, images)
    assert model.layers == layers_before
    assert all(np.array_equal(a, b) for a, b in zip(weights_before, model.get_weights()))
    np.testing.assert_array_equal(saliency.vanilla_saliency(model, images), plain_before)
    assert not np.allclose(guided, saliency.input_gradients(model, images))
    # it shares the weights: a change of the model shows in the next guided map
    model.layers[-1].set_weights([w * 2 for w in model.layers[-1].get_weights()])
    np.testing.assert_allclose(saliency.guided_backprop(model, images), 2 * guided, rtol=1e-5, atol=1e-8)


def test_guided_backprop_of_a_nested_model_equals_that_of_the_flat_one():
    """A backbone inside a model, as in transfer learning: the same layers, the same result."""
    flat, images = small_cnn(), small_images()
    backbone = keras.Model(flat.inputs, flat.layers[-2].output, name="backbone")
    inputs = keras.Input((10, 10, 3))
    head = keras.layers.Dense(4, activation="softmax", name="head")
    nested = keras.Model(inputs, head(backbone(inputs)), name="transfer")
    head.set_weights(flat.layers[-1].get_weights())
    np.testing.assert_allclose(saliency.guided_backprop(nested, images), saliency.guided_backprop(flat, images),
                               rtol=1e-5, atol=1e-8)


def test_guided_backprop_warns_about_activations_it_does_not_handle():
    model = tiny_relu_network("sigmoid")
    with pytest.warns(UserWarning, match="handles ReLU and ReLU6 only"):
        saliency.guided_backprop(model, np.ones((1, 1, 2, 1), "float32"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        saliency.guided_backprop(tiny_relu_network(), np.ones((1, 1, 2, 1), "float32"))


def test_guided_backprop_survives_randomisation_on_the_smoke_model_while_the_gradient_does_not(mobilenet_v2):
    """Adebayo et al.'s result on MobileNetV2 (cat and coffee). Rank correlation with the trained
    maps, measured: top layer random, Guided Backprop 1.00 / 1.00, vanilla gradient 0.33 / 0.45;
    down to block_14_expand (21 weighted layers) 0.98 / 0.91 against 0.23 / 0.31."""
    model, images = mobilenet_v2
    classes = np.asarray(model(images)).argmax(axis=1)

    def maps(some_model):
        return (saliency.attribution_map(saliency.guided_backprop(some_model, images, class_index=classes)),
                saliency.vanilla_saliency(some_model, images, class_index=classes))

    trained_guided, trained_vanilla = maps(model)
    for n, randomised in sanity.cascade(model, [1, 21]):
        guided, vanilla = maps(randomised)
        guided_kept = metrics.rank_correlation(trained_guided, guided)
        vanilla_kept = metrics.rank_correlation(trained_vanilla, vanilla)
        assert guided_kept.min() > 0.85, (n, guided_kept)
        assert vanilla_kept.max() < 0.5, (n, vanilla_kept)


# ----------------------------------------------------------------------------- Guided Grad-CAM

def test_guided_grad_cam_is_guided_backprop_times_grad_cam():
    model, images = small_cnn(), small_images()
    got = cam.guided_grad_cam(model, images, class_index=2)
    expected = saliency.guided_backprop(model, images, class_index=2) * cam.grad_cam(model, images, class_index=2)[..., None]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    top = np.asarray(model(images)).argmax(axis=1)
    np.testing.assert_array_equal(cam.guided_grad_cam(model, images), cam.guided_grad_cam(model, images, top.tolist()))


# ----------------------------------------------------------------------------- pointing game, edges

def test_pointing_game_tolerance_counts_a_hit_within_that_many_pixels_and_not_beyond():
    heatmap = np.zeros((1, 40, 40))
    heatmap[0, 20, 5] = 1.0                 # the hottest pixel
    mask = np.zeros((1, 40, 40), bool)
    mask[0, 20, 20:] = True                 # nearest mask pixel: 15 px to the right
    assert not metrics.pointing_game(heatmap, mask)[0]
    assert not metrics.pointing_game(heatmap, mask, tolerance=14)[0]
    assert metrics.pointing_game(heatmap, mask, tolerance=15)[0]
    diagonal = np.zeros((1, 40, 40), bool)
    diagonal[0, 29, 14] = True              # 9 down, 9 right: 12.73 px away
    assert not metrics.pointing_game(heatmap, diagonal, tolerance=12)[0]
    assert metrics.pointing_game(heatmap, diagonal, tolerance=13)[0]


def test_centre_pointing_game_points_at_the_middle():
    masks = np.zeros((3, 9, 11), bool)
    masks[0, 4, 5] = True                   # the centre pixel itself
    masks[1, 0, 0] = True                   # a corner
    masks[2, 4, 8] = True                   # 3 px right of the centre
    assert metrics.centre_pointing_game(masks).tolist() == [True, False, False]
    assert metrics.centre_pointing_game(masks, tolerance=3).tolist() == [True, False, True]
    assert metrics.centre_pointing_game(masks[0]).tolist() == [True]


def test_edge_map_is_strongest_at_an_edge_and_zero_on_a_flat_image():
    image = np.zeros((12, 12, 3), "float32")
    image[:, 6:] = 200.0                    # a vertical step between columns 5 and 6
    edges = metrics.edge_map(image)
    assert edges.shape == (1, 12, 12) and edges.max() == 1
    assert set(np.unique(np.nonzero(edges[0] == 1)[1])) <= {5, 6}
    assert edges[0, :, :4].max() == 0 and edges[0, :, 8:].max() == 0
    assert not metrics.edge_map(np.full((2, 5, 5, 3), 7.0)).any()
    with pytest.raises(ValueError, match="edge_map needs images"):
        metrics.edge_map(np.zeros((5, 5)))


# ----------------------------------------------------------------------------- data randomisation

def test_permuted_labels_keep_the_classes_and_change_the_pairing():
    labels = np.repeat(np.arange(10), 20)
    permuted = sanity.permuted_labels(labels, seed=1)
    assert sorted(permuted.tolist()) == sorted(labels.tolist())
    assert (permuted != labels).mean() > 0.7
    np.testing.assert_array_equal(permuted, sanity.permuted_labels(labels, seed=1))
    with pytest.raises(ValueError, match="1-D array"):
        sanity.permuted_labels(np.zeros((3, 2)))


def test_memorise_fits_random_labels_that_carry_no_information(digits):
    (images, labels), _ = digits
    images, labels = images[:96], sanity.permuted_labels(labels[:96], seed=0)
    keras.utils.set_random_seed(0)
    model = models.mnist_cnn(dense_units=128)
    history = sanity.memorise(model, images, labels, target=0.9, max_epochs=80, batch_size=32)
    assert history.history["accuracy"][-1] >= 0.9
    assert len(history.history["loss"]) < 80
    assert models.accuracy(model, images, labels) >= 0.9
    with pytest.raises(ValueError, match="target must be"):
        sanity.memorise(model, images, labels, target=1.5)
