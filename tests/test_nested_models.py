"""A pretrained backbone nested in a transfer-learning model is explained like a flat model.

The nested models are the two ways students write one: ``keras.Sequential([backbone, pooling,
head])`` and the functional ``head(pooling(backbone(inputs)))``. The *flat* model runs the same
layers (the same objects, so the same weights) from the backbone's own input: every method must
give the same answer on both, reaching layers inside the backbone by name or by path.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import load_pretrained
from coursekit import _inputs, cam, features, filters, models, occlusion, saliency
from coursekit.env import profile

CLASSES = 3
PEARSON_AT_LEAST = 0.999


def pearson(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def assert_same_maps(ours, reference):
    """Pearson >= PEARSON_AT_LEAST per map; a map with no evidence (all zero) must be so on both sides."""
    assert ours.shape == reference.shape
    assert reference.any(), "every map is empty: the comparison would prove nothing"
    for i, (a, b) in enumerate(zip(ours, reference)):
        if not b.any():
            assert not a.any(), i
        else:
            assert pearson(a, b) >= PEARSON_AT_LEAST, i


@pytest.fixture(scope="module")
def three():
    """(backbone Pretrained, {"sequential": m, "functional": m, "flat": m}, preprocessed photos)."""
    net = load_pretrained(profile("smoke").imagenet_model, include_top=False)
    backbone = net.model
    keras.utils.set_random_seed(0)
    pooling = keras.layers.GlobalAveragePooling2D(name="pool")
    head = keras.layers.Dense(CLASSES, activation="softmax", name="head")
    size = (*net.input_size, 3)
    inputs = keras.Input(size)
    functional = keras.Model(inputs, head(pooling(backbone(inputs))), name="functional_transfer")
    sequential = keras.Sequential([keras.Input(size), backbone, pooling, head], name="sequential_transfer")
    flat = keras.Model(backbone.input, head(pooling(backbone.output)), name="flat_transfer")
    kernel, bias = head.get_weights()
    kernel[:, 0] = np.abs(kernel[:, 0])     # class 0 has positive evidence everywhere, so that
    kernel[:, 1] = -np.abs(kernel[:, 1])    # its maps are not empty; class 1 has none at all
    head.set_weights([kernel, bias])
    photos = net.preprocess(np.stack([net.load_image(name) for name in ("cat", "coffee")]))
    return net, {"functional": functional, "sequential": sequential, "flat": flat}, photos


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_same_predictions_and_default_grad_cam_layer(three, kind):
    net, built, photos = three
    nested = built[kind]
    np.testing.assert_allclose(nested.predict(photos, verbose=0), built["flat"].predict(photos, verbose=0), atol=1e-6)
    # the default Grad-CAM layer is the backbone's last 4-D layer, not the backbone as a whole
    assert _inputs.last_spatial_layer(nested) == _inputs.last_spatial_layer(net.model)
    assert isinstance(_inputs.find_layer(nested, _inputs.last_spatial_layer(nested)), keras.layers.Layer)


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_grad_cam_through_the_nesting_equals_the_flat_model(three, kind):
    net, built, photos = three
    nested, flat = built[kind], built["flat"]
    for layer in (net.last_conv_layer, net.feature_layers[2]):
        for classes in (None, [0, 2], [0, 1]):
            ours = cam.grad_cam(nested, photos, class_index=classes, layer=layer)
            by_path = cam.grad_cam(nested, photos, class_index=classes, layer=f"{net.model.name}/{layer}")
            reference = cam.grad_cam(flat, photos, class_index=classes, layer=layer)
            assert ours.shape == photos.shape[:3]
            assert_same_maps(ours, reference)
            np.testing.assert_array_equal(ours, by_path)
    default = cam.grad_cam(nested, photos)
    np.testing.assert_allclose(default, cam.grad_cam(flat, photos, layer=net.last_conv_layer), atol=1e-4)


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_saliency_and_occlusion_equal_the_flat_model(three, kind):
    _, built, photos = three
    nested, flat = built[kind], built["flat"]
    assert_same_maps(saliency.vanilla_saliency(nested, photos), saliency.vanilla_saliency(flat, photos))
    side = photos.shape[1] // 4
    np.testing.assert_allclose(occlusion.occlusion_map(nested, photos[:1], patch=side, stride=side),
                               occlusion.occlusion_map(flat, photos[:1], patch=side, stride=side), atol=1e-4)


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_feature_maps_of_inner_layers_equal_the_flat_model(three, kind):
    net, built, photos = three
    nested, flat = built[kind], built["flat"]
    layers = [net.feature_layers[0], net.last_conv_layer]
    ours = features.feature_maps(nested, photos, layers=layers)
    reference = features.feature_maps(flat, photos, layers=layers)
    for layer in layers:
        np.testing.assert_allclose(ours[layer], reference[layer], atol=1e-5)
    # without layers: the convolutions inside the backbone, not nothing
    defaults = features.default_feature_layers(nested)
    assert set(features.default_feature_layers(net.model)) == set(defaults)


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_filter_patterns_of_an_inner_layer_equal_the_flat_model(three, kind):
    net, built, _ = three
    nested, flat = built[kind], built["flat"]
    layer, size = net.pattern_layers[0], net.input_size[0]
    ours = filters.filter_patterns(nested, layer, [0, 1], steps=2, size=size, progress=False)
    reference = filters.filter_patterns(flat, layer, [0, 1], steps=2, size=size, progress=False)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_a_name_in_two_sub_models_lists_both_paths():
    def block(name):
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs), name=name)
    inputs = keras.Input((8, 8, 3))
    x = block("left")(inputs)
    x = block("right")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))
    with pytest.raises(ValueError, match=r"2 layers named 'conv': 'left/conv', 'right/conv'. Name one by its path"):
        cam.grad_cam(model, np.zeros((1, 8, 8, 3)), layer="conv")
    right = cam.grad_cam(model, np.random.default_rng(0).uniform(size=(1, 8, 8, 3)), layer="right/conv")
    assert right.shape == (1, 8, 8)
    with pytest.raises(ValueError, match="no layer 'cnov'. Did you mean"):
        features.feature_maps(model, np.zeros((1, 8, 8, 3)), layers=["cnov"])
    names = models.layer_names(model)
    assert "left/conv" in names and "right/conv" in names and names.index("left") < names.index("left/conv")


def test_two_levels_of_nesting():
    inner_input = keras.Input((8, 8, 3))
    inner = keras.Model(inner_input, keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="deep")(inner_input),
                        name="inner")
    middle_input = keras.Input((8, 8, 3))
    middle = keras.Model(middle_input, keras.layers.MaxPooling2D(2, name="pool")(inner(middle_input)), name="middle")
    outer = keras.Sequential([keras.Input((8, 8, 3)), middle, keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")], name="outer")
    images = np.random.default_rng(1).uniform(size=(2, 8, 8, 3)).astype("float32")
    assert _inputs.layer_path(outer, "deep") == "middle/inner/deep"
    assert _inputs.last_spatial_layer(outer) == "pool"
    maps = features.feature_maps(outer, images, layers=["deep"])["deep"]
    np.testing.assert_allclose(maps, inner.predict(images, verbose=0), atol=1e-6)
