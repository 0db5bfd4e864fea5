"""Texture or shape? Cue-conflict stimuli (Geirhos et al., ICLR 2019) and what a network decides on them.

A cue-conflict image has the shape of one object and the texture of another (made by style
transfer): a cat's outline filled with elephant skin. Shown such images, an ImageNet network
answers with one of 16 categories; the **shape bias** is the share of its shape decisions among
the images it decided by shape or by texture:

    shape bias = shape hits / (shape hits + texture hits)

Images whose shape and texture categories agree are left out, and so are decisions that are
neither. Published values: ResNet-50 0.21, humans 0.96 (the paper; the repository's README).

* :data:`CATEGORIES`, :data:`IMAGENET_INDICES`: the 16 categories and the ImageNet classes of each;
* :func:`load_cue_conflict`, :func:`load_silhouettes`, :func:`load_edges`: the stimuli, from
  ``$COURSEKIT_TEXTURE_SHAPE_DIR`` (a ready folder, offline) or downloaded once from the public
  repository (only the files asked for), or from any ``folder`` laid out like the repository's;
* :func:`category_scores`, :func:`class_probabilities`, :func:`decisions`: 1,000 ImageNet
  probabilities to 16 categories by the published rule (the mean), a model's probabilities batch
  by batch, and one category per image;
* :func:`shape_bias`, :func:`shape_bias_by_category`, :func:`accuracy`: the measures, each with a
  confidence interval and the counts it came from;
* :func:`shuffle_patches`: cut images into a grid of tiles and permute them (the "bag of local
  features" test of Brendel and Bethge, ICLR 2019).

The stimuli are licensed CC BY 4.0: show :data:`CREDIT` under every figure of them.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from pathlib import Path

import numpy as np

from . import _stimuli_files, env

# The ImageNet class indices (0-999) that make up each of the 16 categories: the table of
# bethgelab/model-vs-human (modelvshuman/helper/human_categories.py, MIT licence), also in
# rgeirhos/texture-vs-shape (code/helper/human_categories.py). 207 indices in all.
IMAGENET_INDICES: dict[str, tuple[int, ...]] = {
    "airplane": (404,),
    "bear": (294, 295, 296, 297),
    "bicycle": (444, 671),
    "bird": (8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24, 80, 81, 82, 83, 87, 88, 89, 90, 91, 92, 93,
             94, 95, 96, 98, 99, 100, 127, 128, 129, 130, 131, 132, 133, 135, 136, 137, 138, 139, 140, 141, 142,
             143, 144, 145),
    "boat": (472, 554, 625, 814, 914),
    "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817),
    "cat": (281, 282, 283, 284, 285, 286),
    "chair": (423, 559, 765, 857),
    "clock": (409, 530, 892),
    "dog": (152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171,
            172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
            193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 205, 206, 207, 208, 209, 210, 211, 212, 213,
            214, 215, 216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 228, 229, 230, 231, 232, 233, 234,
            235, 236, 237, 238, 239, 240, 241, 243, 244, 245, 246, 247, 248, 249, 250, 252, 253, 254, 255, 256,
            257, 259, 261, 262, 263, 265, 266, 267, 268),
    "elephant": (385, 386),
    "keyboard": (508, 878),
    "knife": (499,),
    "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}
CATEGORIES: tuple[str, ...] = tuple(sorted(IMAGENET_INDICES))
STIMULUS_SIZE = 224   # every stimulus is 224 x 224 RGB
CREDIT = ("Stimuli: Geirhos et al., ICLR 2019, github.com/rgeirhos/texture-vs-shape, CC BY 4.0")
SOURCE_URL = f"https://raw.githubusercontent.com/{_stimuli_files.REPOSITORY}/{_stimuli_files.COMMIT}/stimuli/"
FOLDER_VARIABLE = env.TEXTURE_SHAPE_VARIABLE
KINDS = ("cue-conflict", "filled-silhouettes", "edges")
_CUE_CONFLICT_NAME = re.compile(r"^(?P<shape>[a-z]+)\d+-(?P<texture>[a-z]+)\d+\.png$")
_SHAPE_ONLY_NAME = re.compile(r"^(?P<shape>[a-z]+)\d+\.png$")


# ----------------------------------------------------------------------------- the stimuli

@dataclasses.dataclass(frozen=True)
class Stimuli:
    """Images with the categories of their shape (and, for cue conflict, of their texture)."""

    images: np.ndarray
    """uint8 ``(N, H, W, 3)``, values 0-255 (224 x 224 unless resized on loading)."""
    shapes: np.ndarray
    """``(N,)`` str: the category of each image's shape (of the object, for silhouettes and edges)."""
    textures: np.ndarray | None
    """``(N,)`` str: the category of each image's texture; None for silhouettes and edges."""
    files: tuple[str, ...]
    """Each image's file, relative to the stimuli folder (``"cue-conflict/cat/cat1-elephant1.png"``)."""
    source: str
    """Where the files were read from (a folder, and whether it was downloaded)."""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def conflict(self) -> np.ndarray:
        """``(N,)`` bool: True where shape and texture categories differ (the images a shape bias counts)."""
        if self.textures is None:
            raise ValueError("Silhouettes and edges have no texture category: only cue-conflict images do.")
        return self.shapes != self.textures


