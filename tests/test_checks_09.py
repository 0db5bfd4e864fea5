"""The exercise checks of lesson 09: right answers pass, each typical mistake gets its own hint."""

import numpy as np
import pytest
from check_helpers import Memorised, outcome

from coursekit import checks, cues
from coursekit.checks import lesson09

# ----------------------------------------------------------------------------- reference answers

def category_scores(probabilities, groups):
    probabilities = np.asarray(probabilities)
    return np.stack([probabilities[:, list(group)].mean(axis=1) for group in groups], axis=1)


def shape_bias(decisions, shapes, textures):
    decisions, shapes, textures = np.asarray(decisions), np.asarray(shapes), np.asarray(textures)
    conflict = shapes != textures
    shape_hits = np.sum(conflict & (decisions == shapes))
    texture_hits = np.sum(conflict & (decisions == textures))
    return shape_hits / (shape_hits + texture_hits)


def shuffle_tiles(image, grid, seed):
    height, width, channels = image.shape
    h, w = height // grid, width // grid
    tiles = image.reshape(grid, h, grid, w, channels).transpose(0, 2, 1, 3, 4).reshape(grid * grid, h, w, channels)
    tiles = tiles[np.random.default_rng(seed).permutation(grid * grid)]
    return tiles.reshape(grid, grid, h, w, channels).transpose(0, 2, 1, 3, 4).reshape(image.shape)


RIGHT = {"09.1": category_scores, "09.2": shape_bias, "09.3": shuffle_tiles, "09.4": {"a", "d", "e"}}


@pytest.mark.parametrize("task_id", sorted(RIGHT))
def test_right_answers_pass_with_full_points(task_id):
    result = outcome(task_id, RIGHT[task_id])
    assert result.passed, result.message
    assert result.points == result.max_points == checks.find(task_id).points


def test_coursekit_itself_passes_the_checks_it_is_the_reference_of():
    """cues' own functions, wrapped to the tasks' signatures, are right answers (outside from-scratch
    checking: called here directly on each check's cases)."""
    rng = np.random.default_rng(0)
    probabilities, groups = lesson09._groups_case(rng)
    named = {f"g{k}": tuple(group) for k, group in enumerate(groups)}
    np.testing.assert_allclose(cues.category_scores(probabilities, named), category_scores(probabilities, groups))
    decisions, shapes, textures, counts = lesson09._bias_case(rng)
    assert cues.shape_bias(decisions, shapes, textures).bias == counts["shape"] / (counts["shape"] + counts["texture"])


def test_calling_coursekit_earns_nothing_in_from_scratch_tasks():
    result = outcome("09.1", lambda probabilities, groups: cues.category_scores(
        probabilities, {str(k): tuple(g) for k, g in enumerate(groups)}))
    assert not result.passed and "cues.category_scores" in result.message


# ----------------------------------------------------------------------------- wrong answers

def summed(probabilities, groups):
    return np.stack([np.asarray(probabilities)[:, list(g)].sum(axis=1) for g in groups], axis=1)


def maximum(probabilities, groups):
    return np.stack([np.asarray(probabilities)[:, list(g)].max(axis=1) for g in groups], axis=1)


def median(probabilities, groups):
    return np.stack([np.median(np.asarray(probabilities)[:, list(g)], axis=1) for g in groups], axis=1)


def transposed(probabilities, groups):
    return category_scores(probabilities, groups).T


def top_category(probabilities, groups):
    return category_scores(probabilities, groups).argmax(axis=1)


def counts_same_category(decisions, shapes, textures):
    decisions, shapes, textures = np.asarray(decisions), np.asarray(shapes), np.asarray(textures)
    shape_hits, texture_hits = np.sum(decisions == shapes), np.sum(decisions == textures)
    return shape_hits / (shape_hits + texture_hits)


def over_all_images(decisions, shapes, textures):
    decisions, shapes, textures = np.asarray(decisions), np.asarray(shapes), np.asarray(textures)
    return np.sum((shapes != textures) & (decisions == shapes)) / len(decisions)


def over_conflict_images(decisions, shapes, textures):
    decisions, shapes, textures = np.asarray(decisions), np.asarray(shapes), np.asarray(textures)
    conflict = shapes != textures
    return np.sum(conflict & (decisions == shapes)) / np.sum(conflict)


def texture_bias(decisions, shapes, textures):
    return 1 - shape_bias(decisions, shapes, textures)


def compares_lists(decisions, shapes, textures):   # list == list is one bool: 0 / 0
    conflict = np.array(shapes != textures)
    shape_hits = np.sum(conflict & (decisions == shapes))
    texture_hits = np.sum(conflict & (decisions == textures))
    with np.errstate(invalid="ignore"):
        return np.float64(shape_hits) / (shape_hits + texture_hits)


def with_replacement(image, grid, seed):
    height, width, channels = image.shape
    h, w = height // grid, width // grid
    tiles = image.reshape(grid, h, grid, w, channels).transpose(0, 2, 1, 3, 4).reshape(grid * grid, h, w, channels)
    tiles = tiles[np.random.default_rng(seed).integers(0, grid * grid, grid * grid)]
    return tiles.reshape(grid, grid, h, w, channels).transpose(0, 2, 1, 3, 4).reshape(image.shape)


def drops_a_tile(image, grid, seed):
    result = shuffle_tiles(image, grid, seed)
    h, w = image.shape[0] // grid, image.shape[1] // grid
    result[:h, :w] = result[-h:, -w:]     # the first tile overwritten by the last one
    return result


