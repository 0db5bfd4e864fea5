"""One contract for every public method that takes ``(model, images, ...)`` (coursekit._inputs).

The methods are found by looking at the package, not listed by hand: a method added to a module
and not described in METHODS below fails ``test_every_method_is_described``. Each method is then
run on a small CNN, the same CNN with its convolutions in a nested backbone, and the smoke
profile's real ImageNet model through the same checks: the same image forms accepted, the same
errors for a wrong class list, a class out of range and a wrong image size, ``batch_size`` never
changing the result, and finite float output of the documented shape.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

import keras
import numpy as np
import pytest

from conftest import load_pretrained
from coursekit import cam, concepts, cues, features, filters, metrics, occlusion, saliency, sanity, shortcuts

MODULES = (features, saliency, cam, occlusion, metrics, sanity, shortcuts, filters, cues, concepts)
BATCH_TOLERANCE = dict(rtol=1e-4, atol=1e-5)  # float32 sums in another order: not bit-identical
# A convolution's float32 rounding depends on the batch's shape. SmoothGrad's noisy copies now and
# then land within that rounding of a ReLU's kink, where the copy's gradient then takes the other
# side: on the smoke model (3 photos, 3 samples), batch sizes 3 and 1 gave bit-identical maps for
# 5 seeds of 8 and differed by at most 1% of the peak at a pixel for the other 3.
NOISY_COPIES_TOLERANCE = dict(rtol=0, atol=0.02)
# Raw outputs (feature maps up to 6 after MobileNetV2's ReLU6, occlusion's score drops) are not
# scaled to [0, 1]. Deep in a network every value is a chain of float32 sums whose order, and so
# whose last bits, depend on the batch's shape: each sum of K terms rounds differently by about
# sqrt(K) ulps of its terms (K = 320 channels in MobileNetV2's last 1x1 convolution: 18), and
# layers pass it on. So near-zero values differ by a few tens of ulps *of the output's scale*,
# which an rtol on the value itself cannot cover: batch sizes 3 and 1 gave feature maps 35 ulps of
# their maximum apart (2.5e-5 of 6.0; 1.3e-5 in CI), occlusion maps 19. 256 ulps of the scale
# (3e-5 of it) leaves a margin of 7; a real batch effect (an image's activations mixed with
# another's, batch statistics in training mode) moves values by percents of the scale.
RAW_OUTPUT_ULPS = 256


def raw_output_tolerance(whole: np.ndarray) -> dict:
    """BATCH_TOLERANCE, with an atol of RAW_OUTPUT_ULPS float32 ulps of the output's largest value."""
    scale = float(np.abs(whole).max())
    return dict(rtol=BATCH_TOLERANCE["rtol"],
                atol=max(BATCH_TOLERANCE["atol"], RAW_OUTPUT_ULPS * float(np.finfo(np.float32).eps) * scale))


@dataclasses.dataclass(frozen=True)
class Method:
    """How to call one method and what it returns."""

    run: Callable  # run(model, images, **options) -> array (the method's main result)
    shape: Callable  # shape(N, H, W, C) -> the documented shape of that result
    classes: bool = True  # takes class_index
    batch_size: bool = True  # takes batch_size
    per_image: bool = True  # one result per image (tcav_test: one score per run)
    options: dict = dataclasses.field(default_factory=dict)
    # the tolerance between two batch sizes, given the result of one
    batch_tolerance: Callable = lambda whole: BATCH_TOLERANCE  # noqa: E731


def _heatmaps(images):
    """A fixed ranking for the deletion / insertion curves: brighter pixels first."""
    batch = np.asarray(images, dtype="float32")
    if batch.ndim == 4 or batch.shape[-1] == 3:        # a batch, or one RGB image
        return batch.mean(axis=-1) if batch.ndim == 4 else batch.mean(axis=-1)[None]
    return batch                                       # grey digits (N, H, W) without a channel axis


def _curve(function):
    return lambda model, images, **kw: function(model, images, _heatmaps(images), steps=4, **kw)[1]


