"""Which models fall for the decoy-MNIST shortcut, and how far: accuracy points lost on random squares.

    python bench/shortcut_models.py                  # the profile's data and epochs, 3 seeds
    python bench/shortcut_models.py --seeds 5 --epochs 3

Every model is trained as lesson 05 trains its CNN (Adam at 3e-3, the profile's batch size) on
digits whose decoy square encodes the label, then tested on decoyed test digits with the true
label's square and with a random digit's square. Printed per model: mean, lowest and highest drop
over the seeds, both accuracies, and the share of vanilla saliency inside the square. Models:

* ``strided same``: ``coursekit.models.strided_cnn()``, the CNN of lesson 05;
* ``strided valid``: the same with ``padding="valid"``;
* ``course cnn``: ``coursekit.models.mnist_cnn()`` (3x3 convolutions with max pooling, lesson 01);
* ``lecture cnn``: one 64-filter 3x3 convolution with "valid" padding, max pooling, softmax (as
  the lecture notebook the course grew from);
* ``paper mlp``: ``coursekit.models.mnist_mlp()`` (50 and 30 ReLU units, Ross et al. 2017).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import coursekit  # noqa: E402,F401  (offline cache before Keras)
from coursekit import data, env, metrics, models, saliency  # noqa: E402

LEARNING_RATE = 3e-3


def lecture_cnn() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    return keras.Model(inputs, outputs, name="lecture_cnn")


BUILDERS = {
    "strided same": lambda: models.strided_cnn("same"),
    "strided valid": lambda: models.strided_cnn("valid"),
    "course cnn": models.mnist_cnn,
    "lecture cnn": lecture_cnn,
    "paper mlp": models.mnist_mlp,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="default: the profile's epochs")
    parser.add_argument("--models", nargs="*", default=list(BUILDERS), choices=list(BUILDERS))
    args = parser.parse_args()
    profile = env.profile()
    epochs = args.epochs or profile.epochs
    (x_train, y_train), (x_test, y_test) = data.mnist()
    print(f"decoy MNIST, {len(x_train)} training digits, {epochs} epochs, {args.seeds} seeds, "
          f"profile {profile.name}")
    print(f"{'model':<16}{'drop (points)':>14}{'lowest':>8}{'highest':>8}{'true sq.':>10}{'random sq.':>11}"
          f"{'saliency in sq.':>17}{'s/model':>9}")
    for name in args.models:
        drops, true_accuracy, random_accuracy, shares, seconds = [], [], [], [], []
        for seed in range(args.seeds):
            train_decoy, _ = data.decoy_mnist(x_train, y_train, seed=seed)
            test_true, true_masks = data.decoy_mnist(x_test, y_test, seed=seed + 100)
            test_random, _ = data.decoy_mnist(x_test, seed=seed + 200)
            keras.utils.set_random_seed(seed)
            model = BUILDERS[name]()
            start = time.perf_counter()
            models.train(model, train_decoy, y_train, epochs=epochs, batch_size=profile.batch_size,
                         learning_rate=LEARNING_RATE)
            seconds.append(time.perf_counter() - start)
            true_accuracy.append(models.accuracy(model, test_true, y_test))
            random_accuracy.append(models.accuracy(model, test_random, y_test))
            drops.append(100 * (true_accuracy[-1] - random_accuracy[-1]))
            maps = saliency.vanilla_saliency(model, test_true[..., None].astype("float32"))
            shares.append(metrics.mass_in_mask(maps, true_masks).mean())
        print(f"{name:<16}{np.mean(drops):>14.1f}{min(drops):>8.1f}{max(drops):>8.1f}"
              f"{np.mean(true_accuracy):>10.3f}{np.mean(random_accuracy):>11.3f}{np.mean(shares):>17.3f}"
              f"{np.mean(seconds):>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
