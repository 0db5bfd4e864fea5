"""Checks of the exercises of lesson 01 (inside a CNN): solutions/01_inside_a_cnn.ipynb.

Every check draws fresh random models, stacks and shapes, so an answer that hard-codes what the
notebook's own example produces does not pass. References: ``coursekit.features``.
"""
from __future__ import annotations

import warnings

import numpy as np

from .core import Hint, as_int_tuple, call, choice_task, fresh_rng, require_callable, task
from .model_rule import is_model

# ----------------------------------------------------------------------------- 01.1

def _layer_tags(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` different random three-digit tags (layer names in one model must differ)."""
    return [str(tag) for tag in rng.choice(np.arange(100, 1000), size=count, replace=False)]


def _random_cnn(rng: np.random.Generator):
    """A small random CNN: conv, pool, conv, conv with random sizes and random layer names."""
    import keras
    side, channels = int(rng.integers(10, 17)), int(rng.integers(1, 4))
    tags = _layer_tags(rng, 6)
    inputs = keras.Input((side, side, channels))
    x = keras.layers.Conv2D(int(rng.integers(2, 6)), 3, padding="same", activation="relu", name=f"conv_{tags[0]}")(inputs)
    x = keras.layers.MaxPooling2D(2, name=f"pool_{tags[1]}")(x)
    x = keras.layers.Conv2D(int(rng.integers(2, 6)), 3, padding="same", name=f"conv_{tags[2]}")(x)
    x = keras.layers.Activation("relu", name=f"relu_{tags[3]}")(x)
    x = keras.layers.Conv2D(int(rng.integers(2, 6)), 1, name=f"conv_{tags[4]}")(x)
    model = keras.Model(inputs, x, name=f"random_cnn_{tags[5]}")
    images = rng.normal(size=(2, side, side, channels)).astype("float32")
    return model, images


_ORDER_HINT = ("your outputs come in a different order than layer_names: output i must be the "
               "output of the layer called layer_names[i].")


def _as_arrays(outputs) -> list[np.ndarray]:
    if isinstance(outputs, dict):
        raise Hint("your model returns a dict; return a list of outputs, one per layer name, in order.")
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(output, dtype="float32") for output in outputs]


@task("01.1", points=3, answer="activation_submodel", title="An activation sub-model")
def _(activation_submodel):
    from .. import features
    if is_model(activation_submodel):
        raise Hint("check needs the function itself (`activation_submodel`), not a model it returned.")
    require_callable(activation_submodel, "activation_submodel")
    rng = fresh_rng()
    model, images = _random_cnn(rng)
    names = [layer.name for layer in model.layers[1:]]
    for chosen in ([names[0]], list(rng.choice(names, size=3, replace=False))):
        chosen = [str(name) for name in chosen]
        sub = call(activation_submodel, model, chosen, what="activation_submodel(model, layer_names)")
        if not is_model(sub):
            raise Hint(f"activation_submodel should return a keras.Model; it returned a {type(sub).__name__}. "
                       "Build the model (keras.Model(inputs=..., outputs=...)); do not run it on images.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = _as_arrays(call(sub, images, what="your sub-model, called on a batch of images,"))
            expected = _as_arrays(features.activation_model(model, chosen)(images))
        if len(got) != len(expected):
            raise Hint(f"for {len(chosen)} layer name(s) your model has {len(got)} output(s); it needs "
                       "one output per name in layer_names.")
        for position, (mine, reference) in enumerate(zip(got, expected)):
            if mine.shape != reference.shape:
                shapes = [r.shape for r in expected]
                if mine.shape in shapes:
                    raise Hint(_ORDER_HINT)
                raise Hint(f"output {position} has shape {mine.shape}; the layer "
                           f"{chosen[position]!r} outputs {reference.shape}. Take the outputs of the "
                           "named layers of `model` itself.")
            if not np.allclose(mine, reference, atol=1e-4, rtol=1e-4):
                if any(other is not reference and other.shape == mine.shape
                       and np.allclose(mine, other, atol=1e-4, rtol=1e-4) for other in expected):
                    raise Hint(_ORDER_HINT)
                raise Hint(f"output {position} has the right shape but other values than the layer "
                           f"{chosen[position]!r}: your sub-model must reuse the layers of `model` "
                           "(their outputs and trained weights), not new layers.")


# ----------------------------------------------------------------------------- 01.2

_STACK_KINDS = ("plain", "strided", "dilated", "padded", "mixed", "mixed")  # the cases of one check


def _random_stack(rng: np.random.Generator, kind: str) -> list[tuple[int, int, int, int]]:
    """Layers ``(kernel, stride, dilation, pad)`` of one kind: plain, strided, dilated, padded or mixed.

    A "strided" stack has at least two layers with stride > 1 (with only one, a jump that adds
    the strides instead of multiplying them would come out right), and a "dilated" stack has a
    kernel larger than 1 (a 1 x 1 kernel spans one position whatever its dilation).
    """
    depth = int(rng.integers(2, 6))
    shown = set(rng.choice(depth, size=2, replace=False).tolist())  # layers that must show the kind
    stack = []
    for index in range(depth):
        kernel = int(rng.choice([2, 3, 5, 7] if kind == "dilated" and index in shown else [1, 2, 3, 5, 7]))
        if kind == "strided" and index in shown:
            stride = int(rng.integers(2, 4))
        else:
            stride = int(rng.integers(1, 4)) if kind in ("strided", "mixed") else 1
        dilation = int(rng.integers(2, 4)) if kind in ("dilated", "mixed") and stride == 1 else 1
        pad = int(rng.integers(1, 4)) if kind in ("padded", "mixed") else 0
        stack.append((kernel, stride, dilation, pad))
    return stack


def _reference_field(stack) -> tuple[int, int, int]:
    """coursekit's receptive field of the last layer of a Keras model built from ``stack``."""
    import keras

    from .. import features
    inputs = keras.Input((None, None, 1))
    x = inputs
    for index, (kernel, stride, dilation, pad) in enumerate(stack):
        if pad:
            x = keras.layers.ZeroPadding2D(((pad, 0), (pad, 0)))(x)
        x = keras.layers.Conv2D(1, kernel, strides=stride, dilation_rate=dilation, name=f"layer{index}")(x)
    field = features.receptive_field(keras.Model(inputs, x), f"layer{len(stack) - 1}")
    return field.size, field.jump, field.start


_FIELD_HINTS = {
    "plain": "even without strides, dilation or padding, each k x k kernel lets one unit see "
             "k - 1 more units of the layer below.",
    "strided": "after a stride-s layer, neighbouring units are s times further apart in the input, "
               "so every later kernel spans more input pixels.",
    "dilated": "a kernel of size k with dilation d spans d * (k - 1) + 1 positions of the layer below.",
    "jump": "the jump is the number of input pixels between neighbouring units: which layer "
            "parameter spreads the units apart, and how do several such layers combine?",
    "start": "p zero pixels added above a layer shift the first pixel its first unit sees up by p "
             "units of the layer below, measured in input pixels.",
}


def _field_hint(part: str, stack) -> str:
    if part != "size":
        return _FIELD_HINTS[part]
    if any(dilation > 1 for _, _, dilation, _ in stack):
        return _FIELD_HINTS["dilated"]
    return _FIELD_HINTS["strided" if any(stride > 1 for _, stride, _, _ in stack) else "plain"]


@task("01.2", points=3, answer="receptive_field", title="Receptive field with strides, dilation, padding")
def _(receptive_field):
    require_callable(receptive_field, "receptive_field")
    rng = fresh_rng()
    for kind in _STACK_KINDS:
        stack = _random_stack(rng, kind)
        got = as_int_tuple(call(receptive_field, list(stack), what="receptive_field(stack)"), 3,
                           "receptive_field(stack)")
        expected = _reference_field(stack)
        for part, mine, reference in zip(("size", "jump", "start"), got, expected):
            if mine != reference:
                raise Hint(f"for the stack {stack} your {part} is {mine}, which is not right; "
                           f"{_field_hint(part, stack)}")


# ----------------------------------------------------------------------------- 01.3

def _tile_cases(rng: np.random.Generator) -> list[tuple[int, int, int, int, int]]:
    """Cases ``(channel, per_row, height, width, gap)`` of check 01.3.

    The first three keep gap=1 (first tile, first row, second row); the fourth has a gap other
    than 1 and a channel below the first row and right of the first column, so an answer that
    ignores the gap fails in both coordinates; the last three are drawn freely.
    """
    per_row = int(rng.integers(3, 9))
    placed = [(0, 4, 1), (2, 4, 1), (int(rng.integers(4, 8)), 4, 1),
              (per_row * int(rng.integers(1, 4)) + int(rng.integers(1, per_row)), per_row,
               int(rng.choice([0, 2, 3])))]
    placed += [(int(rng.integers(0, 40)), int(rng.integers(3, 9)), int(rng.integers(0, 4))) for _ in range(3)]
    cases = []
    for channel, row_length, gap in placed:
        height, width = (int(v) for v in rng.integers(2, 9, size=2))
        cases.append((channel, row_length, height, width, gap))
    return cases


@task("01.3", points=2, answer="tile_position", title="Where channel k sits in a tiled grid")
def _(tile_position):
    from .. import features
    require_callable(tile_position, "tile_position")
    rng = fresh_rng()
    for number, (channel, per_row, height, width, gap) in enumerate(_tile_cases(rng)):
        channels = max(channel + 1 + int(rng.integers(0, 5)), per_row)
        fmap = np.zeros((height, width, channels), dtype="float32")
        fmap[..., channel] = 1.0
        grid = features.tile_channels(fmap, per_row=per_row, gap=gap, normalize=False, gap_value=0.0)
        rows, cols = np.nonzero(grid == 1.0)
        expected = (int(rows.min()), int(cols.min()))
        got = as_int_tuple(call(tile_position, channel, height, width, per_row, gap,
                                what="tile_position(channel, height, width, per_row, gap)"),
                           2, "tile_position(...)")
        if got != expected:
            where = ("channel 0" if channel == 0 else "a channel in the first row" if channel < per_row
                     else "a channel below the first row")
            extra = (" The gap between tiles counts too." if gap != 1 and number >= 3 else
                     " Tiles fill a row from left to right, per_row of them, then the next row starts.")
            raise Hint(f"for {where} (channel={channel}, height={height}, width={width}, "
                       f"per_row={per_row}, gap={gap}) you return (top, left) = {got}, which is not "
                       f"where features.tile_channels puts it.{extra}")


# ----------------------------------------------------------------------------- 01.4

choice_task(
    "01.4", points=2, answer="true_statements", title="What feature maps tell us (multiple choice)",
    options="abcdef",
    key="6407ac06e7f1e87fa24041d5ff4ba91d2df740ad3051ac5c92b8bc85d82fdfc7",
    hint="at least one statement is judged wrongly. For each one, find the section of lesson 01 "
         "that speaks of it, or try it on a tiny example.")
