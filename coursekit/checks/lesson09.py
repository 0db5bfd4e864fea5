"""Checks of the exercises of lesson 09 (texture or shape?): solutions/09_texture_or_shape.ipynb.

Every check draws fresh random probabilities, decisions and images, so an answer that hard-codes
what the notebook's own example produces does not pass. Each case is drawn so that the typical
mistakes give another answer than the right one: a sum or a maximum instead of the mean (groups
of different sizes), counting same-category images or dividing by all images (cases that have
same-category images, decisions that are neither, and unequal shape and texture counts), a
shuffle that drops, repeats or changes tiles (images whose tiles all differ, not square).
References: ``coursekit.cues`` (``category_scores``, ``shape_bias``, ``shuffle_patches``).
"""
from __future__ import annotations

import numpy as np

from .core import Hint, as_numbers, call, choice_task, close, fresh_rng, require_callable, task

# ----------------------------------------------------------------------------- 09.1

def _groups_case(rng: np.random.Generator) -> tuple[np.ndarray, list[list[int]]]:
    """Probabilities ``(N, C)`` (rows sum to 1) and 3-5 disjoint groups of class indices of
    different sizes: one of a single class, one of at least 3 (so that the sum, the maximum and
    the median all differ from the mean), listed in a random order of indices."""
    count, classes = int(rng.integers(2, 6)), int(rng.integers(30, 60))
    sizes = [1, int(rng.integers(3, 7))] + [int(rng.integers(2, 7)) for _ in range(int(rng.integers(1, 4)))]
    rng.shuffle(sizes)
    indices = rng.permutation(classes)
    groups, start = [], 0
    for size in sizes:
        groups.append([int(i) for i in indices[start:start + size]])
        start += size
    probabilities = rng.dirichlet(np.full(classes, 0.3), size=count)
    return probabilities, groups


def _aggregate(probabilities: np.ndarray, groups, how) -> np.ndarray:
    return np.stack([how(probabilities[:, group], axis=1) for group in groups], axis=1)


def _scores_hint(got: np.ndarray, probabilities: np.ndarray, groups) -> str:
    for how, hint in ((np.sum, "you add up each category's probabilities; the published rule takes their "
                                "mean, so that a category with many classes (dog has 109) is not favoured."),
                      (np.max, "you take each category's largest probability; the published rule takes the "
                               "mean over all of its classes."),
                      (np.median, "you take the median; the published rule takes the mean.")):
        if close(got, _aggregate(probabilities, groups, how)):
            return hint
    if close(got, _aggregate(probabilities, groups, np.mean).T):
        return "rows are images and columns are categories: return shape (N, categories), not its transpose."
    return ("the score of category k for image n is the mean of probabilities[n, i] over the class "
            "indices i of groups[k].")


@task("09.1", points=3, answer="category_scores", title="From 1,000 classes to 16 categories: the mean rule",
      from_scratch=("cues.category_scores",))
def _(category_scores):
    require_callable(category_scores, "category_scores")
    rng = fresh_rng()
    what = "category_scores(probabilities, groups)"
    for _ in range(2):
        probabilities, groups = _groups_case(rng)
        got = as_numbers(call(category_scores, probabilities.copy(), [list(g) for g in groups], what=what), what)
        expected = _aggregate(probabilities, groups, np.mean)
        if got.shape != expected.shape:
            if got.shape == (len(probabilities),):
                raise Hint(f"you return one number per image, shape {got.shape}: return every category's "
                           f"score, shape ({len(probabilities)}, {len(groups)}); the decision (the top "
                           "category) comes after.")
            if got.shape == expected.shape[::-1]:
                raise Hint("rows are images and columns are categories: return shape (N, categories) = "
                           f"{expected.shape}, not its transpose {got.shape}.")
            raise Hint(f"for probabilities of shape {probabilities.shape} and {len(groups)} groups you return "
                       f"shape {got.shape}; one score per image and category is shape {expected.shape}.")
        if not close(got, expected, tolerance=1e-6):
            raise Hint(_scores_hint(got, probabilities, groups))


# ----------------------------------------------------------------------------- 09.2

