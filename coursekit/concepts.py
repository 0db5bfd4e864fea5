"""Concepts: does a class depend on stripes? Concept activation vectors and TCAV (Kim et al. 2018).

A *concept* is given by example images (striped textures, a grey square in a corner). At one
layer, a linear classifier learns to tell the layer's activations of the concept images from
those of random images; the normal of its boundary, pointing towards the concept and scaled to
length 1, is the **concept activation vector** (CAV). Its held-out accuracy says whether the
layer separates the concept at all: a CAV near 50% accuracy is a random direction.

The **directional derivative** of a class score (taken before the softmax) along the CAV says
whether moving an image's activations towards the concept raises the class score; the **TCAV
score** is the share of a class's images for which it is positive. One CAV depends on the random
images it was learned against, so :func:`tcav_test` learns one CAV per random set and compares
the scores with those of CAVs that separate random images from random images, with a two-sided
t-test: a p-value below 0.05 says the concept's scores differ from chance. A significant score
near 1 says the concept raises the class, near 0 that it lowers it.

Activations are flattened: one vector of ``h * w * c`` numbers per image for a convolution layer.
Every function goes through the course's input contract (:mod:`coursekit._inputs`): a batch or one
image, classes as None / an int / one per image, layers inside nested models by name or path, and
``batch_size`` never changes a result. The images the course makes for its concepts (textures,
random images, drawn zebras, decoy squares) are at the end of this module.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import warnings
from functools import lru_cache

import keras
import numpy as np
import tensorflow as tf

from . import _forward, _inputs, env
from ._inputs import TOP_PREDICTION, batches, class_codes, image_batch, layer_path, n_classes

SIGNIFICANCE_LEVEL = 0.05


# ----------------------------------------------------------------------------- results

@dataclasses.dataclass(frozen=True)
class CAV:
    """A concept activation vector: a direction in one layer's flattened activation space."""

    direction: np.ndarray
    """float64 ``(D,)``, length 1, pointing from the random images' activations towards the concept's."""
    accuracy: float
    """Cross-validated (held-out) accuracy of the linear classifier in [0, 1] (0.5: no better than
    chance); NaN when a set had a single image, too few to hold one out."""
    layer: str = ""
    """The layer's path in the model ("" when made from activations alone)."""


@dataclasses.dataclass(frozen=True)
class TCAVResult:
    """What :func:`tcav_test` found for one concept, class and layer."""

    score: float
    """Mean TCAV score over the runs, in [0, 1]: the share of the class's images whose class score
    rises along the concept's CAV."""
    spread: float
    """Standard deviation of the runs' scores (0 for a single run)."""
    p_value: float
    """Two-sided t-test of the concept's scores against the random-vs-random scores; small: the
    concept's scores differ from what random directions give."""
    runs: int
    """Number of concept CAVs (one per random set but the first) = number of random-vs-random CAVs."""
    scores: np.ndarray
    """``(runs,)`` TCAV score of the concept against each random set."""
    random_scores: np.ndarray
    """``(runs,)`` TCAV score of the first random set against each of the others: the chance level."""
    accuracies: np.ndarray
    """``(runs,)`` held-out accuracy of each concept CAV."""
    random_accuracies: np.ndarray
    """``(runs,)`` held-out accuracy of each random-vs-random CAV (near 0.5 when the sets are alike)."""
    layer: str = ""
    """The layer's path in the model."""

    @property
    def significant(self) -> bool:
        """True when ``p_value`` is below 0.05 (:data:`SIGNIFICANCE_LEVEL`)."""
        return bool(self.p_value < SIGNIFICANCE_LEVEL)

    def describe(self) -> str:
        """One line: the score with its spread, the chance level, the p-value and the runs."""
        verdict = "significant" if self.significant else "not significant"
        return (f"TCAV {self.score:.2f} ± {self.spread:.2f} (random CAVs {np.mean(self.random_scores):.2f} ± "
                f"{_std(self.random_scores):.2f}), p = {self.p_value:.2g} over {self.runs} runs: {verdict}; "
                f"CAV accuracy {np.nanmean(self.accuracies):.2f}")


