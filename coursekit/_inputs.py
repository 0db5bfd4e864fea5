"""The one input contract of every method that takes ``(model, images, ...)``.

Each explanation method (feature maps, saliency, Grad-CAM, occlusion, deletion curves, ...) turns
its arguments into checked values here, so that every method accepts the same forms and answers
bad input with the same message:

* **images**: :func:`image_batch` — a batch ``(N, H, W, C)`` or one image ``(H, W, C)``; for a
  one-channel model also ``(N, H, W)`` or one ``(H, W)``; the size must be the model's.
* **classes**: :func:`class_codes` — ``None`` (each image's top class), one int for every image,
  or a sequence with one int (or None) per image; :func:`resolve_classes` fills in the top classes.
* **batching**: :func:`batches` — slices of at most ``batch_size`` images; results never depend on it;
  :func:`chosen_batch_size` — ``None`` means as many images as fit the profile's memory budget
  (:mod:`coursekit.batching`).
* **layers**, also inside nested models (a pretrained backbone inside a transfer-learning model):
  :func:`find_layer` takes a layer's own name when it is unique across the nesting, or its path
  ``"backbone/Conv_1"``; :func:`last_spatial_layer` looks inside sub-models; :func:`outputs_model`
  builds (once per model) a model from the input to any layers' outputs, plus the class logits.
"""
from __future__ import annotations

import difflib
import numbers

import keras
import numpy as np

from . import _cache

TOP_PREDICTION = -1  # class code meaning "the model's top class for this image"
PATH_SEPARATOR = "/"


# ----------------------------------------------------------------------------- images

