import io

import numpy as np
import pytest
import torch
from PIL import Image

import cnnviz_widgets as cw
from cnnviz_widgets.core.images import ImageError, MAX_PIXELS


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


RGB = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4


def test_path_bytes_pil_array_tensor_all_give_the_same_rgb(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(RGB).save(path)
    tensor = torch.from_numpy(RGB).permute(2, 0, 1).float() / 255
    for source in (path, str(path), path.read_bytes(), Image.fromarray(RGB), RGB, RGB / 255.0, tensor):
        img = cw.load_image(source)
        assert img.mode == "RGB" and img.size == (5, 4)
        np.testing.assert_array_equal(np.asarray(img), RGB)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA"])
def test_modes_are_converted_to_rgb(mode):
    base = Image.fromarray(RGB)
    img = base.convert(mode) if mode != "I;16" else Image.fromarray((RGB[..., 0].astype(np.uint16) * 257))
    out = cw.load_image(_png(img, "TIFF" if mode == "CMYK" else "PNG"))
    assert out.mode == "RGB" and out.size == (5, 4)


def test_sixteen_bit_gray_is_scaled_not_clipped():
    gray16 = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    out = np.asarray(cw.load_image(_png(Image.fromarray(gray16))))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 255 and 120 < out[1, 0, 0] < 135


def test_rgba_transparency_composites_on_white():
    arr = np.zeros((3, 3, 4), np.uint8)  # fully transparent black
    out = np.asarray(cw.load_image(Image.fromarray(arr, "RGBA")))
    assert (out == 255).all()


def test_exif_orientation_is_honoured():
    arr = np.zeros((2, 6, 3), np.uint8)
    arr[:, 0] = 255  # left column white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    data = _png(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=100)
    out = np.asarray(cw.load_image(data))
    assert out.shape[:2] == (6, 2)  # portrait after orientation
    assert out[0].mean() > 200  # the white column is now the top row


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"this is not an image", "not an image"),
    (_png(Image.fromarray(RGB))[:40], "not an image file|corrupt"),
])
def test_bad_files_give_clear_errors(data, words):
    with pytest.raises(ImageError, match=words):
        cw.load_image(data)


def test_truncated_jpeg_is_rejected():
    big = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = _png(Image.fromarray(big), "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        cw.load_image(data[: len(data) // 2])


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such image file"):
        cw.load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        cw.load_image(tmp_path)


@pytest.mark.parametrize("arr, words", [
    (np.zeros((1, 1, 3), np.uint8), "at least"),
    (np.zeros((0, 5, 3), np.uint8), "empty"),
    (np.zeros((6, 6, 5), np.uint8), "shape"),
    (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
    (np.full((4, 4, 3), 2.0), r"\[0, 1\]"),
    (np.full((4, 4, 3), np.nan), "NaN"),
    (np.zeros((4, 4, 3), np.complex64), "dtype"),
])
def test_bad_arrays(arr, words):
    with pytest.raises(ImageError, match=words):
        cw.load_image(arr)


def test_decompression_bomb_is_refused():
    side = int(MAX_PIXELS ** 0.5) + 100
    bomb = _png(Image.new("1", (side, side)))  # a tiny file that decodes to a huge image
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match="decompression bomb"):
        cw.load_image(bomb)


def test_unsupported_type():
    with pytest.raises(ImageError, match="cannot use an object of type dict"):
        cw.load_image({"a": 1})


def test_batch_tensor_where_one_image_is_expected():
    with pytest.raises(ImageError, match="batch of 2"):
        cw.load_image(torch.zeros(2, 3, 8, 8))


def test_samples_are_real_photos_offline():
    samples = cw.sample_images()
    assert {"astronaut", "cat", "coffee", "rocket"} <= set(samples)
    for img in samples.values():
        arr = np.asarray(img)
        assert img.mode == "RGB" and min(img.size) >= 200
        assert arr.std() > 20  # a photo, not a flat placeholder
