"""Checks of the exercises of lesson 08 (fine-tune, then audit): solutions/08_fine_tune_and_audit.ipynb.

Every check builds fresh random nested models (a small "backbone" model inside a model with a
head) and draws fresh heatmaps and boxes, so an answer that hard-codes what the notebook's own
example produces does not pass. References: ``coursekit._inputs.layer_paths``,
``coursekit.cam.grad_cam`` (at the layer's resolution) and ``coursekit.metrics.mass_in_mask``.
"""
from __future__ import annotations

import numpy as np

from .core import Hint, as_numbers, call, choice_task, close, fresh_rng, require_callable, scaled_maps_match, task, untraced


def _tags(rng: np.random.Generator, count: int) -> list[str]:
    return [str(tag) for tag in rng.choice(np.arange(100, 1000), size=count, replace=False)]


def _random_backbone(rng: np.random.Generator, side: int, tags: list[str], sequential: bool, pooled_end: bool):
    """A small convolutional model (conv, pool, conv, conv) with random names, Functional or Sequential."""
    import keras
    layers = [keras.layers.Conv2D(int(rng.integers(3, 7)), 3, padding="same", activation="relu", name=f"conv_{tags[0]}"),
              keras.layers.MaxPooling2D(2, name=f"pool_{tags[1]}"),
              keras.layers.Conv2D(int(rng.integers(3, 7)), 3, padding="same", name=f"conv_{tags[2]}"),
              keras.layers.Activation("relu", name=f"relu_{tags[3]}")]
    if pooled_end:  # pooled to 1x1 but still 4-D, as MobileNet v1 ends
        layers.append(keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"pool_{tags[4]}"))
    inputs = keras.Input((side, side, 3))
    if sequential:
        return keras.Sequential([inputs, *layers], name=f"backbone_{tags[5]}")
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name=f"backbone_{tags[5]}")


def _nested_model(rng: np.random.Generator, *, sequential_backbone: bool, sequential_outer: bool,
                  depth: int = 1, conv_after: bool = False, pooled_end: bool = False, dropout: bool = True):
    """A random model whose backbone is a nested model (``depth`` 2: a model inside a model inside it)."""
    import keras
    tags = _tags(rng, 16)
    side = int(rng.choice([12, 16, 20]))
    inner = _random_backbone(rng, side, tags, sequential_backbone, pooled_end and not conv_after)
    backbone = inner
    if depth == 2:
        wrapper_inputs = keras.Input((side, side, 3))
        backbone = keras.Model(wrapper_inputs, inner(wrapper_inputs), name=f"wrapper_{tags[6]}")
    head = []
    if conv_after:
        head.append(keras.layers.Conv2D(int(rng.integers(3, 7)), 1, activation="relu", name=f"adapter_{tags[7]}"))
    head.append(keras.layers.GlobalAveragePooling2D(name=f"gap_{tags[8]}"))
    if dropout:
        head.append(keras.layers.Dropout(0.2, name=f"dropout_{tags[9]}"))
    head.append(keras.layers.Dense(int(rng.integers(2, 6)), activation="softmax", name=f"predictions_{tags[10]}"))
    if sequential_outer:
        return keras.Sequential([keras.Input((side, side, 3)), backbone, *head], name=f"model_{tags[11]}")
    inputs = keras.Input((side, side, 3))
    x = backbone(inputs)
    for layer in head:
        x = layer(x)
    return keras.Model(inputs, x, name=f"model_{tags[11]}")


# ----------------------------------------------------------------------------- 08.1

def _expected_path(model) -> str:
    from .. import _inputs
    for path, layer in reversed(list(_inputs.layer_paths(model).items())):
        if _inputs._is_container(layer) or isinstance(layer, _keras_input_layer()):
            continue
        shape = tuple(layer.output.shape)
        if len(shape) == 4 and shape[1:3] != (1, 1):
            return path
    raise AssertionError("the check's model has no spatial layer")


def _keras_input_layer():
    import keras
    return keras.layers.InputLayer