def load_cue_conflict(folder: str | os.PathLike | None = None, *, n_images: int | None = None,
                      categories=None, size: int | tuple[int, int] | None = None, seed: int = 0) -> Stimuli:
    """Cue-conflict images: the shape of one category, the texture of another (or the same).

    ``folder``: None for the course's source (``$COURSEKIT_TEXTURE_SHAPE_DIR`` when set, else the
    public repository, downloaded once into a cache, only the files needed); or any folder laid out
    like the repository (``cue-conflict/<shape>/<shape><i>-<texture><j>.png``; its own name,
    ``style-transfer-preprocessed-512``, works too, as does the folder above ``stimuli/``).
    ``n_images``: how many, spread evenly over the shape categories and drawn with ``seed`` (None:
    all there are, 1,280 online). ``categories``: shape categories to keep (a name or a list; None:
    all 16). ``size``: resize to ``(height, width)`` or a square side (None: 224 x 224).
    The ~6% whose shape and texture categories agree are kept: :func:`shape_bias` leaves them out.
    """
    return _load("cue-conflict", folder, n_images, categories, size, seed, per_category=None)


def load_silhouettes(folder: str | os.PathLike | None = None, *, per_category: int | None = None,
                     categories=None, size: int | tuple[int, int] | None = None) -> Stimuli:
    """Filled silhouettes, a black object on white: shape alone, 10 per category (as :func:`load_cue_conflict`).

    ``per_category``: the first that many objects of each category (None: all 10).
    """
    return _load("filled-silhouettes", folder, None, categories, size, 0, per_category)


def load_edges(folder: str | os.PathLike | None = None, *, per_category: int | None = None,
               categories=None, size: int | tuple[int, int] | None = None) -> Stimuli:
    """Edge drawings of the same 10 objects per category as :func:`load_silhouettes`: outlines, no texture."""
    return _load("edges", folder, None, categories, size, 0, per_category)


def _load(kind, folder, n_images, categories, size, seed, per_category) -> Stimuli:
    wanted = _category_list(categories)
    _check_count(n_images, "n_images")
    _check_count(per_category, "per_category")
    if folder is not None:
        root = _kind_folder(Path(folder).expanduser(), kind, given=True)
        available = sorted(f"{kind}/{p.parent.name}/{p.name}" for p in root.glob("*/*.png")
                           if not p.name.startswith("."))
        source = f"the folder {str(Path(folder))!r}"
    elif os.environ.get(FOLDER_VARIABLE, "").strip():
        ready = Path(os.environ[FOLDER_VARIABLE].strip()).expanduser()
        root = _kind_folder(ready, kind, given=False)
        available = sorted(f"{kind}/{p.parent.name}/{p.name}" for p in root.glob("*/*.png")
                           if not p.name.startswith("."))
        source = f"the offline folder in ${FOLDER_VARIABLE}"
    else:
        root = None
        available = sorted(path for path in _remote_files() if path.startswith(kind + "/"))
        source = f"github.com/{_stimuli_files.REPOSITORY}"
    chosen = _choose(available, kind, wanted, n_images, per_category, seed)
    if not chosen:
        raise ValueError(f"No {kind} images of the categories {list(wanted)} in {source}.")
    if root is None:
        cache = download_stimuli(chosen)
        root = cache / kind
        source += f" (cached in {str(cache)!r})"
    images = np.stack([_read_png(root / path.split("/", 1)[1], size) for path in chosen])
    shapes, textures = _categories_of(chosen, kind)
    return Stimuli(images, shapes, textures, tuple(chosen), source)


