"""Sanity checks for explanations (Adebayo et al. 2018): does a map change when the model does?

Model-parameter randomisation: re-initialise a trained model's layers from the top down and
compare explanations before and after. A method whose maps barely change once the weights are
random explains the image (edges, contrast), not the model.

* :func:`randomize_layers`: a copy with the top ``n`` weighted layers re-initialised.
* :func:`cascade`: the whole cascade on *one* working copy changed in place, so that explainers
  that build and compile a gradient function per model do it once instead of once per step.
"""
from __future__ import annotations

from typing import Iterator

import keras
import numpy as np

from ._inputs import find_layer
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
