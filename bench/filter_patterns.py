"""Gradient ascent on filters: the filters of a call in batches (coursekit.filters.filter_patterns)
vs one filter per call, side by side in one process, on Xception without its classifier (random
weights: speed does not depend on them, and they need no download).

    python bench/filter_patterns.py [--filters 16] [--steps 5] [--size 200] [--layer block4_sepconv1]

Three ways: all filters in one batch (``batch_size=filters``), filter_patterns' default (one
batch on a GPU, ``CPU_BATCH`` filters per batch on a CPU), and one filter per call. All run the
same compiled step (traced before timing) and give the same images; the script checks that, then
prints seconds per filter and the ratios. Rounds alternate the ways so that a busy machine slows
them alike; the median round is reported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import coursekit  # noqa: E402,F401  (before Keras)
from coursekit import filters  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--layer", default="block4_sepconv1")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = keras.applications.Xception(weights=None, include_top=False)
    chosen = list(range(args.filters))
    options = dict(steps=args.steps, size=args.size, progress=False)
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    print(f"Xception (random weights, no top), layer {args.layer}, {args.filters} filters x {args.steps} steps "
          f"at {args.size} px, TensorFlow {tf.__version__}, {device}, {os.cpu_count()} CPUs visible")

    ways = {
        f"one batch of {args.filters}": lambda: filters.filter_patterns(model, args.layer, chosen,
                                                                      batch_size=args.filters, **options),
        "default": lambda: filters.filter_patterns(model, args.layer, chosen, **options),
        "one per call": lambda: np.concatenate([filters.filter_patterns(model, args.layer, [f], **options)
                                                for f in chosen]),
    }
    default_batch = args.filters if device == "GPU" else min(filters.CPU_BATCH, args.filters)
    print(f"default here: {default_batch} filters per batch")

    # trace every batch shape once, and check that all ways give the same images
    results = [run() for run in ways.values()]
    difference = max(np.abs(result - results[-1]).max() for result in results)
    print(f"largest difference between the ways' images: {difference:.2e}")

    wall = {name: [] for name in ways}
    cpu = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, run in ways.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    print("wall time (what you wait for) and this process's CPU time (less sensitive to other load):")
    base_wall, base_cpu = statistics.median(wall["one per call"]), statistics.median(cpu["one per call"])
    for name in ways:
        median_wall, median_cpu = statistics.median(wall[name]), statistics.median(cpu[name])
        rounds = ", ".join(f"{t:.1f}" for t in wall[name])
        print(f"  {name:<16} wall {median_wall / args.filters:6.3f} s/filter, {base_wall / median_wall:4.2f}x one per call"
              f" | CPU {median_cpu / args.filters:6.3f} s/filter, {base_cpu / median_cpu:4.2f}x"
              f"   (wall rounds: {rounds} s)")
    print(f"{device}, median of {args.rounds} rounds")


if __name__ == "__main__":
    main()
