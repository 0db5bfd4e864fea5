import keras
import numpy as np
import pytest

from coursekit import features
from coursekit.occlusion import occlusion_map, patch_corners


def quadrant_model(side=16, classes=3, softmax=True, seed=0):
    """A model that only looks at the top-left quarter of its input."""
    inputs = keras.Input((side, side, 1))
    x = keras.layers.Cropping2D(((0, side // 2), (0, side // 2)))(inputs)
    x = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(classes, activation="softmax" if softmax else None, name="scores",
                               kernel_initializer=keras.initializers.RandomNormal(seed=seed))
    return keras.Model(inputs, dense(x))


def naive_occlusion(logits_fn, images, classes, patch, stride, fill):
    """One forward pass per position: slow, obviously right."""
    count, height, width = images.shape[:3]
    total = np.zeros((count, height, width))
    covered = np.zeros((height, width))
    base = logits_fn(images)[np.arange(count), classes]
    for top in patch_corners(height, patch, stride):
        for left in patch_corners(width, patch, stride):
            occluded = images.copy()
            occluded[:, top:top + patch, left:left + patch] = fill
            drop = base - logits_fn(occluded)[np.arange(count), classes]
            total[:, top:top + patch, left:left + patch] += drop[:, None, None]
            covered[top:top + patch, left:left + patch] += 1
    return total / covered


def test_patch_corners_cover_every_pixel():
    assert patch_corners(16, 4, 4).tolist() == [0, 4, 8, 12]
    assert patch_corners(16, 5, 4).tolist() == [0, 4, 8, 11]  # a last patch flush with the edge
    assert patch_corners(28, 28, 4).tolist() == [0]


def test_zero_wherever_the_patch_cannot_reach_the_seen_quadrant():
    model = quadrant_model()
    images = np.random.default_rng(0).uniform(0.2, 1, size=(3, 16, 16, 1)).astype("float32")
    maps = occlusion_map(model, images, patch=4, stride=2)
    # A pixel's value averages the squares covering it; a square starting at row or column >= 8
    # misses the seen quadrant [0, 8) x [0, 8), and one starting before 8 touches it.
    corners = patch_corners(16, 4, 2)
    reachable = np.zeros((16, 16), bool)
    for top in corners[corners < 8]:
        for left in corners[corners < 8]:
            reachable[top:top + 4, left:left + 4] = True
    assert np.all(maps[:, ~reachable] == 0)
    assert np.all(np.abs(maps[:, :8, :8]).max(axis=(1, 2)) > 1e-3)
    assert reachable[:8, :8].all() and not reachable[10:, :].any()


@pytest.mark.parametrize("patch, stride, fill", [(4, 2, 0.0), (5, 3, 0.5)])
def test_batched_equals_one_pass_per_position_on_the_logits(patch, stride, fill):
    model = quadrant_model()
    weights = model.get_layer("scores").get_weights()  # occlusion must use these logits, not the softmax

    def logits_fn(batch):
        seen = batch[:, :8, :8, 0].reshape(len(batch), -1)
        return seen @ weights[0] + weights[1]

    images = np.random.default_rng(1).uniform(0, 1, size=(5, 16, 16, 1)).astype("float32")
    classes = np.array([0, 1, 2, 0, 1])
    expected = naive_occlusion(logits_fn, images, classes, patch, stride, fill)
    got = occlusion_map(model, images, class_index=classes, patch=patch, stride=stride, fill=fill, batch_size=7)
    assert got.shape == (5, 16, 16) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_default_class_is_the_top_prediction():
    model = quadrant_model()
    images = np.random.default_rng(2).uniform(0, 1, size=(4, 16, 16, 1)).astype("float32")
    top = model.predict(images, verbose=0).argmax(axis=1)
    np.testing.assert_allclose(occlusion_map(model, images), occlusion_map(model, images, class_index=top))


def test_unit_of_a_hidden_layer_can_be_occluded():
    model = quadrant_model()
    hidden = features.activation_model(model, ["scores"])  # a sub-model ending at a layer
    images = np.ones((2, 16, 16, 1), "float32")
    maps = occlusion_map(hidden, images, class_index=1, patch=8, stride=8)
    assert maps.shape == (2, 16, 16) and np.all(maps[:, 8:, :] == 0)


def test_bad_input_is_explained():
    model = quadrant_model()
    images = np.zeros((2, 16, 16, 1), "float32")
    with pytest.raises(ValueError, match="out of range"):
        occlusion_map(model, images, class_index=3)
    with pytest.raises(ValueError, match="one class per image \\(2 in all\\)"):
        occlusion_map(model, images, class_index=[0, 1, 2])
    with pytest.raises(ValueError, match="patch"):
        occlusion_map(model, images, patch=17)
    with pytest.raises(ValueError, match="stride"):
        occlusion_map(model, images, stride=0)
    with pytest.raises(ValueError, match="takes images of shape"):
        occlusion_map(model, np.zeros((2, 28, 28, 1)))


def test_scores_follow_the_weights_after_more_training():
    model = quadrant_model()
    images = np.random.default_rng(3).uniform(0, 1, size=(2, 16, 16, 1)).astype("float32")
    occlusion_map(model, images, class_index=0, patch=8, stride=8)   # builds and caches the logits view
    kernel, bias = model.get_layer("scores").get_weights()
    model.get_layer("scores").set_weights([kernel * 2, bias])          # as training would
    expected = naive_occlusion(lambda b: b[:, :8, :8, 0].reshape(len(b), -1) @ (kernel * 2) + bias,
                               images, np.array([0, 0]), 8, 8, 0.0)
    np.testing.assert_allclose(occlusion_map(model, images, class_index=0, patch=8, stride=8), expected, atol=1e-4)
