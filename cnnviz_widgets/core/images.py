"""Turning whatever a user holds (path, bytes, PIL, array, tensor) into a checked RGB image.

Every view starts here, so every bad input is caught here with a message that names the problem
and the fix, instead of surfacing later as a shape error deep inside torch.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# PIL's decompression-bomb guard: keep it on (PIL's default is ~89 Mpx) and make it an error,
# not a warning, so a hostile file never gets decoded into gigabytes of memory.
MAX_PIXELS = 64_000_000
MIN_SIDE = 2

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"


class ImageError(ValueError):
    """An input could not be used as an image; the message says why and what to do."""


def load_image(source) -> Image.Image:
    """Load ``source`` as an 8-bit RGB ``PIL.Image``.

    Accepts a path, raw file bytes, a PIL image, a numpy array (H, W), (H, W, 3|4) uint8 or float in
    [0, 1], or a tensor (3, H, W) / (H, W, 3) float in [0, 1]. Grayscale, palette, RGBA, CMYK and
    16-bit images are converted to RGB; EXIF orientation is applied.

        img = load_image("photo.jpg")
        img = load_image(open("photo.jpg", "rb").read())
    """
    if isinstance(source, Image.Image):
        image = _to_rgb(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        image = _open_bytes(bytes(source), "the given bytes")
    elif isinstance(source, (str, os.PathLike)):
        image = _open_path(Path(source))
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    elif _is_tensor(source):
        image = _from_array(_tensor_to_hwc(source))
    else:
        raise ImageError(
            f"cannot use an object of type {type(source).__name__} as an image; pass a file path, "
            "file bytes, a PIL image, a numpy array (H, W, 3) or a tensor (3, H, W)."
        )
    _check_size(image)
    return image


def sample_images() -> dict[str, Image.Image]:
    """A few real photos shipped with the package (offline): astronaut, cat, coffee, rocket, brick, gravel.

    They come from scikit-image's data set (public domain / CC0), downsized.
    """
    return {p.stem: load_image(p) for p in sorted(SAMPLES_DIR.glob("*.jpg"))}


def to_array(image) -> np.ndarray:
    """Any accepted image as a uint8 (H, W, 3) array."""
    return np.asarray(load_image(image))


# --- helpers -----------------------------------------------------------------------------------

def _open_path(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageError(f"no such image file: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file; for a folder of images use image_dataset()")
    return _open_bytes(path.read_bytes(), str(path))


def _open_bytes(data: bytes, what: str) -> Image.Image:
    if not data:
        raise ImageError(f"{what}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                _check_pixels(opened.size, what)
                opened.load()
                image = ImageOps.exif_transpose(opened)
                return _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{what}: refused as a possible decompression bomb ({err}); use a smaller image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} is not an image file PIL can read (PNG, JPEG, GIF, BMP, TIFF, WebP...)") from None
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageError):
            raise
        raise ImageError(f"{what} is truncated or corrupt ({err}); re-save or re-download the file") from None


def _check_pixels(size, what: str) -> None:
    w, h = size
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"{what}: {w}x{h} pixels is over the {MAX_PIXELS:,}-pixel limit (a possible decompression bomb); "
            "resize the image first"
        )


def _check_size(image: Image.Image) -> None:
    w, h = image.size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageError(f"the image is {w}x{h} pixels; it needs at least {MIN_SIDE}x{MIN_SIDE}")
    _check_pixels(image.size, "the image")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bits
        arr = np.asarray(image, dtype=np.float64)
        peak = arr.max() if arr.max() > 255 else 255.0
        return Image.fromarray((arr / max(peak, 1.0) * 255).round().astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels-first array
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageError(
            f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {tuple(array.shape)}"
        )
    if arr.size == 0:
        raise ImageError("the image array is empty")
    arr = _to_uint8(arr)
    return _to_rgb(Image.fromarray(arr))


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError("the image array holds NaN or infinite values")
        if arr.min() < -1e-3 or arr.max() > 1 + 1e-3:
            raise ImageError(
                f"a float image must hold values in [0, 1]; got [{arr.min():.3g}, {arr.max():.3g}]. "
                "Divide 0-255 data by 255, or pass uint8"
            )
        return (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if arr.dtype == np.uint16:
        return (arr.astype(np.float64) / 65535 * 255).round().astype(np.uint8)
    raise ImageError(f"unsupported image dtype {arr.dtype}; use uint8 or float in [0, 1]")


def _is_tensor(obj) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _tensor_to_hwc(tensor) -> np.ndarray:
    arr = tensor.detach().cpu()
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ImageError(
                f"a batch of {arr.shape[0]} images was given where one image is expected; pass tensor[i]"
            )
        arr = arr[0]
    arr = arr.float().numpy() if arr.is_floating_point() else arr.numpy()
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    return arr
