"""DeepDream, class patterns and the Fourier / decorrelated-colour parameterisation, measured with
the smoke profile's real MobileNetV2 weights (offline cache) where the numbers depend on them.

Margins were set from runs on 2 CPU cores: each asserted number is stated beside its measurement."""
import numpy as np
import pytest

from coursekit import _featurevis, filters, models

CLASSES = ("goldfish", "flamingo", "tarantula", "daisy", "lemon", "volcano")


@pytest.fixture(scope="module")
def v2_features(mobilenet_v2_features):
    return mobilenet_v2_features


@pytest.fixture(scope="module")
def cat_v2(v2_features):
    return v2_features.preprocess(v2_features.load_image("cat"))[0]  # (224, 224, 3) in [-1, 1]


# ----------------------------------------------------------------------------- DeepDream

@pytest.mark.parametrize("layer", ["block_3_expand_relu", "block_13_expand_relu"])
def test_deep_dream_raises_the_layers_activation_and_keeps_shape_and_range(v2_features, cat_v2, layer):
    """Measured: 1.45x (block_3) and 1.41x (block_13) with 3 octaves x 10 steps of 0.02; asserted >= 1.25x."""
    model = v2_features.model
    dreamed = filters.deep_dream(model, cat_v2, [layer], octaves=3, steps=10, step_size=0.02, progress=False)
    assert dreamed.shape == cat_v2.shape and dreamed.dtype == np.float32
    assert dreamed.min() >= -1.0 and dreamed.max() <= 1.0
    before, after = filters.layer_activation(model, np.stack([cat_v2, dreamed]), layer)
    assert after >= 1.25 * before, (before, after)
    # the photo is still there: the dream changes the image, not replaces it
    assert np.corrcoef(cat_v2.ravel(), dreamed.ravel())[0, 1] > 0.3


def test_deep_dream_without_steps_returns_the_photo_and_a_batch_stays_a_batch(v2_features, cat_v2):
    model = v2_features.model
    batch = np.stack([cat_v2, cat_v2[:, ::-1]])
    same = filters.deep_dream(model, batch, "block_6_expand_relu", octaves=2, steps=0, progress=False)
    assert same.shape == batch.shape
    # octaves without steps only resize down and back up, adding back exactly what was lost
    np.testing.assert_allclose(same, batch, atol=1e-5)


def test_deep_dream_bad_input(v2_features, cat_v2, mobilenet_v2):
    model = v2_features.model
    with pytest.raises(ValueError, match="outside input_range"):
        filters.deep_dream(model, cat_v2 * 127.5 + 127.5, "block_3_expand_relu", progress=False)
    with pytest.raises(ValueError, match="layers is empty"):
        filters.deep_dream(model, cat_v2, [], progress=False)
    with pytest.raises(ValueError, match="block_13_expand_relu"):
        filters.deep_dream(model, cat_v2, "block_13_expand_rel", progress=False)
    with pytest.raises(ValueError, match="octaves=1"):
        filters.deep_dream(mobilenet_v2.model, cat_v2, "block_3_expand_relu", octaves=3, progress=False)
    with pytest.raises(ValueError, match=r"one image \(any, any, 3\); got \(224, 224\)"):
        filters.deep_dream(model, cat_v2[..., 0], "block_3_expand_relu", progress=False)


# ----------------------------------------------------------------------------- class patterns

def test_class_patterns_become_the_models_top_class(mobilenet_v2):
    """Fourier parameterisation, grey start, 32 steps at 224 px. Measured: the class logit rose from
    -0.6..2.2 to 21.7..33.6 and all 6 classes were top-1. Asserted: every logit rises by >= 12 and
    at least 5 of the 6 classes are the model's top-1 for their own image."""
    net = mobilenet_v2
    classes = [net.class_index(name) for name in CLASSES]
    images, report = filters.class_pattern(net.model, classes, steps=32, progress=False, return_report=True)
    assert images.shape == (6, 224, 224, 3) and images.min() >= -1 and images.max() <= 1
    grey = filters.class_pattern(net.model, classes, steps=0, progress=False, return_report=True)[1]
    np.testing.assert_allclose(report.start_logit, grey.final_logit, atol=1e-4)  # grey start measured
    assert np.all(report.final_logit - report.start_logit >= 12), report.final_logit - report.start_logit
    assert report.hits.sum() >= 5, [net.decode(np.eye(1000)[[c]], 1)[0][0][1] for c in report.top_class]
    # the report's logits are the model's own, on the returned images
    logits = models.pre_softmax(net.model).predict(images, verbose=0)
    np.testing.assert_allclose(logits[np.arange(6), classes], report.final_logit, rtol=1e-3, atol=1e-3)


def test_pixel_class_patterns_also_rise_and_stay_in_range(mobilenet_v2):
    """Pixel parameterisation with jitter and blur, 12 steps: measured rises of 4 to 9; asserted >= 3."""
    net = mobilenet_v2
    classes = [net.class_index(name) for name in CLASSES[:2]]
    images, report = filters.class_pattern(net.model, classes, steps=12, parameterization="pixels",
                                           start="noise", progress=False, return_report=True)
    assert images.min() >= -1 and images.max() <= 1
    assert np.all(report.final_logit - report.start_logit >= 3), report


