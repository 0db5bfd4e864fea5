import keras
import numpy as np
import pytest

from coursekit import models, sanity


def small_cnn():
    keras.utils.set_random_seed(0)
    return models.mnist_cnn(conv_filters=(4, 8), dense_units=8)


def weights_by_layer(model):
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_weighted_layers_run_from_the_output_down():
    assert sanity.weighted_layers(small_cnn()) == ["predictions", "dense", "conv2", "conv1"]


def test_top_layers_are_new_the_rest_copied_and_the_original_untouched():
    model = small_cnn()
    before = weights_by_layer(model)
    copy = sanity.randomize_layers(model, 2)
    assert copy is not model
    assert same(weights_by_layer(model)["predictions"], before["predictions"])  # original untouched
    assert all(same(weights_by_layer(model)[name], w) for name, w in before.items())
    after = weights_by_layer(copy)
    for name in ("predictions", "dense"):
        assert not np.array_equal(after[name][0], before[name][0])
    for name in ("conv2", "conv1"):
        assert same(after[name], before[name])
    # the copy's layers are its own: changing them leaves the original alone
    copy.get_layer("conv1").set_weights([np.zeros_like(w) for w in before["conv1"]])
    assert same(model.get_layer("conv1").get_weights(), before["conv1"])


def test_zero_layers_is_an_exact_copy_and_seeds_repeat():
    model = small_cnn()
    digits = np.random.default_rng(0).uniform(0, 255, size=(3, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(sanity.randomize_layers(model, 0).predict(digits, verbose=0),
                               model.predict(digits, verbose=0), rtol=1e-6)
    n = len(sanity.weighted_layers(model))
    a = weights_by_layer(sanity.randomize_layers(model, n, seed=1))
    b = weights_by_layer(sanity.randomize_layers(model, n, seed=1))
    c = weights_by_layer(sanity.randomize_layers(model, n, seed=2))
    assert all(same(a[name], b[name]) for name in a)
    assert not same(a["conv1"], c["conv1"])


def test_randomized_kernels_come_from_the_layers_own_initializer():
    model = small_cnn()
    copy = sanity.randomize_layers(model, 4)
    kernel = copy.get_layer("dense").get_weights()[0]      # glorot uniform: |w| <= sqrt(6 / (fan_in + fan_out))
    limit = np.sqrt(6 / sum(kernel.shape))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit
    assert not copy.get_layer("dense").get_weights()[1].any()  # biases start at zero


def test_bad_counts_are_explained():
    model = small_cnn()
    with pytest.raises(ValueError, match="from 0 to 4"):
        sanity.randomize_layers(model, 5)
    with pytest.raises(ValueError, match="from 0 to 4"):
        sanity.randomize_layers(model, -1)


def test_cascade_points_end_at_kernels_and_span_the_model():
    model = small_cnn()
    assert sanity.cascade_points(model, 2) == [1, 4]
    assert sanity.cascade_points(model, 10) == [1, 2, 3, 4]
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    with_bn = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    assert sanity.weighted_layers(with_bn) == ["out", "bn2", "depthwise", "bn", "conv"]
    assert sanity.cascade_points(with_bn, 3) == [1, 3, 5]   # each batch norm goes with the kernel below it


PHOTOS = ("cat", "coffee", "grace_hopper", "astronaut")


@pytest.fixture(scope="module")
def photos(mobilenet):
    return mobilenet.preprocess(np.stack([mobilenet.load_image(name) for name in PHOTOS]))


def test_grad_cam_no_longer_matches_once_every_layer_is_random(mobilenet, photos):
    from coursekit import cam, metrics
    model = mobilenet.model
    classes = model.predict(photos, verbose=0).argmax(axis=1)
    trained = cam.grad_cam(model, photos, class_index=classes)
    n = len(sanity.weighted_layers(model))
    maps = {step: cam.grad_cam(working, photos, class_index=classes)
            for step, working in sanity.cascade(model, [0, n])}
    np.testing.assert_allclose(metrics.rank_correlation(trained, maps[0]), 1.0, atol=1e-6)  # the measure works
    assert metrics.rank_correlation(trained, maps[n]).mean() < 0.5


def test_the_in_place_cascade_gives_the_same_models_and_maps_as_fresh_copies(digits):
    from coursekit import cam, saliency
    model = small_cnn()   # ends in Dense(softmax): the cascade copy must split it to stay correct
    (x_train, _), _ = digits
    images = x_train[:3, ..., None].astype("float32")
    before = weights_by_layer(model)
    points = [0, 1, 2, 4]   # 0 first: explainers cache their functions while the weights are trained
    for n, working in sanity.cascade(model, points, seed=3):
        fresh = sanity.randomize_layers(model, n, seed=3)
        for name in sanity.weighted_layers(model):
            assert same(working.get_layer(name).get_weights(), fresh.get_layer(name).get_weights())
        np.testing.assert_allclose(working.predict(images, verbose=0), fresh.predict(images, verbose=0), rtol=1e-5)
        # explainers cache a gradient function per model: on the working copy it must follow the changes
        np.testing.assert_allclose(saliency.vanilla_saliency(working, images, class_index=0),
                                   saliency.vanilla_saliency(fresh, images, class_index=0), atol=1e-5)
        np.testing.assert_allclose(cam.grad_cam(working, images, class_index=0),
                                   cam.grad_cam(fresh, images, class_index=0), atol=1e-5)
    assert all(same(weights_by_layer(model)[name], w) for name, w in before.items())
    with pytest.raises(ValueError, match="increasing"):
        list(sanity.cascade(model, [2, 1]))
