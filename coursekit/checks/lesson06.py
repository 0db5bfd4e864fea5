"""Checks of the exercises of lesson 06 (units, occlusion, feature space): solutions/06_units_and_occlusion.ipynb.

Every check draws fresh random activations, images, networks and features, so an answer that
hard-codes what the notebook's own example produces does not pass. References:
``coursekit.features.top_activating``, ``coursekit.occlusion.occlusion_map`` and scikit-learn's
``PCA``.
"""
from __future__ import annotations

import contextlib
import logging

import numpy as np

from .core import Hint, as_numbers, call, choice_task, close, fresh_rng, require_callable, task

# ----------------------------------------------------------------------------- 06.1

_IDENTITY_MODELS: dict = {}


def _identity_model(rank: int):
    """A Keras model whose layer ``units`` outputs its input (any sizes of the given rank), built
    once per rank: ``top_activating`` on it ranks given activations, with no retracing each check."""
    import keras
    if rank not in _IDENTITY_MODELS:
        inputs = keras.Input((None,) * (rank - 1))
        _IDENTITY_MODELS[rank] = keras.Model(inputs, keras.layers.Identity(name="units")(inputs))
    return _IDENTITY_MODELS[rank]


@contextlib.contextmanager
def _quiet_tensorflow():
    """Silence TensorFlow's Python warnings (e.g. about retracing) for the duration of a block."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _random_activations(rng: np.random.Generator, spatial: bool) -> np.ndarray:
    """ReLU activations of a made-up layer: ``(N, units)`` or ``(N, h, w, C)``, about half zeros."""
    count = int(rng.integers(40, 80))
    units = int(rng.integers(8, 16))
    shape = (count, int(rng.integers(3, 7)), int(rng.integers(3, 7)), units) if spatial else (count, units)
    values = rng.normal(size=shape) + 0.5 * rng.normal(size=(count,) + (1,) * (len(shape) - 1))
    return np.maximum(values, 0).astype("float32")


def _top_images_hint(got: np.ndarray, activations: np.ndarray, unit: int, k: int,
                     strength: np.ndarray, expected: np.ndarray) -> str:
    count, units = len(activations), activations.shape[-1]
    spatial = activations.ndim == 4
    if got.shape in ((units, k), (k, units)) and k != units:
        return (f"you return a table for all {units} units; return the k indices for the one unit "
                "given, shape (k,).")
    if got.shape == (count,):
        return f"you return all {count} images; keep only the k = {k} most active ones, shape (k,)."
    if got.shape != (k,):
        return (f"for k = {k} return {k} image indices, shape ({k},); you return shape {got.shape}.")
    if np.any(got != np.round(got)):
        if np.allclose(np.sort(got)[::-1], np.sort(strength)[::-1][:k], atol=1e-5):
            return "you return activation values; return the indices of the images (integers)."
        return "return image indices: whole numbers (e.g. from np.argsort), not activations."
    indices = got.astype(int)
    if indices.min() < 0 or indices.max() >= count:
        if spatial and indices.max() < count * activations.shape[1] * activations.shape[2]:
            return ("some indices are larger than the number of images: you ranked the positions of "
                    "all maps together. Give each image one number first (its strongest position).")
        return f"image indices run from 0 to {count - 1}; you return {indices.min()} to {indices.max()}."
    if len(set(indices.tolist())) < k:
        return ("an image appears more than once in your answer: rank the images, one number per "
                "image (for a convolution unit, the strongest position of its map).")
    if spatial:  # the average may pick the same images, in another order
        mean = activations[..., unit].mean(axis=(1, 2))
        if np.allclose(mean[indices], np.sort(mean)[::-1][:k]):
            return ("you rank by the average (or sum) over the map; a convolution unit's activation "
                    "for an image is its *strongest* position: the maximum over height and width.")
    overall = activations.max(axis=tuple(range(1, activations.ndim)))
    if np.allclose(overall[indices], np.sort(overall)[::-1][:k]):
        return ("you take each image's largest value over all units; keep the given unit only "
                "(the last axis)" + (" and take the maximum over height and width." if spatial else "."))
    if np.array_equal(indices, expected[::-1]):
        return "right images, wrong order: the most active image comes first."
    if np.array_equal(np.sort(indices), np.sort(expected)):
        return "right images, wrong order: sort them from the most active down."
    if not spatial:  # before 'least active': the row's top units may be images the unit ignores
        row = activations[unit]
        if indices.max() < units and np.allclose(row[indices], np.sort(row)[::-1][:k]):
            return ("activations[unit] is the row of one image; a unit is a column: "
                    "activations[:, unit] holds its value for every image.")
    if np.array_equal(indices, np.argsort(strength, kind="stable")[:k]) or \
            np.allclose(strength[indices], np.sort(strength)[:k]):
        return "you return the least active images: sort in decreasing order of activation."
    for other in (unit - 1, unit + 1):
        if 0 <= other < units:
            column = activations[..., other]
            other_strength = column.max(axis=(1, 2)) if spatial else column
            if np.allclose(other_strength[indices], np.sort(other_strength)[::-1][:k]):
                return (f"these are the top images of unit {other}, not of unit {unit}: use the unit "
                        "index as it is (units count from 0, the unit is the last axis).")
    return ("the k images with the largest activation of the unit, most active first: one number per "
            "image (a Dense unit's value; for a convolution unit, the maximum of its map), then sort.")


def _top_images_case(rng: np.random.Generator, spatial: bool) -> tuple[np.ndarray, int, int]:
    """Activations, a unit and k for check 06.1, drawn so that the usual slips give other answers."""
    while True:
        activations = _random_activations(rng, spatial)
        count, units = len(activations), activations.shape[-1]
        unit = int(rng.integers(1, units - 1))
        if not spatial:  # active on every image: its least active images are not a tie of zeros
            activations[:, unit] += rng.uniform(0.05, 0.5, size=count).astype("float32")
            # the top image twice (data sets hold duplicates): a tie, in either order
            activations[int(rng.integers(count))] = activations[activations[:, unit].argmax()]
        else:  # one image matches the unit's pattern in three places, more strongly than any other
            h, w = activations.shape[1:3]
            rows, columns = np.unravel_index(rng.choice(h * w, size=3, replace=False), (h, w))
            peak = activations[..., unit].max()
            activations[int(rng.integers(count)), rows, columns, unit] = peak + rng.uniform(1, 2, size=3)
        maps = activations[..., unit].reshape(count, -1)
        strength = maps.max(axis=1)
        k = int(rng.integers(4, max(5, min(10, np.count_nonzero(strength), units))))
        top_by_mean = np.argsort(-maps.mean(axis=1))[:k]
        if not spatial or not np.allclose(np.sort(strength)[::-1][:k], strength[top_by_mean]):   # the average must show
            return activations, unit, k


@task("06.1", points=3, answer="top_images", title="The k images that excite a unit most")
def _(top_images):
    from .. import features
    require_callable(top_images, "top_images")
    rng = fresh_rng()
    what = "top_images(activations, unit, k)"
    for spatial in (False, True):
        activations, unit, k = _top_images_case(rng, spatial)
        model = _identity_model(activations.ndim)
        with _quiet_tensorflow():  # new shapes at every check: TensorFlow may warn of retracing
            strength = features.unit_activations(model, "units", activations)[:, unit].astype("float64")
            expected = features.top_activating(model, "units", activations, k=k)[unit]
        got = as_numbers(call(top_images, activations.copy(), unit, k, what=what), what, "an array")
        kind = f"a convolution layer's activations {activations.shape}" if spatial else \
            f"a Dense layer's activations {activations.shape}"
        right = (got.shape == (k,) and np.all(got == np.round(got)) and got.min() >= 0
                 and got.max() < len(activations) and len(set(got.astype(int).tolist())) == k
                 and np.allclose(strength[got.astype(int)], strength[expected], atol=1e-6))
        if not right:  # ties may come in any order: the activations must match, not the indices
            raise Hint(f"with {kind}, unit {unit}, k = {k}: "
                       + _top_images_hint(got, activations.astype("float64"), unit, k, strength, expected))


# ----------------------------------------------------------------------------- 06.2

def _corners(size: int, patch: int, stride: int, flush: bool = True) -> list[int]:
    corners = list(range(0, size - patch + 1, stride))
    if flush and corners[-1] != size - patch:
        corners.append(size - patch)
    return corners


def _map_by_rule(score, image: np.ndarray, patch: int, stride: int, fill: float, *,
                 flush: bool = True, average: bool = True) -> np.ndarray:
    """Occlusion as a student might write it, with one rule changed (to name a mistake)."""
    height, width = image.shape[:2]
    places = [(top, left) for top in _corners(height, patch, stride, flush)
              for left in _corners(width, patch, stride, flush)]
    copies = np.repeat(image[None], len(places), axis=0)
    for copy, (top, left) in zip(copies, places):
        copy[top:top + patch, left:left + patch] = fill
    drops = score(image[None])[0] - score(copies)
    total, covered = np.zeros((height, width)), np.zeros((height, width))
    for drop, (top, left) in zip(drops, places):
        total[top:top + patch, left:left + patch] += drop
        covered[top:top + patch, left:left + patch] += 1
    return total / np.maximum(covered, 1) if average else total


def _occlusion_case(rng: np.random.Generator, colour: bool):
    """A random CNN with a softmax head, an image for it, and a patch/stride/fill that leave a rest."""
    import keras
    patch, stride = int(rng.integers(3, 5)), int(rng.integers(2, 4))
    sides = [side for side in range(9, 17) if (side - patch) % stride]  # the stride leaves a rest
    height, width = (int(side) for side in rng.choice(sides, size=2, replace=False))
    channels = 3 if colour else 1
    inputs = keras.Input((height, width, channels))
    x = keras.layers.Conv2D(int(rng.integers(3, 6)), 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(int(rng.integers(3, 6)), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    image = rng.uniform(0, 1, size=(height, width, channels)).astype("float32")
    fill = float(np.round(rng.uniform(0.3, 0.9), 2)) if colour else 0.0
    return model, image, patch, stride, fill


def _score_function(model, class_index: int, image_shape: tuple):
    """``score(batch)``: the logit of ``class_index`` for a batch ``(M, H, W, C)``, as ``(M,)``."""
    from .. import models
    logits = models.pre_softmax(model)

    def score(batch):
        batch = np.asarray(batch, dtype="float32")
        if batch.ndim != 4 or batch.shape[1:] != image_shape:
            raise ValueError(f"score takes a batch of images of shape (M, {', '.join(map(str, image_shape))}); "
                             f"got shape {batch.shape}. Stack the copies (np.stack) or add a batch axis: "
                             "image[None]")
        return np.asarray(logits(batch, training=False), dtype="float64")[:, class_index]
    return score


def _occlusion_hint(got, image, patch, stride, fill, score, expected) -> str:
    height, width = image.shape[:2]
    rows, columns = len(_corners(height, patch, stride)), len(_corners(width, patch, stride))
    if got.shape in ((rows, columns), (rows * columns,)):
        return ("you return one drop per position of the square; spread each drop over the pixels "
                "that square covers, and average: one value per pixel, shape (H, W).")
    if got.shape == image.shape:
        return f"one value per pixel, shape {image.shape[:2]}: no channel axis."
    if got.shape != expected.shape:
        return f"for an image of shape {image.shape} return a map of shape {expected.shape}; you return {got.shape}."
    if not np.all(np.isfinite(got)):
        return "your map contains NaN or infinity: do you divide by a count that can be 0?"
    if close(got, -expected, 1e-3):
        return ("the sign is flipped: a drop is the score of the original image minus the score of "
                "the occluded copy (positive where hiding the square lowers the score).")
    original = score(image[None])[0]
    if close(got, original - expected, 1e-3):
        return ("you average the scores of the occluded copies; average the drops instead: the score "
                "of the original image minus the score of each copy.")
    if close(got, _map_by_rule(score, image, patch, stride, fill, flush=False), 1e-3):
        return (f"the last rows or columns of pixels are never covered: the stride {stride} does not "
                "land on the far edge, so add a last square flush with it (occlusion.patch_corners "
                "gives these positions).")
    if close(got, _map_by_rule(score, image, patch, stride, fill, average=False), 1e-3):
        return ("you add up the drops of the squares covering a pixel; take their mean (divide by how "
                "many squares cover that pixel).")
    if fill != 0 and close(got, _map_by_rule(score, image, patch, stride, 0.0), 1e-3):
        return f"you fill the square with 0; fill it with the value `fill` ({fill} here)."
    return ("at each pixel, the mean over the squares covering it of score(image) - score(occluded "
            "copy); every copy hides one square only, filled with `fill`, top-left corners from "
            "occlusion.patch_corners (rows first, then columns).")


@task("06.2", points=3, answer="occlusion_by_hand", title="Occlusion, written out")
def _(occlusion_by_hand):
    from .. import occlusion
    require_callable(occlusion_by_hand, "occlusion_by_hand")
    rng = fresh_rng()
    what = "occlusion_by_hand(score, image, patch, stride, fill)"
    for colour in (True, False):
        model, image, patch, stride, fill = _occlusion_case(rng, colour)
        class_index = int(rng.integers(0, model.outputs[0].shape[-1]))
        score = _score_function(model, class_index, image.shape)
        with _quiet_tensorflow():
            expected = occlusion.occlusion_map(model, image[None], class_index=class_index, patch=patch,
                                               stride=stride, fill=fill)[0].astype("float64")
        given = image.copy()
        got = as_numbers(call(occlusion_by_hand, score, given, patch, stride, fill, what=what), what, "an array")
        label = (f"with an image of shape {image.shape}, patch {patch}, stride {stride}, fill {fill}: ")
        if not np.array_equal(given, image):
            raise Hint(label + "your function changed `image` itself, so later copies hide more than "
                       "one square. Copy the image (image.copy()) before covering a square.")
        if not close(got, expected, 1e-3):
            raise Hint(label + _occlusion_hint(got, image, patch, stride, fill, score, expected))


# ----------------------------------------------------------------------------- 06.3

def _random_features(rng: np.random.Generator) -> np.ndarray:
    """Points ``(N, D)`` with a non-zero mean and well separated variances along random directions."""
    count, dims = int(rng.integers(30, 70)), int(rng.integers(5, 12))
    scales = 6.0 * 0.55 ** np.arange(dims) * rng.uniform(0.9, 1.1, size=dims)
    rotation, _ = np.linalg.qr(rng.normal(size=(dims, dims)))
    offset = rng.uniform(2, 10, size=dims)
    return rng.normal(size=(count, dims)) * scales @ rotation.T + offset


def _same_up_to_sign(got: np.ndarray, expected: np.ndarray, tolerance: float = 1e-4) -> bool:
    if got.shape != expected.shape:
        return False
    for j in range(expected.shape[1]):
        sign = 1.0 if float(got[:, j] @ expected[:, j]) >= 0 else -1.0
        if not close(sign * got[:, j], expected[:, j], tolerance):
            return False
    return True


def _pca_hint(got: np.ndarray, points: np.ndarray, expected: np.ndarray) -> str:
    count, dims = points.shape
    if got.shape == (2, count):
        return "you return shape (2, N); return one row per point: shape (N, 2)."
    if got.shape == (2, dims):
        return ("these are the two directions (the principal components); project the centred "
                "points onto them: centred @ directions.T, shape (N, 2).")
    if got.shape == (count, dims) or got.shape == (count, min(count, dims)):
        return "you return every component; keep the first two coordinates, shape (N, 2)."
    if got.shape != (count, 2):
        return f"for {count} points of {dims} features return shape ({count}, 2); you return {got.shape}."
    centred = points - points.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    if _same_up_to_sign(got, expected[:, ::-1]):
        return ("your two columns are swapped: the first coordinate belongs to the direction of "
                "largest variance (the largest singular value).")
    if _same_up_to_sign(got, centred @ vt[-2:][::-1].T) or _same_up_to_sign(got, centred @ vt[-2:].T):
        return ("you keep the directions of *smallest* variance; PCA keeps the largest (np.linalg.svd "
                "sorts singular values from large to small, np.linalg.eigh from small to large).")
    if _same_up_to_sign(got, u[:, :2]):
        return ("your coordinates have length 1 per column: multiply by the singular values "
                "(U * S), or project: centred @ Vt[:2].T.")
    _, _, raw_vt = np.linalg.svd(points, full_matrices=False)
    if _same_up_to_sign(got, points @ raw_vt[:2].T):
        return "centre the features first: subtract each feature's mean over the points."
    if _same_up_to_sign(got - got.mean(axis=0), expected):
        return ("right directions, but the points are not centred: project the centred features "
                "(each feature minus its mean), not the raw ones.")
    standard = centred / centred.std(axis=0)
    _, _, z_vt = np.linalg.svd(standard, full_matrices=False)
    if _same_up_to_sign(got, standard @ z_vt[:2].T):
        return ("do not divide by each feature's standard deviation: PCA of the centred features "
                "keeps the directions in which the features themselves vary most.")
    return ("centre the features, take the SVD of the centred matrix, and project the centred points "
            "onto the two right singular vectors of largest singular value.")


@task("06.3", points=2, answer="pca_2d", title="PCA to two dimensions, from scratch")
def _(pca_2d):
    from sklearn.decomposition import PCA
    require_callable(pca_2d, "pca_2d")
    rng = fresh_rng()
    what = "pca_2d(features)"
    for _ in range(2):
        points = _random_features(rng)
        expected = PCA(n_components=2).fit_transform(points)
        got = as_numbers(call(pca_2d, points.copy(), what=what), what, "an array")
        if not _same_up_to_sign(got, expected):
            raise Hint(f"with {points.shape[0]} points of {points.shape[1]} features: "
                       + _pca_hint(got, points, expected))


# ----------------------------------------------------------------------------- 06.4

choice_task(
    "06.4", points=2, answer="true_statements",
    title="What top images, occlusion and t-SNE tell (multiple choice)",
    options="abcdef",
    key="f211ae70066c0052448307f4ac43927eeba7166bbe970e929df8f0547161946e",
    hint="at least one statement is judged wrongly. For each one, find the section of lesson 06 "
         "that speaks of it, or look again at your own figures above.")
