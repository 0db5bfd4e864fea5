"""coursekit.tools.cache: the Keras cache an offline machine needs, built with Keras' own calls.

This machine has no internet, so the "download" is simulated the way Keras itself sees it: a
folder already holding a file is where Keras' get_file finds it (the build then fetches nothing
and verifies everything); a file that is missing or damaged sends Keras to the internet, which
fails here, and the build says so, naming the file.
"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import unavailable
from coursekit import env
from coursekit.tools import cache

OFFLINE_CACHE = os.environ.get(env.OFFLINE_CACHE_VARIABLE, "")
SMOKE_FILES = {"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
               "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
               "mobilenet_2_5_128_tf.h5", "mobilenet_2_5_128_tf_no_top.h5", "imagenet_class_index.json"}


@pytest.fixture
def filled(tmp_path):
    """A cache folder holding the smoke profile's files, as Keras would have downloaded them."""
    if not OFFLINE_CACHE:
        unavailable("an offline Keras cache", f"{env.OFFLINE_CACHE_VARIABLE} (set in CI) stands for Keras' downloads")
    folder = tmp_path / "keras-cache"
    shutil.copytree(OFFLINE_CACHE, folder)
    for path in folder.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    return folder


def test_each_profile_needs_its_models_files_and_the_class_index():
    assert set(cache.needed_files("smoke")) == SMOKE_FILES
    assert set(cache.needed_files("quick")) == {"xception_weights_tf_dim_ordering_tf_kernels.h5",
                                                 "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                                 "imagenet_class_index.json"}
    assert set(cache.needed_files("full")) >= set(cache.needed_files("quick"))
    assert all(name in cache.KNOWN_MD5 for profile in env.PROFILES for name in cache.needed_files(profile))


def test_build_keeps_what_keras_finds_and_verifies_every_file_and_model(filled):
    report = cache.build(filled, "smoke")
    assert report.ok, report.problems
    assert report.fetched == []                                     # nothing was missing
    assert {path.name for path in (filled / "models").iterdir()} >= SMOKE_FILES   # report.ok: verified, too


def test_a_damaged_file_is_fetched_again_and_without_internet_the_build_says_which(filled):
    damaged = filled / "models" / "mobilenet_2_5_128_tf.h5"
    damaged.write_bytes(damaged.read_bytes()[:1000])               # an interrupted download
    assert cache.damaged_files(filled, "smoke") == ["mobilenet_2_5_128_tf.h5"]
    assert cache.verify(filled, "smoke") == [
        f"damaged: models/mobilenet_2_5_128_tf.h5 (MD5 {cache.md5(damaged)}, Keras publishes "
        f"{cache.KNOWN_MD5['mobilenet_2_5_128_tf.h5']})"]
    report = cache.build(filled, "smoke")                          # Keras goes to the internet: none here
    assert not report.ok and len(report.problems) == 1
    assert report.problems[0].startswith("could not fetch models/mobilenet_2_5_128_tf.h5: ")
    assert "storage.googleapis.com" in report.problems[0]          # it was Keras' own download that failed
    assert not damaged.exists()                                    # never left looking like a good file


def test_check_names_what_is_missing_and_the_command_that_fixes_it(tmp_path):
    folder = tmp_path / "half"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "imagenet_class_index.json").write_text("{}")
    result = subprocess.run([sys.executable, "-m", "coursekit.tools.cache", "check", str(folder), "--profile", "smoke"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "missing: models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5" in result.stderr
    assert "damaged: models/imagenet_class_index.json" in result.stderr
    assert f"python -m coursekit.tools.cache build {folder} --profile smoke" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_advice_never_suggests_the_profile_already_in_use():
    smoke = cache.advice("smoke", ["a.h5"], None)
    quick = cache.advice("quick", ["b.h5"], "/somewhere/keras")
    assert "build keras-cache --profile smoke" in smoke and "--profile smoke fetches" not in smoke
    assert "build keras-cache --profile quick" in quick and "--profile smoke fetches" in quick
    assert "Missing from the folder COURSEKIT_OFFLINE_CACHE points at (/somewhere/keras): b.h5" in quick