def _mistaken_biases(counts: dict) -> dict[str, float]:
    """What the right count and each typical mistake give for these counts."""
    s, t, n = counts["shape"], counts["texture"], counts["neither"]
    hit, same = counts["same_hit"], counts["same_hit"] + counts["same_miss"]
    return {"right": s / (s + t), "texture": t / (s + t),
            "same counted twice": (s + hit) / (s + t + 2 * hit), "same counted as shape": (s + hit) / (s + t + hit),
            "all images": s / (s + t + n + same), "all images, same counted": (s + hit) / (s + t + n + same),
            "conflict images": s / (s + t + n)}


def _bias_counts(rng: np.random.Generator) -> dict:
    """Counts of shape hits, texture hits, neither, same-category images decided as their category
    and otherwise, redrawn until the right count and every mistake of :func:`_mistaken_biases` give
    numbers that differ from each other (so that each mistake gets its own hint)."""
    while True:
        counts = {"shape": int(rng.integers(1, 9)), "texture": int(rng.integers(1, 9)),
                  "neither": int(rng.integers(1, 6)), "same_hit": int(rng.integers(1, 4)),
                  "same_miss": int(rng.integers(1, 3))}
        values = sorted(_mistaken_biases(counts).values())
        if min(b - a for a, b in zip(values, values[1:])) > 1e-6:
            return counts


def _bias_case(rng: np.random.Generator) -> tuple[list[str], list[str], list[str], dict]:
    """Decisions, shapes and textures (lists of category names) with counts from :func:`_bias_counts`:
    at least one decision that is neither, same-category images decided as their category and
    otherwise, and shape and texture hits in numbers that tell every typical mistake apart."""
    from ..cues import CATEGORIES
    counts = _bias_counts(rng)
    rows = []
    for kind, count in counts.items():
        for _ in range(count):
            if kind.startswith("same"):
                shape = texture = str(rng.choice(CATEGORIES))
                decided = shape if kind == "same_hit" else str(rng.choice([c for c in CATEGORIES if c != shape]))
            else:
                shape, texture, other = (str(c) for c in rng.choice(CATEGORIES, size=3, replace=False))
                decided = {"shape": shape, "texture": texture, "neither": other}[kind]
            rows.append((decided, shape, texture))
    rng.shuffle(rows)
    decisions, shapes, textures = (list(column) for column in zip(*rows))
    return decisions, shapes, textures, counts


_BIAS_HINTS = {
    "texture": "that is the share of texture decisions; the shape bias counts the shape decisions.",
    "same counted twice": "you count images whose shape and texture categories agree (a cat with cat texture): "
                          "leave them out, they cannot tell shape from texture.",
    "all images": "you divide by all images; divide by the decisions that were a shape or a texture hit "
                  "(shape hits + texture hits).",
    "conflict images": "you divide by every cue-conflict image; decisions that are neither the shape's nor the "
                       "texture's category are left out: divide by shape hits + texture hits.",
}
_BIAS_HINTS["same counted as shape"] = _BIAS_HINTS["same counted twice"]
_BIAS_HINTS["all images, same counted"] = _BIAS_HINTS["all images"]


def _bias_hint(got: float, counts: dict) -> str:
    for mistake, value in _mistaken_biases(counts).items():
        if mistake != "right" and abs(got - value) < 1e-9:
            return _BIAS_HINTS[mistake]
    return "shape bias = shape hits / (shape hits + texture hits), counting only images whose shape and texture differ."


@task("09.2", points=3, answer="shape_bias", title="Shape bias: shape hits / (shape hits + texture hits)",
      from_scratch=("cues.shape_bias",))
def _(shape_bias):
    require_callable(shape_bias, "shape_bias")
    rng = fresh_rng()
    what = "shape_bias(decisions, shapes, textures)"
    for _ in range(2):
        decisions, shapes, textures, counts = _bias_case(rng)
        got = as_numbers(call(shape_bias, list(decisions), list(shapes), list(textures), what=what), what,
                         expected="one number")
        if got.size != 1:
            raise Hint(f"return one number, the shape bias; {what} returned an array of shape {got.shape}.")
        got = float(got.ravel()[0])
        expected = counts["shape"] / (counts["shape"] + counts["texture"])
        if not np.isfinite(got):
            raise Hint(f"{what} returned {got} for a case with {counts['shape']} shape and {counts['texture']} "
                       "texture hits. The check passes lists of names: compare them as numpy arrays "
                       "(np.asarray), since list == list compares whole lists.")
        if abs(got - expected) > 1e-9:
            raise Hint(_bias_hint(got, counts))


