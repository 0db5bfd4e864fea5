"""The Keras cache a profile needs, prepared where there is internet for a machine without it.

Keras downloads ImageNet weights and the class index on first use. A machine without internet
needs them in a folder that ``COURSEKIT_OFFLINE_CACHE`` points at (the course copies it into a
temporary ``KERAS_HOME`` on import). This module makes and checks that folder:

    python -m coursekit.tools.cache build keras-cache --profile smoke   # on a machine with internet
    python -m coursekit.tools.cache check keras-cache --profile smoke   # what is missing or damaged

``build`` fetches every file with Keras' own calls (the same ``keras.applications`` constructors
the lessons use, run with ``KERAS_HOME`` set to the folder), then verifies each file: its MD5
where the file is known, and, for every model, that it loads from the folder alone and names the
course's cat photo a cat. Copy the folder to the offline machine and run, for example,

    COURSEKIT_OFFLINE_CACHE=$PWD/keras-cache COURSEKIT_PROFILE=smoke make lessons

:func:`preflight` is what ``make lessons`` asks before it runs a lesson: ``None`` when the
profile's weights are here or downloadable, else the one message that says what to do.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import env

# The ImageNet models each profile's notebooks and tests load (both with and without their
# classifier): the profile's own model, and in smoke also MobileNet 0.25, the tests' fast model.
EXTRA_MODELS = {"smoke": ("mobilenet_025",)}
CLASS_INDEX_FILE = "imagenet_class_index.json"

# MD5 of the files as Keras publishes them: Xception's, VGG16's and the class index's are the
# hashes Keras' own get_file checks; Keras checks none for MobileNet's, so theirs are recorded here.
KNOWN_MD5 = {
    CLASS_INDEX_FILE: "c2c37ea517e94d9795004a39431a14cb",
    "xception_weights_tf_dim_ordering_tf_kernels.h5": "0a58e3b7378bc2990ea3b43d5981f1f6",
    "xception_weights_tf_dim_ordering_tf_kernels_notop.h5": "b0042744bf5b25fce3cb969f33bebb97",
    "vgg16_weights_tf_dim_ordering_tf_kernels.h5": "64373286793e3c8b2b4e3219cbf3544b",
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5": "6d6bbae143d832006294945121d1f1fc",
    "mobilenet_2_5_128_tf.h5": "dc5c323b428b90696bfe94f49b5fce33",
    "mobilenet_2_5_128_tf_no_top.h5": "0dcddc4abed454d724e0bee587fa49b9",
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5": "e73a96298e95a502d06c12aadd2c86e0",
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5": "44bd7f7e50aba0c1c46c1d5dbda05309",
}
DOWNLOAD_MB = {"mobilenet_v2": 24, "mobilenet_025": 3, "xception": 171, "vgg16": 611}  # both files, rounded
CAT_CLASSES = range(281, 286)   # ImageNet's tabby, tiger cat, Persian, Siamese and Egyptian cat


def models_for(profile_name: str) -> tuple[str, ...]:
    """The ImageNet models that profile ``profile_name`` loads: ``("mobilenet_v2", "mobilenet_025")`` for smoke."""
    return (env.profile(profile_name).imagenet_model, *EXTRA_MODELS.get(env.profile(profile_name).name, ()))


def needed_files(profile_name: str) -> list[str]:
    """The file names (in the cache's ``models/`` folder) that profile ``profile_name`` needs."""
    with env.native_stderr_hidden():   # TensorFlow's start-up lines, as in a notebook's setup cell
        from ..models import SPECS  # imports Keras: only here, not when the module is imported
    files = [name for model in models_for(profile_name) for name in SPECS[model].weight_files]
    return [*files, CLASS_INDEX_FILE]


def missing_files(folder: str | Path, profile_name: str) -> list[str]:
    """The files of :func:`needed_files` that ``folder/models/`` lacks."""
    return [name for name in needed_files(profile_name) if not (Path(folder) / "models" / name).is_file()]


def md5(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def damaged_files(folder: str | Path, profile_name: str) -> list[str]:
    """The files present in ``folder/models/`` whose MD5 is not the one Keras publishes."""
    models = Path(folder) / "models"
    return [name for name in needed_files(profile_name)
            if (models / name).is_file() and name in KNOWN_MD5 and md5(models / name) != KNOWN_MD5[name]]


# ----------------------------------------------------------------------------- what to tell a newcomer

def build_command(folder: str, profile_name: str) -> str:
    return f"python -m coursekit.tools.cache build {folder} --profile {profile_name}"


def advice(profile_name: str, missing: list[str], cache_folder: str | None) -> str:
    """The message for a machine without internet that lacks ``missing`` (files of the profile).

    Names the exact next step: build the cache on a machine with internet, copy it here, point
    ``COURSEKIT_OFFLINE_CACHE`` at it. It never suggests the profile the user already runs; for
    the large profiles it says that ``smoke`` needs a small download and runs every lesson on a CPU.
    """
    models = models_for(profile_name)
    where = (f"the folder {env.OFFLINE_CACHE_VARIABLE} points at ({cache_folder})" if cache_folder
             else f"the Keras cache of this machine ({env.keras_home()})")
    size = sum(DOWNLOAD_MB.get(model, 0) for model in models)
    lines = [
        f"The '{profile_name}' profile needs the ImageNet weights of {' and '.join(models)}, and this machine has "
        "no internet to download them.",
        f"Missing from {where}: {', '.join(missing)}.",
        "Next step: on a machine with internet, in a clone of this course, run",
        f"    make install && .venv/bin/{build_command('keras-cache', profile_name)}",
        f"(about {size} MB; it fetches with Keras' own calls and verifies every file), copy the folder keras-cache "
        f"to this machine{f' (over {cache_folder}, or anywhere)' if cache_folder else ''}, and run",
        f"    {env.OFFLINE_CACHE_VARIABLE}=<path to keras-cache> COURSEKIT_PROFILE={profile_name} make lessons",
    ]
    if profile_name != "smoke":
        lines.append(f"No GPU here? --profile smoke fetches about {DOWNLOAD_MB['mobilenet_v2'] + DOWNLOAD_MB['mobilenet_025']} "
                     "MB instead and runs every lesson in about a minute on a CPU "
                     "(then COURSEKIT_PROFILE=smoke in the command above).")
    return "\n".join(lines)


def preflight(profile_name: str) -> str | None:
    """``None`` when profile ``profile_name`` can load its weights here (cached, or online), else :func:`advice`.

    Reads the Keras cache the course uses in this process (``COURSEKIT_OFFLINE_CACHE``'s copy, or
    ``KERAS_HOME``, or ``~/.keras``). Asks the network only when something is missing.
    """
    if env.random_weights():
        return None           # random weights need only the class index, which the lessons' first call reports
    missing = missing_files(env.keras_home(), profile_name)
    if not missing or env.is_online():
        return None
    return advice(profile_name, missing, os.environ.get(env.OFFLINE_CACHE_VARIABLE, "").strip() or None)


# ----------------------------------------------------------------------------- build and verify

@dataclass
class Report:
    fetched: list[str]        # files Keras fetched now (were missing before)
    problems: list[str]       # one line per file or model that is missing, damaged or does not load

    @property
    def ok(self) -> bool:
        return not self.problems


# Run in a child process with KERAS_HOME=<folder> (Keras reads it once, when imported).
_FETCH = """
import json, sys
import keras, numpy as np
from coursekit.models import SPECS
failures = {}
for model in sys.argv[1:]:
    spec = SPECS[model]
    for include_top in (True, False):
        shape = (*spec.input_size, 3) if include_top or spec.fixed_size else None
        try:
            getattr(keras.applications, spec.constructor)(weights="imagenet", include_top=include_top,
                                                          input_shape=shape, **dict(spec.kwargs))
        except Exception as error:
            failures[spec.weight_files[0 if include_top else 1]] = str(error).splitlines()[0][:200]
try:
    keras.applications.imagenet_utils.decode_predictions(np.zeros((1, 1000)), top=1)
except Exception as error:
    failures["imagenet_class_index.json"] = str(error).splitlines()[0][:200]
print(json.dumps(failures))
"""

# Run in a child process offline, reading only the folder: every model loads and sees the cat.
_VERIFY = """
import json, sys
import numpy as np
from coursekit import models
problems = []
for model in sys.argv[1:]:
    try:
        net = models.pretrained(model)
        probabilities = net.model.predict(net.preprocess(net.load_image("cat")), verbose=0)
        if not set(np.argsort(-probabilities[0])[:5].tolist()) & set(range(281, 286)):
            problems.append(f"{model}: loads, but no cat class is among its top 5 for the cat photo (top: "
                            f"{net.decode(probabilities, top=1)[0][0][1]}): these are not its ImageNet weights")
        models.pretrained(model, include_top=False)
    except Exception as error:
        problems.append(f"{model}: does not load from the folder: {type(error).__name__}: {str(error)[:300]}")
print(json.dumps(problems))
"""


def _child(code: str, arguments: list[str], environment: dict[str, str]) -> object:
    result = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True,
                            env=environment, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"The helper process failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _environment(**variables: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("KERAS_HOME", env.OFFLINE_CACHE_VARIABLE, env.RANDOM_WEIGHTS_VARIABLE)}
    environment.update(TF_CPP_MIN_LOG_LEVEL="2", **variables)
    return environment


def verify(folder: str | Path, profile_name: str) -> list[str]:
    """Problems with ``folder`` as the profile's offline cache, one line each; ``[]`` when it is complete.

    Every needed file must be there with the MD5 Keras publishes, and every model must load from
    the folder alone (offline) and put a cat class among its top 5 for the course's cat photo.
    """
    folder = Path(folder).resolve()
    problems = [f"missing: models/{name}" for name in missing_files(folder, profile_name)]
    problems += [f"damaged: models/{name} (MD5 {md5(folder / 'models' / name)}, Keras publishes {KNOWN_MD5[name]})"
                 for name in damaged_files(folder, profile_name)]
    if problems:
        return problems
    return _child(_VERIFY, list(models_for(profile_name)),
                  _environment(**{env.OFFLINE_CACHE_VARIABLE: str(folder), env.FORCE_OFFLINE_VARIABLE: "1"}))


def build(folder: str | Path, profile_name: str) -> Report:
    """Fetch what profile ``profile_name`` needs into ``folder/models/`` with Keras' own calls, then :func:`verify`.

    Files already there with the right MD5 are kept; a damaged one is removed and fetched again.
    """
    folder = Path(folder).resolve()
    (folder / "models").mkdir(parents=True, exist_ok=True)
    for name in damaged_files(folder, profile_name):
        (folder / "models" / name).unlink()     # Keras would keep a file it has no hash for
    before = set(missing_files(folder, profile_name))
    failures = _child(_FETCH, list(models_for(profile_name)), _environment(KERAS_HOME=str(folder)))
    fetched = sorted(before - set(missing_files(folder, profile_name)))
    problems = [f"could not fetch models/{name}: {why}" for name, why in failures.items()]
    return Report(fetched, problems or verify(folder, profile_name))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.tools.cache", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "check"])
    parser.add_argument("folder", help="the cache folder (made if missing); later COURSEKIT_OFFLINE_CACHE points here")
    parser.add_argument("--profile", default="smoke", choices=sorted(env.PROFILES),
                        help="the profile whose models to fetch (default: smoke)")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if args.command == "build":
        print(f"Fetching the '{args.profile}' profile's ImageNet files ({', '.join(models_for(args.profile))}, "
              f"about {sum(DOWNLOAD_MB.get(m, 0) for m in models_for(args.profile))} MB) into {folder}/models ...",
              flush=True)
        report = build(folder, args.profile)
        problems = report.problems
        if report.fetched:
            print("fetched: " + ", ".join(report.fetched))
    else:
        if not folder.is_dir():
            print(f"{folder} is not a folder. Make it with: {build_command(str(folder), args.profile)}", file=sys.stderr)
            return 2
        problems = verify(folder, args.profile)
    if problems:
        print(f"The cache in {folder} is not ready for the '{args.profile}' profile:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        print("Run the build on a machine with internet (a damaged file is fetched again): "
              f"{build_command(str(folder), args.profile)}", file=sys.stderr)
        return 1
    print(f"Ready: {folder} holds every file the '{args.profile}' profile needs, each verified.\n"
          f"On the offline machine: {env.OFFLINE_CACHE_VARIABLE}={folder.resolve()} COURSEKIT_PROFILE={args.profile} "
          "make lessons")
    return 0


if __name__ == "__main__":
    sys.exit(main())
