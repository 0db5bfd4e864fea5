"""Pretrained ImageNet models with what a lesson needs beside them, and the course's small CNNs."""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import sys
import warnings
from functools import lru_cache
from pathlib import Path

import keras
import numpy as np

from . import _cache, _forward, _inputs, env


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable (usually: no internet)."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    constructor: str                 # attribute of keras.applications
    module: str                      # keras.applications.<module> with preprocess_input/decode
    input_size: tuple[int, int]
    weight_files: tuple[str, str]    # (with top, without top), as Keras names them in its cache
    last_conv_layer: str
    feature_layers: tuple[str, ...]  # a few layers from shallow to deep, for feature maps
    pattern_layers: tuple[str, ...]  # layers whose filters make good gradient-ascent patterns
    kwargs: tuple = ()
    fixed_size: bool = False         # True: only input_size works (the cached weights fix it)


SPECS: dict[str, _Spec] = {
    "xception": _Spec(
        "Xception", "xception", (299, 299),
        ("xception_weights_tf_dim_ordering_tf_kernels.h5",
         "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        last_conv_layer="block14_sepconv2_act",
        feature_layers=("block1_conv1", "block2_sepconv1", "block4_sepconv1", "block7_sepconv1",
                        "block10_sepconv1", "block14_sepconv2"),
        pattern_layers=("block2_sepconv1", "block4_sepconv1", "block10_sepconv1")),
    "vgg16": _Spec(
        "VGG16", "vgg16", (224, 224),
        ("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
         "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        last_conv_layer="block5_conv3",
        feature_layers=("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                        "block5_conv1", "block5_conv3"),
        pattern_layers=("block1_conv1", "block3_conv1", "block5_conv1")),
    "mobilenet_025": _Spec(
        "MobileNet", "mobilenet", (128, 128),
        ("mobilenet_2_5_128_tf.h5", "mobilenet_2_5_128_tf_no_top.h5"),
        last_conv_layer="conv_pw_13_relu",
        feature_layers=("conv1_relu", "conv_pw_1_relu", "conv_pw_3_relu", "conv_pw_5_relu",
                        "conv_pw_11_relu", "conv_pw_13_relu"),
        pattern_layers=("conv_pw_2", "conv_pw_5", "conv_pw_11"),
        kwargs=(("alpha", 0.25),), fixed_size=True),
    # Grad-CAM's layer is out_relu, not Conv_1: out_relu (Conv_1 -> batch norm -> ReLU6) is what
    # the classifier reads (global average pooling, then the Dense layer), so Grad-CAM there is
    # exactly CAM, its maps are >= 0 like every other model's last_conv_layer, and it is the
    # last spatial layer (models.last_spatial_layer). Conv_1's raw output skips the batch norm
    # and the ReLU6 between it and the classifier.
    "mobilenet_v2": _Spec(
        "MobileNetV2", "mobilenet_v2", (224, 224),
        ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
         "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
        last_conv_layer="out_relu",
        feature_layers=("Conv1_relu", "block_2_expand_relu", "block_5_expand_relu", "block_12_expand_relu",
                        "block_14_expand_relu", "out_relu"),
        pattern_layers=("block_3_expand", "block_6_expand", "block_13_expand"),
        kwargs=(("alpha", 1.0),)),
}
CLASS_INDEX_FILE = "imagenet_class_index.json"


@dataclasses.dataclass
class Pretrained:
    """A pretrained Keras model and what goes with it.

    ``preprocess(images)`` takes RGB images in [0, 255], shape ``(N, H, W, 3)`` or ``(H, W, 3)``,
    and returns the float32 batch the model expects; ``decode(preds, top)`` turns ``(N, 1000)``
    probabilities into ``[[(wordnet_id, class_name, probability), ...], ...]``.
    """

    name: str
    model: keras.Model
    input_size: tuple[int, int]
    last_conv_layer: str
    feature_layers: tuple[str, ...]
    pattern_layers: tuple[str, ...]
    _module: object = dataclasses.field(repr=False, default=None)

    def preprocess(self, images) -> np.ndarray:
        """RGB images in [0, 255], ``(N, H, W, 3)`` or ``(H, W, 3)``, as the model's float32 input batch.

        Their size must be the model's (a model built without a fixed size takes any): a photo of
        another size gets an error saying to load it with :meth:`load_image` or resize it.
        """
        batch = np.asarray(images, dtype="float32")
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"Expected RGB images of shape (N, H, W, 3) or (H, W, 3); got {batch.shape}.")
        _inputs.image_batch(self.model, batch)   # the model's size, or the course's message
        return self._module.preprocess_input(batch.copy())

    def decode(self, preds, top: int = 5) -> list[list[tuple[str, str, float]]]:
        rows = self._module.decode_predictions(np.asarray(preds), top=top)
        return [[(wnid, label, float(p)) for wnid, label, p in row] for row in rows]

    def class_index(self, class_name: str) -> int:
        """The ImageNet index of a class name such as ``"tabby"`` (as ``decode`` spells it)."""
        names = imagenet_class_names()
        if class_name in names:
            return names.index(class_name)
        close = difflib.get_close_matches(class_name, names, n=5)
        raise ValueError(f"No ImageNet class {class_name!r}. Close names: {close}")

    def load_image(self, name_or_path: str) -> np.ndarray:
        """A sample image or file resized to this model's input size: uint8 ``(H, W, 3)``."""
        from .data import sample_image
        return sample_image(name_or_path, size=self.input_size)


def pretrained(name: str, include_top: bool = True) -> Pretrained:
    """Load ``"xception"``, ``"vgg16"``, ``"mobilenet_v2"`` or ``"mobilenet_025"`` with ImageNet weights.

    Cached per call. ``mobilenet_v2`` (alpha 1.0, 224 px, about 72% top-1) is the smoke profile's
    model; ``mobilenet_025`` (alpha 0.25, 128 px, about 40% top-1) is the fastest real one.
    """
    key = name.lower().strip()
    if key not in SPECS:
        raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(SPECS)}.")
    return _load(key, bool(include_top))


@lru_cache(maxsize=None)
def _load(key: str, include_top: bool) -> Pretrained:
    spec = SPECS[key]
    random_weights = env.random_weights()
    if random_weights:
        sys.stderr.write(f"coursekit: {env.RANDOM_WEIGHTS_VARIABLE} is set, so {key!r} has RANDOM "
                         "weights: its predictions and pictures mean nothing.\n")
    else:
        _require_cached_or_online(key, spec.weight_files[0 if include_top else 1])
    if include_top:
        _require_cached_or_online(key, CLASS_INDEX_FILE)
    constructor = getattr(keras.applications, spec.constructor)
    input_shape = (*spec.input_size, 3) if include_top or spec.fixed_size else None
    try:
        with warnings.catch_warnings():  # MobileNetV2 without a size: Keras warns that it loads
            warnings.filterwarnings("ignore", message=".*will be loaded as the default")  # the 224 px weights
            model = constructor(weights=None if random_weights else "imagenet", include_top=include_top,
                                input_shape=input_shape, **dict(spec.kwargs))
    except Exception as error:  # Keras reports a failed download as a bare Exception
        if "fetch failure" in str(error) or "URL" in str(error):
            raise WeightsUnavailableError(_offline_advice(key)) from None
        raise
    if include_top:
        _fetch_class_index()
    module = importlib.import_module(f"keras.applications.{spec.module}")
    return Pretrained(key, model, spec.input_size, spec.last_conv_layer, spec.feature_layers,
                      spec.pattern_layers, module)


def _offline_advice(key: str) -> str:
    """What to do when ``key``'s weights are neither cached nor downloadable: the exact next step.

    Suggests the smoke profile only to someone not already running it (its models are small and
    run every lesson on a CPU); the cache command is ``coursekit.tools.cache``'s.
    """
    try:
        profile_name = env.profile().name
    except ValueError:  # an unknown COURSEKIT_PROFILE: its own error says so elsewhere
        profile_name = "smoke"
    smoke = ("" if profile_name == "smoke" else
             "Or use the smoke profile (COURSEKIT_PROFILE=smoke, and --profile smoke above): small models that "
             "run every lesson on a CPU. ")
    return (f"The ImageNet weights of {key!r} are not cached here and cannot be downloaded (no internet). "
            "Next step: on a machine with internet, in a clone of the course, run "
            f"`python -m coursekit.tools.cache build keras-cache --profile {profile_name}`, copy the folder "
            f"keras-cache here, and set {env.OFFLINE_CACHE_VARIABLE} to its path before starting Python or "
            f"Jupyter. {smoke}On Colab nothing is needed: Keras downloads the weights.")


def _require_cached_or_online(key: str, filename: str) -> None:
    if not (env.keras_home() / "models" / filename).exists() and not env.is_online():
        raise WeightsUnavailableError(_offline_advice(key))


def _fetch_class_index() -> None:
    try:
        keras.applications.imagenet_utils.decode_predictions(np.zeros((1, 1000)), top=1)
    except Exception as error:
        raise WeightsUnavailableError(
            f"The ImageNet class index could not be loaded ({error}). Set "
            f"{env.OFFLINE_CACHE_VARIABLE} to a Keras cache holding models/{CLASS_INDEX_FILE}, "
            "or connect to the internet.") from None


@lru_cache(maxsize=1)
def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names in index order."""
    _fetch_class_index()
    import json
    with open(env.keras_home() / "models" / CLASS_INDEX_FILE) as handle:
        index = json.load(handle)
    return [index[str(i)][1] for i in range(len(index))]


# ----------------------------------------------------------------------------- layers

# Layers are found through the shared input module, which also looks inside nested sub-models
# (a pretrained backbone inside a transfer-learning model): a layer's own name works when it is
# unique across the nesting, a path such as "mobilenetv2_1.00_224/Conv_1" always does.
get_layer = _inputs.find_layer
require_spatial = _inputs.require_spatial
last_spatial_layer = _inputs.last_spatial_layer
output_rank = _inputs.output_rank


def check_channel(model: keras.Model, layer: str, channel) -> int:
    """``channel`` as an int, checked to be one of ``layer``'s channels (units): ``0 <= channel < C``.

    ``C`` is the last axis of the layer's output (channels of a feature map, units of a dense
    layer). A wrong layer name lists the closest names; a channel out of range gives the range.
    """
    found = get_layer(model, layer)
    count = int(found.output.shape[-1])
    kind = "units" if output_rank(found) == 2 else "channels"  # a dense layer's outputs are units
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
        raise ValueError(f"channel must be a whole number between 0 and {count - 1} (layer {layer!r} has "
                         f"{count} {kind}); got {channel!r}.")
    if not 0 <= channel < count:
        raise ValueError(f"Layer {layer!r} has {count} {kind}, numbered 0 to {count - 1}; got {channel}. "
                         "Pick one in that range.")
    return int(channel)


def layer_names(model: keras.Model) -> list[str]:
    """Every layer's path, depth first, with the layers inside nested sub-models (``"outer/inner"``)."""
    return list(_inputs.layer_paths(model))