@task("08.1", points=3, answer="last_spatial_path", title="The backbone's last 4-D layer, through the nesting")
def _(last_spatial_path):
    import keras

    from .. import _inputs
    require_callable(last_spatial_path, "last_spatial_path")
    rng = fresh_rng()
    what = "last_spatial_path(model)"
    cases = [dict(sequential_backbone=False, sequential_outer=False),
             dict(sequential_backbone=True, sequential_outer=bool(rng.integers(2))),
             dict(sequential_backbone=bool(rng.integers(2)), sequential_outer=False, pooled_end=True),
             dict(sequential_backbone=False, sequential_outer=bool(rng.integers(2)), depth=2),
             dict(sequential_backbone=bool(rng.integers(2)), sequential_outer=False, conv_after=True)]
    order = rng.permutation(len(cases))
    for index in order:
        model = _nested_model(rng, **cases[index])
        got = call(last_spatial_path, model, what=what)
        if isinstance(got, keras.layers.Layer):
            raise Hint("return the layer's path (a str such as 'backbone/conv'), not the layer itself.")
        if not isinstance(got, str):
            raise Hint(f"{what} should return a path (a str); it returned a {type(got).__name__}.")
        expected = _expected_path(model)
        if got == expected:
            continue
        paths = _inputs.layer_paths(model)
        kind = ("a model whose backbone holds another model" if cases[index].get("depth") == 2 else
                "a model with a convolution after its backbone" if cases[index].get("conv_after") else
                "a model with a Sequential backbone" if cases[index]["sequential_backbone"] else
                "a model with a functional backbone")
        if got not in paths:
            own = [path for path in paths if path.rsplit("/", 1)[-1] == got]
            if own:
                raise Hint(f"with {kind}: {got!r} is the layer's own name; give its whole path from the "
                           f"outer model, with '/' between the names: {own[0]!r}.")
            raise Hint(f"with {kind}: the model has no layer at {got!r}. A path names the nested models "
                       "from the outside in, joined by '/': 'backbone/conv_1'.")
        layer = paths[got]
        if isinstance(layer, keras.layers.InputLayer):
            raise Hint(f"with {kind}: {got!r} is the model's input, the images themselves. The feature maps "
                       "are made inside the nested models: look inside them (their .layers) too.")
        if _inputs._is_container(layer):
            raise Hint(f"with {kind}: {got!r} is a whole nested model, not one of its layers: look inside "
                       "it (its .layers) for the last layer with feature maps.")
        shape = tuple(layer.output.shape)
        if len(shape) != 4:
            raise Hint(f"with {kind}: {got!r} outputs shape {shape}, without height and width: no map.")
        if shape[1:3] == (1, 1):
            raise Hint(f"with {kind}: {got!r} outputs shape {shape}: a 1x1 map has no 'where' in it. "
                       "Skip globally pooled layers.")
        raise Hint(f"with {kind}: {got!r} outputs feature maps, but a later layer still does too. "
                   "Which is the last one, in the order the data meets them?")


# ----------------------------------------------------------------------------- 08.2

