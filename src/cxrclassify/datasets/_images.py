"""Decode any image input to 8-bit RGB and resize it.

Everything the library reads goes through :func:`to_rgb_uint8`: file paths
(PNG, JPEG or DICOM), :class:`PIL.Image.Image` objects and numpy arrays.
Grayscale, RGBA, palette, bilevel, CMYK and 16-bit images all come out as
``(height, width, 3)`` ``uint8`` arrays, so the rest of the library sees one
format.

DICOM files (``.dcm``, ``.dicom``, or any file that starts with the DICOM
preamble, whatever its suffix) are read by ``read_dicom`` with the optional
pydicom (``pip install "cxrclassify[dicom]"``): rescale, display window
and ``MONOCHROME1`` inversion are applied, so they look like the PNG exports of
the same X-rays. PNG and JPEG files are read with Pillow. A folder may mix all
three. This module imports nothing from the library but its exceptions and its
sibling ``_dicom``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..exceptions import ImageDecodeError
from ._dicom import DICOM_SUFFIXES, has_dicom_preamble, read_dicom

__all__ = ["IMAGE_SUFFIXES", "ImageInput", "is_image_file", "read_image", "to_rgb_uint8", "resize"]

#: File name endings read as images when a folder is scanned (in any case):
#: PNG and JPEG, read with Pillow, and DICOM, read with the optional pydicom.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg") + DICOM_SUFFIXES

ImageInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]


def is_image_file(path: Path) -> bool:
    """Whether ``path`` names a file with an image suffix, ignoring hidden files.

    The suffixes are :data:`IMAGE_SUFFIXES` (PNG, JPEG and DICOM), in any case.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.png", "b.JPG", "c.dcm", "notes.txt", ".hidden.png"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> sorted(path.name for path in folder.iterdir() if is_image_file(path))
    ['a.png', 'b.JPG', 'c.dcm']
    """
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PNG, JPEG or DICOM file into an ``(H, W, 3)`` ``uint8`` RGB array.

    Files with a :data:`DICOM suffix <IMAGE_SUFFIXES>` (``.dcm``, ``.dicom``),
    and files of any name that start with the DICOM preamble (``DICM`` at byte
    128), are read by ``read_dicom``, which needs pydicom
    (``pip install "cxrclassify[dicom]"``). Other files are read with Pillow,
    after their EXIF orientation is applied.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.

    Returns
    -------
    numpy.ndarray
        ``(height, width, 3)`` ``uint8`` RGB.

    Raises
    ------
    ImageDecodeError
        If the file is missing, is not an image Pillow can decode, or is a DICOM
        file that cannot be read (pydicom missing, no pixel data, a compressed
        transfer syntax without a decoder, a corrupt file); the message names
        the file.

    Examples
    --------
    >>> from cxrclassify.datasets import read_image, sample_dir
    >>> path = sorted((sample_dir() / "images" / "normal").glob("*.png"))[0]
    >>> rgb = read_image(path)
    >>> rgb.ndim, rgb.shape[-1], rgb.dtype
    (3, 3, dtype('uint8'))
    """
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES or has_dicom_preamble(path):
        return read_dicom(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            return _pil_to_rgb_uint8(image)
    except FileNotFoundError:
        message = f"Image file not found: {str(path)!r}."
        raise ImageDecodeError(message) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        message = (
            f"Could not decode image file {str(path)!r}: expected a PNG or JPEG chest X-ray "
            f"that Pillow can read, or a DICOM file. Received: an unreadable file "
            f"({type(error).__name__}: {error})."
        )
        raise ImageDecodeError(message) from error


def to_rgb_uint8(image: ImageInput) -> np.ndarray:
    """Convert a path, PIL image or numpy array to an ``(H, W, 3)`` ``uint8`` RGB array.

    Paths (PNG, JPEG or DICOM files) are read by :func:`read_image`. Arrays may
    be ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``; integer arrays
    wider than 8 bits are scaled from their own range, float arrays are read as
    ``[0, 1]`` when their maximum is at most 1 and as ``[0, 255]`` otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets import to_rgb_uint8
    >>> to_rgb_uint8(np.zeros((4, 5), np.uint16)).shape
    (4, 5, 3)
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return _pil_to_rgb_uint8(image)
    if isinstance(image, np.ndarray):
        return _array_to_rgb_uint8(image)
    message = (
        "Expected an image as a file path, a PIL.Image.Image or a numpy array. "
        f"Received: image of type {type(image).__name__}"
    )
    raise TypeError(message)


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an RGB ``uint8`` array to ``size`` (an int for a square, or ``(height, width)``).

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets import resize
    >>> resize(np.zeros((50, 80, 3), np.uint8), 32).shape
    (32, 32, 3)
    """
    height, width = (size, size) if isinstance(size, int) else size
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(image).resize(
        (width, height), resample=Image.Resampling.BILINEAR, reducing_gap=2.0
    )
    return np.asarray(resized, dtype=np.uint8)


def _pil_to_rgb_uint8(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb_uint8(np.asarray(image))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _array_to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        message = (
            "Expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). "
            f"Received: array of shape {array.shape}"
        )
        raise ImageDecodeError(message)
    if array.size == 0:
        message = f"Expected a non-empty image array. Received: array of shape {array.shape}"
        raise ImageDecodeError(message)
    array = _scale_to_uint8(array)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=-1)
    if array.shape[-1] == 4:
        alpha = array[..., 3:4].astype(np.float32) / 255.0
        return np.round(array[..., :3].astype(np.float32) * alpha).astype(np.uint8)
    return np.ascontiguousarray(array)


def _scale_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        message = "Expected finite pixel values. Received: an image array containing NaN or infinity"
        raise ImageDecodeError(message)
    if np.issubdtype(array.dtype, np.floating):
        scale = 255.0 if values.max() <= 1.0 else 1.0
        return np.clip(np.round(values * scale), 0, 255).astype(np.uint8)
    # Integer images wider than 8 bits (16-bit X-rays often use 10 to 12 bits):
    # stretch their own range to 0-255 so that no lung detail is clipped.
    low, high = values.min(), values.max()
    if low >= 0 and high <= 255:
        return array.astype(np.uint8)
    if high == low:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)
