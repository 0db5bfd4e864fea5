"""coursekit.data.upload_image: a student's own photo, from a path or (on Colab) the file picker.

Every file a student might plausibly pick is either converted to uint8 (H, W, 3) or refused with
a ValueError that names the file; no exception escapes from inside Pillow or OpenCV.
"""
import io
import sys
import types

import numpy as np
import pytest
from PIL import Image

from coursekit import data


def _save(tmp_path, name, array, mode=None, **options):
    path = tmp_path / name
    Image.fromarray(array, mode=mode).save(path, **options)
    return path


@pytest.fixture
def red_png(tmp_path):
    array = np.zeros((30, 40, 3), dtype=np.uint8)
    array[..., 0] = 200
    return _save(tmp_path, "red.png", array)


def test_path_gives_rgb_uint8_and_resizes(red_png):
    image = data.upload_image(red_png)
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (200, 0, 0)
    assert data.upload_image(str(red_png), size=16).shape == (16, 16, 3)
    assert data.upload_image(red_png, size=(10, 20)).shape == (10, 20, 3)


def test_path_and_sample_image_share_one_loader(red_png):
    assert np.array_equal(data.upload_image(red_png), data.sample_image(str(red_png)))


def test_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="holiday.jpg"):
        data.upload_image(tmp_path / "holiday.jpg")


def test_no_photo_outside_colab_uses_the_fallback_and_says_so(capsys):
    image = data.upload_image(fallback="cat", size=32)
    assert image.shape == (32, 32, 3)
    assert np.array_equal(image, data.sample_image("cat", size=32))
    assert "bundled photo 'cat'" in capsys.readouterr().out


def test_no_photo_and_no_fallback_says_how_to_pass_one():
    with pytest.raises(ValueError, match=r"upload_image\('my_photo.jpg'\)"):
        data.upload_image()
    with pytest.raises(ValueError, match="upload_image"):
        data.upload_image("   ")  # an empty form field is no path


def test_unknown_fallback_lists_the_samples():
    with pytest.raises(ValueError, match="coffee"):
        data.upload_image(fallback="dog")


def test_text_file_is_refused_by_name(tmp_path):
    (tmp_path / "notes.txt").write_text("not a photo")
    with pytest.raises(ValueError, match=r"notes\.txt.*not an image file"):
        data.upload_image(tmp_path / "notes.txt")


def test_empty_file_is_refused_by_name(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.jpg.*empty \(0 bytes\)"):
        data.upload_image(tmp_path / "empty.jpg")


def test_truncated_file_is_refused_by_name(tmp_path, red_png):
    cut = tmp_path / "cut.png"
    cut.write_bytes(red_png.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"cut\.png"):
        data.upload_image(cut)


def test_rgba_png_is_composited_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 2] = 180
    rgba[:2, :, 3] = 255  # top half opaque blue, bottom half transparent
    image = data.upload_image(_save(tmp_path, "logo.png", rgba, mode="RGBA"))
    assert tuple(image[0, 0]) == (0, 0, 180) and tuple(image[3, 0]) == (255, 255, 255)


def test_palette_gif_with_transparency_becomes_rgb(tmp_path):
    picture = Image.new("P", (6, 6), color=1)
    picture.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    path = tmp_path / "icon.gif"
    picture.save(path, transparency=0)
    image = data.upload_image(path)
    assert image.shape == (6, 6, 3) and tuple(image[0, 0]) == (10, 200, 30)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369)  # 0 .. 65535
    path = tmp_path / "scan16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")  # Pillow reads it as 16-bit, not 8-bit
    image = data.upload_image(path)
    assert image.dtype == np.uint8 and image.shape == (4, 4, 3)
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255
    assert abs(int(image[2, 0, 0]) - round(8 * 4369 / 257)) <= 1  # mid-grey stays mid-grey


def test_dark_16_bit_png_stays_dark(tmp_path):
    dark = np.full((4, 4), 200, dtype=np.uint16)  # 200 of 65535: nearly black
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    assert data.upload_image(tmp_path / "dark16.png").max() <= 1


def test_cmyk_jpeg_becomes_rgb_with_its_colour(tmp_path):
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[...] = (220, 40, 40)
    path = tmp_path / "print.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    image = data.upload_image(path)
    assert image.shape == (16, 16, 3)
    assert np.abs(image[8, 8].astype(int) - (220, 40, 40)).max() < 25


