"""Shared fixtures. Pretrained weights: skip with a reason when none can be had, fail instead
when COURSEKIT_REQUIRE_PRETRAINED=1 (as in CI)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import coursekit  # noqa: F401  (puts the offline Keras cache in place before Keras is imported)
from coursekit import models

REQUIRE_PRETRAINED = os.environ.get("COURSEKIT_REQUIRE_PRETRAINED", "") not in ("", "0")


def unavailable(what: str, why: str):
    """Skip the test for want of ``what``; fail it instead under COURSEKIT_REQUIRE_PRETRAINED=1."""
    if REQUIRE_PRETRAINED:
        pytest.fail(f"COURSEKIT_REQUIRE_PRETRAINED=1 but {what} is unavailable: {why}")
    pytest.skip(f"no {what} here: {why}")


def load_pretrained(name: str, include_top: bool = True) -> models.Pretrained:
    try:
        return models.pretrained(name, include_top=include_top)
    except models.WeightsUnavailableError as error:
        unavailable(f"pretrained {name}", str(error))


@pytest.fixture
def random_weights(monkeypatch):
    """COURSEKIT_RANDOM_WEIGHTS=1 for this test and the kernels it starts (decode needs the class index)."""
    from coursekit import env
    if not ((env.keras_home() / "models" / models.CLASS_INDEX_FILE).exists() or env.is_online()):
        unavailable("ImageNet class index", "neither cached nor downloadable")
    monkeypatch.setenv(env.RANDOM_WEIGHTS_VARIABLE, "1")
    models._load.cache_clear()
    yield
    models._load.cache_clear()


@pytest.fixture(scope="session")
def mobilenet() -> models.Pretrained:
    """The small real ImageNet model (MobileNet 0.25 at 128 px), with its classifier."""
    return load_pretrained("mobilenet_025")


@pytest.fixture(scope="session")
def mobilenet_v2() -> models.Pretrained:
    """The smoke profile's real ImageNet model (MobileNetV2, alpha 1.0, 224 px), with its classifier."""
    return load_pretrained("mobilenet_v2")


@pytest.fixture(scope="session")
def mobilenet_v2_features() -> models.Pretrained:
    """MobileNetV2 without its classifier (``include_top=False``): takes any image size."""
    return load_pretrained("mobilenet_v2", include_top=False)


@pytest.fixture(scope="session")
def profile_model() -> models.Pretrained:
    """The profile's ImageNet model: mobilenet_v2 in smoke, Xception in quick and full."""
    from coursekit.env import profile
    return load_pretrained(profile().imagenet_model)


@pytest.fixture(scope="session")
def cat_batch(mobilenet) -> np.ndarray:
    """scikit-image's cat, preprocessed for MobileNet: (1, 128, 128, 3)."""
    return mobilenet.preprocess(mobilenet.load_image("cat"))


@pytest.fixture(scope="session")
def digits():
    """The 5,000-digit offline MNIST sample: (x_train, y_train), (x_test, y_test)."""
    from coursekit.data import mnist_sample
    return mnist_sample()
