"""Score-CAM's memory and time on Xception, one image, for each profile's ``scorecam_max_n``.

    python bench/scorecam_memory.py [--channels 64 128 1024]

Score-CAM (tf-keras-vis) makes one masked copy of the image per channel and predicts them all,
so its memory grows with the number of channels: lesson 04 gives it one image at a time and at
most ``profile.scorecam_max_n`` channels. Each count runs in a fresh process (peak memory is a
high-water mark) on Xception with random weights (memory and time do not depend on them).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ONE_RUN = """
import os, resource, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import coursekit, keras, numpy as np
from coursekit import models
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.scores import CategoricalScore
model = keras.applications.Xception(weights=None)
explainer = Scorecam(models.pre_softmax(model), clone=False)
image = np.random.default_rng(0).uniform(-1, 1, (1, 299, 299, 3)).astype("float32")
explainer(CategoricalScore([0]), image, penultimate_layer="block14_sepconv2_act",
          seek_penultimate_conv_layer=False, max_N=4)                     # build and trace first
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
start = time.perf_counter()
explainer(CategoricalScore([0]), image, penultimate_layer="block14_sepconv2_act",
          seek_penultimate_conv_layer=False, max_N={channels})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(f"{{time.perf_counter() - start:.1f}} {{before:.2f}} {{peak:.2f}}")
"""


def main() -> int:
    from coursekit.env import PROFILES
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    by_profile = {p.scorecam_max_n: name for name, p in PROFILES.items() if p.imagenet_model == "xception"}
    parser.add_argument("--channels", type=int, nargs="+", default=sorted(by_profile))
    args = parser.parse_args()
    print("Score-CAM, Xception (random weights), block14_sepconv2_act (2,048 channels), one 299x299 image, CPU")
    for channels in args.channels:
        run = subprocess.run([sys.executable, "-c", ONE_RUN.format(channels=channels)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            print(f"  max_N {channels:>5}: failed ({run.stderr.strip().splitlines()[-1][:200]})")
            continue
        seconds, before, peak = (float(v) for v in run.stdout.split()[-3:])
        profile = f" (profile {by_profile[channels]})" if channels in by_profile else ""
        print(f"  max_N {channels:>5}{profile}: {seconds:5.1f} s, peak memory {peak:.2f} GB "
              f"({peak - before:+.2f} GB over the model alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
