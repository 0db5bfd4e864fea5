import warnings

import keras
import numpy as np
import pytest

from coursekit import _cache, features, filters


def test_ascent_raises_the_activation_of_most_filters(mobilenet, cat_batch):
    """Every filter of a pre-activation layer, 5 steps: at least 90% of them must end at least a
    quarter of a "natural" spread (the std of that filter's map on the cat photo) above their start."""
    model, layer = mobilenet.model, "conv_pw_5"
    channels = model.get_layer(layer).output.shape[-1]
    _, report = filters.filter_patterns(model, layer, range(channels), steps=5, size=128,
                                        progress=False, return_report=True)
    spread = features.feature_maps(model, cat_batch, [layer])[layer][0].std(axis=(0, 1))
    raised = report.gain >= 0.25 * spread
    assert report.dead == () and raised.mean() >= 0.9, np.flatnonzero(~raised)


@pytest.mark.parametrize("regularize", [False, True])
def test_batched_equals_one_filter_at_a_time(mobilenet, regularize):
    model, chosen = mobilenet.model, [3, 7, 12]
    options = dict(steps=4, size=128, seed=5, regularize=regularize, progress=False)
    batched = filters.filter_patterns(model, "conv_pw_2", chosen, batch_size=3, **options)
    in_pairs = filters.filter_patterns(model, "conv_pw_2", chosen, batch_size=2, **options)
    alone = np.concatenate([filters.filter_patterns(model, "conv_pw_2", [f], **options) for f in chosen])
    assert batched.shape == in_pairs.shape == (3, 128, 128, 3)
    # float32 convolutions of a batch and of one image may sum in a different order
    assert np.abs(batched - alone).max() <= 1e-4 * np.abs(alone).max()
    assert np.abs(in_pairs - alone).max() <= 1e-4 * np.abs(alone).max()
    step = _cache._CACHE[model][("ascent_step", "conv_pw_2", 128)]
    assert step.experimental_get_tracing_count() == 1  # batches of 3, 2 and 1 share one graph


def linear_filter_model(kernel_colours, bias):
    """1x1 convolution (no activation, then ReLU) whose filter k is ``kernel_colours[k] . pixel + bias[k]``."""
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(len(bias), 1, name="linear")
    outputs = keras.layers.ReLU(name="relu")(conv(inputs))
    model = keras.Model(inputs, outputs)
    conv.set_weights([np.asarray(kernel_colours, "float32").T[None, None], np.asarray(bias, "float32")])
    return model


def test_a_linear_filter_is_pushed_towards_its_colour():
    colours = [[1.0, 0.0, 0.0], [0.0, -1.0, 1.0]]  # filter 0 likes red, filter 1 blue without green
    model = linear_filter_model(colours, bias=[0.0, 0.0])
    images = filters.filter_patterns(model, "linear", [0, 1], steps=10, size=32, progress=False)
    mean_colour = images.mean(axis=(1, 2))
    unit = np.asarray(colours) / np.linalg.norm(colours, axis=1, keepdims=True)
    cosine = (mean_colour * unit).sum(axis=1) / np.linalg.norm(mean_colour, axis=1)
    assert np.all(cosine > 0.99), cosine


def test_dead_filters_are_reported_not_returned_as_patterns():
    # filter 1's bias keeps its ReLU off for any image near grey: its gradient is zero throughout
    model = linear_filter_model([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], bias=[0.0, -100.0])
    with pytest.warns(filters.DeadFilterWarning, match=r"filter\(s\) \[1\] had zero gradient"):
        images, report = filters.filter_patterns(model, "relu", [0, 1], steps=3, size=16,
                                                 progress=False, return_report=True)
    assert report.dead == (1,)
    assert np.all(images[1] == 0) and images[0].std() > 0
    assert report.gain[0] > 0 and report.gain[1] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when nothing is dead
        filters.filter_patterns(model, "relu", [0], steps=2, size=16, progress=False)


def test_filter_patterns_bad_input(mobilenet):
    model = mobilenet.model
    with pytest.raises(ValueError, match="has 32 filters, numbered 0 to 31"):
        filters.filter_patterns(model, "conv_pw_2", [0, 32], size=128, progress=False)
    with pytest.raises(ValueError, match="not \\(N, H, W, C\\)"):
        filters.filter_patterns(model, "predictions", [0], size=128, progress=False)
    with pytest.raises(ValueError, match="only takes 128x128 images, so size must be 128"):
        filters.filter_patterns(model, "conv_pw_2", [0], size=200, progress=False)
    with pytest.raises(ValueError, match="Did you mean"):
        filters.filter_patterns(model, "conv_pw2", [0], size=128, progress=False)


def test_deprocess_gives_displayable_cropped_images():
    batch = np.random.default_rng(0).normal(5, 3, (2, 64, 64, 3)).astype("float32")
    batch[1] = 7.0  # flat, like a dead filter's image
    shown = filters.deprocess(batch)
    assert shown.dtype == np.uint8 and shown.shape == (2, 48, 48, 3)
    assert abs(shown[0].mean() - 128) < 3 and np.all(shown[1] == 128)
    assert filters.deprocess(batch[0], crop=0).shape == (64, 64, 3)
    # 3.7 is not exact in float32: a naive std is ~1e-7, not 0, and would map pixels to 64 or 192
    assert np.all(filters.deprocess(np.full((1, 16, 16, 3), 3.7, dtype="float32")) == 128)
    faint = np.zeros((1, 16, 16, 3), dtype="float32")
    faint[0, :8] = 1e-6  # a tiny but real pattern around zero is still stretched
    assert filters.deprocess(faint, crop=0).std() > 30


def test_filter_weights(mobilenet):
    model = mobilenet.model
    assert filters.filter_weights(model, "conv1").shape == (3, 3, 3, 8)
    assert filters.filter_weights(model, "conv_dw_1").shape == (3, 3, 8, 1)  # depthwise
    assert np.array_equal(filters.filter_weights(model, "conv1"), model.get_layer("conv1").get_weights()[0])
    with pytest.raises(ValueError, match="has no convolution kernel"):
        filters.filter_weights(model, "conv1_bn")
