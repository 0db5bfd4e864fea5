"""Where the course runs: Colab or not, GPU or not, online or not, and the profile's sizes.

Importing this module is cheap (no TensorFlow). ``coursekit`` imports it first so that an
offline Keras cache (``COURSEKIT_OFFLINE_CACHE``) is in place before Keras is imported.
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import random
import shutil
import socket
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

PROFILE_VARIABLE = "COURSEKIT_PROFILE"
OFFLINE_CACHE_VARIABLE = "COURSEKIT_OFFLINE_CACHE"
FORCE_OFFLINE_VARIABLE = "COURSEKIT_OFFLINE"
RANDOM_WEIGHTS_VARIABLE = "COURSEKIT_RANDOM_WEIGHTS"
TEXTURE_SHAPE_VARIABLE = "COURSEKIT_TEXTURE_SHAPE_DIR"  # a ready folder of the texture-vs-shape stimuli (lesson 09)


@dataclasses.dataclass(frozen=True)
class Profile:
    """Every size a notebook needs. A notebook reads these; it never hard-codes them."""

    name: str
    imagenet_model: str          # "xception" | "vgg16" | "mobilenet_v2" | "mobilenet_025"
    mnist_sample: bool           # True: the 5,000 bundled real digits instead of all of MNIST
    epochs: int                  # upper bound; training stops early when validation stalls
    batch_size: int
    n_filters: int               # filters per layer for gradient-ascent patterns
    ascent_steps: int
    pattern_size: int            # side of a gradient-ascent image, pixels
    smoothgrad_samples: int
    tsne_points: int
    top_k: int                   # images shown per unit
    n_units: int                 # units shown in "what excites a unit"
    curve_steps: int             # points on a deletion / insertion curve
    scorecam_max_n: int          # Score-CAM channels per image; memory grows with them (1,024 of
                                 # Xception's 2,048: +6 GB for one image, bench/scorecam_memory.py)
    explain_images: int          # images used in sanity checks and faithfulness metrics
    units_dataset: str = "mnist"  # lesson 06: "cifar10" (online; falls back to "mnist") | "mnist"
    cascade_steps: int = 4        # lesson 07: points of the cascading randomisation
    sanity_model: str = "xception"  # lesson 07: the ImageNet model it explains and randomises (it
                                    # compiles explanations for four models; smoke: the fastest one)
    fourier_steps: int = 128      # lesson 02: Adam steps of Fourier-parameterised patterns
    class_patterns: int = 4       # lesson 02: classes whose class-model images are shown
    dream_octaves: int = 3        # lesson 02: DeepDream scales
    dream_steps: int = 20         # lesson 02: DeepDream ascent steps per scale
    finetune_dataset: str = "horse2zebra"  # lesson 08: "horse2zebra" (online; falls back) | "pasted"
    finetune_per_class: int = 400  # lesson 08: training photos per class
    finetune_epochs: int = 8       # lesson 08: most epochs per training stage (early stopping)
    finetune_top_layers: int = 12  # lesson 08: backbone layers opened in the second stage
    ig_steps: int = 50            # lessons 03, 07: points on Integrated Gradients' path
    memorise_digits: int = 384    # lesson 07: digits a CNN memorises with permuted labels
    memorise_epochs: int = 60     # lesson 07: upper bound on the epochs it may take
    batch_memory_mb: int = 1024   # memory one batch of an explanation method may take: the methods'
                                  # default batch_size follows from it (coursekit.batching)
    cue_conflict_images: int = 1280  # lesson 09: cue-conflict images measured (1,280 online in all)
    shape_only_per_category: int = 10  # lesson 09: silhouettes and edge drawings per category (10 exist)
    shuffle_images: int = 320     # lesson 09: cue-conflict images shuffled at each grid size
    concept_set_size: int = 50    # lesson 10: images per concept, class and random set (ImageNet model)
    concept_runs: int = 20        # lesson 10: TCAV runs = random sets less one (ImageNet model)
    digit_concept_set_size: int = 50  # lesson 10: digits per concept, class and random set (decoy test)
    digit_concept_runs: int = 30  # lesson 10: TCAV runs of the decoy test

    def describe(self) -> str:
        return (f"profile '{self.name}': {self.imagenet_model}, "
                f"{'5,000-digit MNIST sample' if self.mnist_sample else 'all of MNIST'}, "
                f"up to {self.epochs} epochs, {self.n_filters} filters x {self.ascent_steps} steps "
                f"at {self.pattern_size} px")


PROFILES: dict[str, Profile] = {
    "full": Profile("full", imagenet_model="xception", mnist_sample=False, epochs=20,
                    batch_size=128, n_filters=64, ascent_steps=30, pattern_size=200,
                    smoothgrad_samples=20, tsne_points=2000, top_k=9, n_units=6,
                    curve_steps=50, scorecam_max_n=128, explain_images=16, units_dataset="cifar10",
                    cascade_steps=12, fourier_steps=256, class_patterns=6, dream_octaves=4, dream_steps=40,
                    ig_steps=64, memorise_digits=2000, memorise_epochs=150,
                    concept_set_size=50, concept_runs=20, digit_concept_set_size=50, digit_concept_runs=30,
                    batch_memory_mb=2048),
    "quick": Profile("quick", imagenet_model="xception", mnist_sample=False, epochs=4,
                     batch_size=128, n_filters=16, ascent_steps=20, pattern_size=150,
                     smoothgrad_samples=8, tsne_points=1000, top_k=9, n_units=4,
                     curve_steps=8, scorecam_max_n=64, explain_images=4, units_dataset="mnist",
                     cascade_steps=4, fourier_steps=32, class_patterns=2, dream_octaves=3, dream_steps=10,
                     finetune_per_class=60, finetune_epochs=4, finetune_top_layers=4,
                     ig_steps=32, memorise_digits=512, memorise_epochs=80,
                     cue_conflict_images=320, shape_only_per_category=5, shuffle_images=96,
                     concept_set_size=30, concept_runs=10, digit_concept_set_size=50, digit_concept_runs=20,
                     batch_memory_mb=1024),
    "smoke": Profile("smoke", imagenet_model="mobilenet_v2", mnist_sample=True, epochs=2,
                     batch_size=64, n_filters=4, ascent_steps=8, pattern_size=128,
                     smoothgrad_samples=6, tsne_points=300, top_k=6, n_units=3,
                     curve_steps=8, scorecam_max_n=16, explain_images=2, units_dataset="mnist",
                     cascade_steps=2, sanity_model="mobilenet_025",
                     fourier_steps=24, class_patterns=2, dream_octaves=3, dream_steps=8,
                     finetune_dataset="pasted", finetune_per_class=10, finetune_epochs=2, finetune_top_layers=2,
                     ig_steps=16, memorise_digits=384, memorise_epochs=60,
                     cue_conflict_images=160, shape_only_per_category=3, shuffle_images=48,
                     concept_set_size=12, concept_runs=5, digit_concept_set_size=30, digit_concept_runs=10,
                     batch_memory_mb=512),
}


def profile(name: str | None = None) -> Profile:
    """The sizes for ``name``, else ``$COURSEKIT_PROFILE``, else ``full`` with a GPU, ``quick`` without."""
    chosen = name or os.environ.get(PROFILE_VARIABLE, "").strip()
    if not chosen:
        chosen = "full" if has_gpu() else "quick"
    key = chosen.lower()
    if key not in PROFILES:
        raise ValueError(
            f"Unknown profile {chosen!r}. Choose one of {', '.join(PROFILES)} "
            f"(set {PROFILE_VARIABLE}=smoke for the fastest run).")
    return PROFILES[key]


def in_colab() -> bool:
    return "google.colab" in sys.modules


@lru_cache(maxsize=1)
def has_gpu() -> bool:
    """True when TensorFlow sees a GPU. Imports TensorFlow on first call."""
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU"))


@lru_cache(maxsize=1)
def is_online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    """True when the host Keras downloads from answers; ``COURSEKIT_OFFLINE=1`` forces False."""
    if os.environ.get(FORCE_OFFLINE_VARIABLE, "") not in ("", "0"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def random_weights() -> bool:
    """True when ``COURSEKIT_RANDOM_WEIGHTS=1``: pretrained models get random weights instead.

    For maintainers only: it runs the quick and full profiles' code (Xception, its layer names
    and sizes) where their ImageNet weights cannot be had. Predictions and pictures mean nothing.
    """
    return os.environ.get(RANDOM_WEIGHTS_VARIABLE, "") not in ("", "0")


def use_offline_cache() -> Path | None:
    """Copy ``$COURSEKIT_OFFLINE_CACHE`` into a temporary, writable ``KERAS_HOME``.

    Does nothing when the variable is unset or ``KERAS_HOME`` is already set (a kernel started by
    a process that made one uses its parent's). Must run before Keras is imported (Keras reads
    ``KERAS_HOME`` once, at import); ``coursekit`` does this on import. The folder is removed
    when the process exits; one left by a process that was killed is removed by the next import
    that finds its owner gone. (A copy, not links: code in a notebook can then never write into
    the shared cache.) Returns the ``KERAS_HOME`` it made, or None.
    """
    source = os.environ.get(OFFLINE_CACHE_VARIABLE, "").strip()
    if not source or os.environ.get("KERAS_HOME"):
        return None
    source_path = Path(source).expanduser()
    if not source_path.is_dir():
        raise FileNotFoundError(
            f"{OFFLINE_CACHE_VARIABLE} points at {source!r}, which is not a folder. "
            "Point it at a Keras cache folder (one holding models/), or unset it.")
    _remove_orphaned_keras_homes()
    keras_home = Path(tempfile.mkdtemp(prefix=f"{_KERAS_HOME_PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, keras_home, ignore_errors=True)
    shutil.copytree(source_path, keras_home, dirs_exist_ok=True)
    for path in [keras_home, *keras_home.rglob("*")]:  # the source may be read-only; Keras writes here
        path.chmod(path.stat().st_mode | 0o200)
    os.environ["KERAS_HOME"] = str(keras_home)
    if "keras" in sys.modules:
        sys.stderr.write("coursekit: Keras was imported before coursekit; the offline cache is "
                         "used only from the next kernel start. Import coursekit first.\n")
    return keras_home


_KERAS_HOME_PREFIX = "coursekit-keras-"


def _remove_orphaned_keras_homes() -> None:
    """Remove temporary Keras folders whose process (the number in their name) no longer runs."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_KERAS_HOME_PREFIX}*-*"):
        owner = folder.name[len(_KERAS_HOME_PREFIX):].split("-", 1)[0]
        if owner.isdigit() and not _process_exists(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def keras_home() -> Path:
    """The folder Keras caches weights and data sets in."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, numpy and TensorFlow/Keras so that a rerun draws the same numbers."""
    random.seed(seed)
    import numpy as np
    np.random.seed(seed)
    import keras
    keras.utils.set_random_seed(seed)


def output_dir(name: str, root: str | os.PathLike = "outputs") -> Path:
    """A folder for a notebook's files (``outputs/<name>``), created if missing."""
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def unique_path(path: str | os.PathLike) -> Path:
    """``path`` if free, else ``stem_1.suffix``, ``stem_2.suffix``...: never overwrite a file."""
    path = Path(path)
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1
    return candidate


def versions() -> dict[str, str]:
    import keras
    import numpy as np
    import tensorflow as tf

    from . import __version__
    return {"python": sys.version.split()[0], "coursekit": __version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


MINIMUM_VERSIONS = {"tensorflow": (2, 16), "keras": (3, 0)}


def check_versions(found: dict[str, str] | None = None) -> None:
    """Raise if TensorFlow or Keras is older than the course needs (Keras 3 APIs are used)."""
    found = found or versions()
    for package, minimum in MINIMUM_VERSIONS.items():
        parts = tuple(int(p) for p in found[package].split(".")[:2] if p.isdigit())
        if parts < minimum:
            raise RuntimeError(
                f"{package} {found[package]} is too old: the course needs {package} >= "
                f"{'.'.join(map(str, minimum))}. On Colab, use a fresh runtime; locally, run "
                "`make test` or `pip install -r requirements.txt`.")


@contextlib.contextmanager
def native_stderr_hidden():
    """Hide what compiled libraries write to file descriptor 2 inside the ``with`` block.

    TensorFlow prints start-up lines ("oneDNN custom operations are on", "Could not find cuda
    drivers", "failed call to cuInit") from C++ before its logging honours TF_CPP_MIN_LOG_LEVEL,
    and Jupyter shows them as a red block under a notebook's first cell. Python exceptions still
    raise. Nothing is hidden when ``TF_CPP_MIN_LOG_LEVEL=0`` is set.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() in ("", "0"):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 to redirect
        yield
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def setup(seed: int = 0, profile_name: str | None = None) -> Profile:
    """What a notebook's first cell calls: check versions, seed, print where we run; returns the profile."""
    with native_stderr_hidden():  # TensorFlow's first import and device query
        found = versions()
        has_gpu()
    check_versions(found)
    seed_everything(seed)
    chosen = profile(profile_name)
    where = "Colab" if in_colab() else "local"
    gpu = "GPU" if has_gpu() else "no GPU (CPU only)"
    cache = " | offline Keras cache" if os.environ.get(OFFLINE_CACHE_VARIABLE) else ""
    print(" | ".join(f"{k} {v}" for k, v in found.items()))
    print(f"{where} | {gpu}{cache} | {chosen.describe()}")
    return chosen
