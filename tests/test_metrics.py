import keras
import numpy as np
import pytest
from scipy.stats import spearmanr

from coursekit import metrics


def test_mass_in_mask_by_hand():
    heat = np.zeros((2, 4, 4))
    heat[0, 0, 0], heat[0, 3, 3] = 3.0, 1.0
    heat[1] = 1.0
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    np.testing.assert_allclose(metrics.mass_in_mask(heat, mask), [0.75, 4 / 16])
    assert metrics.mass_in_mask(np.zeros((1, 4, 4)), mask).tolist() == [0.0]  # no mass: 0, not NaN


def test_mass_in_mask_refuses_bad_input():
    with pytest.raises(ValueError, match="do not match"):
        metrics.mass_in_mask(np.ones((2, 4, 4)), np.ones((2, 5, 5), bool))
    with pytest.raises(ValueError, match="non-negative"):
        metrics.mass_in_mask(-np.ones((1, 4, 4)), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="boolean"):
        metrics.mass_in_mask(np.ones((1, 4, 4)), np.full((4, 4), 0.5))


def test_pointing_game_hits_and_tolerance():
    heat = np.zeros((3, 10, 10))
    heat[0, 1, 1] = 1    # inside
    heat[1, 8, 8] = 1    # far outside
    heat[2, 1, 4] = 1    # one pixel right of the mask
    mask = np.zeros((10, 10), bool)
    mask[:3, :3] = True
    assert metrics.pointing_game(heat, mask).tolist() == [True, False, False]
    assert metrics.pointing_game(heat, mask, tolerance=2).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="do not match"):
        metrics.pointing_game(heat, np.ones((2, 10, 10), bool))


def weighted_sum_model(weights):
    """Class 0's logit is a fixed positive weighting of the pixels, class 1's is 0."""
    side = weights.shape[0]
    inputs = keras.Input((side, side, 1))
    flat = keras.layers.Flatten()(inputs)
    kernel = np.stack([weights.ravel(), np.zeros(side * side)], axis=1)
    dense = keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.Constant(kernel),
                               bias_initializer=keras.initializers.Constant([-3.0, 0.0]))
    return keras.Model(inputs, dense(flat))


def test_a_perfect_ordering_beats_a_random_one():
    rng = np.random.default_rng(0)
    weights = rng.exponential(size=(8, 8)) ** 3
    weights *= 8 / weights.sum()                           # a few pixels matter a lot; p(full) ~ 0.95
    model = weighted_sum_model(weights)
    images = rng.uniform(0.5, 1.0, size=(6, 8, 8, 1)).astype("float32")
    perfect = weights[None] * images[..., 0]                 # each pixel's true contribution
    random = rng.uniform(size=(6, 8, 8))
    assert model.predict(images, verbose=0).argmax(1).tolist() == [0] * 6
    deletion = {name: metrics.deletion_auc(model, images, maps, steps=16)
                for name, maps in (("perfect", perfect), ("random", random))}
    insertion = {name: metrics.insertion_auc(model, images, maps, steps=16, baseline=0.0)
                 for name, maps in (("perfect", perfect), ("random", random))}
    assert np.all(deletion["perfect"] < deletion["random"] - 0.1)
    assert np.all(insertion["perfect"] > insertion["random"] + 0.1)
    # and an anti-ordering (least important first) is the worst of all
    assert np.all(metrics.deletion_auc(model, images, -perfect, steps=16) > deletion["random"])


def test_curves_start_and_end_where_they_should():
    rng = np.random.default_rng(1)
    model = weighted_sum_model(rng.uniform(size=(8, 8)))
    images = rng.uniform(0.5, 1, size=(2, 8, 8, 1)).astype("float32")
    heat = rng.uniform(size=(2, 8, 8))
    full = model.predict(images, verbose=0)[:, 0]
    empty = model.predict(np.zeros_like(images), verbose=0)[:, 0]
    fractions, deletion = metrics.deletion_curve(model, images, heat, class_index=0, steps=4)
    _, insertion = metrics.insertion_curve(model, images, heat, class_index=0, steps=4, baseline=0.0)
    assert fractions.tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(deletion[:, 0], full, rtol=1e-5)
    np.testing.assert_allclose(deletion[:, -1], empty, rtol=1e-5)
    np.testing.assert_allclose(insertion[:, 0], empty, rtol=1e-5)
    np.testing.assert_allclose(insertion[:, -1], full, rtol=1e-5)
    np.testing.assert_allclose(metrics.area_under(np.array([[0.0, 1.0, 1.0]])), [0.75])


def test_insertion_starts_from_a_blurred_image_by_default():
    rng = np.random.default_rng(2)
    model = weighted_sum_model(rng.uniform(size=(8, 8)))
    images = rng.uniform(0, 1, size=(1, 8, 8, 1)).astype("float32")
    _, curve = metrics.insertion_curve(model, images, rng.uniform(size=(1, 8, 8)), steps=2)
    expected = model.predict(metrics.blurred(images), verbose=0)[:, 0]
    np.testing.assert_allclose(curve[:, 0], expected, rtol=1e-5)


def test_a_model_without_softmax_is_scored_in_probabilities():
    from coursekit.models import pre_softmax
    rng = np.random.default_rng(3)
    probabilities = weighted_sum_model(rng.uniform(size=(8, 8)))
    logits = pre_softmax(probabilities)
    assert logits is not probabilities
    images = rng.uniform(size=(2, 8, 8, 1)).astype("float32")
    heat = rng.uniform(size=(2, 8, 8))
    np.testing.assert_allclose(metrics.deletion_curve(logits, images, heat, steps=3)[1],
                               metrics.deletion_curve(probabilities, images, heat, steps=3)[1], rtol=1e-5)


def test_curve_input_errors():
    model = weighted_sum_model(np.ones((8, 8)))
    images = np.zeros((2, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match="one per image"):
        metrics.deletion_auc(model, images, np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="steps"):
        metrics.deletion_auc(model, images, np.zeros((2, 8, 8)), steps=0)
    with pytest.raises(ValueError, match="blur"):
        metrics.insertion_auc(model, images, np.zeros((2, 8, 8)), baseline="grey")


def test_rank_correlation_matches_scipy_and_ignores_monotone_rescaling():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(3, 6, 6)), rng.normal(size=(3, 6, 6))
    expected = [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.rank_correlation(a, b), expected)
    np.testing.assert_allclose(metrics.rank_correlation(a, np.exp(a)), 1.0)
    np.testing.assert_allclose(metrics.rank_correlation(a, -a), -1.0)
    assert metrics.rank_correlation(np.ones((6, 6)), a[0]).tolist() == [0.0]
    with pytest.raises(ValueError, match="same shape"):
        metrics.rank_correlation(a, b[:2])


def test_blank_maps_are_found_and_can_be_left_out_of_a_correlation():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 6, 6))
    maps[1] = 0.0                                        # a Grad-CAM map with no positive evidence
    assert metrics.blank_maps(maps).tolist() == [False, True, False]
    assert metrics.blank_maps(np.full((4, 4), 2.5)).tolist() == [True]
    correlation = metrics.rank_correlation(maps, maps, constant=np.nan)
    assert np.isnan(correlation[1]) and np.allclose(correlation[[0, 2]], 1.0)
    assert metrics.rank_correlation(maps, maps)[1] == 0.0  # the default keeps 0, as before
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        metrics.blank_maps(np.zeros(5))