# ----------------------------------------------------------------------------- 09.3

def _tiles(image: np.ndarray, grid: int) -> np.ndarray:
    """The ``grid * grid`` tiles of ``image`` ``(H, W, C)``, row by row, as ``(grid * grid, h, w, C)``."""
    height, width, channels = image.shape
    return (image.reshape(grid, height // grid, grid, width // grid, channels)
            .transpose(0, 2, 1, 3, 4).reshape(grid * grid, height // grid, width // grid, channels))


def _tile_image(rng: np.random.Generator, grid: int) -> np.ndarray:
    """A random uint8 image of ``grid`` x ``grid`` tiles, not square (tile height != width), all tiles different."""
    tile_h = int(rng.integers(3, 8))
    tile_w = tile_h + int(rng.integers(1, 4))
    return rng.integers(0, 256, size=(grid * tile_h, grid * tile_w, 3), dtype=np.uint8)


def _tile_order(got: np.ndarray, image: np.ndarray, grid: int, what: str) -> tuple[int, ...]:
    """Where each tile of ``got`` came from in ``image``, or a Hint naming what went wrong."""
    if got.shape != image.shape:
        raise Hint(f"for an image of shape {image.shape} and grid={grid}, {what} returned shape {got.shape}; "
                   "the shuffled image has the shape of the original.")
    originals = {tile.tobytes(): index for index, tile in enumerate(_tiles(image.astype("float64"), grid))}
    found = [originals.get(tile.tobytes()) for tile in _tiles(got.astype("float64"), grid)]
    if any(index is None for index in found):
        raise Hint(f"with grid={grid} on a {image.shape[0]}x{image.shape[1]} image, some tiles of your result are "
                   "not tiles of the original: keep every tile as it is (do not flip or mix pixels), and cut "
                   "tiles of height H/grid and width W/grid (this image is not square).")
    if len(set(found)) != len(found):
        repeated = len(found) - len(set(found))
        raise Hint(f"with grid={grid}, {repeated} tile(s) appear twice and as many are missing: draw a "
                   "permutation of the tiles (each exactly once), not tiles at random with replacement.")
    return tuple(found)


@task("09.3", points=3, answer="shuffle_tiles", title="Shuffle the tiles of an image",
      from_scratch=("cues.shuffle_patches",))
def _(shuffle_tiles):
    require_callable(shuffle_tiles, "shuffle_tiles")
    rng = fresh_rng()
    what = "shuffle_tiles(image, grid, seed)"
    image = _tile_image(rng, 1)
    got = as_numbers(call(shuffle_tiles, image.copy(), 1, 0, what=what), what, expected="an image")
    _tile_order(got, image, 1, what)   # with grid=1 the one tile is the whole image, unchanged
    grid = int(rng.integers(3, 6))
    image = _tile_image(rng, grid)
    orders = []
    for seed in rng.choice(1000, size=5, replace=False):
        got = as_numbers(call(shuffle_tiles, image.copy(), grid, int(seed), what=what), what, expected="an image")
        orders.append(_tile_order(got, image, grid, what))
    identity = tuple(range(grid * grid))
    if all(order == identity for order in orders):
        raise Hint("the tiles come back in their own places: permute them (np.random.default_rng(seed).permutation).")
    if len(set(orders)) == 1:
        raise Hint("every seed gives the same order of tiles: draw the permutation with a generator seeded by `seed`.")
    again = as_numbers(call(shuffle_tiles, image.copy(), grid, int(seed), what=what), what, expected="an image")
    if _tile_order(again, image, grid, what) != orders[-1]:
        raise Hint("the same seed should give the same shuffle: use np.random.default_rng(seed), not the global "
                   "random state.")
    other_grid = 2 if grid != 2 else 3
    image = _tile_image(rng, other_grid)
    got = as_numbers(call(shuffle_tiles, image.copy(), other_grid, 1, what=what), what, expected="an image")
    _tile_order(got, image, other_grid, what)


# ----------------------------------------------------------------------------- 09.4

choice_task(
    "09.4", points=1, answer="true_statements", title="Reading a shape bias (multiple choice)",
    options="abcdef",
    key="8217a769dd6586a29beb2b4a81de2cb4fe640210ed5407a7c48517cee6395ee8",
    hint="at least one statement is judged wrongly. For each one, find the section of lesson 09 "
         "that speaks of it, or try it with your functions above.")