def _auc(function):
    return lambda model, images, **kw: function(model, images, _heatmaps(images), steps=4, **kw)


def _category_groups(model) -> dict | None:
    """The 16 categories for an ImageNet model; for a small one, class 0 against the mean of the others."""
    from coursekit._inputs import n_classes
    classes = n_classes(model)
    return None if classes == 1000 else {"first": (0,), "others": tuple(range(1, classes))}


def _decisions(model, images, **kw):
    """cues.decisions (category names), as each name's position among the categories: a float array."""
    groups = _category_groups(model)
    names = list(groups or cues.CATEGORIES)
    decided = cues.decisions(model, images, category_indices=groups, **kw)
    return np.array([names.index(name) for name in decided], dtype="float64")


METHODS: dict[str, Method] = {
    "features.feature_maps": Method(
        lambda model, images, **kw: features.feature_maps(model, images, layers=[_spatial(model)], **kw)[_spatial(model)],
        lambda n, h, w, c: (n, None, None, None), classes=False, batch_tolerance=raw_output_tolerance),
    "saliency.input_gradients": Method(saliency.input_gradients, lambda n, h, w, c: (n, h, w, c)),
    "saliency.vanilla_saliency": Method(saliency.vanilla_saliency, lambda n, h, w, c: (n, h, w)),
    "saliency.smoothgrad": Method(lambda model, images, **kw: saliency.smoothgrad(model, images, samples=3, **kw),
                                  lambda n, h, w, c: (n, h, w), batch_tolerance=lambda whole: NOISY_COPIES_TOLERANCE),
    "saliency.integrated_gradients": Method(
        lambda model, images, **kw: saliency.integrated_gradients(model, images, steps=4, **kw),
        lambda n, h, w, c: (n, h, w, c)),
    "saliency.input_x_gradient": Method(saliency.input_x_gradient, lambda n, h, w, c: (n, h, w, c)),
    "saliency.guided_backprop": Method(saliency.guided_backprop, lambda n, h, w, c: (n, h, w, c)),
    "cam.grad_cam": Method(cam.grad_cam, lambda n, h, w, c: (n, h, w)),
    "cam.grad_cam_plus_plus": Method(cam.grad_cam_plus_plus, lambda n, h, w, c: (n, h, w)),
    "cam.guided_grad_cam": Method(cam.guided_grad_cam, lambda n, h, w, c: (n, h, w, c)),
    "occlusion.occlusion_map": Method(
        lambda model, images, **kw: occlusion.occlusion_map(model, images, patch=_patch(images), stride=_patch(images),
                                                            **kw),
        lambda n, h, w, c: (n, h, w), batch_tolerance=raw_output_tolerance),
    "metrics.deletion_curve": Method(_curve(metrics.deletion_curve), lambda n, h, w, c: (n, 5)),
    "metrics.insertion_curve": Method(_curve(metrics.insertion_curve), lambda n, h, w, c: (n, 5)),
    "metrics.deletion_auc": Method(_auc(metrics.deletion_auc), lambda n, h, w, c: (n,)),
    "metrics.insertion_auc": Method(_auc(metrics.insertion_auc), lambda n, h, w, c: (n,)),
    "filters.layer_activation": Method(
        lambda model, images, **kw: filters.layer_activation(model, images, _spatial(model), **kw),
        lambda n, h, w, c: (n,), classes=False, batch_tolerance=raw_output_tolerance),
    # deep_dream returns its input's shape (one image stays one image); reshaped here to a batch
    "filters.deep_dream": Method(
        lambda model, images, **kw: filters.deep_dream(model, images, _spatial(model), octaves=1, steps=2,
                                                       progress=False, **kw).reshape((-1, *np.shape(images)[-3:])),
        lambda n, h, w, c: (n, h, w, c), classes=False, batch_size=False),
    "cues.class_probabilities": Method(cues.class_probabilities, lambda n, h, w, c: (n, None), classes=False),
    "cues.decisions": Method(_decisions, lambda n, h, w, c: (n,), classes=False),
    "shortcuts.right_reasons_gradients": Method(shortcuts.right_reasons_gradients, lambda n, h, w, c: (n, h, w, c),
                                                classes=False, batch_size=False),
    # TCAV (concepts) takes (model, layer, images, ...): the images are those of the class (or of the
    # concept, for a CAV); the other sets are fixed random images of the model's size
    "concepts.layer_activations": Method(
        lambda model, images, **kw: concepts.layer_activations(model, _spatial(model), images, **kw),
        lambda n, h, w, c: (n, None), classes=False, batch_tolerance=raw_output_tolerance),
    "concepts.layer_gradients": Method(
        lambda model, images, **kw: concepts.layer_gradients(model, _spatial(model), images, **kw),
        lambda n, h, w, c: (n, None), batch_tolerance=raw_output_tolerance),
    "concepts.concept_activation_vector": Method(
        lambda model, images, **kw: concepts.concept_activation_vector(model, _spatial(model), images,
                                                                       _random_sets(model)[0], **kw).direction,
        lambda n, h, w, c: (None,), classes=False),
    "concepts.directional_derivatives": Method(
        lambda model, images, class_index=None, **kw: concepts.directional_derivatives(
            model, _spatial(model), images, class_index, _direction(model), **kw),
        lambda n, h, w, c: (n,)),
    "concepts.tcav_test": Method(
        lambda model, images, class_index=None, **kw: concepts.tcav_test(
            model, _spatial(model), images, class_index, _random_sets(model)[0] + 0.5, _random_sets(model)[1:],
            **kw).scores,
        lambda n, h, w, c: (2,), per_image=False),
}


