"""Checks of the exercises of lesson 04 (Grad-CAM): solutions/04_grad_cam.ipynb.

Every check draws fresh random gradients, feature maps and networks, so an answer that hard-codes
what the notebook's own example produces does not pass. References: ``coursekit.cam.grad_cam``
(at the layer's resolution) and ``coursekit.models.last_spatial_layer``.
"""
from __future__ import annotations

import numpy as np

from .core import Hint, as_numbers, call, choice_task, close, fresh_rng, require_callable, scaled_maps_match, task, untraced

# ----------------------------------------------------------------------------- 04.1

@task("04.1", points=2, answer="channel_weights", title="Grad-CAM channel weights")
def _(channel_weights):
    require_callable(channel_weights, "channel_weights")
    rng = fresh_rng()
    what = "channel_weights(gradients)"
    for count in (1, int(rng.integers(2, 5))):
        h, w, k = int(rng.integers(2, 8)), int(rng.integers(2, 8)), int(rng.integers(3, 12))
        while k in (h, w):
            k += 1
        gradients = (rng.normal(size=(count, h, w, k)) + rng.normal(size=(count, 1, 1, k))).astype("float32")
        got = as_numbers(call(channel_weights, gradients.copy(), what=what), what)
        expected = gradients.astype("float64").mean(axis=(1, 2))
        if got.shape != expected.shape:
            if got.shape == (k,):
                raise Hint(f"for {count} image(s) you return {k} weights: each image gets its own row "
                           f"of weights, shape ({count}, {k}), even a batch of one. Do not average "
                           "over the batch.")
            if got.shape == (count, h, w):
                raise Hint("you pooled over the channels; pool over the positions (height and width) "
                           "so that each channel keeps a weight.")
            raise Hint(f"for gradients of shape {gradients.shape} (N, h, w, K) you return shape "
                       f"{got.shape}; one weight per image and channel is shape ({count}, {k}).")
        if close(got, expected):
            continue
        if close(got, expected * h * w):
            raise Hint(f"you add the gradients up; Grad-CAM averages them over the {h}x{w} positions "
                       "(your weights are h*w times too large).")
        if close(got, np.abs(gradients).mean(axis=(1, 2))):
            raise Hint("keep the sign of the gradients: a channel whose rise lowers the score gets a "
                       "negative weight.")
        raise Hint("the weight of channel k of an image is the average of the gradient of channel k "
                   "over every position of that image's map.")


# ----------------------------------------------------------------------------- 04.2