# ----------------------------------------------------------------------------- activations and gradients

ACTIVATION_BATCH = 32   # images per forward pass
# Images per gradient pass when none is given: the tape keeps every layer's activations of the
# batch, and for Xception at 299 px 32 images took more than 8 GB of host memory (8: 4.2 GB with
# the model); a GPU has the memory, and there larger batches are faster.
GRADIENT_BATCH = {"gpu": 32, "cpu": 4}


def gradient_batch_size() -> int:
    """:data:`GRADIENT_BATCH` for the device that runs the model."""
    return GRADIENT_BATCH["gpu" if env.has_gpu() else "cpu"]


def layer_activations(model: keras.Model, layer: str, images, *, batch_size: int = 32) -> np.ndarray:
    """The activations of ``layer`` for a preprocessed batch ``images``, one flat row per image.

    Returns float32 ``(N, D)``, ``D`` the number of values the layer outputs per image
    (``h * w * c`` for a convolution layer). ``layer``: a name, or a path into a nested model.
    """
    batch = image_batch(model, images)
    return _activations(model, [layer_path(model, layer)], batch, batch_size)[0]


def _activations(model: keras.Model, paths: list[str], batch: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Flat activations ``(N, D_l)`` of every layer in ``paths``, from one pass over ``batch``."""
    extractor = _inputs.outputs_model(model, paths)
    return [out.reshape(len(batch), -1) for out in _forward.predict_all(extractor, batch, batch_size)]


def layer_gradients(model: keras.Model, layer: str, images, class_index=None, *,
                    batch_size: int | None = None) -> np.ndarray:
    """The gradient of each image's class score, before the softmax, with respect to ``layer``'s activations.

    Returns float32 ``(N, D)``, flattened as in :func:`layer_activations`. ``class_index``: None
    (each image's top class), an int, or one per image. The score is the logit
    (:func:`coursekit.models.pre_softmax`): a probability could rise only because other classes fall.
    ``batch_size`` None: :data:`GRADIENT_BATCH` images at a time.
    """
    batch = image_batch(model, images)
    classes = class_codes(class_index, len(batch), n_classes(model))
    return _gradients(model, [layer_path(model, layer)], batch, classes, batch_size)[0]


def _gradients(model: keras.Model, paths: list[str], batch: np.ndarray, classes: np.ndarray,
               batch_size: int | None) -> list[np.ndarray]:
    """Flat gradients ``(N, D_l)`` of the class logits at every layer in ``paths``, one pass per batch.

    Run eagerly, not compiled: TCAV needs one gradient pass per class set, and compiling the pass
    for a model and layers costs more than running it a few times (seconds for MobileNetV2).
    """
    both = _inputs.outputs_model(model, list(paths), logits=True)   # (*activations, logits), nested models too
    parts = []
    for part in batches(len(batch), gradient_batch_size() if batch_size is None else batch_size):
        with tf.GradientTape() as tape:
            *activations, logits = both(tf.constant(batch[part]), training=False)
            tape.watch(activations)
            top = tf.argmax(logits, axis=-1, output_type=tf.int32)
            chosen = tf.where(classes[part] == TOP_PREDICTION, top, classes[part])
            # in inference mode images do not interact: the sum's gradient holds each image's own
            score = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
        gradients = tape.gradient(score, activations)
        for path, gradient in zip(paths, gradients):
            if gradient is None:
                raise ValueError(f"The class scores of {model.name!r} do not depend on layer {path!r}: choose a "
                                 "layer between the input and the class scores.")
        parts.append([gradient.numpy().reshape(len(gradient), -1) for gradient in gradients])
    return [np.concatenate(column) for column in zip(*parts)]


# ----------------------------------------------------------------------------- the CAV

CV_FOLDS = 3   # folds of the cross-validated accuracy of a CAV


def cav_from_activations(concept_activations, random_activations, *, seed: int = 0, layer: str = "") -> CAV:
    """The CAV separating ``concept_activations`` ``(n_c, ...)`` from ``random_activations`` ``(n_r, ...)``.

    Each row (flattened) is one image's activations at one layer. The direction is the weight
    vector of scikit-learn's logistic regression (L2-regularised, deterministic) fitted on all rows,
    scaled to length 1, pointing towards the concept. Its ``accuracy`` is cross-validated: the mean
    held-out accuracy over 3 stratified folds (``StratifiedKFold(3, shuffle=True,
    random_state=seed)``; fewer folds when a set has fewer than 3 images, NaN with a single one).
    """
    concept = _rows(concept_activations, "concept_activations")
    random = _rows(random_activations, "random_activations")
    if concept.shape[1] != random.shape[1]:
        raise ValueError(f"concept_activations have {concept.shape[1]} values per image but random_activations "
                         f"{random.shape[1]}: take both at the same layer.")
    rows = np.concatenate([concept, random])
    labels = np.concatenate([np.ones(len(concept), int), np.zeros(len(random), int)])
    with _one_blas_thread():
        gram = (rows @ rows.T).astype("float64")    # all the classifier needs to know of the rows
        coefficients, _ = _fit_on_gram(gram, labels)
        weights = rows.T @ coefficients.astype(rows.dtype)
        accuracy = _cross_validated_accuracy(gram, labels, seed)
    norm = float(np.linalg.norm(weights))
    if not norm > 0:
        raise ValueError("The concept's and the random images' activations cannot be told apart at all "
                         "(the classifier's weights are 0): are the two sets the same images?")
    return CAV((weights / norm).astype("float64"), accuracy, layer)


def _fit_on_gram(gram: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Logistic regression on rows known by their Gram matrix ``(n, n)``: weights = rows.T @ coefficients.

    A layer has far more values (D, up to ~10^6) than there are images (n), and L2-regularised
    weights lie in the span of the rows. So the same classifier is fitted on each row's coordinates
    in an orthonormal basis of that span (n numbers instead of D), read off the Gram matrix: the
    same weights, at a cost of n x n instead of n x D. Returns ``(coefficients (n,), intercept)``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    values, vectors = np.linalg.eigh(gram)
    kept = values > max(values.max(), 0) * 1e-10                 # the directions the rows span
    if not kept.any():
        return np.zeros(len(gram)), 0.0
    coordinates = vectors[:, kept] * np.sqrt(values[kept])        # rows in an orthonormal basis of their span
    classifier = LogisticRegression(max_iter=5000)
    with warnings.catch_warnings():   # separable sets in many dimensions: the weights' scale is moot
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(coordinates, labels)
    return vectors[:, kept] @ (classifier.coef_[0] / np.sqrt(values[kept])), float(classifier.intercept_[0])


def _cross_validated_accuracy(gram: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Mean held-out accuracy over stratified folds; NaN when a set has a single image."""
    from sklearn.model_selection import StratifiedKFold
    folds = min(CV_FOLDS, int(np.bincount(labels).min()))
    if folds < 2:
        return math.nan
    accuracies = []
    for fit, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(gram, labels):
        coefficients, intercept = _fit_on_gram(gram[np.ix_(fit, fit)], labels[fit])
        decision = gram[np.ix_(held_out, fit)] @ coefficients + intercept   # held-out rows @ weights + b
        accuracies.append(np.mean((decision > 0) == labels[held_out]))
    return float(np.mean(accuracies))


@contextlib.contextmanager
def _one_blas_thread():
    """Products of tall, thin matrices are quick on one core; with BLAS's own threads competing with
    TensorFlow's on a busy machine, the same products took a hundred times longer (measured)."""
    with _blas_threads().limit(limits=1, user_api="blas"):
        yield


@lru_cache(maxsize=1)
def _blas_threads():
    """threadpoolctl's view of the loaded BLAS libraries, found once (finding them reads the process's
    library list: 20 ms a time). scikit-learn is imported first so that scipy's BLAS is among them."""
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def _rows(activations, name: str) -> np.ndarray:
    """``activations`` as float32 ``(N, D)``, one flattened row per image, or a clear error."""
    try:
        array = np.asarray(activations, dtype="float32")
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers (N, ...); got {type(activations).__name__}.") from None
    if array.ndim < 2 or len(array) == 0:
        raise ValueError(f"{name} must hold one row of activations per image, shape (N, ...) with N >= 1; "
                         f"got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values.")
    return array.reshape(len(array), -1)


def concept_activation_vector(model: keras.Model, layer: str, concept_images, random_images, *, seed: int = 0,
                              batch_size: int = 32) -> CAV:
    """The CAV of a concept at ``layer``: concept images against random images (:func:`cav_from_activations`).

    ``concept_images``, ``random_images``: preprocessed batches for ``model`` (or one image each).
    Returns a :class:`CAV`: its unit ``direction`` ``(D,)`` in the layer's flattened activations and
    the held-out ``accuracy`` of the classifier, which says whether the layer separates the concept.
    """
    concept = layer_activations(model, layer, concept_images, batch_size=batch_size)
    random = layer_activations(model, layer, random_images, batch_size=batch_size)
    return cav_from_activations(concept, random, seed=seed, layer=layer_path(model, layer))


# ----------------------------------------------------------------------------- sensitivity and the TCAV score

def directional_derivatives(model: keras.Model, layer: str, images, class_index, cav, *,
                            batch_size: int | None = None) -> np.ndarray:
    """How fast each image's class score (before the softmax) rises along ``cav`` at ``layer``.

    ``cav``: a :class:`CAV` made at the same layer, or a direction ``(D,)``. Returns float64 ``(N,)``:
    the dot product of the score's gradient (:func:`layer_gradients`) with the CAV's direction.
    Positive: moving the image's activations towards the concept raises the class score.
    """
    direction = _direction(model, layer, cav)
    gradients = layer_gradients(model, layer, images, class_index, batch_size=batch_size)
    return _along(gradients, direction)


def _along(gradients: np.ndarray, direction: np.ndarray) -> np.ndarray:
    if gradients.shape[1] != direction.shape[0]:
        raise ValueError(f"The CAV has {direction.shape[0]} values but the layer gives {gradients.shape[1]} per "
                         "image: make the CAV at the same layer.")
    with _one_blas_thread():
        return gradients.astype("float64") @ direction


def _direction(model: keras.Model, layer: str, cav) -> np.ndarray:
    if isinstance(cav, CAV):
        if cav.layer and cav.layer != layer_path(model, layer):
            raise ValueError(f"This CAV was made at layer {cav.layer!r}, not {layer!r}: a CAV is a direction "
                             "in one layer's activations. Make one at this layer.")
        cav = cav.direction
    direction = np.asarray(cav, dtype="float64")
    if direction.ndim != 1 or not np.isfinite(direction).all() or not np.linalg.norm(direction) > 0:
        raise ValueError(f"cav must be a CAV or a non-zero direction (D,) of finite numbers; got shape {direction.shape}.")
    return direction


def tcav_score(derivatives) -> float:
    """The share of the images whose directional derivative is positive, in [0, 1].

    ``derivatives``: ``(N,)`` from :func:`directional_derivatives`. A derivative of exactly 0
    (the class score does not move at all, e.g. behind a dead ReLU) does not count as positive.
    """
    values = np.asarray(derivatives, dtype="float64").ravel()
    if values.size == 0:
        raise ValueError("No derivatives: the TCAV score needs at least one image of the class.")
    return float(np.mean(values > 0))


def p_value(concept_scores, random_scores) -> float:
    """Two-sided p-value of Student's t-test: do the concept's TCAV scores differ from random CAVs'?

    Both ``(runs,)``, each run a CAV against another random set. Two-sided, because a concept can
    differ from chance both ways: raise the class (score near 1) or lower it (near 0). When neither
    list varies at all (the t statistic is undefined), 1.0 if their means are equal, else 0.0.
    """
    from scipy import stats
    concept = np.asarray(concept_scores, dtype="float64").ravel()
    random = np.asarray(random_scores, dtype="float64").ravel()
    if len(concept) < 2 or len(random) < 2:
        raise ValueError(f"A t-test needs at least 2 scores on each side; got {len(concept)} and {len(random)}. "
                         "Use more random sets.")
    if np.ptp(concept) == 0 and np.ptp(random) == 0:
        return 1.0 if concept[0] == random[0] else 0.0
    with warnings.catch_warnings():   # scipy warns of lost precision when one side does not vary; it is exact then
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(concept, random).pvalue)


# ----------------------------------------------------------------------------- the test

def tcav_test(model: keras.Model, layer, images, class_index, concept_images, random_sets, *,
              seed: int = 0, batch_size: int | None = None):
    """TCAV with its significance test (Kim et al. 2018) for a concept and a class at a layer.

    ``images``: preprocessed images of the class (a batch); ``class_index``: None (each image's top
    class), an int, or one per image. ``concept_images``: a batch of the concept. ``random_sets``: a
    list of at least 3 batches of random images (or an array ``(sets, n, H, W, C)``). Run ``k``
    (1, 2, ...) learns a CAV of the concept against random set ``k``, and a CAV of random set 0 (a
    stand-in for a concept with no meaning) against the same set: ``runs = len(random_sets) - 1``
    TCAV scores on each side, compared by :func:`p_value`. Each set's activations are computed
    once and dropped after their run, so memory holds a few sets at a time, however many runs.

    Returns a :class:`TCAVResult`. Several at once, sharing the passes over the random sets:
    ``layer`` a list of layers gives ``{layer: TCAVResult}``; ``concept_images`` a dict
    ``{name: batch}`` gives ``{name: result}`` (each result a dict over layers when ``layer`` is a list).
    """
    many_layers = isinstance(layer, (list, tuple))
    names = list(layer) if many_layers else [layer]
    if not names:
        raise ValueError("layer must name a layer, or be a non-empty list of layers.")
    many_concepts = isinstance(concept_images, dict)
    concept_sets = dict(concept_images) if many_concepts else {"concept": concept_images}
    if not concept_sets:
        raise ValueError("concept_images is an empty dict: give at least one concept's images.")
    paths = [layer_path(model, name) for name in names]
    batch = image_batch(model, images)
    classes = class_codes(class_index, len(batch), n_classes(model))
    sets = _sets(random_sets)
    gradients = _gradients(model, paths, batch, classes, batch_size)
    batch_size = ACTIVATION_BATCH if batch_size is None else batch_size   # forward passes only from here
    concept_activations = {key: _activations(model, paths, image_batch(model, concept_batch), batch_size)
                           for key, concept_batch in concept_sets.items()}
    first = _activations(model, paths, image_batch(model, sets[0]), batch_size)
    runs = {key: [[] for _ in paths] for key in concept_sets}   # per concept and layer: (concept CAV, random CAV)
    for run, random_set in enumerate(sets[1:], start=1):
        random = _activations(model, paths, image_batch(model, random_set), batch_size)
        for i, path in enumerate(paths):
            random_cav = cav_from_activations(first[i], random[i], seed=seed + run, layer=path)
            for key, activations in concept_activations.items():
                runs[key][i].append((cav_from_activations(activations[i], random[i], seed=seed + run, layer=path),
                                     random_cav))
    results = {key: {name: _result(gradients[i], runs[key][i], paths[i]) for i, name in enumerate(names)}
               for key in concept_sets}
    if not many_layers:
        results = {key: by_layer[names[0]] for key, by_layer in results.items()}
    return results if many_concepts else results["concept"]


def tcav_from_activations(gradients, concept_activations, random_activations, *, seed: int = 0,
                          layer: str = "") -> TCAVResult:
    """The significance test of :func:`tcav_test`, on activations and gradients already computed.

    ``gradients``: ``(N, D)`` of the class scores at the layer (:func:`layer_gradients`);
    ``concept_activations``: ``(n, D)``; ``random_activations``: a list of at least 3 arrays
    ``(n_i, D)`` (:func:`layer_activations` of each random set). Run ``k`` learns the concept's CAV
    and random set 0's CAV against random set ``k``, both with seed ``seed + k``: the same
    results as :func:`tcav_test` on the images.
    """
    randoms = _sets(random_activations)
    runs = [(cav_from_activations(concept_activations, random, seed=seed + run, layer=layer),
             cav_from_activations(randoms[0], random, seed=seed + run, layer=layer))
            for run, random in enumerate(randoms[1:], start=1)]
    return _result(_rows(gradients, "gradients"), runs, layer)


def _result(gradients: np.ndarray, runs: list[tuple[CAV, CAV]], layer: str) -> TCAVResult:
    scores = np.array([tcav_score(_along(gradients, concept.direction)) for concept, _ in runs])
    random_scores = np.array([tcav_score(_along(gradients, random.direction)) for _, random in runs])
    return TCAVResult(score=float(scores.mean()), spread=_std(scores), p_value=p_value(scores, random_scores),
                      runs=len(runs), scores=scores, random_scores=random_scores,
                      accuracies=np.array([concept.accuracy for concept, _ in runs]),
                      random_accuracies=np.array([random.accuracy for _, random in runs]), layer=layer)


def _sets(random_sets) -> list:
    if isinstance(random_sets, np.ndarray) and random_sets.ndim >= 3:
        random_sets = list(random_sets)
    if not isinstance(random_sets, (list, tuple)) or len(random_sets) < 3:
        count = len(random_sets) if isinstance(random_sets, (list, tuple)) else type(random_sets).__name__
        raise ValueError(f"random_sets must be a list of at least 3 batches of random images (the first stands in "
                         f"for a meaningless concept, each other gives one run); got {count}. "
                         "random_image_sets(...) makes them.")
    return list(random_sets)


def _std(values) -> float:
    values = np.asarray(values, dtype="float64")
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def cosine(a, b) -> float:
    """Cosine of the angle between two directions (CAVs or arrays ``(D,)``), in [-1, 1]."""
    a = np.asarray(a.direction if isinstance(a, CAV) else a, dtype="float64").ravel()
    b = np.asarray(b.direction if isinstance(b, CAV) else b, dtype="float64").ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ----------------------------------------------------------------------------- concept images the course makes

TEXTURES = ("striped", "dotted", "zigzag", "chequered")


def textures(kind: str, count: int, size: int | tuple[int, int] = 224, seed: int = 0) -> np.ndarray:
    """``count`` images of a texture concept, uint8 ``(count, H, W, 3)``, each drawn at random.

    ``kind``: ``"striped"`` (parallel bands), ``"dotted"`` (a grid of round dots), ``"zigzag"``
    (bands bent into sharp zigzags) or ``"chequered"`` (a chessboard): every image gets its own
    two colours (far apart in brightness), orientation and scale, so that what the images share is
    the pattern alone. The same ``seed`` gives the same images.
    """
    if kind not in TEXTURES:
        raise ValueError(f"No texture {kind!r}: choose one of {', '.join(TEXTURES)}.")
    height, width = _size(size)
    count = _count(count)
    rng = np.random.default_rng([seed, TEXTURES.index(kind)])
    return np.stack([_texture(kind, height, width, rng) for _ in range(count)])


def _texture(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width].astype("float32")
    angle = rng.uniform(0, np.pi)
    u = cols * np.cos(angle) + rows * np.sin(angle)      # across the bands
    v = -cols * np.sin(angle) + rows * np.cos(angle)     # along them
    period = rng.uniform(0.06, 0.2) * min(height, width)
    if kind == "striped":
        pattern = (u / period) % 1 < rng.uniform(0.35, 0.65)
    elif kind == "zigzag":
        wave = period * rng.uniform(1.0, 2.5)             # length of one zig and one zag along the band
        bend = np.abs((v / wave) % 1 - 0.5) * 2 * rng.uniform(0.8, 1.6) * period
        pattern = ((u + bend) / period) % 1 < 0.5
    elif kind == "chequered":
        pattern = ((u / period) % 1 < 0.5) ^ ((v / period) % 1 < 0.5)
    else:  # dotted: a disc in the middle of every cell of a grid
        radius = rng.uniform(0.2, 0.38)
        pattern = np.hypot((u / period) % 1 - 0.5, (v / period) % 1 - 0.5) < radius
    dark, light = _two_colours(rng)
    return np.where(pattern[..., None], light, dark).astype(np.uint8)


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two random RGB colours whose brightness differs by at least a third of the range."""
    while True:
        first, second = rng.uniform(0, 255, size=(2, 3))
        if abs(first.mean() - second.mean()) > 85:
            return (first, second) if first.mean() < second.mean() else (second, first)


RANDOM_PHOTOS = ("cat", "coffee", "astronaut", "rocket", "grace_hopper", "china", "flower")


def random_images(count: int, size: int | tuple[int, int] = 224, seed: int = 0, noise_share: float = 0.25) -> np.ndarray:
    """``count`` "random" images, uint8 ``(count, H, W, 3)``: what a concept is learned against.

    Most are random crops (position, scale, mirror) of the bundled photos :data:`RANDOM_PHOTOS`;
    a share ``noise_share`` of them are smooth random noise (random colours and grain size). They
    stand in for the random ImageNet images of the TCAV paper: varied, and with no one pattern in
    common. The same ``seed`` gives the same images.
    """
    height, width = _size(size)
    count = _count(count)
    if not 0.0 <= noise_share <= 1.0:
        raise ValueError(f"noise_share is a share in [0, 1]; got {noise_share!r}.")
    rng = np.random.default_rng([seed, 99])
    photos = [_photo(name) for name in RANDOM_PHOTOS]
    images = []
    for _ in range(count):
        if rng.uniform() < noise_share:
            images.append(_smooth_noise(height, width, rng))
        else:
            crop = _crop(photos[rng.integers(len(photos))], rng)
            images.append(_resized(crop[:, ::-1] if rng.uniform() < 0.5 else crop, height, width))
    return np.stack(images)


def random_image_sets(sets: int, per_set: int, size: int | tuple[int, int] = 224, seed: int = 0) -> list[np.ndarray]:
    """``sets`` independent batches of :func:`random_images`, each uint8 ``(per_set, H, W, 3)``."""
    return [random_images(per_set, size, seed=seed * 1000 + number) for number in range(_count(sets))]


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    from .data import sample_image
    photo = sample_image(name)
    photo.setflags(write=False)
    return photo


def _crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random square crop whose side is 30% to 100% of the image's shorter side."""
    height, width = image.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(height, width))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    return image[top:top + side, left:left + side]