def test_animated_gif_gives_its_first_frame_and_says_so(tmp_path, capsys):
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(250, 0, 0), (0, 250, 0), (0, 0, 250)]]
    path = tmp_path / "dance.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = data.upload_image(path)
    assert image.shape == (8, 8, 3) and image[4, 4, 0] > 200 and image[4, 4, 1] < 50
    assert "dance.gif" in capsys.readouterr().out


def test_exif_rotated_phone_photo_is_turned_upright(tmp_path):
    tall = np.zeros((20, 10, 3), dtype=np.uint8)  # stored 10 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    path = tmp_path / "phone.jpg"
    Image.fromarray(tall).save(path, exif=exif)
    assert data.upload_image(path).shape == (10, 20, 3)


def test_huge_image_is_shrunk_and_announced(tmp_path, capsys):
    path = tmp_path / "panorama.png"
    Image.new("L", (10_000, 10_000), color=90).save(path)  # 100 megapixels, a small file
    image = data.upload_image(path)
    assert image.shape == (data.MAX_SIDE, data.MAX_SIDE, 3) and image.dtype == np.uint8
    assert np.all(image == 90)
    out = capsys.readouterr().out
    assert "panorama.png" in out and "10000 x 10000" in out


def test_image_beyond_the_pixel_limit_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_PIXELS", 1000)
    path = _save(tmp_path, "poster.png", np.zeros((40, 40, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"poster\.png.*too large"):
        data.upload_image(path)


# ----------------------------------------------------------------------------- the Colab branch

@pytest.fixture
def fake_colab(monkeypatch):
    """``google.colab.files.upload`` replaced by a stand-in returning ``chosen`` ({name: bytes})."""
    chosen = {}
    files = types.SimpleNamespace(upload=lambda: dict(chosen))
    colab = types.ModuleType("google.colab")
    colab.files = files
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    return chosen


def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_colab_picker_file_is_read(fake_colab):
    array = np.zeros((12, 18, 3), dtype=np.uint8)
    array[..., 1] = 150
    fake_colab["garden.png"] = _png_bytes(array)
    image = data.upload_image(size=(6, 9))
    assert image.shape == (6, 9, 3) and tuple(image[0, 0]) == (0, 150, 0)


def test_colab_picker_with_several_files_uses_the_first(fake_colab, capsys):
    fake_colab["first.png"] = _png_bytes(np.full((5, 5, 3), 10, dtype=np.uint8))
    fake_colab["second.png"] = _png_bytes(np.full((5, 5, 3), 240, dtype=np.uint8))
    assert data.upload_image()[0, 0, 0] == 10
    assert "'first.png'" in capsys.readouterr().out


def test_colab_picker_cancelled_uses_the_fallback(fake_colab, capsys):
    image = data.upload_image(fallback="coffee")
    assert np.array_equal(image, data.sample_image("coffee"))
    assert "no file was chosen" in capsys.readouterr().out
    with pytest.raises(ValueError, match="No photo"):
        data.upload_image()


def test_colab_picker_bad_file_is_refused_by_its_name(fake_colab):
    fake_colab["essay.docx"] = b"PK\x03\x04 not an image"
    with pytest.raises(ValueError, match=r"essay\.docx.*not an image file"):
        data.upload_image()
    fake_colab.clear()
    fake_colab["blank.jpg"] = b""
    with pytest.raises(ValueError, match=r"blank\.jpg.*empty"):
        data.upload_image()


def test_a_path_wins_over_the_colab_picker(fake_colab, red_png):
    fake_colab["other.png"] = _png_bytes(np.zeros((3, 3, 3), dtype=np.uint8))
    assert data.upload_image(red_png).shape == (30, 40, 3)


def test_an_array_instead_of_a_path_gets_a_short_clear_error():
    """upload_image(image_array) once raised 'File name too long' and printed the whole array."""
    image = np.zeros((224, 224, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match=r"takes the name of an image file.*array of shape \(224, 224, 3\).*as it is") as error:
        data.upload_image(image)
    assert len(str(error.value)) < 400 and "[[" not in str(error.value)
    with pytest.raises(TypeError, match="got an object of type int. Pass the file's name as a string"):
        data.upload_image(3)
