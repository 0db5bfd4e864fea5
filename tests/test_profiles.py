"""The quick and full profiles' code paths (Xception, its layers and sizes) run here too.

Students on Colab run the `full` profile, and a laptop the `quick` one, but their ImageNet weights
cannot be downloaded on an offline machine. With COURSEKIT_RANDOM_WEIGHTS=1 the same models are
built with random weights: the pictures mean nothing, but a layer name, a size or a shape that
only those profiles use would still break the lesson here, before it breaks on Colab. The quick
profile differs from full only in sizes; `python bench/notebook_times.py --profiles quick full
--random-weights` runs every lesson (lesson 07 alone takes about 2.5 minutes on 2 cores).
"""
from pathlib import Path

import pytest

from coursekit import env, models
from coursekit.tools.gallery import execute

ROOT = Path(__file__).resolve().parents[1]
# Lessons 01 and 04 name Xception's layers (feature maps, the last convolution, Grad-CAM's layers);
# lessons 02 and 03 at the quick sizes took 10.5 of these tests' 12.7 minutes on 2 idle cores, and
# what they use of Xception (pattern layers, input size) is checked by the test above. They run at
# the quick and full sizes with `python bench/notebook_times.py --profiles quick full --random-weights`.
XCEPTION_LESSONS = ["01_inside_a_cnn", "04_grad_cam"]


def test_random_weights_build_the_real_architecture_and_say_so(random_weights, monkeypatch, capsys):
    monkeypatch.setattr(env, "is_online", lambda: False)   # no Xception weights anywhere
    net = models.pretrained("xception")
    assert "RANDOM weights" in capsys.readouterr().err
    assert net.input_size == (299, 299) and net.model.get_layer(net.last_conv_layer).output.shape[1:3] == (10, 10)
    for name in (*net.feature_layers, *net.pattern_layers):
        assert len(models.require_spatial(net.model, name).output.shape) == 4


@pytest.mark.parametrize("lesson", XCEPTION_LESSONS)
def test_lesson_runs_in_the_quick_profile(lesson, random_weights, monkeypatch, tmp_path):
    monkeypatch.setenv(env.PROFILE_VARIABLE, "quick")
    result = execute(ROOT / "notebooks" / f"{lesson}.ipynb", tmp_path, progress=False)
    assert result.ok, f"{lesson} fails in the quick profile: {result.error}"
    printed = "".join(output.get("text", "") for cell in result.notebook.cells
                      for output in cell.get("outputs", []))
    assert "profile 'quick': xception" in printed    # it did run the Xception code, not smoke's