# Methods that take (model, images) but train rather than explain: they validate images through
# the same module (image_batch) but have no class_index, batch_size or map to check.
TRAINERS = {"shortcuts.train_right_reasons": "trains the model in place",
            "sanity.memorise": "trains the model in place until it fits its training labels"}


def _spatial(model) -> str:
    from coursekit.models import last_spatial_layer
    return last_spatial_layer(model)


def _patch(images) -> int:
    return int(np.shape(images)[-2]) // 4


def _random_sets(model) -> list[np.ndarray]:
    """Four fixed sets of 3 random images of the model's input size (for CAVs and TCAV)."""
    from coursekit._inputs import input_shape
    rng = np.random.default_rng(7)
    return [rng.uniform(-1, 1, (3, *input_shape(model))).astype("float32") for _ in range(4)]


def _direction(model) -> np.ndarray:
    """A fixed direction of the size of the model's last 4-D layer's activations (a CAV stand-in)."""
    from coursekit._inputs import find_layer
    size = int(np.prod(find_layer(model, _spatial(model)).output.shape[1:]))
    return np.random.default_rng(8).normal(size=size)


def public_image_methods() -> list[str]:
    """Every public function of the method modules whose first parameters are (model, images)."""
    found = []
    for module in MODULES:
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or function.__module__ != module.__name__:
                continue
            parameters = list(inspect.signature(function).parameters)
            # (model, images, ...), or (model, layer, images, ...) as the concepts module has them
            if parameters[:2] in (["model", "images"], ["model", "image"]) or (module is concepts and (
                    parameters[:2] == ["model", "layer"] and parameters[2:3] in (["images"], ["concept_images"]))):
                found.append(f"{module.__name__.rsplit('.', 1)[-1]}.{name}")
    return sorted(found)


def test_every_method_is_described():
    missing = sorted(set(public_image_methods()) - set(METHODS) - set(TRAINERS))
    assert not missing, f"add these methods to METHODS in {__name__} so that the contract is tested: {missing}"
    assert len(METHODS) >= 11


# ----------------------------------------------------------------------------- the models

