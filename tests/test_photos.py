"""The shipped photos and the loader for a user's own file (``data.photos``): good files of every mode, bad ones."""

import pytest
import torch
from PIL import Image

from coursekit.data import PHOTOS, load_image, photo
from coursekit.data.photos import FOLDER


@pytest.mark.parametrize("name", PHOTOS)
def test_each_shipped_photo_loads_with_its_licence_recorded(name):
    image = photo(name, 64)
    assert image.shape == (1, 3, 64, 64) and image.dtype == torch.float32
    assert -1 <= image.min() < -0.5 and 0.5 < image.max() <= 1  # a photo's range, in the models' [-1, 1]
    assert image.std() > 0.2  # not flat
    licence = (FOLDER / "LICENCE.md").read_text()
    assert f"`{PHOTOS[name].file}`" in licence and PHOTOS[name].licence in licence
    assert torch.equal(photo(name, 64), image)  # the same file, the same tensor


def test_the_photos_are_told_apart():
    cat, coffee = photo("cat", 32), photo("coffee", 32)
    assert (cat - coffee).abs().mean() > 0.1
    with pytest.raises(ValueError, match="name must be one of"):
        photo("dog")


def test_a_users_file_of_any_size_and_mode_is_cropped_to_its_centre(tmp_path):
    # 90 x 30: a red left third, a green middle, a blue right third; the central square is the green one
    rgb = Image.new("RGB", (90, 30), (255, 0, 0))
    rgb.paste((0, 255, 0), (30, 0, 60, 30))
    rgb.paste((0, 0, 255), (60, 0, 90, 30))
    for mode, suffix in (("RGB", "png"), ("RGB", "jpg"), ("L", "png"), ("P", "png"), ("CMYK", "jpg"), ("RGBA", "webp")):
        path = tmp_path / f"wide_{mode}.{suffix}"
        rgb.convert(mode).save(path)
        image = load_image(path, 16)
        assert image.shape == (1, 3, 16, 16) and -1 <= image.min() and image.max() <= 1, mode
        if mode in ("RGB", "CMYK", "RGBA"):  # colour kept: the centre is green
            mean = image[0].mean((1, 2))
            assert mean[1] > 0.5 and mean[0] < -0.5 and mean[2] < -0.5, (mode, mean)
    # transparency composited on white, not black
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(clear)
    assert load_image(clear, 8).min() > 0.99
    # the caller's file is only read
    before = (tmp_path / "wide_RGB.png").read_bytes()
    load_image(str(tmp_path / "wide_RGB.png"), 8)
    assert (tmp_path / "wide_RGB.png").read_bytes() == before


def test_files_that_cannot_be_read_are_refused_naming_the_path(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    for bad, message in ((tmp_path / "missing.jpg", "is not a file"), (tmp_path, "is not a file"),
                         (tmp_path / "notes.txt", "is not an image PIL can read"),
                         (tmp_path / "broken.png", "is not an image PIL can read")):
        with pytest.raises(ValueError, match=f"^path .*{message}"):
            load_image(bad, 16)
    with pytest.raises(ValueError, match="^path must be a file path"):
        load_image(torch.zeros(3, 8, 8))
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match="^size"):
        load_image(tmp_path / "ok.png", 0)