class _SharedLinear(keras.layers.Layer):
    """``dense``'s affine part, ``x @ kernel + bias``, reading ``dense``'s own variables."""

    def __init__(self, dense: keras.layers.Dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, inputs):
        x = keras.ops.matmul(inputs, self.dense.kernel)
        return x if self.dense.bias is None else keras.ops.add(x, self.dense.bias)


def ends_in_softmax(model: keras.Model) -> bool:
    return getattr(getattr(model.layers[-1], "activation", None), "__name__", "") == "softmax"


def pre_softmax(model: keras.Model) -> keras.Model:
    """The same network ending at its class scores before the softmax (the logits).

    It *shares* ``model``'s weights (nothing is copied), so it stays right while ``model`` trains;
    built once per model. Handles the two endings Keras models have: a final
    ``Activation("softmax")`` layer (MobileNet) and a ``Dense(..., activation="softmax")`` layer
    (Xception, VGG16, the course's CNNs, a transfer-learning head). A model without a final
    softmax is returned unchanged. It takes one tensor, ``logits_model(images)``; tf-keras-vis
    accepts it as it is (``Gradcam(pre_softmax(model), clone=False)``).
    """
    if not ends_in_softmax(model):
        return model
    return _cache.per_model(model, "pre_softmax", lambda: _build_pre_softmax(model))