def swapped_tile_sides(image, grid, seed):   # tiles cut W/grid high and H/grid wide
    height, width, channels = image.shape
    h, w = width // grid, height // grid
    tiles = image.reshape(grid, h, grid, w, channels).transpose(0, 2, 1, 3, 4).reshape(grid * grid, h, w, channels)
    tiles = tiles[np.random.default_rng(seed).permutation(grid * grid)]
    return tiles.reshape(grid, grid, h, w, channels).transpose(0, 2, 1, 3, 4).reshape(image.shape)


def flips_tiles(image, grid, seed):
    height, width, channels = image.shape
    h, w = height // grid, width // grid
    tiles = image.reshape(grid, h, grid, w, channels).transpose(0, 2, 1, 3, 4).reshape(grid * grid, h, w, channels)
    tiles = tiles[np.random.default_rng(seed).permutation(grid * grid), ::-1]
    return tiles.reshape(grid, grid, h, w, channels).transpose(0, 2, 1, 3, 4).reshape(image.shape)


def unchanged(image, grid, seed):
    return image


def unseeded(image, grid, seed):
    return shuffle_tiles(image, grid, None)


def reversed_tiles(image, grid, seed):
    height, width, channels = image.shape
    h, w = height // grid, width // grid
    tiles = image.reshape(grid, h, grid, w, channels).transpose(0, 2, 1, 3, 4).reshape(grid * grid, h, w, channels)
    return tiles[::-1].reshape(grid, grid, h, w, channels).transpose(0, 2, 1, 3, 4).reshape(image.shape)


WRONG = [
    ("09.1", summed, "add up"),
    ("09.1", maximum, "largest probability"),
    ("09.1", median, "median"),
    ("09.1", transposed, "transpose"),
    ("09.1", top_category, "one number per image"),
    ("09.1", lambda probabilities, groups: 1 / 0, "ZeroDivisionError"),
    ("09.2", counts_same_category, "agree"),
    ("09.2", over_all_images, "all images"),
    ("09.2", over_conflict_images, "every cue-conflict image"),
    ("09.2", texture_bias, "texture decisions"),
    ("09.2", compares_lists, "np.asarray"),
    ("09.2", lambda decisions, shapes, textures: [0.5, 0.5], "one number"),
    ("09.3", with_replacement, "appear twice"),
    ("09.3", drops_a_tile, "appear twice"),
    ("09.3", swapped_tile_sides, "not tiles of the original"),
    ("09.3", flips_tiles, "not tiles of the original"),
    ("09.3", unchanged, "own places"),
    ("09.3", reversed_tiles, "same order"),
    ("09.3", unseeded, "same seed"),
    ("09.4", {"a", "d"}, "judged wrongly"),
    ("09.4", {"a", "z"}, "not options"),
]


@pytest.mark.parametrize("task_id, answer, words", WRONG)
def test_wrong_answers_get_a_specific_hint(task_id, answer, words):
    result = outcome(task_id, answer)
    assert not result.passed and result.points == 0 and not result.check_error, result.message
    assert words in result.message, result.message


@pytest.mark.parametrize("wrong", [summed, maximum, median])
def test_every_drawing_of_the_groups_tells_a_wrong_rule_from_the_mean(wrong):
    for seed in range(1000):
        probabilities, groups = lesson09._groups_case(np.random.default_rng(seed))
        assert not np.allclose(wrong(probabilities, groups), category_scores(probabilities, groups), rtol=1e-4), seed


@pytest.mark.parametrize("wrong, words", [(counts_same_category, "agree"), (over_all_images, "all images"),
                                          (over_conflict_images, "every cue-conflict image"),
                                          (texture_bias, "texture decisions")])
def test_every_drawing_of_the_decisions_gives_each_wrong_count_its_own_hint(wrong, words):
    for seed in range(1000):
        decisions, shapes, textures, counts = lesson09._bias_case(np.random.default_rng(seed))
        got = float(wrong(decisions, shapes, textures))
        assert abs(got - shape_bias(decisions, shapes, textures)) > 1e-6, seed
        assert words in lesson09._bias_hint(got, counts), seed


def test_every_drawn_tile_image_has_distinct_tiles_and_is_not_square():
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        grid = int(rng.integers(2, 6))
        image = lesson09._tile_image(rng, grid)
        tiles = lesson09._tiles(image, grid)
        assert image.shape[0] != image.shape[1]
        assert len({tile.tobytes() for tile in tiles}) == grid * grid, seed


class MemorisedGroups(Memorised):
    """A memorised answer to 09.1, whose groups are lists of different lengths (keyed by their text)."""

    def __call__(self, probabilities, groups):
        key = np.asarray(probabilities).tobytes() + repr(groups).encode()
        if self.recording:
            self.table[key] = self.reference(probabilities, groups)
        return self.table.get(key, next(iter(self.table.values())))


@pytest.mark.parametrize("task_id, kind, reference", [("09.1", MemorisedGroups, category_scores),
                                                     ("09.2", Memorised, shape_bias), ("09.3", Memorised, shuffle_tiles)])
def test_an_answer_hard_coded_from_one_check_fails_the_next(task_id, kind, reference):
    memorised = kind(reference)
    assert outcome(task_id, memorised).passed
    memorised.recording = False
    assert not outcome(task_id, memorised).passed