def test_class_pattern_bad_input(mobilenet_v2, v2_features):
    model = mobilenet_v2.model
    with pytest.raises(ValueError, match="0 to 999"):
        filters.class_pattern(model, 1000, steps=1, progress=False)
    with pytest.raises(ValueError, match="parameterization must be one of"):
        filters.class_pattern(model, 1, steps=1, parameterization="fft", progress=False)
    with pytest.raises(ValueError, match="size must be 224"):
        filters.class_pattern(model, 1, steps=1, size=128, progress=False)
    with pytest.raises(ValueError, match="start must be"):
        filters.class_pattern(model, 1, steps=1, start="black", progress=False)
    with pytest.raises(TypeError, match="class_index"):
        filters.class_pattern(model, ["tabby"], steps=1, progress=False)
    with pytest.raises(TypeError, match=r"class_index\('tabby'\) gives its index"):
        filters.class_pattern(model, "tabby", steps=1, progress=False)
    with pytest.raises(ValueError, match="needs a class"):
        filters.class_pattern(model, None, steps=1, progress=False)
    with pytest.raises(ValueError, match="class scores"):
        filters.class_pattern(v2_features.model, 1, steps=1, size=64, progress=False)


# ----------------------------------------------------------------------------- Fourier parameterisation

def test_fourier_patterns_have_less_high_frequency_energy_and_most_of_the_activation(v2_features):
    """block_13_expand, 8 filters, 32 steps at 128 px. Measured (4 filters): share of spectral
    energy above 0.25 cycles/pixel 0.49..0.56 plain, 0.13..0.18 Fourier; Fourier activation 0.68..0.76
    of plain. Asserted: Fourier's median share <= 0.5 x plain's, and its median activation >= 0.5 x plain's."""
    model, layer = v2_features.model, "block_13_expand"
    options = dict(steps=32, size=128, progress=False, return_report=True)
    plain, plain_report = filters.filter_patterns(model, layer, range(8), **options)
    fourier, fourier_report = filters.filter_patterns(model, layer, range(8), parameterization="fourier", **options)
    plain_share = _featurevis.high_frequency_share(plain)
    fourier_share = _featurevis.high_frequency_share(fourier)
    assert np.median(fourier_share) <= 0.5 * np.median(plain_share), (fourier_share, plain_share)
    ratio = fourier_report.final_activation / plain_report.final_activation
    assert np.median(ratio) >= 0.5 and np.all(fourier_report.gain > 0), ratio
    assert fourier.min() >= -1 and fourier.max() <= 1  # sigmoid colours, preprocessed to [-1, 1]


def test_fourier_batches_are_independent_and_parameterization_is_checked(v2_features):
    model = v2_features.model
    options = dict(steps=3, size=64, progress=False, parameterization="fourier")
    together = filters.filter_patterns(model, "block_3_expand", [2, 5], batch_size=2, **options)
    alone = filters.filter_patterns(model, "block_3_expand", [5], **options)
    assert np.abs(together[1] - alone[0]).max() <= 1e-4
    with pytest.raises(ValueError, match="regularize=True"):
        filters.filter_patterns(model, "block_3_expand", [0], regularize=True, **options)
    with pytest.raises(ValueError, match="'pixels'"):
        filters.filter_patterns(model, "block_3_expand", [0], steps=1, size=64, parameterization="Fourier")


def test_the_decorrelated_fourier_image_is_grey_at_zero_and_a_smooth_function_of_its_spectrum():
    size = 32
    scale = _featurevis.frequency_scale(size)
    grey = _featurevis.spectrum_to_rgb(_featurevis.start_spectrum([0], size, grey=True), scale).numpy()
    np.testing.assert_allclose(grey, 0.5)
    # equal parameter noise gives far more low- than high-frequency energy: the 1/f scaling
    noisy = _featurevis.spectrum_to_rgb(_featurevis.start_spectrum([0, 1], size) * 50, scale).numpy()
    white = np.random.default_rng(0).uniform(0, 1, noisy.shape)
    # amplitude ~ 1/f puts ln(0.7 / 0.25) / ln(0.7 * 32) = 0.33 of the energy above 0.25 cycles/pixel;
    # white noise puts 0.8 there (measured: 0.34, 0.27 against 0.80)
    assert np.all(_featurevis.high_frequency_share(noisy) < 0.5 * _featurevis.high_frequency_share(white))


def test_random_warp_of_an_identity_row_changes_nothing_and_shifts_move_the_image():
    image = np.random.default_rng(0).uniform(0, 1, (1, 16, 16, 3)).astype("float32")
    identity = np.array([[1, 0, 0, 0, 1, 0, 0, 0]], "float32")
    np.testing.assert_allclose(_featurevis.warp(image, identity).numpy(), image, atol=1e-6)
    shift = np.array([[1, 0, -2, 0, 1, 0, 0, 0]], "float32")  # output x reads input x - 2
    moved = _featurevis.warp(image, shift).numpy()
    np.testing.assert_allclose(moved[:, :, 2:], image[:, :, :-2], atol=1e-6)
    rows = _featurevis.random_warps(0, 50, 128)
    assert rows.shape == (50, 8) and np.allclose(rows, _featurevis.random_warps(0, 50, 128))
    scales = 1 / np.hypot(rows[:, 0], rows[:, 1])
    assert scales.min() >= 0.9 - 1e-6 and scales.max() <= 1.1 + 1e-6


def test_to_uint8_maps_the_input_range_linearly():
    assert filters.to_uint8(np.array([-1.0, 0.0, 1.0, 3.0])).tolist() == [0, 128, 255, 255]
    with pytest.raises(ValueError, match="low < high"):
        filters.to_uint8(np.zeros(3), input_range=(1, -1))
