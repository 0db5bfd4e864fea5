"""Sanity checks for explanations (Adebayo et al. 2018): does a map change when the model does?

Model-parameter randomisation: re-initialise a trained model's layers from the top down and
compare explanations before and after. A method whose maps barely change once the weights are
random explains the image (edges, contrast), not the model.

* :func:`randomize_layers`: a copy with the top ``n`` weighted layers re-initialised.
* :func:`cascade`: the whole cascade on *one* working copy changed in place, so that explainers
  that build and compile a gradient function per model do it once instead of once per step.

Data randomisation: train the same architecture on labels permuted at random until it memorises
them (:func:`permuted_labels`, :func:`memorise`), and compare its explanations with those of the
model trained on the true labels. A method that gives both models the same maps cannot be
showing what the model learned about the classes.
"""
from __future__ import annotations

from typing import Iterator

import keras
import numpy as np

from ._inputs import find_layer, image_batch
from .models import nested_layers


def weighted_layers(model: keras.Model) -> list[str]:
    """Layers that own weights, from the output back to the input (cascade order).

    Nested models (a pretrained backbone inside a transfer-learning model) are walked through:
    their layers appear as paths ``"backbone/layer"``, in the order the data meets them; a
    layer of the outer model is its plain name.
    """
    return [path for path, layer in reversed(nested_layers(model)) if layer.weights]


def cascade_points(model: keras.Model, count: int) -> list[int]:
    """``count`` values of ``n_top_layers`` for a cascading randomisation, from the top layer to all.

    Each point ends at a layer with a kernel (convolution or dense), so that a convolution and the
    batch normalisation above it are randomised together; the points are spread evenly over those
    layers, the first randomising only the output layer, the last the whole model.
    """
    names = weighted_layers(model)
    kernel_points = [n for n, name in enumerate(names, start=1)
                     if any("kernel" in weight.path.split("/")[-1] for weight in find_layer(model, name).weights)]
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a whole number >= 1; got {count!r}.")
    if count >= len(kernel_points):
        return kernel_points
    chosen = np.linspace(0, len(kernel_points) - 1, count).round().astype(int)
    return [kernel_points[i] for i in chosen]


def randomize_layers(model: keras.Model, n_top_layers: int, seed: int = 0) -> keras.Model:
    """A copy of ``model`` whose top ``n_top_layers`` weighted layers are re-initialised.

    Layers are counted in :func:`weighted_layers` order (the output layer first; batch
    normalisation layers count, as they own weights; layers inside nested models count, named by
    their path). Re-initialised layers get fresh weights from their own initializers, seeded by
    ``seed`` so that a rerun draws the same ones; every other layer keeps a copy of the trained
    weights. ``model`` itself, nested backbones included, is never changed: the copy has copies of them.
    ``n_top_layers=0`` gives a plain copy; ``len(weighted_layers(model))`` randomises everything.
    """
    names = weighted_layers(model)
    _check_count(model, n_top_layers, len(names))
    copy = _copy(model)
    for index, name in enumerate(names[:n_top_layers]):
        find_layer(copy, name).set_weights(_fresh_weights(find_layer(model, name), seed * 1000 + index * 10))
    return copy


def cascade(model: keras.Model, points: list[int], seed: int = 0) -> Iterator[tuple[int, keras.Model]]:
    """Yield ``(n, randomised)`` for each ``n`` of ``points`` (increasing), randomising cumulatively.

    ``randomised`` has the same weights as ``randomize_layers(model, n, seed)``, but it is one
    working copy changed in place from step to step: use it before asking for the next step (do not
    keep it), and explainers that compile a function per model compile once for the whole cascade.
    A final ``Dense`` layer with a softmax is split into ``Dense`` + ``Activation("softmax")`` in
    the copy, so that a logits model cut from it shares, and follows, the re-initialised weights.
    ``model`` itself is never changed.
    """
    names = weighted_layers(model)
    points = list(points)
    for n in points:
        _check_count(model, n, len(names))
    if points != sorted(points):
        raise ValueError(f"points must be increasing (a cascade only adds random layers); got {points}.")
    working = _split_softmax(_copy(model))
    done = 0
    for n in points:
        for index in range(done, n):
            find_layer(working, names[index]).set_weights(
                _fresh_weights(find_layer(model, names[index]), seed * 1000 + index * 10))
        done = n
        yield n, working