def _category_list(categories) -> tuple[str, ...]:
    if categories is None:
        return CATEGORIES
    names = (categories,) if isinstance(categories, str) else tuple(categories)
    for name in names:
        check_category(name)
    if not names:
        raise ValueError(f"categories is empty: give one or more of {', '.join(CATEGORIES)}, or None for all.")
    return names


def check_category(name) -> str:
    """``name`` if it is one of the 16 :data:`CATEGORIES`, else a ValueError listing them."""
    if not isinstance(name, str) or name not in CATEGORIES:
        import difflib
        close = difflib.get_close_matches(str(name), CATEGORIES, n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"{name!r} is not one of the 16 categories: {', '.join(CATEGORIES)}.{hint}")
    return name


def _check_count(value, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
        raise ValueError(f"{name} must be a whole number >= 1, or None for all; got {value!r}.")


def _kind_folder(root: Path, kind: str, given: bool) -> Path:
    """The folder of ``kind`` inside a stimuli folder, whichever of the accepted layouts it has."""
    names = [kind] + ([_stimuli_files.REMOTE_FOLDERS[kind]] if kind == "cue-conflict" else [])
    for base in (root, root / "stimuli"):
        for name in names:
            if (base / name).is_dir():
                return base / name
    where = f"folder={str(root)!r}" if given else f"${FOLDER_VARIABLE} = {str(root)!r}"
    raise FileNotFoundError(
        f"{where} holds no {kind}/ folder (looked for {' or '.join(names)}/, also under stimuli/). Point it at "
        f"a copy of the stimuli/ folder of github.com/{_stimuli_files.REPOSITORY}"
        + ("" if given else f", or unset {FOLDER_VARIABLE} to download them") + ".")


def _remote_files() -> dict[str, tuple[int, str]]:
    return _stimuli_files.parse(_stimuli_files.FILES)


def _choose(available: list[str], kind: str, wanted: tuple[str, ...], n_images, per_category, seed) -> list[str]:
    """The files to load: of the wanted categories; ``per_category`` first objects, or ``n_images``
    drawn with ``seed`` and spread evenly over the categories (round-robin)."""
    by_category: dict[str, list[str]] = {name: [] for name in wanted}
    for path in available:
        category = path.split("/")[1]
        if category in by_category:
            by_category[category].append(path)
    if per_category is not None:
        def object_number(path):
            return int(re.sub(r"\D", "", path.rsplit("/", 1)[-1]) or 0)
        return sorted(p for paths in by_category.values() for p in sorted(paths, key=object_number)[:per_category])
    if n_images is None:
        return sorted(p for paths in by_category.values() for p in paths)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(paths)) for paths in by_category.values()]
    chosen: list[str] = []
    while len(chosen) < n_images and any(queues):
        for queue in queues:
            if queue and len(chosen) < n_images:
                chosen.append(str(queue.pop(0)))
    return sorted(chosen)