def _build_pre_softmax(model: keras.Model) -> keras.Model:
    last = model.layers[-1]
    features = _input_in_this_graph(model)
    if isinstance(last, keras.layers.Activation):
        logits = features
    elif isinstance(last, keras.layers.Dense):
        logits = _SharedLinear(last, name=f"{last.name}_logits")(features)
    else:
        raise TypeError(f"Model {model.name!r} ends in a {type(last).__name__} layer with a softmax; only "
                        "a Dense layer or an Activation('softmax') layer can be cut before its softmax. "
                        "End the model in Dense(...) followed by Activation('softmax').")
    _inputs.input_shape(model)  # one image input, or a clear error
    return keras.Model(model.inputs[0], logits, name=f"{model.name}_logits")


def _input_in_this_graph(model: keras.Model):
    """The tensor the last layer receives *in this model*.

    ``last.input`` would be the input of its first call, which belongs to another model when
    the head is shared (the same layers used in a nested and a flat model).
    """
    history = model.outputs[0]._keras_history
    node = history.operation._inbound_nodes[history.node_index]
    return node.input_tensors[0]


# ----------------------------------------------------------------------------- course CNNs

def mnist_cnn(conv_filters: tuple[int, ...] = (16, 32), dense_units: int = 64,
              name: str = "mnist_cnn") -> keras.Model:
    """A small CNN for 28x28x1 digits in [0, 255]: Rescaling, conv3x3+ReLU+maxpool per entry of
    ``conv_filters``, a Dense layer, then a 10-way softmax. Layers are named ``conv1``, ``pool1``..."""
    inputs = keras.Input((28, 28, 1), name="digits")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    for i, filters in enumerate(conv_filters, start=1):
        x = keras.layers.Conv2D(filters, 3, activation="relu", padding="same", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def strided_cnn(padding: str = "same", name: str = "strided_cnn") -> keras.Model:
    """A small CNN for 28x28x1 digits in [0, 255] that is quick to train several times.

    Rescaling, then two 3x3 convolutions with stride 2 (16 and 32 filters, ReLU; they halve the
    map instead of max pooling, which makes it cheaper to train than :func:`mnist_cnn`),
    ``Flatten``, a 64-unit dense layer and a 10-way softmax. Layers ``conv1``, ``conv2``,
    ``dense``, ``predictions``. ``padding="valid"`` builds the variant whose borders are seen less
    (lesson 05 compares them).
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid'; got {padding!r}.")
    inputs = keras.Input((28, 28, 1), name="digits")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    for i, filters in enumerate((16, 32), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding=padding, activation="relu", name=f"conv{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def mnist_mlp(hidden: tuple[int, ...] = (50, 30), name: str = "mnist_mlp") -> keras.Model:
    """A ReLU MLP for 28x28x1 digits in [0, 255] (as in Ross et al. 2017: 50 then 30 units)."""
    inputs = keras.Input((28, 28, 1), name="digits")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(hidden, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden{i}")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def train(model: keras.Model, images, labels, *, epochs: int, batch_size: int = 64,
          validation_split: float = 0.1, patience: int = 2, verbose: int = 0,
          learning_rate: float = 1e-3) -> keras.callbacks.History:
    """Compile with Adam and sparse cross-entropy, fit with early stopping on validation loss."""
    # XLA compilation costs seconds and buys nothing for models this small
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    stop = keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
    return model.fit(_inputs.image_batch(model, images), np.asarray(labels), epochs=epochs, batch_size=batch_size,
                     validation_split=validation_split, callbacks=[stop], verbose=verbose)


def accuracy(model: keras.Model, images, labels, batch_size: int = 256) -> float:
    """Share of ``images`` whose top prediction equals ``labels``, in [0, 1]."""
    preds = _forward.predict(model, _inputs.image_batch(model, images), batch_size)
    return float(np.mean(preds.argmax(axis=1) == np.asarray(labels)))




# ----------------------------------------------------------------------------- transfer learning
# A pretrained backbone inside a model of one's own: the model a student usually explains.

@dataclasses.dataclass(frozen=True)
class LayerStatus:
    """One layer of a (possibly nested) model, as :func:`trainable_layers` reports it."""

    path: str
    """Where the layer sits: ``"name"`` at the top, ``"backbone/name"`` inside a sub-model."""
    kind: str
    """The layer's class name (``"Conv2D"``, ``"BatchNormalization"``, ...)."""
    trainable: bool
    """Whether training changes its weights (False when it or a model around it is frozen)."""
    params: int
    """Number of numbers in its weights (trainable or not)."""


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """What :func:`train_with_callbacks` did."""

    history: dict[str, list[float]]
    """Per epoch: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``."""
    epochs_run: int
    """Epochs trained before early stopping (or ``epochs``)."""
    best_epoch: int
    """1-based epoch with the lowest validation loss: the weights the model ends with."""
    best_val_loss: float
    """Validation loss at ``best_epoch``."""
    checkpoint: Path | None
    """The ``.keras`` file holding the best model, or None when no checkpoint was asked for."""


def transfer_model(backbone, n_classes: int, *, trainable: bool = False, dropout: float = 0.2,
                   sequential: bool = False, input_size: tuple[int, int] | None = None,
                   name: str | None = None) -> keras.Model:
    """The usual transfer-learning model: a pretrained backbone, then a new head for ``n_classes``.

    ``backbone``: a name for :func:`pretrained` (``"mobilenet_v2"``, ...; loaded without its
    ImageNet classifier), a :class:`Pretrained`, or a Keras model whose output is 4-D
    ``(N, h, w, C)`` feature maps. It is *copied* (same weights): training the new model never
    changes the cached pretrained model. The head is ``GlobalAveragePooling2D`` -> ``Dropout``
    -> ``Dense(n_classes, softmax)``.

    ``trainable=False`` freezes the whole backbone (only the head learns; its batch
    normalisation layers then run in inference mode); :func:`unfreeze_top` opens its top layers
    later. ``sequential=False`` builds a functional model ``Input -> backbone -> head``;
    ``sequential=True`` builds ``keras.Sequential([backbone, ...])``. Either way the backbone is
    one layer of the new model, a nested sub-model whose layers are named ``"<backbone>/<layer>"``.

    The model takes the backbone's *preprocessed* input ``(N, H, W, 3)`` (``Pretrained.preprocess``)
    and outputs ``(N, n_classes)`` probabilities. ``input_size`` ``(H, W)`` is needed only when
    the backbone does not fix it.
    """
    source = pretrained(backbone, include_top=False) if isinstance(backbone, str) else backbone
    if isinstance(source, Pretrained):
        input_size = input_size or source.input_size
        source = source.model
    if not isinstance(source, keras.Model):
        raise TypeError(f"backbone must be a model name such as 'mobilenet_v2', a Pretrained or a Keras "
                        f"model; got {type(backbone).__name__}.")
    if len(source.inputs) != 1 or len(source.outputs) != 1 or len(source.outputs[0].shape) != 4:
        raise ValueError(f"The backbone {source.name!r} must take one image batch and output 4-D feature maps "
                         f"(N, h, w, C); it outputs {[tuple(o.shape) for o in source.outputs]}. Load it "
                         "without its classifier (include_top=False).")
    if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be a whole number >= 2 (the classes of your data set); got {n_classes!r}.")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1); got {dropout!r}.")
    shape = tuple(source.inputs[0].shape[1:])
    if input_size is not None:
        shape = (*input_size, shape[-1])
    if None in shape:
        raise ValueError(f"The backbone {source.name!r} takes images of any size {shape}: pass "
                         "input_size=(height, width).")
    copy = keras.models.clone_model(source)
    copy.set_weights(source.get_weights())
    copy.trainable = bool(trainable)
    head = [keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dropout(dropout, name="dropout"),
            keras.layers.Dense(int(n_classes), activation="softmax", name="predictions")]
    name = name or f"{copy.name}_transfer"
    if sequential:
        model = keras.Sequential([keras.Input(shape, name="images"), copy, *head], name=name)
    else:
        inputs = keras.Input(shape, name="images")
        x = copy(inputs)
        for layer in head:
            x = layer(x)
        model = keras.Model(inputs, x, name=name)
    return model