def _reference_map(feature_maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    summed = np.maximum(np.einsum("nhwk,nk->nhw", feature_maps, weights), 0)
    peak = summed.reshape(len(summed), -1).max(axis=1).reshape(-1, 1, 1)
    return summed / np.where(peak > 0, peak, 1)


def _per_map_max(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its own maximum (an all-zero map stays 0)."""
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return maps / np.where(peak > 0, peak, 1)


def _map_hint(got: np.ndarray, feature_maps: np.ndarray, weights: np.ndarray) -> str:
    summed = np.einsum("nhwk,nk->nhw", feature_maps, weights)
    if not np.all(np.isfinite(got)):
        return ("some maps contain NaN: a map with no positive value at all divides 0 by 0. Such a "
                "map should come out all zeros.")
    if got.min() < -1e-6:
        return ("your maps have negative values: Grad-CAM keeps only the evidence for the class "
                "(a ReLU after the weighted sum).")
    positive = np.maximum(summed, 0)
    if close(got, positive):
        return "divide each map by its own maximum, so that its values lie in [0, 1]."
    if len(got) > 1 and close(got, positive / positive.max()):
        return "you divide by the largest value of the whole batch; divide each map by its own maximum."
    spread = positive.reshape(len(positive), -1)
    low = spread.min(axis=1).reshape(-1, 1, 1)
    high = spread.max(axis=1).reshape(-1, 1, 1)
    if close(got, (positive - low) / np.where(high > low, high - low, 1)):
        return "divide by the maximum only; do not subtract the minimum first."
    relu_weights = _reference_map(feature_maps, np.maximum(weights, 0))
    if close(got, relu_weights):
        return ("apply the ReLU to the weighted sum, not to the weights: a channel with a negative "
                "weight takes evidence away where it is active.")
    return ("each map should be ReLU(sum over channels k of weights[k] * feature_maps[..., k]), "
            "divided by its maximum.")


def _made_up_cam_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Feature maps (N, h, w, k) >= 0 and weights (N, k), N = 3 or 4, drawn so that each
    typical mistake gives other maps than the right answer:
    image 0 has no positive evidence (0 / 0 unless guarded); image 1 has positive evidence
    everywhere (its minimum > 0, against subtracting the minimum); the last image has a
    channel with a negative weight that cancels evidence (against a ReLU on the weights), and
    a peak at least twice or at most half image 1's (against dividing by the batch's maximum)."""
    count, h, w, k = int(rng.integers(3, 5)), int(rng.integers(3, 8)), int(rng.integers(3, 8)), int(rng.integers(3, 9))
    feature_maps = np.maximum(rng.normal(size=(count, h, w, k)), 0)
    weights = rng.normal(size=(count, k))
    weights[0] = -np.abs(weights[0])
    weights[1] = np.abs(weights[1]) + 0.1
    feature_maps[1] += 0.1
    last = count - 1
    weights[last, 0], weights[last, 1] = np.abs(weights[last, 0]) + 0.5, -np.abs(weights[last, 1]) - 0.5
    feature_maps[last, 0, 0] = feature_maps[last, -1, -1] = 0
    feature_maps[last, 0, 0, 0] = feature_maps[last, -1, -1, 0] = 2.0   # evidence at the top-left ...
    feature_maps[last, -1, -1, 1] = 2.0                                 # ... cancelled at the bottom-right
    weights *= rng.uniform(0.1, 10, size=(count, 1))
    peaks = np.maximum(np.einsum("nhwk,nk->nhw", feature_maps, weights), 0).max(axis=(1, 2))
    if 0.5 < peaks[last] / peaks[1] < 2:
        weights[last] *= 3
    return feature_maps.astype("float32"), weights.astype("float32")


def _random_cam_net(rng: np.random.Generator):
    """A random CNN with a named last convolution, a softmax head, and a batch for it."""
    import keras
    side, channels, classes = int(rng.integers(10, 17)), int(rng.integers(1, 4)), int(rng.integers(3, 7))
    tag = int(rng.integers(1000, 10000))
    inputs = keras.Input((side, side, channels))
    x = keras.layers.Conv2D(int(rng.integers(4, 9)), 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(int(rng.integers(4, 9)), 3, padding="same", activation="relu", name=f"last_conv_{tag}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name=f"random_cam_net_{tag}")
    images = rng.uniform(0, 1, size=(int(rng.integers(2, 4)), side, side, channels)).astype("float32")
    return model, f"last_conv_{tag}", images


@task("04.2", points=3, answer="grad_cam_map", title="Weighted sum, ReLU, scaled to [0, 1]")
def _(grad_cam_map):
    import keras
    import tensorflow as tf

    from .. import cam, models
    require_callable(grad_cam_map, "grad_cam_map")
    rng = fresh_rng()
    what = "grad_cam_map(feature_maps, weights)"

    feature_maps, weights = _made_up_cam_case(rng)
    cases = [(feature_maps, weights, "made-up feature maps and weights")]

    # a random network: its feature maps and pooled gradients, against coursekit.cam.grad_cam
    model, layer, images = _random_cam_net(rng)
    class_index = int(rng.integers(0, model.outputs[0].shape[-1]))
    logits_model = models.pre_softmax(model)
    both = keras.Model(logits_model.inputs[0], [logits_model.get_layer(layer).output, logits_model.outputs[0]])
    with tf.GradientTape() as tape:
        maps, logits = both(tf.constant(images), training=False)
        score = tf.reduce_sum(logits[:, class_index])
    pooled = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2)).numpy()
    with untraced():
        reference = cam.grad_cam(model, images, class_index=class_index, layer=layer, upsample=False)
    cases.append((maps.numpy(), pooled, "a random network's last convolution"))

    for feature_maps, weights, label in cases:
        got = as_numbers(call(grad_cam_map, feature_maps.copy(), weights.copy(), what=what), what)
        positive = np.maximum(np.einsum("nhwk,nk->nhw", feature_maps.astype("float64"), weights.astype("float64")), 0)
        if got.shape != positive.shape:
            raise Hint(f"for feature maps of shape {feature_maps.shape} and weights of shape "
                       f"{weights.shape} you return shape {got.shape}; one map per image at the "
                       f"layer's resolution is shape {positive.shape}.")
        if not scaled_maps_match(got, positive, tolerance=1e-3):   # max + 1e-7 as a guard is fine
            raise Hint(f"with {label}: " + _map_hint(got, feature_maps.astype("float64"), weights.astype("float64")))
    if not close(_per_map_max(got), reference, tolerance=1e-3):
        raise Hint("your maps differ from coursekit.cam.grad_cam(..., upsample=False) for a random "
                   "network. Try both on a small example.")


# ----------------------------------------------------------------------------- 04.3

def _random_network(rng: np.random.Generator, head: str):
    """A random CNN ending in one of several heads, with random layer names."""
    import keras
    tags = iter(str(t) for t in rng.choice(np.arange(100, 1000), size=16, replace=False))

    def name(kind):
        return f"{kind}_{next(tags)}"

    side = int(rng.choice([16, 24, 32]))
    inputs = keras.Input((side, side, 3), name=name("input"))
    x = inputs
    for _ in range(int(rng.integers(1, 3))):
        x = keras.layers.Conv2D(int(rng.integers(2, 6)), 3, padding="same", activation="relu", name=name("conv"))(x)
        x = keras.layers.MaxPooling2D(2, name=name("pool"))(x)
    x = keras.layers.Conv2D(int(rng.integers(2, 6)), 3, padding="same", name=name("conv"))(x)
    if head in ("norm_relu_gap", "mobilenet"):
        x = keras.layers.BatchNormalization(name=name("bn"))(x)
        x = keras.layers.Activation("relu", name=name("relu"))(x)
    if head == "pool_flatten":
        x = keras.layers.MaxPooling2D(2, name=name("pool"))(x)
        x = keras.layers.Flatten(name=name("flatten"))(x)
        x = keras.layers.Dense(int(rng.integers(4, 9)), activation="relu", name=name("dense"))(x)
    elif head == "mobilenet":  # pooled to 1x1 but still 4-D, as in MobileNet
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=name("pool"))(x)
        x = keras.layers.Dropout(0.1, name=name("dropout"))(x)
        x = keras.layers.Conv2D(int(rng.integers(3, 8)), 1, name=name("conv"))(x)
        x = keras.layers.Reshape((-1,), name=name("reshape"))(x)
    else:
        if head == "relu_gap":
            x = keras.layers.Activation("relu", name=name("relu"))(x)
        x = keras.layers.GlobalAveragePooling2D(name=name("gap"))(x)
    outputs = keras.layers.Dense(int(rng.integers(3, 8)), activation="softmax", name=name("predictions"))(x)
    return keras.Model(inputs, outputs, name=name("net"))


def _shape(layer) -> tuple:
    return tuple(layer.output.shape)


@task("04.3", points=3, answer="gradcam_layer", title="Which layer for Grad-CAM?",
      from_scratch=("models.last_spatial_layer",))
def _(gradcam_layer):
    import keras

    from .. import models
    require_callable(gradcam_layer, "gradcam_layer")
    rng = fresh_rng()
    heads = ["pool_flatten", "mobilenet", "norm_relu_gap", "relu_gap"]
    rng.shuffle(heads)
    for head in heads:
        model = _random_network(rng, head)
        got = call(gradcam_layer, model, what="gradcam_layer(model)")
        if isinstance(got, keras.layers.Layer):
            raise Hint("return the layer's name (a str, e.g. layer.name), not the layer itself.")
        if not isinstance(got, str):
            raise Hint(f"gradcam_layer should return a layer name (a str); it returned a {type(got).__name__}.")
        expected = models.last_spatial_layer(model)
        if got == expected:
            continue
        names = [layer.name for layer in model.layers]
        if got not in names:
            raise Hint(f"this model has no layer called {got!r}; its layers are {names}.")
        layer = model.get_layer(got)
        shape = _shape(layer)
        if len(shape) != 4:
            raise Hint(f"layer {got!r} outputs shape {shape}: it has no height and width left, so "
                       "there is nothing to draw a map of. Grad-CAM needs (N, h, w, K) feature maps.")
        if shape[1:3] == (1, 1):
            raise Hint(f"layer {got!r} outputs shape {shape}: a 1x1 map is one flat value, with no "
                       "'where' in it. Look for feature maps with more than one pixel.")
        if names.index(got) < names.index(expected):
            raise Hint(f"layer {got!r} outputs feature maps {shape}, but later layers still do too, "
                       "and their maps are closer to the decision. Which is the last one?")
        raise Hint(f"layer {got!r} is not the layer Grad-CAM should use in this model.")


# ----------------------------------------------------------------------------- 04.4

choice_task(
    "04.4", points=2, answer="true_statements", title="Reading Grad-CAM maps (multiple choice)",
    options="abcdef",
    key="46172250bb1f252e37bc88f580d13c27654251cabc64c43f9dfb8ba14d56d87b",
    hint="at least one statement is judged wrongly. For each one, find the section of lesson 04 "
         "that speaks of it, or try it with your functions above.")