def _categories_of(paths: list[str], kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    pattern = _CUE_CONFLICT_NAME if kind == "cue-conflict" else _SHAPE_ONLY_NAME
    shapes, textures = [], []
    for path in paths:
        match = pattern.match(path.rsplit("/", 1)[-1])
        if not match or match["shape"] not in CATEGORIES or (kind == "cue-conflict" and match["texture"] not in CATEGORIES):
            raise ValueError(f"{path!r} is not named as the repository names its {kind} stimuli "
                             + ("(<shape><i>-<texture><j>.png)." if kind == "cue-conflict" else "(<category><i>.png)."))
        shapes.append(match["shape"])
        textures.append(match["texture"] if kind == "cue-conflict" else None)
    return np.array(shapes), (np.array(textures) if kind == "cue-conflict" else None)


def _read_png(path: Path, size) -> np.ndarray:
    from .data import _read_file, resize
    image = _read_file(path)
    return image if size is None else resize(image, size)


def download_stimuli(paths: list[str], cache: str | os.PathLike | None = None,
                     source_url: str | None = None, progress: bool = True) -> Path:
    """Download the stimuli ``paths`` (course layout, e.g. ``"edges/cat/cat1.png"``) that ``cache`` lacks.

    ``cache``: None for ``<Keras' cache>/datasets/texture-vs-shape`` (``~/.keras/...``).
    ``source_url``: None for the repository's files at a fixed commit (:data:`SOURCE_URL`).
    Each file's size and git blob id are checked against :mod:`coursekit._stimuli_files`; a file
    cut short is fetched again, never used. Returns the cache folder.
    """
    from .downloads import RemoteFile, fetch_files
    known = _remote_files()
    unknown = [path for path in paths if path not in known]
    if unknown:
        raise ValueError(f"{unknown[:3]} are not stimuli of github.com/{_stimuli_files.REPOSITORY}.")
    cache = Path(cache) if cache is not None else env.keras_home() / "datasets" / "texture-vs-shape"
    base = source_url if source_url is not None else SOURCE_URL
    files = [RemoteFile(path, base.rstrip("/") + "/" + _remote_path(path), *known[path]) for path in paths]
    hint = (f"Without internet, set {FOLDER_VARIABLE} to a folder holding the stimuli (a copy of the "
            f"repository's stimuli/ folder, or the course's offline copy), or pass folder=... to the loader.")
    return fetch_files(files, cache, what="the texture-vs-shape stimuli", offline_hint=hint, progress=progress)


def _remote_path(path: str) -> str:
    kind, rest = path.split("/", 1)
    return f"{_stimuli_files.REMOTE_FOLDERS[kind]}/{rest}"


# ----------------------------------------------------------------------------- decisions

def category_scores(probabilities, category_indices: dict[str, tuple[int, ...]] | None = None) -> np.ndarray:
    """ImageNet probabilities ``(N, 1000)`` (or one row) to category scores ``(N, 16)``, float64.

    The published rule (Geirhos et al.; model-vs-human's ``decision_mappings``): a category's
    score is the **mean** of the probabilities of its ImageNet classes (:data:`IMAGENET_INDICES`),
    not their sum (which favours categories with many classes: dog has 109, knife 1) nor their
    maximum. Columns follow :data:`CATEGORIES`. ``category_indices`` maps other category names to
    class indices (columns in its order). Pass probabilities (after the softmax), not logits.
    """
    groups = category_indices if category_indices is not None else IMAGENET_INDICES
    scores = np.asarray(probabilities, dtype="float64")
    if scores.ndim == 1:
        scores = scores[None]
    needed = 1 + max(max(indices) for indices in groups.values())
    if scores.ndim != 2 or scores.shape[1] < needed or (category_indices is None and scores.shape[1] != 1000):
        classes = 1000 if category_indices is None else needed
        raise ValueError(f"category_scores needs class probabilities of shape (N, {classes}) or ({classes},); "
                         f"got shape {np.shape(probabilities)}.")
    if scores.size and (scores.min() < -1e-6 or scores.max() > 1 + 1e-6):
        raise ValueError(f"These are not probabilities (values from {scores.min():.3g} to {scores.max():.3g}): "
                         "pass the model's softmax output, not its logits.")
    return np.stack([scores[:, list(indices)].mean(axis=1) for indices in groups.values()], axis=1)


def class_probabilities(model, images, preprocess=None, *, batch_size: int | None = None) -> np.ndarray:
    """The model's class probabilities ``(N, classes)``, float32, computed ``batch_size`` images at a time.

    ``images``: the model's input batch ``(N, H, W, C)`` or one image; with ``preprocess`` (such as
    ``net.preprocess``, or a function that also resizes), images in any form it turns into that
    input, batch by batch (a whole set preprocessed at once would take gigabytes at 299 px).
    ``batch_size`` None: 64 with a GPU, 16 without: on a CPU, MobileNetV2 spent 25-35% more
    CPU time per image in batches of 64 than of 16 (the operating system's time, allocating the
    larger batches' buffers, grew with the batch while the computing time did not); fewer where
    the profile's memory budget for a forward pass holds fewer (:mod:`coursekit.batching`).
    """
    from . import _forward, _inputs, batching
    if batch_size is None:
        shape = _inputs.input_shape(model)
        fits = batching.batch_size_for(model, batching.FORWARD) if None not in shape else batching.MOST
        batch_size = min(64 if env.has_gpu() else 16, fits)
    if preprocess is None:
        batch = _inputs.image_batch(model, images)
        prepare = lambda part: batch[part]
    else:
        batch = np.asarray(images)
        if batch.ndim == len(_inputs.input_shape(model)):
            batch = batch[None]   # one image
        if len(batch) == 0:
            raise ValueError("The batch is empty: pass at least one image.")
        prepare = lambda part: _inputs.image_batch(model, preprocess(batch[part]))
    _inputs.n_classes(model)   # class scores (N, classes), or a clear error
    return np.concatenate([_forward.predict(model, prepare(part), batch_size)
                           for part in _inputs.batches(len(batch), batch_size)])


def decisions(model, images, preprocess=None, *, category_indices: dict[str, tuple[int, ...]] | None = None,
              batch_size: int | None = None) -> np.ndarray:
    """One category per image: the top of :func:`category_scores` of the model's probabilities.

    ``images``, ``preprocess``, ``batch_size``: as :func:`class_probabilities`. The model must end
    in a softmax over the 1,000 ImageNet classes (or over the classes of ``category_indices``).
    Returns ``(N,)`` str, names from :data:`CATEGORIES` (or the keys of ``category_indices``).
    """
    from . import _inputs
    groups = category_indices if category_indices is not None else IMAGENET_INDICES
    _inputs.input_shape(model)   # one image input, or a clear error
    classes = _inputs.n_classes(model)
    largest = max(max(indices) for indices in groups.values())
    if largest >= classes:
        raise ValueError(f"Model {model.name!r} has {classes} classes, but the categories use class {largest}: "
                         "decisions needs an ImageNet classifier (1,000 classes) for the 16 categories, or "
                         "category_indices that fit the model's classes.")
    scores = category_scores(class_probabilities(model, images, preprocess, batch_size=batch_size), groups)
    return np.array(list(groups))[scores.argmax(axis=1)]


# ----------------------------------------------------------------------------- measures

@dataclasses.dataclass(frozen=True)
class ShapeBias:
    """A shape bias with its confidence interval and the counts it came from."""

    bias: float
    """shape_hits / (shape_hits + texture_hits), in [0, 1]; NaN when both are 0."""
    low: float
    """Lower end of the confidence interval (Wilson score interval, as scipy computes it)."""
    high: float
    """Upper end of the confidence interval."""
    shape_hits: int
    """Cue-conflict images decided as their shape's category."""
    texture_hits: int
    """Cue-conflict images decided as their texture's category."""
    neither: int
    """Cue-conflict images decided as a third category (left out of the bias)."""
    same_category: int
    """Images whose shape and texture categories agree (left out)."""
    confidence: float = 0.95
    """The interval's confidence level."""

    def __str__(self) -> str:
        counted = f"{self.shape_hits} shape vs {self.texture_hits} texture decisions"
        rest = f"{self.neither} neither, {self.same_category} same-category images left out"
        if math.isnan(self.bias):
            return f"shape bias undefined: no shape or texture decision ({counted}; {rest})"
        return (f"shape bias {self.bias:.2f} ({self.confidence:.0%} interval {self.low:.2f}-{self.high:.2f}; "
                f"{counted}; {rest})")


@dataclasses.dataclass(frozen=True)
class Share:
    """A share of correct answers with its confidence interval and counts."""

    value: float
    """correct / total, in [0, 1]."""
    low: float
    """Lower end of the confidence interval (Wilson score interval)."""
    high: float
    """Upper end of the confidence interval."""
    correct: int
    """Images decided as their category."""
    total: int
    """Images."""
    confidence: float = 0.95
    """The interval's confidence level."""

    def __str__(self) -> str:
        return (f"{self.value:.0%} ({self.correct} of {self.total}; {self.confidence:.0%} interval "
                f"{self.low:.0%}-{self.high:.0%})")


def interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (scipy's ``binomtest``); ``(0, 1)`` for no trials."""
    if trials == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest
    found = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(found.low), float(found.high)


def shape_bias(decisions, shapes, textures, confidence: float = 0.95) -> ShapeBias:
    """The shape bias of ``decisions`` on cue-conflict images of categories ``shapes`` and ``textures``.

    All three are ``(N,)`` category names (:data:`CATEGORIES`). Images whose shape and texture
    categories agree are left out; of the others, a decision is a shape hit when it names the
    shape's category, a texture hit when it names the texture's, else neither (left out).
    """
    decided, shapes, textures = _names(decisions, "decisions"), _names(shapes, "shapes"), _names(textures, "textures")
    if not len(decided) == len(shapes) == len(textures):
        raise ValueError(f"decisions, shapes and textures must have one entry per image; got {len(decided)}, "
                         f"{len(shapes)} and {len(textures)}.")
    conflict = shapes != textures
    shape_hits = int(np.sum(conflict & (decided == shapes)))
    texture_hits = int(np.sum(conflict & (decided == textures)))
    hits = shape_hits + texture_hits
    low, high = interval(shape_hits, hits, confidence)
    return ShapeBias(shape_hits / hits if hits else float("nan"), low, high, shape_hits, texture_hits,
                     int(conflict.sum()) - hits, int((~conflict).sum()), confidence)


def shape_bias_by_category(decisions, shapes, textures, confidence: float = 0.95) -> dict[str, ShapeBias]:
    """:func:`shape_bias` of the images of each shape category (as the paper's per-category figure):
    ``{category: ShapeBias}`` for each category that has images, in the order of :data:`CATEGORIES`."""
    decided, shapes, textures = _names(decisions, "decisions"), _names(shapes, "shapes"), _names(textures, "textures")
    if not len(decided) == len(shapes) == len(textures):
        raise ValueError(f"decisions, shapes and textures must have one entry per image; got {len(decided)}, "
                         f"{len(shapes)} and {len(textures)}.")
    return {name: shape_bias(decided[shapes == name], shapes[shapes == name], textures[shapes == name], confidence)
            for name in CATEGORIES if np.any(shapes == name)}


def accuracy(decisions, labels, confidence: float = 0.95) -> Share:
    """The share of ``decisions`` equal to ``labels`` (both ``(N,)`` category names), with its interval."""
    decided, labels = _names(decisions, "decisions"), _names(labels, "labels")
    if len(decided) != len(labels):
        raise ValueError(f"decisions and labels must have one entry per image; got {len(decided)} and {len(labels)}.")
    correct = int(np.sum(decided == labels))
    return Share(correct / len(labels), *interval(correct, len(labels), confidence), correct, len(labels), confidence)


def _names(values, what: str) -> np.ndarray:
    names = np.asarray(values)
    if names.ndim != 1:
        raise ValueError(f"{what} must be a list of category names, one per image; got an array of shape {names.shape}.")
    if len(names) == 0:
        raise ValueError(f"{what} is empty: there must be at least one image.")
    unknown = sorted({str(name) for name in names} - set(CATEGORIES))
    if unknown:
        raise ValueError(f"{what} holds {unknown[:3]}, which are not among the 16 categories: {', '.join(CATEGORIES)}.")
    return names.astype(str)


# ----------------------------------------------------------------------------- patch shuffling

def shuffle_patches(images, grid: int, seed: int = 0) -> np.ndarray:
    """Cut each image into ``grid`` x ``grid`` tiles and put the tiles back in a random order.

    ``images``: ``(N, H, W, C)`` or one image ``(H, W, C)`` (or ``(H, W)``), any dtype; ``grid``
    must divide both ``H`` and ``W``. Each image gets its own permutation, drawn with ``seed``.
    Every pixel is kept (each tile appears exactly once, unchanged); ``grid=1`` returns the images
    as they are. Returns a new array of the input's shape and dtype. The global shape is gone,
    the local texture of each tile stays.
    """
    array = np.asarray(images)
    if array.ndim not in (2, 3, 4):
        raise ValueError(f"shuffle_patches needs images (N, H, W, C) or one image (H, W, C); got shape {array.shape}.")
    single = array.ndim < 4
    batch = array[None] if single else array
    if batch.ndim == 3:
        batch = batch[..., None]
    if len(batch) == 0:
        raise ValueError("The batch is empty: pass at least one image.")
    count, height, width, channels = batch.shape
    if isinstance(grid, bool) or not isinstance(grid, numbers.Integral) or grid < 1:
        raise ValueError(f"grid must be a whole number >= 1 (tiles per side); got {grid!r}.")
    grid = int(grid)
    if height % grid or width % grid:
        fits = [g for g in range(1, min(height, width) + 1) if height % g == 0 and width % g == 0]
        raise ValueError(f"grid={grid} does not divide the images' {height}x{width} pixels into equal tiles. "
                         f"Grids that do: {', '.join(map(str, fits[:12]))}{' ...' if len(fits) > 12 else ''}.")
    tile_h, tile_w = height // grid, width // grid
    tiles = (batch.reshape(count, grid, tile_h, grid, tile_w, channels)
             .transpose(0, 1, 3, 2, 4, 5).reshape(count, grid * grid, tile_h, tile_w, channels))
    rng = np.random.default_rng(seed)
    order = np.stack([rng.permutation(grid * grid) for _ in range(count)])
    shuffled = np.take_along_axis(tiles, order[:, :, None, None, None], axis=1)
    result = (shuffled.reshape(count, grid, grid, tile_h, tile_w, channels)
              .transpose(0, 1, 3, 2, 4, 5).reshape(batch.shape))
    return result.reshape(array.shape)