def _check_count(model: keras.Model, n_top_layers, available: int) -> None:
    if not isinstance(n_top_layers, (int, np.integer)) or not 0 <= n_top_layers <= available:
        raise ValueError(f"n_top_layers must be a whole number from 0 to {available} (the layers of "
                         f"{model.name!r} that have weights); got {n_top_layers!r}.")


def _copy(model: keras.Model) -> keras.Model:
    if not isinstance(model, keras.Sequential) and not hasattr(model, "_operations"):
        raise TypeError("Sanity checks need a functional or Sequential Keras model; "
                        f"{type(model).__name__} cannot be cloned layer by layer.")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _fresh_weights(layer, seed: int) -> list[np.ndarray]:
    """Weights for ``layer`` drawn anew from its own initializers (seeded), as before training."""
    fresh = layer.__class__.from_config(_seeded(layer.get_config(), seed))
    fresh.build(layer.input.shape)
    return fresh.get_weights()


def _seeded(config: dict, seed: int) -> dict:
    """``config`` with a fixed seed in every random initializer (``*_initializer`` entries)."""
    config = dict(config)
    for offset, key in enumerate(sorted(config)):
        entry = config[key]
        if key.endswith("_initializer") and isinstance(entry, dict) and "seed" in entry.get("config", {}):
            config[key] = {**entry, "config": {**entry["config"], "seed": seed + offset}}
    return config


def _split_softmax(model: keras.Model) -> keras.Model:
    """``model`` with a final ``Dense(..., softmax)`` turned into ``Dense`` + ``Activation("softmax")``."""
    last = model.layers[-1]
    if not (isinstance(last, keras.layers.Dense) and getattr(last.activation, "__name__", "") == "softmax"):
        return model
    linear = keras.layers.Dense.from_config({**last.get_config(), "activation": "linear"})
    outputs = keras.layers.Activation("softmax", name=f"{last.name}_softmax")(linear(last.input))
    linear.set_weights(last.get_weights())
    return keras.Model(model.inputs, outputs, name=model.name)


# ----------------------------------------------------------------------------- data randomisation

def permuted_labels(labels, seed: int = 0) -> np.ndarray:
    """``labels`` in a random order (seeded): the same classes, in the same numbers, tied to no image.

    The data-randomisation test of Adebayo et al. trains a model on these: whatever it learns,
    it cannot be how the images relate to their labels.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) < 2:
        raise ValueError(f"labels must be a 1-D array of at least 2 class labels; got shape {labels.shape}.")
    return np.random.default_rng(seed).permutation(labels)


class _StopAtAccuracy(keras.callbacks.Callback):
    def __init__(self, target: float):
        super().__init__()
        self.target = target

    def on_epoch_end(self, epoch, logs=None):
        if (logs or {}).get("accuracy", 0.0) >= self.target:
            self.model.stop_training = True


def memorise(model: keras.Model, images, labels, *, target: float = 0.95, max_epochs: int = 60,
             batch_size: int = 128, learning_rate: float = 3e-3, verbose: int = 0) -> keras.callbacks.History:
    """Train ``model`` on ``(images, labels)`` until its training accuracy reaches ``target``.

    No validation split and no early stopping on a validation loss: the aim is to fit these very
    examples, as a network fits labels that carry no information by memorising each image
    (Zhang et al. 2017). Stops after ``max_epochs`` at the latest; ``len(history.history["loss"])``
    is the number of epochs and ``history.history["accuracy"][-1]`` the accuracy reached. The
    model is compiled here (Adam, sparse cross-entropy); ``images`` as :func:`coursekit.models.train`.
    """
    if not 0 < target <= 1:
        raise ValueError(f"target must be a training accuracy in (0, 1]; got {target!r}.")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, (int, np.integer)) or max_epochs < 1:
        raise ValueError(f"max_epochs must be a whole number >= 1; got {max_epochs!r}.")
    batch = image_batch(model, images)
    labels = np.asarray(labels)
    if len(batch) != len(labels):
        raise ValueError(f"{len(batch)} images but {len(labels)} labels: give one label per image.")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False)
    return model.fit(batch, labels, epochs=int(max_epochs), batch_size=batch_size, shuffle=True,
                     callbacks=[_StopAtAccuracy(target)], verbose=verbose)
