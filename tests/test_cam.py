import keras
import numpy as np
import pytest
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.utils.scores import CategoricalScore

from coursekit import _cache, cam, models

PHOTOS = ("cat", "coffee", "astronaut", "rocket", "grace_hopper")
CAT_CLASSES = {"tabby", "tiger_cat", "Egyptian_cat"}


def pearson(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def tf_keras_vis_gradcam(model, batch, classes, layer):
    """tf-keras-vis' Grad-CAM on the pre-softmax scores, at the layer's own resolution.

    ``seek_penultimate_conv_layer=False``: otherwise it replaces a non-convolution layer such as
    ``conv_pw_13_relu`` by the convolution before it. At the layer's resolution neither side
    resizes (tf-keras-vis zooms with scipy, we with OpenCV: they align pixels differently).
    """
    explainer = Gradcam(models.pre_softmax(model), clone=False)
    maps = explainer(CategoricalScore([int(c) for c in classes]), batch, penultimate_layer=layer,
                     seek_penultimate_conv_layer=False, expand_cam=False)
    return np.asarray(maps)


@pytest.fixture(scope="module")
def photos(mobilenet):
    return mobilenet.preprocess(np.stack([mobilenet.load_image(name) for name in PHOTOS]))


def test_grad_cam_agrees_with_tf_keras_vis_on_mobilenet(mobilenet, photos):
    model = mobilenet.model
    classes = model.predict(photos, verbose=0).argmax(axis=1)
    ours = cam.grad_cam(model, photos, upsample=False)  # class None: the top prediction
    theirs = tf_keras_vis_gradcam(model, photos, classes, mobilenet.last_conv_layer)
    assert ours.shape == theirs.shape == (len(PHOTOS), 4, 4)
    for name, a, b in zip(PHOTOS, ours, theirs):
        assert a.std() > 0, f"{name}: flat map, the comparison would mean nothing"
        assert pearson(a, b) >= 0.99, name


def test_grad_cam_agrees_with_tf_keras_vis_on_a_small_cnn(digits):
    keras.utils.set_random_seed(0)
    model = models.mnist_cnn()  # untrained weights are enough: both sides must compute the same map
    batch = digits[0][0][:6, ..., None].astype("float32")
    classes = model.predict(batch, verbose=0).argmax(axis=1)
    assert np.array_equal(cam.grad_cam(model, batch[..., 0]), cam.grad_cam(model, batch))  # (N, 28, 28) works too
    for layer in ("conv2", None):  # None: the last 4-D layer, pool2
        ours = cam.grad_cam(model, batch, layer=layer, upsample=False)
        theirs = tf_keras_vis_gradcam(model, batch, classes, layer or "pool2")
        for a, b in zip(ours, theirs):
            assert a.std() > 0
            assert pearson(a, b) >= 0.99


def test_the_cats_heatmap_falls_on_the_cat(mobilenet, cat_batch):
    model = mobilenet.model
    top = model.predict(cat_batch, verbose=0).argmax()
    assert mobilenet.decode(np.eye(1000)[None, top], top=1)[0][0][1] in CAT_CLASSES
    heatmap = cam.grad_cam(model, cat_batch)[0]
    # Hand-drawn box around the cat in the 128x128 input: every row, columns 0-99 (its head and
    # chest); the 28 columns on the right show the sofa behind it. Most of the heat must lie on
    # the cat, and a pixel on the cat must be at least twice as hot as one on the sofa, on average.
    inside = np.zeros_like(heatmap, dtype=bool)
    inside[:, :100] = True
    share = heatmap[inside].sum() / heatmap.sum()
    contrast = heatmap[inside].mean() / heatmap[~inside].mean()
    assert share >= 0.8 and contrast >= 2.0, (share, contrast)


def test_grad_cam_output_and_class_choice(mobilenet, photos):
    model = mobilenet.model
    heatmaps = cam.grad_cam(model, photos)
    assert heatmaps.shape == (len(PHOTOS), 128, 128) and heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0 and np.allclose(heatmaps.max(axis=(1, 2)), 1)
    top = model.predict(photos, verbose=0).argmax(axis=1)
    assert np.allclose(heatmaps, cam.grad_cam(model, photos, class_index=list(top)), atol=1e-5)
    espresso = mobilenet.class_index("espresso")
    same_class = cam.grad_cam(model, photos[:2], class_index=espresso)
    assert np.allclose(same_class[1], heatmaps[1], atol=1e-5)  # the coffee's top class is espresso
    assert pearson(same_class[0], heatmaps[0]) < 0.9           # the cat's map changes with the class


def test_gradient_model_is_built_once_and_the_step_traced_once():
    model = models.mnist_cnn(name="trace_once")
    batch = np.random.default_rng(0).uniform(0, 255, (5, 28, 28, 1)).astype("float32")
    cam.grad_cam(model, batch[:1])
    key = ("class_map", "pool2", cam._grad_cam_weights)
    step = _cache._CACHE[model][key]
    cam.grad_cam(model, batch, class_index=3)
    cam.grad_cam(model, batch[:2], class_index=[1, 2], batch_size=1)
    assert _cache._CACHE[model][key] is step
    assert step.experimental_get_tracing_count() == 1


# ----------------------------------------------------------------------------- Grad-CAM++

def paper_grad_cam_plus_plus(model, batch, classes, layer, normalize_alphas=False):
    """Grad-CAM++ by its paper's formula in float64 numpy, from the layer's maps and the logit's gradient."""
    import tensorflow as tf
    both = keras.Model(model.inputs, [model.get_layer(layer).output, models.pre_softmax(model).output])
    with tf.GradientTape() as tape:
        maps, logits = both(tf.constant(batch))
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    g = tape.gradient(score, maps).numpy().astype("float64")
    a = maps.numpy().astype("float64")
    denominator = 2 * g ** 2 + a.sum(axis=(1, 2), keepdims=True) * g ** 3
    alphas = np.divide(g ** 2, denominator, out=np.zeros_like(g), where=denominator != 0)
    if normalize_alphas:
        total = alphas.sum(axis=(1, 2), keepdims=True)
        alphas = np.divide(alphas, total, out=alphas.copy(), where=total != 0)
    weights = (alphas * np.maximum(g, 0)).sum(axis=(1, 2), keepdims=True)
    return np.maximum((weights * a).sum(axis=-1), 0)


def test_grad_cam_plus_plus_is_the_papers_formula(digits):
    keras.utils.set_random_seed(1)
    model = models.mnist_cnn()
    batch = digits[0][0][:5, ..., None].astype("float32")
    classes = np.array([0, 3, 5, 7, 9])
    for normalize_alphas in (False, True):
        expected = paper_grad_cam_plus_plus(model, batch, classes, "conv2", normalize_alphas)
        peak = expected.max(axis=(1, 2), keepdims=True)
        assert np.all(peak > 0)
        ours = cam.grad_cam_plus_plus(model, batch, list(classes), layer="conv2", upsample=False,
                                      normalize_alphas=normalize_alphas)
        np.testing.assert_allclose(ours, expected / peak, rtol=1e-4, atol=1e-5)
    plain = cam.grad_cam(model, batch, list(classes), layer="conv2", upsample=False)
    assert np.abs(plain - ours).max() > 1e-2   # a method of its own, not Grad-CAM again


def test_grad_cam_plus_plus_agrees_with_tf_keras_vis(mobilenet, photos):
    """tf-keras-vis (as the authors' code) normalises each channel's alphas: the same form here."""
    model = mobilenet.model
    classes = model.predict(photos, verbose=0).argmax(axis=1)
    ours = cam.grad_cam_plus_plus(model, photos, upsample=False, normalize_alphas=True)
    theirs = np.asarray(GradcamPlusPlus(models.pre_softmax(model), clone=False)(
        CategoricalScore([int(c) for c in classes]), photos, penultimate_layer=mobilenet.last_conv_layer,
        seek_penultimate_conv_layer=False, expand_cam=False, normalize_cam=False))
    for name, a, b in zip(PHOTOS, ours, theirs):
        assert a.std() > 0, f"{name}: flat map, the comparison would mean nothing"
        np.testing.assert_allclose(a, b / b.max(), rtol=1e-3, atol=1e-4, err_msg=name)
    upsampled = cam.grad_cam_plus_plus(model, photos)
    assert upsampled.shape == (len(PHOTOS), 128, 128) and np.allclose(upsampled.max(axis=(1, 2)), 1)


def zero_gradient_model():
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(3, kernel_initializer="zeros", activation="softmax")(pooled)
    return keras.Model(inputs, outputs)


def test_all_zero_gradients_give_zero_maps_not_nan():
    batch = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    for method in (cam.grad_cam, cam.grad_cam_plus_plus):
        heatmaps = method(zero_gradient_model(), batch)
        assert heatmaps.shape == (2, 8, 8) and np.all(heatmaps == 0)


@pytest.mark.parametrize("class_index, message", [
    (1000, "out of range: the model has 1000 classes"),
    (-1, "out of range"),
    ([1, 2, 3], "3 entries but there are 1 images"),
    (2.5, "must hold ints"),
])
def test_bad_class_index(mobilenet, cat_batch, class_index, message):
    with pytest.raises((ValueError, TypeError), match=message):
        cam.grad_cam(mobilenet.model, cat_batch, class_index=class_index)


def test_bad_layer_and_image_size(mobilenet, cat_batch):
    with pytest.raises(ValueError, match="not \\(N, H, W, C\\): Grad-CAM needs"):
        cam.grad_cam(mobilenet.model, cat_batch, layer="predictions")
    pooled = next(layer.name for layer in mobilenet.model.layers    # Keras numbers its automatic names
                  if isinstance(layer, keras.layers.GlobalAveragePooling2D))  # per process: look it up
    with pytest.raises(ValueError, match="1x1 maps"):
        cam.grad_cam(mobilenet.model, cat_batch, layer=pooled)
    with pytest.raises(ValueError, match="Did you mean"):
        cam.grad_cam(mobilenet.model, cat_batch, layer="conv_pw_13_rel")
    with pytest.raises(ValueError, match="takes images of shape \\(N, 128, 128, 3\\)"):
        cam.grad_cam(mobilenet.model, np.zeros((1, 64, 64, 3), "float32"))


def test_overlay_blends_the_colour_map_into_the_image():
    image = np.full((6, 8, 3), 200, np.uint8)
    heatmap = np.zeros((3, 4), "float32")
    heatmap[0, 0] = 1.0
    assert np.array_equal(cam.overlay(image, heatmap, alpha=0.0), image)
    coloured = cam.overlay(image, heatmap, alpha=1.0)  # pure jet: low = dark blue, high = dark red
    assert coloured.shape == (6, 8, 3) and coloured.dtype == np.uint8
    assert coloured[-1, -1, 2] > 100 and coloured[-1, -1, 0] < 50     # blue where the map is 0
    assert coloured[0, 0, 0] > 100 and coloured[0, 0, 2] < 50         # red where it is 1
    assert np.array_equal(cam.overlay(image / 255.0, heatmap), cam.overlay(image, heatmap))


def test_overlay_bad_input(cat_batch):
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="Unknown colormap 'jett'"):
        cam.overlay(image, np.zeros((4, 4)), colormap="jett")
    with pytest.raises(ValueError, match="not the model input"):
        cam.overlay(cat_batch[0], np.zeros((4, 4)))
    with pytest.raises(ValueError, match="one heatmap"):
        cam.overlay(image, np.zeros((2, 4, 4)))