def _leaves(model: keras.Model, prefix: str = ""):
    """``(path, layer, trainable)`` for every layer that is not a model, walking nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            yield from ((p, inner, t and layer.trainable) for p, inner, t in _leaves(layer, f"{path}/"))
        else:
            yield path, layer, layer.trainable


def trainable_layers(model: keras.Model, only_weighted: bool = True) -> list[LayerStatus]:
    """Every layer of ``model``, nested sub-models walked through, with whether training changes it.

    ``only_weighted`` leaves out layers without weights (activations, pooling, ...). A layer
    counts as trainable only when it and every model around it are (``backbone.trainable =
    False`` freezes all of the backbone whatever its layers say).
    """
    rows = []
    for path, layer, trainable in _leaves(model):
        params = int(sum(np.prod(w.shape) for w in layer.weights))
        if params or not only_weighted:
            rows.append(LayerStatus(path, type(layer).__name__, bool(trainable and layer.weights), params))
    return rows


def describe_trainable(model: keras.Model) -> str:
    """A short text: how many layers and parameters train, and which layers, for printing."""
    rows = trainable_layers(model)
    training = [row for row in rows if row.trainable]
    total, learnt = sum(r.params for r in rows), sum(r.params for r in training)
    names = ", ".join(row.path for row in training[:6]) + (", ..." if len(training) > 6 else "")
    return (f"{model.name}: {len(training)} of {len(rows)} weighted layers train, {learnt:,} of {total:,} "
            f"parameters ({learnt / max(total, 1):.1%}): {names or 'none'}")


def unfreeze_top(model: keras.Model, n_layers: int, backbone: str | None = None) -> list[str]:
    """Let the top ``n_layers`` weighted layers of the nested backbone train; freeze the rest of it.

    ``backbone`` names the nested sub-model (default: the only one). Batch normalisation layers
    stay frozen and in inference mode (training them on a small data set ruins their statistics)
    and do not count towards ``n_layers``. Returns the paths of the layers that now train.
    Compile the model again afterwards (:func:`train_with_callbacks` does).
    """
    inner = _nested_backbone(model, backbone)
    weighted = [layer for layer in inner.layers if layer.weights
                and not isinstance(layer, keras.layers.BatchNormalization)]
    if not isinstance(n_layers, (int, np.integer)) or not 0 <= n_layers <= len(weighted):
        raise ValueError(f"n_layers must be a whole number from 0 to {len(weighted)} (the backbone "
                         f"{inner.name!r}'s weighted layers, batch normalisation left out); got {n_layers!r}.")
    opened = weighted[len(weighted) - n_layers:] if n_layers else []
    inner.trainable = True
    for layer in inner.layers:
        layer.trainable = any(layer is chosen for chosen in opened)
    return [f"{inner.name}/{layer.name}" for layer in opened]


def _nested_backbone(model: keras.Model, name: str | None) -> keras.Model:
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if name is not None:
        found = [layer for layer in nested if layer.name == name]
        if not found:
            raise ValueError(f"Model {model.name!r} has no nested model {name!r}; its nested models: "
                             f"{[layer.name for layer in nested]}.")
        return found[0]
    if len(nested) != 1:
        raise ValueError(f"Model {model.name!r} has {len(nested)} nested models "
                         f"{[layer.name for layer in nested]}: name the backbone (backbone='...').")
    return nested[0]


def train_with_callbacks(model: keras.Model, images, labels, validation: tuple, *, epochs: int,
                         batch_size: int = 32, patience: int = 2, learning_rate: float = 1e-3,
                         checkpoint: str | Path | None = None, verbose: int = 0,
                         callbacks: list | None = None) -> TrainingRun:
    """Compile (Adam, sparse cross-entropy, accuracy) and fit with the two callbacks one always wants.

    ``images`` ``(N, H, W, C)`` preprocessed, ``labels`` int ``(N,)``; ``validation`` is
    ``(images, labels)`` held out from training. ``EarlyStopping`` stops once the validation loss
    has not improved for ``patience`` epochs and puts back the weights of the best epoch;
    ``ModelCheckpoint`` (when ``checkpoint`` is a path ending in ``.keras``) saves the whole model
    each time the validation loss improves, so the best model survives a crash or a closed tab.
    An existing file at ``checkpoint`` is replaced (it is this training's own file). ``callbacks``
    adds your own. Returns a :class:`TrainingRun`.
    """
    x, y = np.asarray(images, dtype="float32"), np.asarray(labels)
    if len(validation) != 2:
        raise ValueError("validation must be a pair (images, labels) of held-out data.")
    x_val, y_val = np.asarray(validation[0], dtype="float32"), np.asarray(validation[1])
    if len(x) != len(y) or len(x_val) != len(y_val):
        raise ValueError(f"images and labels must have one label per image; got {len(x)} images and {len(y)} "
                         f"labels, {len(x_val)} and {len(y_val)} for validation.")
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1; got {epochs!r}.")
    chosen = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)]
    path = None
    if checkpoint is not None:
        path = Path(checkpoint)
        if path.suffix != ".keras":
            raise ValueError(f"checkpoint must be a file name ending in .keras (Keras' own format); got {str(path)!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        chosen.append(keras.callbacks.ModelCheckpoint(str(path), monitor="val_loss", save_best_only=True))
    # XLA compilation costs more time than it saves on a few small batches
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False)
    fitted = model.fit(x, y, validation_data=(x_val, y_val), epochs=int(epochs), batch_size=batch_size,
                       callbacks=chosen + list(callbacks or []), verbose=verbose)
    history = {key: [float(v) for v in values] for key, values in fitted.history.items()}
    best = int(np.argmin(history["val_loss"]))
    return TrainingRun(history, len(history["val_loss"]), best + 1, history["val_loss"][best], path)


def save_model(model: keras.Model, path: str | Path, overwrite: bool = False) -> Path:
    """Save the whole model (architecture, weights, optimizer state) in Keras' native ``.keras`` file.

    Refuses to replace an existing file unless ``overwrite=True``. Returns the path.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Save to a file name ending in .keras (Keras' native format); got {str(path)!r}. "
                         "The old .h5 format and SavedModel folders do not round-trip nested models as well.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists already: pass overwrite=True to replace it, or choose "
                              "another name (coursekit.env.unique_path gives a free one).")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def load_model(path: str | Path) -> keras.Model:
    """A model saved by :func:`save_model` (or ``ModelCheckpoint``), ready to predict and explain."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No saved model at {str(path)!r}. Check the path (relative to {str(Path.cwd())!r}).")
    if path.suffix != ".keras":
        raise ValueError(f"load_model reads Keras' native .keras files; got {str(path)!r}.")
    with sequential_built_once():
        return keras.models.load_model(path)


@contextlib.contextmanager
def sequential_built_once():
    """While it lasts, Keras loads every Sequential model the way it was made: built once, from all its layers.

    Keras' own ``Sequential.from_config`` adds the layers one at a time and rebuilds after each,
    so in a loaded Sequential the first layers carry several graph nodes and ``layer.output`` (the
    first one) leads nowhere: ``keras.Model(seq.inputs, [layer.output, seq.outputs[0]])`` then gets
    no gradient from the output. Keras is restored afterwards.
    """
    original = vars(keras.Sequential).get("from_config")   # None: inherited (no Keras version so far)

    def from_config(cls, config, custom_objects=None):
        layers = [keras.saving.deserialize_keras_object(layer, custom_objects=custom_objects)
                  for layer in config["layers"]]
        model = cls(layers=layers, name=config["name"])
        if not model.built and config.get("build_input_shape"):
            model.build(config["build_input_shape"])
        return model

    keras.Sequential.from_config = classmethod(from_config)
    try:
        yield
    finally:
        if original is None:
            del keras.Sequential.from_config
        else:
            keras.Sequential.from_config = original



def nested_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """``(path, layer)`` for every layer that is not itself a model, nested models walked through.

    A layer of ``model`` is named by its own name, a layer inside a nested model by
    ``"<nested model>/<layer>"`` (to any depth), in the order the data meets them. Input layers
    are left out.
    """
    return [(path, layer) for path, layer, _ in _leaves(model)]
