"""coursekit.batching: the memory a batch of images takes, estimated from the model, and the batch it picks.

The last two tests run a method at the batch the helper picks, in a fresh process, and measure the
memory the call adds (the kernel's peak resident memory, reset just before the call): on the smoke
model (MobileNetV2 at 224 px) and on Xception's shape (299 px, random weights), it stays under the
budget the batch was picked for, with the margin stated below.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from coursekit import batching

MB = 2 ** 20


def two_layer_cnn() -> keras.Model:
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)   # 10 x 10 x 8
    x = keras.layers.MaxPooling2D(2, name="pool")(x)                      # 5 x 5 x 8
    x = keras.layers.Flatten(name="flat")(x)                              # 200
    return keras.Model(inputs, keras.layers.Dense(4, name="out")(x))     # 4


def test_activation_bytes_add_up_every_layers_output():
    total, largest = batching.activation_bytes(two_layer_cnn())
    outputs = [10 * 10 * 3, 10 * 10 * 8, 5 * 5 * 8, 200, 4]   # the input image, then each layer
    assert total == 4 * sum(outputs)
    assert largest == 4 * 10 * 10 * 8


def test_a_nested_backbone_counts_its_own_layers():
    inputs = keras.Input((10, 10, 3))
    backbone = keras.Model(inputs, keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs), name="backbone")
    outer = keras.Sequential([keras.Input((10, 10, 3)), backbone, keras.layers.Flatten(), keras.layers.Dense(4)])
    total, _ = batching.activation_bytes(outer)
    assert total == 4 * (10 * 10 * 3 + 10 * 10 * 8 + 800 + 4)


def test_the_batch_follows_the_budget_and_stays_in_bounds():
    model = two_layer_cnn()
    per_image = batching.bytes_per_image(model, "gradient")
    assert per_image == int(batching.FACTORS["gradient"] * batching.activation_bytes(model)[0])
    budget_mb = 40 * per_image / MB
    assert batching.batch_size_for(model, "gradient", budget_mb=budget_mb) == 40
    assert batching.batch_size_for(model, "gradient", budget_mb=budget_mb / 2) == 20
    assert batching.batch_size_for(model, "gradient", budget_mb=1e-6) == 1          # never 0
    assert batching.batch_size_for(model, "gradient", budget_mb=1e6) == batching.MOST
    forward = batching.bytes_per_image(model, "forward")
    assert forward == int(batching.FACTORS["forward"] * batching.activation_bytes(model)[1])
    assert batching.batch_size_for(model, "forward", budget_mb=budget_mb) == int(budget_mb * MB // forward)


def test_xception_gets_a_few_images_and_a_digit_cnn_many():
    """The point of the helper: one fixed batch_size cannot suit both."""
    from coursekit.models import mnist_cnn
    xception = keras.applications.Xception(weights=None)
    assert 100 * MB < batching.bytes_per_image(xception, "gradient") < 300 * MB   # measured: 104 MB
    assert batching.batch_size_for(xception, "gradient", budget_mb=1024) in range(4, 11)
    assert batching.batch_size_for(xception, "eager gradient", budget_mb=1024) in range(1, 4)
    assert batching.batch_size_for(mnist_cnn(), "gradient", budget_mb=1024) == batching.MOST


def test_the_profile_sets_the_budget(monkeypatch):
    from coursekit.env import PROFILES
    model = two_layer_cnn()
    per_image = batching.bytes_per_image(model, "gradient")
    for name, profile in PROFILES.items():
        monkeypatch.setenv("COURSEKIT_PROFILE", name)
        expected = min(profile.batch_memory_mb * MB // per_image, batching.MOST)
        assert batching.batch_size_for(model, "gradient") == expected


def test_bad_arguments_are_named():
    model = two_layer_cnn()
    with pytest.raises(ValueError, match="work must be one of"):
        batching.batch_size_for(model, "backward")
    with pytest.raises(ValueError, match="budget_mb must be a positive number of megabytes; got 0"):
        batching.batch_size_for(model, budget_mb=0)


def test_methods_take_the_helpers_batch_and_a_given_one_overrides(monkeypatch):
    """batch_size=None asks the helper; the result is the same as with any explicit batch_size."""
    from coursekit import saliency
    model = two_layer_cnn()
    sizes = []
    real = batching.batch_size_for
    monkeypatch.setattr(batching, "batch_size_for", lambda *a, **k: sizes.append(real(*a, **k)) or sizes[-1])
    images = np.random.default_rng(0).normal(size=(5, 10, 10, 3)).astype("float32")
    auto = saliency.integrated_gradients(model, images, class_index=1, steps=6)
    assert sizes, "integrated_gradients did not ask coursekit.batching for its batch"
    sizes.clear()
    given = saliency.integrated_gradients(model, images, class_index=1, steps=6, batch_size=4)
    assert not sizes
    np.testing.assert_allclose(given, auto, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- measured in a fresh process

MEASURE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np, psutil
    import coursekit  # before Keras
    import keras
    from coursekit import batching, saliency
    name, budget_mb, steps_per_batch = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    keras.utils.set_random_seed(0)
    build = {"xception": keras.applications.Xception, "mobilenet_v2": keras.applications.MobileNetV2}[name]
    model = build(weights=None)
    image = np.random.default_rng(0).uniform(-1, 1, (1, *model.inputs[0].shape[1:])).astype("float32")
    picked = batching.batch_size_for(model, "gradient", budget_mb=budget_mb)
    saliency.integrated_gradients(model, image, class_index=0, steps=1, batch_size=picked)   # trace, warm up
    Path("/proc/self/clear_refs").write_text("5")          # reset the peak resident memory
    before = psutil.Process().memory_info().rss
    saliency.integrated_gradients(model, image, class_index=0, steps=steps_per_batch * picked, batch_size=picked)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            added = int(line.split()[1]) * 1024 - before
    print(json.dumps({"picked": picked, "added": added, "per_image": batching.bytes_per_image(model, "gradient")}))
""")

# A call may add the budget plus what a batch leaves behind on the host (its points and gradients,
# the totals): at most a quarter more. The helper must also use the budget, not waste it: a pick
# that needs under a fifth of it would be needlessly slow.
MARGIN = 1.25
FLOOR = 0.2


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures Linux's VmHWM")
@pytest.mark.parametrize("name, budget_mb", [("mobilenet_v2", 512), ("xception", 1024)])
def test_the_picked_batch_keeps_integrated_gradients_under_the_budget(name, budget_mb):
    """Integrated Gradients on 3 batches of path points, at the batch the helper picks for ``budget_mb``."""
    run = subprocess.run([sys.executable, "-c", MEASURE, name, str(budget_mb), "3"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    added_mb = result["added"] / MB
    assert added_mb <= MARGIN * budget_mb, (
        f"{name}: batch {result['picked']} added {added_mb:.0f} MB, over {MARGIN} x the {budget_mb} MB budget")
    assert added_mb >= FLOOR * budget_mb or result["picked"] == 1, (
        f"{name}: batch {result['picked']} added only {added_mb:.0f} MB of a {budget_mb} MB budget")
    # the bound is a real one: the old fixed batch of 32 would have passed it
    assert 32 * result["per_image"] / MB > MARGIN * budget_mb
    assert math.isfinite(added_mb)