def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = np.sqrt((a ** 2).sum() * (b ** 2).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _positive_cam(model, layer: str, images: np.ndarray, class_index: int, probability: bool = False) -> np.ndarray:
    """Grad-CAM's maps before they are scaled: the ReLU of the weighted sum ``(N, h, w)``, of the
    class score (the logit), or of its *probability* (after the softmax: the usual slip)."""
    import tensorflow as tf

    from .. import _inputs
    if probability:
        both = _inputs.outputs_model(model, [layer, model.layers[-1].name])
    else:
        both = _inputs.outputs_model(model, [layer], logits=True)
    with tf.GradientTape() as tape:
        maps, scores = both(tf.constant(images), training=False)
        score = tf.reduce_sum(scores[:, class_index])
    weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
    return np.maximum(tf.reduce_sum(weights * maps, axis=-1).numpy().astype("float64"), 0)


@task("08.2", points=3, answer="nested_grad_cam", title="Grad-CAM through the nesting, by hand")
def _(nested_grad_cam):
    from .. import cam
    require_callable(nested_grad_cam, "nested_grad_cam")
    rng = fresh_rng()
    what = "nested_grad_cam(model, images, class_index, layer)"
    cases = [dict(sequential_backbone=False, sequential_outer=False, dropout=True),
             dict(sequential_backbone=True, sequential_outer=False, dropout=bool(rng.integers(2)))]
    for case in (cases[i] for i in rng.permutation(len(cases))):
        model = _nested_model(rng, **case)
        backbone = next(layer for layer in model.layers if hasattr(layer, "layers"))
        convolutions = [layer.name for layer in backbone.layers if layer.name.startswith(("conv_", "relu_"))]
        layer = f"{backbone.name}/{convolutions[int(rng.integers(len(convolutions)))]}"
        side = model.inputs[0].shape[1]
        images = rng.uniform(-1, 1, size=(int(rng.integers(2, 4)), side, side, 3)).astype("float32")
        class_index = int(rng.integers(model.outputs[0].shape[-1]))
        given = images.copy()
        try:
            returned = call(nested_grad_cam, model, given, class_index, layer, what=what)
        except Hint as hint:
            if "not connected" in str(hint):
                raise Hint(f"{hint} The layer inside the backbone belongs to the backbone's own graph: build "
                           "the model of step 1 from backbone.inputs, not from model.inputs.") from None
            raise
        got = as_numbers(returned, what)
        with untraced():
            expected = cam.grad_cam(model, images, class_index=class_index, layer=layer, upsample=False)
        label = f"layer {layer!r} of a {'Sequential' if case['sequential_backbone'] else 'functional'} backbone"
        if got.shape != expected.shape:
            if got.shape == expected.shape[1:] or got.shape == (1, *expected.shape[1:]):
                raise Hint(f"for {len(images)} images you return shape {got.shape}: return one map per "
                           f"image, shape {expected.shape}.")
            raise Hint(f"with {label}: you return shape {got.shape}; one map per image at the layer's "
                       f"resolution is shape {expected.shape} (do not resize it to the image).")
        if not np.all(np.isfinite(got)):
            raise Hint("some maps contain NaN: a map with no positive evidence should come out all zeros.")
        if close(got, expected, tolerance=1e-3) or \
                scaled_maps_match(got, _positive_cam(model, layer, images, class_index), tolerance=1e-3):
            continue   # the second: each map divided by its maximum plus a small guard (max + 1e-7)
        if got.min() < -1e-6:
            raise Hint("your maps have negative values: keep only the evidence for the class (a ReLU "
                       "after the weighted sum), then divide each map by its maximum.")
        if np.all(got.reshape(len(got), -1).max(axis=1) > 1 + 1e-3):
            raise Hint("divide each map by its own maximum, so that its values lie in [0, 1].")
        if scaled_maps_match(got, _positive_cam(model, layer, images, class_index, probability=True), tolerance=1e-3):
            raise Hint("you take the gradient of the class probability (after the softmax). Grad-CAM "
                       "uses the class score before it: the last Dense layer's x @ kernel + bias.")
        agreement = min(_pearson(a, b) for a, b in zip(got, expected))
        raise Hint(f"with {label}, class {class_index}: your maps differ from Grad-CAM's (correlation "
                   f"{agreement:.2f}). The feature maps must be those of the layer inside the backbone for "
                   "the same forward pass that gives the class score.")


# ----------------------------------------------------------------------------- 08.3

@task("08.3", points=2, answer="mass_in_box", title="Evidence on the object")
def _(mass_in_box):
    from .. import data, metrics
    require_callable(mass_in_box, "mass_in_box")
    rng = fresh_rng()
    what = "mass_in_box(heatmap, box)"
    height, width = int(rng.integers(12, 30)), int(rng.integers(12, 30))
    while width == height:
        width += 1
    cases = []
    for _ in range(3):
        heatmap = rng.uniform(size=(height, width)) ** 3
        top, left = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 4))
        box = (top, left, int(rng.integers(top + 2, height + 1)), int(rng.integers(left + 2, width + 1)))
        cases.append((heatmap, box, "a random heatmap"))
    top, left = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 4))
    cases.append((np.zeros((height, width)), (top, left, top + 3, left + 3), "an all-zero heatmap"))
    for heatmap, box, label in (cases[i] for i in rng.permutation(len(cases))):
        got_value = call(mass_in_box, heatmap.copy(), tuple(box), what=what)
        got = as_numbers(got_value, what, "a float")
        if got.size != 1:
            raise Hint(f"{what} should return one number for one (H, W) heatmap; it returned shape {got.shape}.")
        got = float(got.ravel()[0])
        expected = float(metrics.mass_in_mask(heatmap, data.box_masks(np.array([box]), (height, width))[0])[0])
        if np.isnan(got):
            raise Hint("for an all-zero heatmap you return nan (0 / 0). A map with no mass puts none in the "
                       "box: return 0.0.")
        if abs(got - expected) <= 1e-9 + 1e-6 * abs(expected):
            continue
        top, left, bottom, right = box
        total = heatmap.sum() or 1.0   # the all-zero map: no share to compare with
        inclusive = heatmap[top:bottom + 1, left:right + 1].sum() / total
        transposed = heatmap[left:right, top:bottom].sum() / total
        if abs(got - heatmap[top:bottom, left:right].sum()) < 1e-6:
            raise Hint(f"with {label}: you return the mass inside the box; divide it by the map's total mass "
                       "to get a share in [0, 1].")
        if abs(got - inclusive) < 1e-6:
            raise Hint(f"with {label}: bottom and right are exclusive (as in Python slices): the box covers "
                       "rows top .. bottom - 1 and columns left .. right - 1.")
        if abs(got - transposed) < 1e-6:
            raise Hint(f"with {label}: the box is (top, left, bottom, right): rows come first (top, bottom), "
                       "then columns (left, right).")
        if abs(got - (1 - expected)) < 1e-6:
            raise Hint(f"with {label}: you return the share outside the box.")
        raise Hint(f"with {label}: your share differs from the expected {expected:.4f} (you return {got:.4f}).")


# ----------------------------------------------------------------------------- 08.4

choice_task(
    "08.4", points=2, answer="true_statements", title="Reading the audit (multiple choice)",
    options="abcdef",
    key="47f338a6c159c77e0f193b0064d69109e01cf14e41afea4b0a56ed4ce05c30a8",
    hint="at least one statement is judged wrongly. For each one, find the section of lesson 08 "
         "that speaks of it, or try it with the notebook above.")
