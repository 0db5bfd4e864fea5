"""decoy_mnist follows the rule of Ross et al. 2017 exactly."""
import numpy as np
import pytest

from coursekit import data

CORNERS = {(0, 0), (0, 24), (24, 0), (24, 24)}


def patch_corner(mask):
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min())


def test_patch_is_a_4x4_square_in_a_corner_with_the_label_intensity(digits):
    (x_train, y_train), _ = digits
    images, labels = x_train[:300], y_train[:300]
    decoyed, masks = data.decoy_mnist(images, labels, seed=3)
    assert decoyed.shape == images.shape and decoyed.dtype == images.dtype
    assert masks.shape == (300, 28, 28) and masks.dtype == bool
    corners = set()
    for image, mask, label in zip(decoyed, masks, labels):
        top, left = patch_corner(mask)
        corners.add((top, left))
        assert (top, left) in CORNERS
        assert mask.sum() == 16 and mask[top:top + 4, left:left + 4].all()
        assert np.all(image[mask] == 255 - 25 * label)
    assert corners == CORNERS  # all four corners are used
    assert np.array_equal(data.decoy_digits(decoyed, masks), labels)


def test_only_the_patch_changes_and_the_input_is_untouched(digits):
    (x_train, y_train), _ = digits
    images = x_train[:200].copy()
    before = images.copy()
    decoyed, masks = data.decoy_mnist(images, y_train[:200])
    assert np.array_equal(images, before)
    assert np.array_equal(decoyed[~masks], images[~masks])
    changed = decoyed != images
    # MNIST corners are blank, and no patch is black (darkest 255 - 225 = 30), so every patch pixel changes
    assert np.array_equal(changed, masks)


def test_random_patches_carry_no_label_but_are_reproducible(digits):
    (x_train, y_train), _ = digits
    decoyed, masks = data.decoy_mnist(x_train[:2000], seed=1)
    patch_digits = data.decoy_digits(decoyed, masks)
    assert np.array_equal(patch_digits, (255 - decoyed[masks].reshape(-1, 16)[:, 0].astype(int)) / 25)
    assert set(patch_digits) == set(range(10))
    assert np.mean(patch_digits == y_train[:2000]) < 0.2  # chance is 0.1
    again, again_masks = data.decoy_mnist(x_train[:2000], seed=1)
    other, _ = data.decoy_mnist(x_train[:2000], seed=2)
    assert np.array_equal(again, decoyed) and np.array_equal(again_masks, masks)
    assert not np.array_equal(other, decoyed)


def test_channel_axis_and_float_images_are_kept(digits):
    (x_train, y_train), _ = digits
    images = x_train[:10, ..., None].astype("float32")
    decoyed, masks = data.decoy_mnist(images, y_train[:10])
    assert decoyed.shape == (10, 28, 28, 1) and decoyed.dtype == np.float32
    assert np.all(decoyed[..., 0][masks] == np.repeat(255 - 25 * y_train[:10], 16))


def test_bad_input_gets_a_clear_error(digits):
    (x_train, y_train), _ = digits
    with pytest.raises(ValueError, match="one label per image"):
        data.decoy_mnist(x_train[:10], y_train[:9])
    with pytest.raises(ValueError, match="28x28"):
        data.decoy_mnist(np.zeros((5, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="28x28"):
        data.decoy_mnist(x_train[0])  # one image without the batch axis
    with pytest.raises(ValueError, match="digits 0-9"):
        data.decoy_mnist(x_train[:2], np.array([3, 10]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.decoy_mnist(x_train[:2] / 255.0)
    with pytest.raises(ValueError, match="decoy_mnist returned"):
        data.decoy_digits(x_train[:2], np.zeros((2, 28, 28), bool))