def small_cnn() -> keras.Model:
    """A random 3-class CNN on 12x12 RGB images, ending in a Dense softmax."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def nested_cnn() -> keras.Model:
    """The same kind of CNN with its convolutions in a backbone nested in a Sequential model."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    backbone = keras.Model(inputs, keras.layers.MaxPooling2D(2, name="pool")(x), name="backbone")
    return keras.Sequential([keras.Input((12, 12, 3)), backbone, keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax", name="predictions")], name="nested_cnn")


@pytest.fixture(scope="module", params=["small_cnn", "nested_cnn", "smoke_model"])
def subject(request):
    """(model, a batch of 3 images, number of classes)."""
    if request.param in ("small_cnn", "nested_cnn"):
        model = small_cnn() if request.param == "small_cnn" else nested_cnn()
        images = np.random.default_rng(0).uniform(0, 1, (3, 12, 12, 3)).astype("float32")
    else:
        from coursekit.env import profile
        net = load_pretrained(profile("smoke").imagenet_model)
        model = net.model
        images = net.preprocess(np.stack([net.load_image(name) for name in ("cat", "coffee", "astronaut")]))
    return model, images, int(model.outputs[0].shape[-1])


METHOD_NAMES = sorted(METHODS)
# The class and batch_size checks run on the methods that take those arguments; the others are
# not parametrised with them at all (nothing is skipped).
WITH_BATCH_SIZE = [name for name in METHOD_NAMES if METHODS[name].batch_size]
WITH_CLASSES = [name for name in METHOD_NAMES if METHODS[name].classes]
PER_IMAGE_WITH_CLASSES = [name for name in WITH_CLASSES if METHODS[name].per_image]


# ----------------------------------------------------------------------------- the contract

@pytest.mark.parametrize("name", METHOD_NAMES)
def test_one_image_is_a_batch_of_one(subject, name):
    model, images, _ = subject
    method = METHODS[name]
    batch_result = np.asarray(method.run(model, images[:1]))
    single_result = np.asarray(method.run(model, images[0]))
    np.testing.assert_allclose(single_result, batch_result, **BATCH_TOLERANCE)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_output_is_finite_float_of_the_documented_shape(subject, name):
    model, images, _ = subject
    result = np.asarray(METHODS[name].run(model, images))
    expected = METHODS[name].shape(*images.shape)
    assert np.issubdtype(result.dtype, np.floating)
    assert len(result.shape) == len(expected)
    assert all(e is None or e == g for g, e in zip(result.shape, expected)), (result.shape, expected)
    assert np.isfinite(result).all()


@pytest.mark.parametrize("name", WITH_BATCH_SIZE)
def test_batch_size_never_changes_the_result(subject, name):
    model, images, _ = subject
    method = METHODS[name]
    whole = np.asarray(method.run(model, images, batch_size=len(images)))
    one_at_a_time = np.asarray(method.run(model, images, batch_size=1))
    np.testing.assert_allclose(one_at_a_time, whole, **method.batch_tolerance(whole))


@pytest.mark.parametrize("name", WITH_BATCH_SIZE)
def test_a_bad_batch_size_is_refused(subject, name):
    model, images, _ = subject
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1; got 0"):
        METHODS[name].run(model, images, batch_size=0)


@pytest.mark.parametrize("name", WITH_CLASSES)
def test_a_class_list_of_the_wrong_length_names_the_length(subject, name):
    model, images, _ = subject
    with pytest.raises(ValueError, match=r"class_index has 2 entries but there are 3 images: give one class per image "
                                         r"\(3 in all\)"):
        METHODS[name].run(model, images, class_index=[0, 1])


@pytest.mark.parametrize("name", WITH_CLASSES)
def test_a_class_out_of_range_names_the_number_of_classes(subject, name):
    model, images, classes = subject
    with pytest.raises(ValueError, match=f"class_index {classes} is out of range: the model has {classes} classes"):
        METHODS[name].run(model, images, class_index=classes)
    with pytest.raises(ValueError, match=f"the model has {classes} classes"):
        METHODS[name].run(model, images, class_index=[0, -1, 0])


@pytest.mark.parametrize("name", PER_IMAGE_WITH_CLASSES)
def test_class_forms_agree(subject, name):
    """None = each image's top class; an int for all; one per image (None allowed per image)."""
    model, images, _ = subject
    top = model.predict(images, verbose=0).argmax(axis=1)
    run = METHODS[name].run
    by_top = np.asarray(run(model, images, class_index=None))
    np.testing.assert_allclose(np.asarray(run(model, images, class_index=[int(c) for c in top])), by_top,
                               **BATCH_TOLERANCE)
    np.testing.assert_allclose(np.asarray(run(model, images, class_index=[None, int(top[1]), None])), by_top,
                               **BATCH_TOLERANCE)
    np.testing.assert_allclose(np.asarray(run(model, images, class_index=int(top[0])))[:1], by_top[:1],
                               **BATCH_TOLERANCE)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_a_wrong_image_size_names_the_size_needed(subject, name):
    model, images, _ = subject
    height, width = images.shape[1:3]
    wrong = np.zeros((2, height + 5, width + 3, images.shape[-1]), "float32")
    with pytest.raises(ValueError, match=rf"takes images of shape \(N, {height}, {width}, 3\).*"
                                         rf"Resize them to {height}x{width} first: net.load_image"):
        METHODS[name].run(model, wrong)


def test_the_contract_messages_are_those_of_one_module():
    """A class given as a name or a float gets the same TypeError from every method."""
    model = small_cnn()
    images = np.zeros((2, 12, 12, 3), "float32")
    for name in METHOD_NAMES:
        if METHODS[name].classes:
            with pytest.raises(TypeError, match=r"class_index must hold ints \(or None\); got 'tabby'.*net.class_index"):
                METHODS[name].run(model, images, class_index="tabby")
            with pytest.raises(TypeError, match="must hold ints"):
                METHODS[name].run(model, images, class_index=[0, 1.5])


def test_grey_digits_without_a_channel_axis_are_accepted():
    """(N, H, W) digits for a one-channel model, as mnist() returns them."""
    from coursekit.models import mnist_cnn
    model = mnist_cnn()
    # in [0, 1): inside every method's accepted range (DeepDream clips to its input range)
    digits = np.random.default_rng(1).uniform(0, 1, (2, 28, 28)).astype("float32")
    for name in METHOD_NAMES:
        if name.startswith("occlusion"):
            result = occlusion.occlusion_map(model, digits, patch=7, stride=7)
            expected = occlusion.occlusion_map(model, digits[..., None], patch=7, stride=7)
        elif name == "filters.deep_dream":  # returns its input's shape: compare as a batch
            result = filters.deep_dream(model, digits, "conv2", octaves=1, steps=2, progress=False)[..., None]
            expected = filters.deep_dream(model, digits[..., None], "conv2", octaves=1, steps=2, progress=False)
        else:
            result = METHODS[name].run(model, digits)
            expected = METHODS[name].run(model, digits[..., None])
        np.testing.assert_allclose(np.asarray(result), np.asarray(expected), **BATCH_TOLERANCE, err_msg=name)


def test_a_model_with_two_image_inputs_gets_a_clear_error():
    left, right = keras.Input((8, 8, 3), name="left"), keras.Input((8, 8, 3), name="right")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(left), keras.layers.Flatten()(right)])
    model = keras.Model([left, right], keras.layers.Dense(2, activation="softmax")(joined))
    images = np.zeros((1, 8, 8, 3), "float32")
    for name in METHOD_NAMES:
        with pytest.raises(ValueError, match="has 2 inputs .*one image input"):
            METHODS[name].run(model, images)


def test_preprocess_refuses_a_photo_of_another_size():
    """The mistake of preprocessing a photo as loaded, not at the model's size, is named at once."""
    from coursekit.data import sample_image
    from coursekit.env import profile
    net = load_pretrained(profile("smoke").imagenet_model)
    height, width = net.input_size
    photo = sample_image("cat")
    assert photo.shape[:2] != (height, width)
    with pytest.raises(ValueError, match=rf"Resize them to {height}x{width} first: net.load_image"):
        net.preprocess(photo)
    assert net.preprocess(net.load_image("cat")).shape == (1, height, width, 3)
