"""Sanity checks for explanations (Adebayo et al. 2018): does a map change when the model does?

Model-parameter randomisation: re-initialise a trained model's layers from the top down and
compare explanations before and after. A method whose maps barely change once the weights are
random explains the image (edges, contrast), not the model.
"""
from __future__ import annotations

import keras
import numpy as np

from .models import get_layer


def weighted_layers(model: keras.Model) -> list[str]:
    """Names of the layers that own weights, from the output back to the input (cascade order)."""
    return [layer.name for layer in reversed(model.layers) if layer.weights]


def cascade_points(model: keras.Model, count: int) -> list[int]:
    """``count`` values of ``n_top_layers`` for a cascading randomisation, from the top layer to all.

    Each point ends at a layer with a kernel (convolution or dense), so that a convolution and the
    batch normalisation above it are randomised together; the points are spread evenly over those
    layers, the first randomising only the output layer, the last the whole model.
    """
    names = weighted_layers(model)
    kernel_points = [n for n, name in enumerate(names, start=1)
                     if any("kernel" in weight.path.split("/")[-1] for weight in get_layer(model, name).weights)]
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a whole number >= 1; got {count!r}.")
    if count >= len(kernel_points):
        return kernel_points
    chosen = np.linspace(0, len(kernel_points) - 1, count).round().astype(int)
    return [kernel_points[i] for i in chosen]


def randomize_layers(model: keras.Model, n_top_layers: int, seed: int = 0) -> keras.Model:
    """A copy of ``model`` whose top ``n_top_layers`` weighted layers are re-initialised.

    Layers are counted in :func:`weighted_layers` order (the output layer first; batch
    normalisation layers count, as they own weights). Re-initialised layers get fresh weights from
    their own initializers, seeded by ``seed`` so that a rerun draws the same ones; every other
    layer keeps a copy of the trained weights. ``model`` itself is never changed.
    ``n_top_layers=0`` gives a plain copy; ``len(weighted_layers(model))`` randomises everything.
    """
    names = weighted_layers(model)
    if not isinstance(n_top_layers, int) or not 0 <= n_top_layers <= len(names):
        raise ValueError(f"n_top_layers must be a whole number from 0 to {len(names)} (the layers of "
                         f"{model.name!r} that have weights); got {n_top_layers!r}.")
    if not isinstance(model, keras.Sequential) and not hasattr(model, "_operations"):
        raise TypeError("randomize_layers needs a functional or Sequential Keras model; "
                        f"{type(model).__name__} cannot be cloned layer by layer.")
    chosen = set(names[:n_top_layers])

    def clone(layer):
        config = layer.get_config()
        if layer.name in chosen:
            config = _seeded(config, seed * 1000 + names.index(layer.name) * 10)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for name in names[n_top_layers:]:
        get_layer(copy, name).set_weights(get_layer(model, name).get_weights())
    return copy


def _seeded(config: dict, seed: int) -> dict:
    """``config`` with a fixed seed in every random initializer (``*_initializer`` entries)."""
    config = dict(config)
    for offset, key in enumerate(sorted(config)):
        entry = config[key]
        if key.endswith("_initializer") and isinstance(entry, dict) and "seed" in entry.get("config", {}):
            config[key] = {**entry, "config": {**entry["config"], "seed": seed + offset}}
    return config
