"""Decode any image input to 8-bit RGB and resize it.

Everything the library reads goes through :func:`to_rgb_uint8`: file paths
(PNG, JPEG, TIFF or DICOM), :class:`PIL.Image.Image` objects and numpy arrays.
Every input comes out as a ``(height, width, 3)`` ``uint8`` array, so the rest
of the library sees one format. The rules below are fixed: nothing is guessed
from the values of a particular image.

**Files.** DICOM files (``.dcm``, ``.dicom``, or any file that starts with the DICOM
preamble, whatever its suffix) are read by ``read_dicom`` with the optional
pydicom (``pip install "cxrclassify[dicom]"``): rescale, display window
and ``MONOCHROME1`` inversion are applied, so they look like the PNG exports of
the same X-rays. Every other file (PNG, JPEG, TIFF, and anything else Pillow
reads) is read with Pillow, after its EXIF orientation is applied; a
multi-frame file (a multi-page TIFF, an animated PNG) gives its first frame.
A folder may mix all of them (:data:`IMAGE_SUFFIXES`).

A truncated or corrupt file is an :class:`~cxrclassify.exceptions.ImageDecodeError`
that names it; nothing is decoded partially (a PNG that lacks only its
closing ``IEND`` chunk has all its pixels, and is read), unless
``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` was set to ``True`` by the caller.

**Pixel limit.** Before any pixel is decoded, the width and height declared in a file's header
(``Rows`` x ``Columns`` for DICOM) are checked against a pixel limit, so that a
tiny file that claims to be 60000 x 60000 pixels (a "decompression bomb") is an
:class:`~cxrclassify.exceptions.ImageDecodeError` at once, without using memory.
The limit is, in order of precedence: the ``max_pixels`` argument of
:func:`read_image` or :func:`to_rgb_uint8`; the value given to
:func:`set_max_image_pixels`; the environment variable
``CXRCLASSIFY_MAX_IMAGE_PIXELS`` (a positive whole number, or ``none``);
:data:`DEFAULT_MAX_IMAGE_PIXELS`. ``None`` means no limit. While the library
decodes a file, Pillow's own check (``PIL.Image.MAX_IMAGE_PIXELS``) is switched
off and restored afterwards, since this limit replaces it. Arrays and PIL
images passed in are already decoded and are not checked.

**Arrays.** Shapes: ``(H, W)`` and ``(H, W, 1)`` are grayscale, ``(H, W, 3)`` RGB and
``(H, W, 4)`` RGBA; any other shape (``(H, W, 2)``, 1-D, a 4-D batch, which
goes to ``cxrclassify.predict`` instead) and any empty array is an
:class:`~cxrclassify.exceptions.ImageDecodeError`. Values, by dtype:

* ``uint8``: taken as they are.
* ``bool``: ``False`` is 0, ``True`` is 255.
* ``uint16`` and ``int16`` (10- to 16-bit X-rays): the image's own minimum and
  maximum (over all its color channels) are stretched linearly onto 0..255,
  ``round((x - min) * 255 / (max - min))``, whatever the values are; a constant
  image becomes all zeros. Pillow's 16- and 32-bit integer modes (``I;16*``,
  ``I``) and its float mode ``F`` (float TIFFs, which declare no range) follow
  the same rule. DICOM files have their display window applied first, then the
  window is scaled to 0..255.
* other integer dtypes (``int8``, ``int32``, ``int64``, ``uint32``, ``uint64``):
  the values must lie in 0..255 and are taken as 8-bit (an ``int64`` array of an
  8-bit picture is common); otherwise an ``ImageDecodeError`` says to cast the
  array to ``uint16`` (for the stretch) or to ``uint8``.
* floats: the values must lie in ``[0, 1]`` and become ``round(x * 255)``;
  values outside it (a 0..255 float image, ``[-1, 1]`` network input) and NaN
  or infinity are an ``ImageDecodeError`` that says how to pass them: cast
  0..255 data to ``uint8``, rescale any other range to ``[0, 1]`` yourself,
  e.g. ``(x - lo) / (hi - lo)``.
* any other dtype (object, string, complex, datetime, structured): an
  ``ImageDecodeError`` that names the dtype.

RGBA arrays have their three color channels converted by these rules, then
composited on black, ``round(c * a)``, with the opacity ``a`` read on the
dtype's full scale: ``alpha / 255`` for ``uint8`` and the 8-bit integer rule,
``alpha / 65535`` for ``uint16``, ``alpha / 32767`` for ``int16`` (a negative
alpha is an error), ``alpha`` itself for floats and bools.

This module imports nothing from the library but its exceptions and its
sibling ``_dicom``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..exceptions import ArgumentError, ArgumentTypeError, CxrError, ImageDecodeError
from ._dicom import _LIBRARY_LIMIT, DICOM_SUFFIXES, _LibraryLimit, has_dicom_preamble, read_dicom

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageInput",
    "MAX_IMAGE_PIXELS_ENV",
    "get_max_image_pixels",
    "is_image_file",
    "read_image",
    "resize",
    "set_max_image_pixels",
    "to_rgb_uint8",
]

logger = logging.getLogger(__name__)

#: File name endings read as images when a folder is scanned (in any case):
#: PNG, JPEG and TIFF, read with Pillow, and DICOM, read with the optional pydicom.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff") + DICOM_SUFFIXES

#: The pixel limit (width x height) used when neither an argument,
#: :func:`set_max_image_pixels` nor ``CXRCLASSIFY_MAX_IMAGE_PIXELS`` sets one:
#: Pillow's own default, about 9459 x 9459 pixels, far above any X-ray detector
#: (the largest are about 4300 x 4300).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

#: The environment variable that sets the pixel limit: a positive whole number,
#: or ``none`` for no limit.
MAX_IMAGE_PIXELS_ENV = "CXRCLASSIFY_MAX_IMAGE_PIXELS"

ImageInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]


_UNSET = object()
# What set_max_image_pixels was given (an int or None), or _UNSET.
_max_pixels_setting: object = _UNSET

# Pillow's own bomb check is switched off while any decode of this module is in
# flight, and restored when the last one ends.
_pillow_lock = threading.Lock()
_pillow_users = 0
_pillow_saved_limit: int | None = None

# What Pillow raises on files it cannot decode: UnidentifiedImageError and
# "image file is truncated" (OSError), SyntaxError ("broken PNG file"),
# ValueError, EOFError, and from corrupt headers struct.error, IndexError,
# KeyError, TypeError, ZeroDivisionError, OverflowError or AttributeError; and
# DecompressionBombError, should Pillow's own check be switched back on by
# another thread while a file is decoded.
_PILLOW_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    AttributeError,
    Image.DecompressionBombError,
)

_WIDE_INTEGER_DTYPES = (np.dtype(np.uint16), np.dtype(np.int16))
_SHAPES_TEXT = "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"


def is_image_file(path: Path) -> bool:
    """Whether ``path`` names a file with an image suffix, ignoring hidden files.

    The suffixes are :data:`IMAGE_SUFFIXES` (PNG, JPEG, TIFF and DICOM), in any
    case.

    Parameters
    ----------
    path : pathlib.Path
        The file to test.

    Returns
    -------
    bool
        ``True`` for an existing file with an image suffix whose name does not
        start with a dot.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.png", "b.JPG", "c.dcm", "d.tif", "e.TIFF", "notes.txt", ".hidden.png"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> sorted(path.name for path in folder.iterdir() if is_image_file(path))
    ['a.png', 'b.JPG', 'c.dcm', 'd.tif', 'e.TIFF']
    """
    path = Path(path)
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def get_max_image_pixels() -> int | None:
    """The pixel limit in force for decoding files (``None``: no limit).

    It is the value given to :func:`set_max_image_pixels`, else the environment
    variable ``CXRCLASSIFY_MAX_IMAGE_PIXELS`` (read at each call), else
    :data:`DEFAULT_MAX_IMAGE_PIXELS`.

    Returns
    -------
    int or None
        The largest width x height that :func:`read_image` decodes.

    Raises
    ------
    ArgumentError
        If ``CXRCLASSIFY_MAX_IMAGE_PIXELS`` is set to something other than a
        positive whole number or ``none``.

    Examples
    --------
    >>> previous = set_max_image_pixels(None)
    >>> get_max_image_pixels() is None
    True
    >>> _ = set_max_image_pixels(4096 * 4096)
    >>> get_max_image_pixels()
    16777216
    >>> _ = set_max_image_pixels(previous)
    """
    if _max_pixels_setting is not _UNSET:
        return _max_pixels_setting  # type: ignore[return-value]
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        message = (
            f"Expected the environment variable {MAX_IMAGE_PIXELS_ENV} to be a positive whole number "
            f"of pixels, or 'none' for no limit. Received: {MAX_IMAGE_PIXELS_ENV}={text!r}"
        )
        raise ArgumentError(message)
    return value


def set_max_image_pixels(max_pixels: int | None) -> int | None:
    """Set the pixel limit for decoding files, for the rest of the process.

    The limit guards against decompression bombs: a file whose header declares
    more than ``max_pixels`` pixels (width x height) is refused before it is
    decoded. The value set here overrides the environment variable
    ``CXRCLASSIFY_MAX_IMAGE_PIXELS``; the ``max_pixels`` argument of
    :func:`read_image` overrides both.

    Parameters
    ----------
    max_pixels : int or None
        The largest width x height to decode, or ``None`` for no limit.

    Returns
    -------
    int or None
        The limit that was in force before; pass it back to restore it.

    Raises
    ------
    ArgumentError
        If ``max_pixels`` is not a positive int or ``None``.

    Examples
    --------
    >>> previous = set_max_image_pixels(10_000 * 10_000)
    >>> get_max_image_pixels()
    100000000
    >>> set_max_image_pixels(previous) == 10_000 * 10_000
    True
    """
    global _max_pixels_setting
    value = _check_max_pixels(max_pixels)
    previous = get_max_image_pixels() if _max_pixels_setting is _UNSET else _max_pixels_setting
    _max_pixels_setting = value
    logger.debug("Pixel limit for decoding images set to %s", value)
    return previous  # type: ignore[return-value]


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None | _LibraryLimit = _LIBRARY_LIMIT) -> np.ndarray:
    """Read a PNG, JPEG, TIFF or DICOM file into an ``(H, W, 3)`` ``uint8`` RGB array.

    Files with a :data:`DICOM suffix <IMAGE_SUFFIXES>` (``.dcm``, ``.dicom``),
    and files of any name that start with the DICOM preamble (``DICM`` at byte
    128), are read by ``read_dicom``, which needs pydicom
    (``pip install "cxrclassify[dicom]"``). Other files are read with Pillow,
    after their EXIF orientation is applied; of a multi-frame file (a
    multi-page TIFF) the first frame is read. Values are mapped to 8 bits by the
    rules of :func:`to_rgb_uint8`: 16-bit and 32-bit grayscale (``I;16``, ``I``)
    and float (``F``) images have their own minimum..maximum stretched to
    0..255.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    max_pixels : int or None, optional
        The largest width x height to decode; the header is checked before any
        pixel is decoded. ``None``: no limit. By default the library's limit
        (:func:`get_max_image_pixels`, :data:`DEFAULT_MAX_IMAGE_PIXELS` unless
        changed by :func:`set_max_image_pixels` or ``CXRCLASSIFY_MAX_IMAGE_PIXELS``).

    Returns
    -------
    numpy.ndarray
        ``(height, width, 3)`` ``uint8`` RGB.

    Raises
    ------
    ImageDecodeError
        If the file is missing, is larger than ``max_pixels`` (the message gives
        its declared size and how to raise the limit), is truncated or not an
        image Pillow can decode, or is a DICOM file that cannot be read (pydicom
        missing, no pixel data, a compressed transfer syntax without a decoder,
        a corrupt file); the message names the file.
    ArgumentError
        If ``max_pixels`` is not a positive int or ``None``.
    ArgumentTypeError
        If ``path`` is not a str or os.PathLike.

    Examples
    --------
    >>> from cxrclassify.datasets import read_image, sample_dir
    >>> path = sorted((sample_dir() / "images" / "normal").glob("*.png"))[0]
    >>> rgb = read_image(path)
    >>> rgb.ndim, rgb.shape[-1], rgb.dtype
    (3, 3, dtype('uint8'))

    A file larger than the limit is refused from its header:

    >>> try:
    ...     read_image(path, max_pixels=100)
    ... except ValueError as error:
    ...     print(type(error).__name__)
    ImageDecodeError
    """
    if not isinstance(path, (str, os.PathLike)):
        message = (
            "Expected path to be a file path (a str or os.PathLike). "
            f"Received: path of type {type(path).__name__}"
        )
        raise ArgumentTypeError(message)
    path = Path(path)
    limit = get_max_image_pixels() if isinstance(max_pixels, _LibraryLimit) else _check_max_pixels(max_pixels)
    if path.suffix.lower() in DICOM_SUFFIXES or has_dicom_preamble(path):
        with _pillow_bomb_check_off():  # pydicom may decode JPEG pixel data with Pillow
            return read_dicom(path, max_pixels=limit)
    source = f"image file {str(path)!r}"
    try:
        with _pillow_bomb_check_off(), Image.open(path) as image:
            _check_pixel_limit(source, image.size, limit)
            if getattr(image, "is_animated", False):
                logger.info("%s holds more than one frame; reading only the first", path)
            image.load()
            image = ImageOps.exif_transpose(image)
            return _pil_to_rgb_uint8(image, source)
    except CxrError:
        raise
    except FileNotFoundError:
        message = f"Image file not found: {str(path)!r}."
        raise ImageDecodeError(message) from None
    except _PILLOW_ERRORS as error:
        message = (
            f"Could not decode image file {str(path)!r}: expected a complete PNG, JPEG or TIFF chest X-ray "
            f"that Pillow can read, or a DICOM file. Received: a truncated, corrupt or unreadable file "
            f"({type(error).__name__}: {error})."
        )
        raise ImageDecodeError(message) from error


def to_rgb_uint8(image: ImageInput, *, max_pixels: int | None | _LibraryLimit = _LIBRARY_LIMIT) -> np.ndarray:
    """Convert a path, PIL image or numpy array to an ``(H, W, 3)`` ``uint8`` RGB array.

    Paths (PNG, JPEG, TIFF or DICOM files) are read by :func:`read_image`.
    There is one fixed rule per input kind, never a guess from the values:

    ======================================================  ==========================================
    input                                                   result
    ======================================================  ==========================================
    shape ``(H, W)`` or ``(H, W, 1)``                       grayscale, repeated on the three channels
    shape ``(H, W, 3)`` or ``(H, W, 4)``                    RGB, or RGBA composited on black
    any other shape, or an empty array                      ``ImageDecodeError`` (a 4-D batch goes
                                                            to ``cxrclassify.predict``)
    ``uint8``                                               as is
    ``bool``                                                ``False`` -> 0, ``True`` -> 255
    ``uint16``, ``int16``, Pillow ``I;16*``, ``I``, ``F``   own min..max stretched onto 0..255,
                                                            ``round((x - min) * 255 / (max - min))``;
                                                            a constant image -> all 0
    ``int8``, ``int32``, ``int64``, ``uint32``, ``uint64``  values in 0..255 taken as 8-bit; others:
                                                            ``ImageDecodeError`` (cast to ``uint16``
                                                            or ``uint8``)
    floats                                                  values in ``[0, 1]`` -> ``round(x * 255)``;
                                                            outside, NaN or inf: ``ImageDecodeError``
    object, string, complex and other dtypes                ``ImageDecodeError`` naming the dtype
    ======================================================  ==========================================

    An RGBA array has its color channels converted by these rules, then is
    composited on black, ``round(c * a)``, with the opacity ``a`` read on the
    dtype's full scale (``alpha / 255`` for ``uint8`` and the other 8-bit
    integers, ``/ 65535`` for ``uint16``, ``/ 32767`` for ``int16``, as is for
    floats and bools). A float image on a 0..255 scale is not guessed at: cast
    it to ``uint8``; a ``[-1, 1]`` or other range is rescaled by the caller, e.g.
    ``(x - lo) / (hi - lo)``. DICOM files have their display window applied
    first (see ``read_dicom``). PIL images are converted by their mode
    (palette, bilevel, CMYK, YCbCr, LA and RGBA become RGB, transparency is
    composited on black).

    Parameters
    ----------
    image : str, os.PathLike, PIL.Image.Image or numpy.ndarray
        One image.
    max_pixels : int or None, optional
        For a path, the pixel limit of :func:`read_image`; ignored for arrays and
        PIL images, which are already decoded.

    Returns
    -------
    numpy.ndarray
        ``(height, width, 3)`` ``uint8`` RGB.

    Raises
    ------
    ImageDecodeError
        If the file cannot be read, or the array breaks the rules above; the
        message says what was expected and how to pass such data.
    ArgumentTypeError
        If ``image`` is none of the accepted types.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets import to_rgb_uint8
    >>> to_rgb_uint8(np.zeros((4, 5), np.uint16)).shape
    (4, 5, 3)
    >>> to_rgb_uint8(np.array([[1000, 1100, 1200]], np.uint16))[0, :, 0].tolist()
    [0, 128, 255]
    >>> to_rgb_uint8(np.array([[0.0, 0.5, 1.0]]))[0, :, 0].tolist()
    [0, 128, 255]
    >>> to_rgb_uint8(np.array([[0, 7, 255]], np.int64))[0, :, 0].tolist()
    [0, 7, 255]
    >>> try:
    ...     to_rgb_uint8(np.array([[0.0, 128.0, 255.0]]))
    ... except ValueError as error:
    ...     print("Cast 0..255 data to uint8" in str(error))
    True
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_pixels=max_pixels)
    if isinstance(image, Image.Image):
        return _pil_to_rgb_uint8(image, f"PIL image of mode {image.mode!r}")
    if isinstance(image, np.ndarray):
        return _array_to_rgb_uint8(image)
    message = (
        "Expected an image as a file path, a PIL.Image.Image or a numpy array. "
        f"Received: image of type {type(image).__name__}"
    )
    raise ArgumentTypeError(message)


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an RGB ``uint8`` array to ``size`` (an int for a square, or ``(height, width)``).

    Bilinear, with Pillow's reducing gap of 2 (an antialiased reduction).

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` ``uint8``, as :func:`to_rgb_uint8` gives.
    size : int or tuple of int
        The side of a square, or ``(height, width)``; positive whole numbers.

    Returns
    -------
    numpy.ndarray
        ``(height, width, 3)`` ``uint8``; ``image`` itself when it already has
        that size.

    Raises
    ------
    ArgumentError
        If ``size`` is not a positive int or a pair of them, or ``image`` is not
        an ``(H, W, 3)`` ``uint8`` array.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets import resize
    >>> resize(np.zeros((50, 80, 3), np.uint8), 32).shape
    (32, 32, 3)
    >>> resize(np.zeros((50, 80, 3), np.uint8), (20, 10)).shape
    (20, 10, 3)
    """
    height, width = _check_size(size)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        described = (
            f"array of shape {image.shape} and dtype {image.dtype}"
            if isinstance(image, np.ndarray)
            else f"image of type {type(image).__name__}"
        )
        message = f"Expected image to be an (H, W, 3) uint8 array (see to_rgb_uint8). Received: {described}"
        raise ArgumentError(message)
    if image.shape[:2] == (height, width):
        return image
    if image.size == 0:
        message = f"Expected image to be a non-empty (H, W, 3) uint8 array. Received: array of shape {image.shape}"
        raise ArgumentError(message)
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), resample=Image.Resampling.BILINEAR, reducing_gap=2.0
    )
    return np.asarray(resized, dtype=np.uint8)


def _is_whole_number(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_size(size: object) -> tuple[int, int]:
    if _is_whole_number(size) and size > 0:  # type: ignore[operator]
        return int(size), int(size)  # type: ignore[call-overload]
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(_is_whole_number(side) and side > 0 for side in size)
    ):
        return int(size[0]), int(size[1])
    message = (
        "Expected size to be a positive int (the side of a square) or a pair of positive ints "
        f"(height, width). Received: size={size!r}"
    )
    raise ArgumentError(message)


def _check_max_pixels(max_pixels: object) -> int | None:
    if max_pixels is None:
        return None
    if _is_whole_number(max_pixels) and max_pixels > 0:  # type: ignore[operator]
        return int(max_pixels)  # type: ignore[call-overload]
    message = (
        "Expected max_pixels to be a positive int (the largest width x height to decode) or None "
        f"for no limit. Received: max_pixels={max_pixels!r}"
    )
    raise ArgumentError(message)


def _check_pixel_limit(source: str, size: tuple[int, int], limit: int | None) -> None:
    """Refuse an image whose declared ``(width, height)`` exceeds ``limit``, before decoding it."""
    width, height = size
    if limit is None or width * height <= limit:
        return
    message = (
        f"Refusing to decode {source}: expected at most {limit:,} pixels (the limit that guards "
        f"against decompression bombs). To read it, raise the limit with read_image(..., max_pixels=n), "
        f"set_max_image_pixels(n) or the environment variable {MAX_IMAGE_PIXELS_ENV} (None, or 'none', "
        f"for no limit). Received: a header that declares {width} x {height} = {width * height:,} pixels."
    )
    raise ImageDecodeError(message)


@contextlib.contextmanager
def _pillow_bomb_check_off() -> Iterator[None]:
    """Switch Pillow's own decompression-bomb check off while a decode of this module runs.

    The library's pixel limit, checked from the header, replaces it; Pillow's
    would otherwise fire first with a raw ``DecompressionBombError`` (or only a
    warning) and a limit of its own. Concurrent decodes share one switch: the
    first saves ``Image.MAX_IMAGE_PIXELS``, the last restores it.
    """
    global _pillow_users, _pillow_saved_limit
    with _pillow_lock:
        if _pillow_users == 0:
            _pillow_saved_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _pillow_users += 1
    try:
        yield
    finally:
        with _pillow_lock:
            _pillow_users -= 1
            if _pillow_users == 0:
                Image.MAX_IMAGE_PIXELS = _pillow_saved_limit


def _pil_to_rgb_uint8(image: Image.Image, source: str) -> np.ndarray:
    mode = image.mode
    if image.width * image.height == 0:
        message = f"Expected a non-empty image in {source}. Received: an image of size {image.width} x {image.height}"
        raise ImageDecodeError(message)
    if mode.startswith("I") or mode == "F":
        # 16- and 32-bit integer and float grayscale: the same min..max stretch as
        # uint16 arrays (files declare no range).
        values = np.asarray(image)
        _check_finite(values, source)
        return _gray_to_rgb(_stretch(values))
    try:
        if mode == "La":  # premultiplied: Pillow converts it only to LA
            image = image.convert("LA")
        if image.mode in ("RGBA", "RGBa", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            image = Image.alpha_composite(background, rgba)
        rgb = image.convert("RGB")
    except ValueError as error:
        message = (
            f"Could not convert {source} to RGB: expected a Pillow mode that converts to RGB "
            f"(1, L, P, RGB, RGBA, CMYK, YCbCr, LA, I;16, I, F). Received: mode {mode!r} ({error})"
        )
        raise ImageDecodeError(message) from error
    return np.asarray(rgb, dtype=np.uint8)


def _array_to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    dtype = array.dtype
    if dtype.kind not in "buif":
        message = (
            "Expected an image array of a numeric dtype: bool, an integer or a float "
            f"(see to_rgb_uint8 for how each is read). Received: array of dtype {dtype} "
            f"({_dtype_kind_name(dtype)})"
        )
        raise ImageDecodeError(message)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        hint = ""
        if array.ndim == 4:
            hint = " A 4-D array is a batch: pass it to cxrclassify.predict, or its images one at a time."
        elif array.ndim == 3 and array.shape[0] in (1, 3, 4):
            hint = " A channels-first array goes channels-last with np.moveaxis(array, 0, -1)."
        message = f"Expected one image array of shape {_SHAPES_TEXT}.{hint} Received: array of shape {array.shape}"
        raise ImageDecodeError(message)
    if array.size == 0:
        message = (
            "Expected a non-empty image array (height and width of at least 1). "
            f"Received: array of shape {array.shape}"
        )
        raise ImageDecodeError(message)
    if array.ndim == 3 and array.shape[-1] == 4:
        color = _scale_to_uint8(array[..., :3], whole=array)
        opacity = _opacity(array[..., 3])
        return np.round(color.astype(np.float64) * opacity[..., None]).astype(np.uint8)
    gray_or_rgb = _scale_to_uint8(array, whole=array)
    if gray_or_rgb.ndim == 2:
        return _gray_to_rgb(gray_or_rgb)
    return np.ascontiguousarray(gray_or_rgb)


def _dtype_kind_name(dtype: np.dtype) -> str:
    return {
        "c": "complex numbers",
        "O": "Python objects",
        "U": "strings",
        "S": "bytes",
        "V": "structured or raw bytes",
        "M": "dates",
        "m": "time spans",
    }.get(dtype.kind, "not numeric")


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def _check_finite(values: np.ndarray, source: str) -> None:
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        message = f"Expected finite pixel values in {source}. Received: values that include NaN or infinity"
        raise ImageDecodeError(message)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Stretch the image's own minimum..maximum linearly onto 0..255 (a constant image gives 0)."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.clip(np.round((values - low) * 255.0 / (high - low)), 0, 255).astype(np.uint8)


def _scale_to_uint8(array: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """Apply the dtype rule to the color channels ``array``; ``whole`` (with alpha) is range-checked."""
    dtype = array.dtype
    if dtype == np.uint8:
        return array
    if dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if dtype in _WIDE_INTEGER_DTYPES:
        return _stretch(array)
    if dtype.kind in "iu":
        low, high = int(whole.min()), int(whole.max())
        if low < 0 or high > 255:
            message = (
                f"Expected an image array of dtype {dtype} to hold values in 0..255 (they are taken as "
                "8-bit). Cast 10- to 16-bit data to uint16 to have its own minimum..maximum stretched "
                "onto 0..255, or 8-bit data to uint8. Received: values from "
                f"{low} to {high}"
            )
            raise ImageDecodeError(message)
        return array.astype(np.uint8)
    # floats
    _check_finite(whole, "the image array")
    low, high = float(whole.min()), float(whole.max())
    if low < 0.0 or high > 1.0:
        message = (
            f"Expected a float image array ({dtype}) with values in [0, 1] (they are multiplied by 255). "
            "Cast 0..255 data to uint8 (np.round(x).astype(np.uint8)); rescale any other range to "
            "[0, 1] yourself, e.g. (x - lo) / (hi - lo). Received: values from "
            f"{low:g} to {high:g}"
        )
        raise ImageDecodeError(message)
    return np.round(array.astype(np.float64) * 255.0).astype(np.uint8)


def _opacity(alpha: np.ndarray) -> np.ndarray:
    """The alpha channel of an RGBA array as an opacity in [0, 1], on its dtype's full scale."""
    dtype = alpha.dtype
    if dtype == np.bool_ or dtype.kind == "f":
        return alpha.astype(np.float64)  # floats were range-checked with the colors
    if dtype == np.uint16:
        return alpha.astype(np.float64) / 65535.0
    if dtype == np.int16:
        if int(alpha.min()) < 0:
            message = (
                "Expected the alpha channel of an int16 RGBA image array to be 0..32767 (read as "
                f"alpha / 32767). Received: alpha values from {int(alpha.min())} to {int(alpha.max())}"
            )
            raise ImageDecodeError(message)
        return alpha.astype(np.float64) / 32767.0
    return alpha.astype(np.float64) / 255.0  # uint8 and the 8-bit integer rule (range-checked)
