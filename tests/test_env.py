import os
import subprocess
import sys

import pytest

from coursekit import env


def test_profile_reads_environment_variable(monkeypatch):
    monkeypatch.setenv("COURSEKIT_PROFILE", "smoke")
    assert env.profile().name == "smoke"
    assert env.profile().imagenet_model == "mobilenet_v2"
    monkeypatch.setenv("COURSEKIT_PROFILE", "FULL")
    assert env.profile().n_filters == 64 and env.profile().ascent_steps == 30


def test_profile_sizes_shrink_from_full_to_smoke():
    full, quick, smoke = (env.PROFILES[n] for n in ("full", "quick", "smoke"))
    for field in ("epochs", "n_filters", "ascent_steps", "smoothgrad_samples", "tsne_points"):
        assert getattr(full, field) >= getattr(quick, field) >= getattr(smoke, field), field
    assert full.pattern_size == 200 and not full.mnist_sample and smoke.mnist_sample


def test_unknown_profile_names_the_known_ones(monkeypatch):
    monkeypatch.setenv("COURSEKIT_PROFILE", "fast")
    with pytest.raises(ValueError, match="full, quick, smoke"):
        env.profile()


def test_default_profile_follows_gpu(monkeypatch):
    monkeypatch.delenv("COURSEKIT_PROFILE", raising=False)
    monkeypatch.setattr(env, "has_gpu", lambda: False)
    assert env.profile().name == "quick"
    monkeypatch.setattr(env, "has_gpu", lambda: True)
    assert env.profile().name == "full"


def test_forced_offline(monkeypatch):
    env.is_online.cache_clear()
    monkeypatch.setenv("COURSEKIT_OFFLINE", "1")
    try:
        assert env.is_online() is False
    finally:
        env.is_online.cache_clear()


def test_offline_cache_is_copied_into_a_writable_keras_home(tmp_path):
    cache = tmp_path / "cache" / "models"
    cache.mkdir(parents=True)
    (cache / "weights.h5").write_bytes(b"x")
    (cache / "weights.h5").chmod(0o444)
    code = ("import os, coursekit, keras.src.backend.config as c, pathlib;"
            "home = pathlib.Path(os.environ['KERAS_HOME']);"
            "print(home != pathlib.Path(%r), (home/'models'/'weights.h5').exists(),"
            " os.access(home/'models'/'weights.h5', os.W_OK), c.keras_home() == str(home))") % str(tmp_path / "cache")
    environment = {k: v for k, v in os.environ.items() if k != "KERAS_HOME"}
    environment["COURSEKIT_OFFLINE_CACHE"] = str(tmp_path / "cache")
    out = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "True", "True", "True"], out.stderr[-2000:]


def test_offline_cache_that_does_not_exist_says_so(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("COURSEKIT_OFFLINE_CACHE", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        env.use_offline_cache()


def test_seed_everything_repeats_draws():
    import keras
    import numpy as np
    env.seed_everything(3)
    first = (np.random.rand(), float(keras.random.uniform(())))
    env.seed_everything(3)
    assert (np.random.rand(), float(keras.random.uniform(()))) == first


def test_unique_path_never_overwrites(tmp_path):
    target = tmp_path / "pattern.png"
    assert env.unique_path(target) == target
    target.write_text("student's file")
    second = env.unique_path(target)
    assert second == tmp_path / "pattern_1.png" and target.read_text() == "student's file"


def test_output_dir_is_created(tmp_path):
    path = env.output_dir("lesson02", root=tmp_path / "outputs")
    assert path.is_dir()


def test_old_versions_are_refused():
    with pytest.raises(RuntimeError, match="tensorflow 2.12.0 is too old"):
        env.check_versions({"tensorflow": "2.12.0", "keras": "3.1.0"})
    env.check_versions({"tensorflow": "2.21.0", "keras": "3.15.1"})


def test_every_profile_bounds_score_cam_to_fit_colab_memory():
    # Score-CAM keeps one masked copy of the image per channel: 1,024 of Xception's 2,048 channels
    # took 6 GB more for a single photo (bench/scorecam_memory.py), all of them killed the kernel
    # of lesson 04 on a 24 GB machine, and Colab has about 12 GB.
    for profile in env.PROFILES.values():
        assert 0 < profile.scorecam_max_n <= 128, profile.name


def test_setup_hides_tensorflows_start_up_lines(tmp_path):
    """TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL; setup() keeps them off the notebook."""
    code = "import coursekit; coursekit.setup(profile_name='smoke')"
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "profile 'smoke'" in quiet.stdout
    assert "absl" not in quiet.stderr and "I0000" not in quiet.stderr, quiet.stderr


def test_native_stderr_is_hidden_only_inside_the_block_and_never_when_asked():
    code = ("import os, coursekit.env as e\n"
            "with e.native_stderr_hidden():\n    os.write(2, b'inside\\n')\n"
            "os.write(2, b'after\\n')\n"
            "try:\n    with e.native_stderr_hidden():\n        raise ValueError('still raised')\n"
            "except ValueError as error:\n    print(error)\n")
    for level, shown in (("2", "after\n"), ("0", "inside\nafter\n")):
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": level}
        out = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
        assert out.stderr == shown and out.stdout == "still raised\n", (level, out.stderr)


def test_importing_coursekit_with_the_offline_cache_leaves_no_folder_behind(tmp_path):
    """Ten fresh processes, each copying the cache into a KERAS_HOME of its own, leave nothing."""
    source = tmp_path / "cache" / "models"
    source.mkdir(parents=True)
    (source / "weights.h5").write_bytes(b"\0" * 1000)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environ = {k: v for k, v in os.environ.items() if k != "KERAS_HOME"}
    environ.update(COURSEKIT_OFFLINE_CACHE=str(tmp_path / "cache"), TMPDIR=str(scratch))
    code = ("import os, coursekit; home = os.environ['KERAS_HOME']; "
            "assert os.path.exists(os.path.join(home, 'models', 'weights.h5')); print(home)")
    homes = []
    for _ in range(10):
        out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        homes.append(out.stdout.strip())
    assert len(set(homes)) == 10 and all(home.startswith(str(scratch)) for home in homes)
    assert list(scratch.iterdir()) == []


def test_a_killed_process_keras_home_is_removed_by_the_next_import(tmp_path):
    (tmp_path / "cache" / "models").mkdir(parents=True)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environ = {k: v for k, v in os.environ.items() if k != "KERAS_HOME"}
    environ.update(COURSEKIT_OFFLINE_CACHE=str(tmp_path / "cache"), TMPDIR=str(scratch))
    killed = subprocess.run([sys.executable, "-c", "import os, coursekit; os._exit(0)"], env=environ, timeout=120)
    assert killed.returncode == 0 and len(list(scratch.iterdir())) == 1   # os._exit skips the clean-up
    subprocess.run([sys.executable, "-c", "import coursekit"], env=environ, timeout=120, check=True)
    assert list(scratch.iterdir()) == []