def _smooth_noise(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    grain = int(rng.integers(4, 33))   # cells of random colour, blown up smoothly
    cells = rng.uniform(0, 255, size=(max(2, height // grain), max(2, width // grain), 3)).astype("float32")
    return _resized(cells, height, width)


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2
    shrinking = image.shape[0] > height
    resized = cv2.resize(np.ascontiguousarray(image), (width, height),
                         interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return np.clip(resized, 0, 255).astype(np.uint8)


def drawn_zebras(count: int, size: int | tuple[int, int] = 224, seed: int = 0) -> np.ndarray:
    """``count`` drawings of a zebra, uint8 ``(count, H, W, 3)``: a horse's outline filled with stripes.

    Offline there are no zebra photos, so the course draws its own: scikit-image's horse silhouette
    (``skimage.data.horse``), mirrored at random, at a random place and size, filled with black and
    white stripes that run across the body (slightly bent, random width), on a random crop of
    scikit-image's grass in a dry-grass tint. ImageNet models call many of them "zebra" (print
    what yours says). The same ``seed`` gives the same images.
    """
    import skimage.data
    height, width = _size(size)
    count = _count(count)
    rng = np.random.default_rng([seed, 7])
    horse = ~np.asarray(skimage.data.horse(), dtype=bool)        # True on the horse
    grass = _photo_grey("grass")
    rows, cols = np.mgrid[0:height, 0:width].astype("float32")
    images = []
    for _ in range(count):
        outline = horse[:, ::-1] if rng.uniform() < 0.5 else horse
        ground = _resized(_crop(grass, rng), height, width).astype("float32")[..., None]
        tint = np.array([rng.uniform(0.75, 1.0), rng.uniform(0.6, 0.85), rng.uniform(0.3, 0.5)])
        canvas = 30 + 0.9 * ground * tint
        body_width = int(rng.uniform(0.6, 0.95) * width)
        body_height = min(height, int(body_width * outline.shape[0] / outline.shape[1]))
        mask = _resized(outline.astype(np.uint8) * 255, body_height, body_width) > 127
        top, left = int(rng.integers(0, height - body_height + 1)), int(rng.integers(0, width - body_width + 1))
        inside = np.zeros((height, width), bool)
        inside[top:top + body_height, left:left + body_width] = mask
        period = rng.uniform(0.03, 0.06) * width
        bent = cols + 0.03 * width * np.sin(rows / height * 2 * np.pi * rng.uniform(1, 3) + rng.uniform(0, 2 * np.pi))
        stripes = np.where((bent / period) % 1 < 0.5, 235.0, 20.0)[..., None]
        images.append(np.clip(np.where(inside[..., None], stripes, canvas), 0, 255).astype(np.uint8))
    return np.stack(images)


@lru_cache(maxsize=None)
def _photo_grey(name: str) -> np.ndarray:
    import skimage.data
    photo = np.asarray(getattr(skimage.data, name)())
    photo.setflags(write=False)
    return photo


def decoy_squares(digit: int, count: int | None = None, backgrounds=None, seed: int = 0) -> np.ndarray:
    """The decoy square of lesson 05 as a concept: squares that encode ``digit``, uint8 ``(N, 28, 28)``.

    Each image gets the 4x4 square of :func:`coursekit.data.decoy_mnist` (grey ``255 - 25 * digit``)
    in a random corner. ``backgrounds``: None (``count`` black images: the square alone) or digits
    ``(N, 28, 28)`` in [0, 255] to paint the squares on (random digits: the square is then the only
    thing the concept images share). The same ``seed`` gives the same corners.
    """
    from .data import decoy_mnist
    if isinstance(digit, bool) or not isinstance(digit, (numbers.Integral, np.integer)) or not 0 <= digit <= 9:
        raise ValueError(f"digit must be a whole number from 0 to 9; got {digit!r}.")
    if backgrounds is None:
        backgrounds = np.zeros((_count(count), 28, 28), np.uint8)
    backgrounds = np.asarray(backgrounds)
    if count is not None and len(backgrounds) != count:
        raise ValueError(f"count is {count} but {len(backgrounds)} backgrounds were given: pass one or the other.")
    squares, _ = decoy_mnist(backgrounds, np.full(len(backgrounds), int(digit)), seed=seed)
    return squares


def _size(size) -> tuple[int, int]:
    height, width = (size, size) if np.isscalar(size) else tuple(size)
    if min(int(height), int(width)) < 8:
        raise ValueError(f"size must be at least 8 pixels a side; got {size!r}.")
    return int(height), int(width)


def _count(count) -> int:
    if isinstance(count, bool) or not isinstance(count, (numbers.Integral, np.integer)) or count < 1:
        raise ValueError(f"count must be a whole number >= 1; got {count!r}.")
    return int(count)