def input_shape(model: keras.Model) -> tuple:
    """The shape of one image the model takes, ``(H, W, C)`` (None where any size is accepted)."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(f"Model {model.name!r} has no defined input yet: build it on an input shape "
                         "first (keras.Input(...), or call it once on a batch).")
    if len(inputs) != 1:
        names = [getattr(tensor, "name", "?") for tensor in inputs]
        raise ValueError(f"Model {model.name!r} has {len(inputs)} inputs ({', '.join(names)}); the course's "
                         "methods explain models with one image input. Build a model of the image branch "
                         "alone (keras.Model(image_input, output)) and explain that.")
    return tuple(inputs[0].shape[1:])


def image_batch(model: keras.Model, images) -> np.ndarray:
    """``images`` as a float32 batch ``(N, H, W, C)`` that fits ``model``, or a ValueError saying why.

    Accepted: a batch ``(N, H, W, C)``; one image ``(H, W, C)`` (a batch of one); for a model with
    one channel (MNIST digits) also ``(N, H, W)`` and ``(H, W)``. Values are not changed: pass the
    *preprocessed* images (``net.preprocess``).
    """
    expected = input_shape(model)
    try:
        batch = np.asarray(images, dtype="float32")
    except (TypeError, ValueError):
        raise TypeError(f"images must be an array of numbers (N, H, W, C); got {type(images).__name__}.") from None
    grey = len(expected) == 3 and expected[-1] == 1
    if grey and batch.ndim in (2, 3) and _fits(batch.shape[-2:], expected[:2]):
        batch = batch[..., None]          # digits without their channel axis
    if batch.ndim == len(expected):
        batch = batch[None]               # one image
    if batch.ndim != len(expected) + 1 or not _fits(batch.shape[1:], expected):
        raise ValueError(_wrong_size_message(model, expected, batch.shape))
    if len(batch) == 0:
        raise ValueError("The batch is empty: pass at least one image.")
    if not np.isfinite(batch).all():
        raise ValueError("The images contain NaN or infinite values.")
    return batch


def _fits(got: tuple, expected: tuple) -> bool:
    return len(got) == len(expected) and all(e is None or e == g for g, e in zip(got, expected))


def _wrong_size_message(model, expected: tuple, got: tuple) -> str:
    shape = ", ".join("any" if e is None else str(e) for e in expected)
    message = f"Model {model.name!r} takes images of shape (N, {shape}) or one image ({shape}); got {tuple(got)}."
    if len(expected) == 3 and None not in expected[:2]:
        height, width = expected[:2]
        message += (f" Resize them to {height}x{width} first: net.load_image(name_or_path) loads a photo at "
                    f"the model's size, coursekit.data.resize(image, ({height}, {width})) resizes an "
                    "image; then preprocess (net.preprocess).")
    return message


# ----------------------------------------------------------------------------- classes

def n_classes(model: keras.Model) -> int:
    """The number of class scores the model outputs (its output must be ``(N, classes)``)."""
    shape = model.outputs[0].shape
    if len(shape) != 2:
        raise ValueError(f"Model {model.name!r} outputs shape {tuple(shape)}; class scores "
                         "(N, classes) are needed.")
    return int(shape[-1])


def class_codes(class_index, count: int, classes: int) -> np.ndarray:
    """One class per image as int32 ``(count,)``; ``TOP_PREDICTION`` where the top class is wanted.

    ``class_index``: None (each image's top class), one int (the same class for every image) or a
    sequence (list, tuple, array) with one int or None per image. ``classes``: how many the
    model has. Raises ValueError for a wrong length or a class out of range, TypeError for a
    value that is not a whole number.
    """
    if class_index is None:
        return np.full(count, TOP_PREDICTION, dtype="int32")
    if np.ndim(class_index) == 0 and not isinstance(class_index, (list, tuple, np.ndarray)) or (
            isinstance(class_index, np.ndarray) and class_index.ndim == 0):
        wanted = [class_index.item() if isinstance(class_index, np.ndarray) else class_index] * count
    elif isinstance(class_index, (list, tuple, np.ndarray)):
        wanted = list(np.asarray(class_index, dtype=object).ravel())
        if len(wanted) != count:
            raise ValueError(f"class_index has {len(wanted)} entries but there are {count} images: give "
                             f"one class per image ({count} in all), a single int for every image, or None "
                             "for each image's top prediction.")
    else:
        raise TypeError(f"class_index must be None, an int, or one int per image; got {class_index!r} "
                        f"({type(class_index).__name__}). For a class name, use net.class_index('tabby').")
    codes = [_class_code(value, classes) for value in wanted]
    return np.asarray(codes, dtype="int32")


def _class_code(value, classes: int) -> int:
    if value is None:
        return TOP_PREDICTION
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"class_index must hold ints (or None); got {value!r} ({type(value).__name__}). "
                        "For a class name, use net.class_index('tabby').")
    if not 0 <= int(value) < classes:
        raise ValueError(f"class_index {int(value)} is out of range: the model has {classes} classes, "
                         f"numbered 0 to {classes - 1}.")
    return int(value)


def resolve_classes(codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``codes`` with every ``TOP_PREDICTION`` replaced by that image's top class in ``scores`` ``(N, classes)``."""
    codes = np.asarray(codes, dtype="int32")
    return np.where(codes == TOP_PREDICTION, np.argmax(scores, axis=-1), codes).astype("int32")


# ----------------------------------------------------------------------------- batching

def batches(count: int, batch_size) -> list[slice]:
    """``slice`` objects covering ``range(count)`` in pieces of at most ``batch_size``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (numbers.Integral, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1; got {batch_size!r}.")
    return [slice(start, min(start + int(batch_size), count)) for start in range(0, count, int(batch_size))]


def chosen_batch_size(model: keras.Model, batch_size, work: str, image_shape: tuple) -> int:
    """``batch_size`` when given (a whole number >= 1, else a ValueError), or, when None, the batch
    of images of ``image_shape`` ``(H, W, C)`` that fits the profile's memory budget for ``work``
    (``"gradient"`` or ``"forward"``) on this model (:func:`coursekit.batching.batch_size_for`)."""
    if batch_size is None:
        from .batching import batch_size_for
        return batch_size_for(model, work, image_shape=tuple(int(d) for d in image_shape))
    batches(1, batch_size)   # refuses a bad value with the contract's message
    return int(batch_size)


def scale_to_unit(maps: np.ndarray) -> np.ndarray:
    """Divide each map of ``(N, ...)`` by its maximum: values in [0, 1]; an all-zero map stays 0."""
    maps = np.asarray(maps, dtype="float32")
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape((-1,) + (1,) * (maps.ndim - 1))
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0.0).astype("float32")


# ----------------------------------------------------------------------------- layers, nested models too

def _is_container(layer) -> bool:
    """A layer that holds layers of its own: a Functional or Sequential sub-model."""
    return isinstance(layer, keras.Model) and bool(getattr(layer, "layers", None))


def layer_paths(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Every layer of ``model`` and of its sub-models, depth first, keyed by path.

    A top-level layer's path is its name; a layer inside a sub-model is ``"sub_model/layer"``
    (``"outer/inner/layer"`` deeper down). Sub-models appear themselves, before their layers.
    """
    def walk(container, prefix):
        for layer in container.layers:
            path = prefix + layer.name
            yield path, layer
            if _is_container(layer):
                yield from walk(layer, path + PATH_SEPARATOR)
    return dict(walk(model, ""))


def layer_path(model: keras.Model, name: str) -> str:
    """The full path of the layer called ``name`` (its own name when unique, or a path), or a ValueError.

    A name found in two sub-models is ambiguous: the error lists both paths, either of which works.
    A wrong name lists the closest names.
    """
    paths = layer_paths(model)
    name = str(name)
    if name in paths:
        return name
    matches = [path for path in paths if path.rsplit(PATH_SEPARATOR, 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ValueError(f"Model {model.name!r} has {len(matches)} layers named {name!r}: "
                         f"{', '.join(repr(m) for m in matches)}. Name one by its path.")
    names = sorted({path.rsplit(PATH_SEPARATOR, 1)[-1] for path in paths} | set(paths))
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"Did you mean one of {close}?" if close else f"Its layers include {list(paths)[:8]}..."
    raise ValueError(f"Model {model.name!r} has no layer {name!r}. {hint} "
                     "(model.summary() lists every layer; coursekit.models.layer_names(model) lists "
                     "them with the layers inside nested models.)")


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer called ``name`` anywhere in ``model`` (see :func:`layer_path`)."""
    return layer_paths(model)[layer_path(model, name)]


def short_name(model: keras.Model, path: str) -> str:
    """The layer's own name when it is unique across the nesting, else its path."""
    name = path.rsplit(PATH_SEPARATOR, 1)[-1]
    same = [p for p in layer_paths(model) if p.rsplit(PATH_SEPARATOR, 1)[-1] == name]
    return name if len(same) == 1 else path


def output_rank(layer: keras.layers.Layer) -> int:
    return len(layer.output.shape)


def last_spatial_layer(model: keras.Model) -> str:
    """The last layer whose output is 4-D with more than one pixel, looking inside sub-models.

    Grad-CAM's default layer. Globally pooled ``(N, 1, 1, C)`` outputs, as in MobileNet's head,
    are skipped; a sub-model itself is not returned, its last such layer is. Returns the layer's
    own name when unique across the nesting, else its path.
    """
    for path, layer in reversed(list(layer_paths(model).items())):
        if _is_container(layer):
            continue
        if output_rank(layer) == 4 and tuple(layer.output.shape[1:3]) != (1, 1):
            return short_name(model, path)
    raise ValueError(f"Model {model.name!r} has no layer with a 4-D (N, H, W, C) output.")


def require_spatial(model: keras.Model, name: str, purpose: str = "a feature map") -> keras.layers.Layer:
    """The layer called ``name``, checked to output 4-D ``(N, H, W, C)`` feature maps."""
    layer = find_layer(model, name)
    if output_rank(layer) != 4:
        raise ValueError(
            f"Layer {name!r} outputs shape {tuple(layer.output.shape)}, not (N, H, W, C): "
            f"{purpose} needs a layer with height, width and channels (a convolution or pooling "
            f"layer), such as {last_spatial_layer(model)!r}, the last one here.")
    return layer


def outputs_model(model: keras.Model, layers, logits: bool = False) -> keras.Model:
    """A model from ``model``'s input to the outputs of ``layers`` (names or paths), built once.

    One output in all gives a model with one output (not a list of one). With ``logits``, the
    class scores before the softmax (:func:`coursekit.models.pre_softmax`) come last. It shares
    ``model``'s weights. Layers inside nested sub-models are reached by re-running the graph with
    each sub-model opened up, so that their outputs are connected to the outer input
    (``keras.Model(model.input, inner_layer.output)`` is not).
    """
    paths = tuple(layer_path(model, name) for name in layers)
    return _cache.per_model(model, ("outputs", paths, bool(logits)), lambda: _build_outputs(model, paths, logits))


def _build_outputs(model: keras.Model, paths: tuple[str, ...], logits: bool) -> keras.Model:
    from .models import pre_softmax
    source = pre_softmax(model) if logits else model
    wanted = {path: layer_paths(model)[path] for path in paths}
    # A flat functional model: its own tensors will do. Not a Sequential one: loaded from a file, its
    # first layers carry one graph node per rebuild and layer.output leads nowhere; it is re-run below.
    if all(PATH_SEPARATOR not in path for path in paths) and not isinstance(model, keras.Sequential):
        outputs = [layer.output for layer in wanted.values()]
        outputs += [source.outputs[0]] if logits else []
        return keras.Model(source.inputs[0], _one_or_list(outputs), name=f"{model.name}_outputs")
    image = keras.Input(input_shape(model), name=f"{model.name}_image")
    found: dict[int, object] = {}
    targets = {id(layer) for layer in wanted.values()}
    final = _trace(source, image, targets, found)
    missing = [path for path, layer in wanted.items() if id(layer) not in found]
    if missing:
        raise ValueError(f"Could not reach layer(s) {missing} of {model.name!r} from its input.")
    outputs = [found[id(layer)] for layer in wanted.values()] + ([final] if logits else [])
    return keras.Model(image, _one_or_list(outputs), name=f"{model.name}_outputs")


def _one_or_list(outputs: list):
    """A model of one output returns a tensor, not a list of one (as ``keras.Model(x, y)`` does)."""
    return outputs[0] if len(outputs) == 1 else outputs


def _contains(container, targets: set[int]) -> bool:
    return any(id(layer) in targets or (_is_container(layer) and _contains(layer, targets))
               for layer in container.layers)


def _trace(container: keras.Model, inputs, targets: set[int], found: dict):
    """Run ``container``'s graph on ``inputs`` (a ``keras.Input``) with the same layers; record targets' outputs.

    A sub-model holding a target is replaced by an *opened* copy of it (:func:`_opened`) that
    also returns the targets' outputs; every other layer is called as it is (weights shared).
    """
    def call(layer, *args, **kwargs):
        if _is_container(layer) and _contains(layer, targets):
            opened, inner_targets = _opened(layer, targets)
            output, *inner = opened(args[0])
            found.update(zip(inner_targets, inner))
        else:
            output = layer(*args, **kwargs)
        if id(layer) in targets:
            found[id(layer)] = output
        return output

    if isinstance(container, keras.Sequential):
        x = inputs
        for layer in container.layers:
            x = call(layer, x)
        return x
    if isinstance(container.input, (list, tuple)):   # a model built with keras.Model([input], ...)
        inputs = [inputs]
    clone = keras.models.clone_model(container, input_tensors=inputs, clone_function=lambda layer: layer,
                                     call_function=call)
    return clone.outputs[0]


def _opened(container: keras.Model, targets: set[int]) -> tuple[keras.Model, list[int]]:
    """``container`` rebuilt on an input of its own with outputs ``[its output, *targets inside it]``.

    Built from a fresh ``keras.Input`` so that Keras keeps it connected when it is called inside
    the outer graph (a model built on an intermediate tensor would be cut loose from it).
    """
    image = keras.Input(tuple(container.inputs[0].shape[1:]))
    found: dict[int, object] = {}
    output = _trace(container, image, targets, found)
    inner_targets = list(found)
    return keras.Model(image, [output] + [found[t] for t in inner_targets]), inner_targets
