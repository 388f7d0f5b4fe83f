"""Read DICOM chest X-rays into 8-bit RGB arrays, with the optional pydicom.

Hospital X-rays come as DICOM files: 10 to 16-bit grayscale with a rescale
(Modality LUT), a display window (VOI LUT) chosen by the modality, and either
``MONOCHROME2`` (air dark) or ``MONOCHROME1`` (air bright) photometry.
:func:`read_dicom` turns such a file into the same ``(height, width, 3)``
``uint8`` RGB array that PNG and JPEG files give, so that the rest of the
library never sees DICOM:

1. the first frame of the pixel data is decoded (multi-frame files warn once);
2. the Modality LUT or *Rescale Slope* / *Rescale Intercept* is applied;
3. the first *Window Center* / *Window Width* is applied when the file has one,
   else the first item of the *VOI LUT Sequence*; without either, the full
   range of the data is used, so that no lung detail is clipped;
4. the result is scaled linearly (not by dropping bits) to 0..255;
5. ``MONOCHROME1`` is inverted, so that air is dark and bone bright as in
   ``MONOCHROME2``; color files (``RGB``, ``YBR_FULL``, ``PALETTE COLOR``)
   come out as RGB.

Before any pixel is decoded, *Rows* x *Columns* is checked against the pixel
limit of ``read_image`` (see ``cxrclassify.datasets.set_max_image_pixels``), so
that a small compressed file that declares a huge image is refused at once.

pydicom is imported only when a DICOM file is read (``pip install
"cxrclassify[dicom]"``). This module imports nothing from the library but its
exceptions (and, when no limit is passed to :func:`read_dicom`, the pixel limit
of its sibling ``_images``).
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..exceptions import ArgumentError, DataWarning, ImageDecodeError

__all__ = ["DICOM_SUFFIXES", "has_dicom_preamble", "read_dicom"]

logger = logging.getLogger(__name__)

#: File name endings read as DICOM (compared in lower case).
DICOM_SUFFIXES = (".dcm", ".dicom")

_MAGIC_OFFSET = 128
_MAGIC = b"DICM"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# Install commands for decoders of compressed transfer syntaxes, by family.
_JPEG2000_SYNTAXES = frozenset(
    f"1.2.840.10008.1.2.4.{suffix}" for suffix in ("90", "91", "92", "93", "201", "202", "203")
)
_JPEG_SYNTAXES = frozenset(
    f"1.2.840.10008.1.2.4.{suffix}" for suffix in ("50", "51", "57", "70", "80", "81")
)
_GDCM = "`pip install python-gdcm`"
_INSTALL_DECODER = {
    "jpeg2000": f"`pip install pylibjpeg pylibjpeg-openjpeg` or {_GDCM}",
    "jpeg": f"`pip install pylibjpeg pylibjpeg-libjpeg` or {_GDCM}",
    "rle": f"`pip install pylibjpeg pylibjpeg-rle` or {_GDCM}",
    "other": f"`pip install pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg` or {_GDCM}",
}

# What pydicom's decoders raise on pixel data they cannot decode: RuntimeError
# (pydicom 3: every plugin is missing or failed), NotImplementedError (no decoder
# for the transfer syntax), ValueError / AttributeError (pixel data that does not
# match the header), OSError (Pillow's UnidentifiedImageError, under pydicom 2).
_DECODE_ERRORS = (
    RuntimeError,
    NotImplementedError,
    ValueError,
    AttributeError,
    TypeError,
    IndexError,
    KeyError,
    OSError,
    EOFError,
    struct.error,
)

# Whether the "only the first frame is read" warning was shown in this process.
_first_frame_warning_shown = False


def has_dicom_preamble(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts like a DICOM file: 128 bytes, then ``DICM``.

    Reads 132 bytes; whatever cannot be read (a missing file, a folder) is not
    DICOM.

    Parameters
    ----------
    path : str or os.PathLike
        The file to test.

    Returns
    -------
    bool
        ``True`` when the bytes 128 to 131 of the file are ``b"DICM"``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "IM0001"
    >>> _ = path.write_bytes(bytes(128) + b"DICM" + bytes(16))
    >>> has_dicom_preamble(path), has_dicom_preamble(path.with_name("missing.png"))
    (True, False)
    """
    try:
        with open(path, "rb") as file:
            head = file.read(_MAGIC_OFFSET + len(_MAGIC))
    except OSError:
        return False
    return head[_MAGIC_OFFSET:] == _MAGIC


class _LibraryLimit:
    """The default of ``max_pixels``: the library's pixel limit."""

    def __repr__(self) -> str:
        return "<the library's pixel limit>"


_LIBRARY_LIMIT = _LibraryLimit()


def read_dicom(path: str | os.PathLike[str], *, max_pixels: int | None | _LibraryLimit = _LIBRARY_LIMIT) -> np.ndarray:
    """Read a DICOM X-ray into an ``(H, W, 3)`` ``uint8`` RGB array.

    Needs pydicom (``pip install "cxrclassify[dicom]"``), and for compressed
    pixel data a decoder pydicom can use (Pillow covers baseline JPEG and, when
    built with OpenJPEG, JPEG 2000; pylibjpeg or python-gdcm cover the rest).

    The first frame is decoded, then the Modality LUT (rescale slope and
    intercept) is applied, then the first *Window Center* / *Window Width* if
    the file has one, else its *VOI LUT Sequence*, else the full range of the
    data (nothing is clipped). The result is scaled linearly to 0..255 and,
    for ``MONOCHROME1``, inverted, so that air is dark and bone bright. Color
    files come out as RGB.

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM Part 10 file (128-byte preamble, ``DICM``, file meta
        information), whatever its suffix.
    max_pixels : int or None, optional
        The largest *Rows* x *Columns* to decode, checked before the pixel data
        is decoded; ``None``: no limit. By default the limit of ``read_image``
        (``cxrclassify.datasets._images.get_max_image_pixels``).

    Returns
    -------
    numpy.ndarray
        ``(rows, columns, 3)`` ``uint8``; the three channels are equal for
        grayscale files.

    Raises
    ------
    ArgumentError
        If ``max_pixels`` is not a positive int or ``None``.
    ImageDecodeError
        If pydicom is not installed, the file is missing, is not DICOM, is
        truncated or corrupt, has no pixel data (a structured report or a
        presentation state), or holds compressed pixel data that no installed
        decoder can read (the message names the transfer syntax and what to
        install), or declares more *Rows* x *Columns* than ``max_pixels``.
        Every message names the file.

    Warns
    -----
    DataWarning
        Once per process when a multi-frame file is read (only its first frame
        is used), and when a file's window or VOI LUT is invalid (its full data
        range is used instead).

    Examples
    --------
    Write a 12-bit ``MONOCHROME1`` gradient with pydicom 3 and read it back:

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from pydicom import Dataset
    >>> from pydicom.uid import generate_uid
    >>> ds = Dataset()
    >>> ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    >>> ds.SOPInstanceUID = generate_uid()
    >>> gradient = np.tile(np.linspace(0, 4095, 64), (4, 1)).astype(np.uint16)
    >>> ds.set_pixel_data(gradient, "MONOCHROME1", 12)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "xray.dcm"
    >>> ds.save_as(path, enforce_file_format=True)
    >>> rgb = read_dicom(path)
    >>> rgb.shape, rgb.dtype
    ((4, 64, 3), dtype('uint8'))
    >>> int(rgb[0, 0, 0]), int(rgb[0, -1, 0])  # MONOCHROME1: the lowest value shows white
    (255, 0)

    A file that declares more pixels than the limit is refused before decoding:

    >>> try:
    ...     read_dicom(path, max_pixels=100)
    ... except ValueError as error:
    ...     print(type(error).__name__, "4 x 64" in str(error) or "64 x 4" in str(error))
    ImageDecodeError True
    """
    path = Path(path)
    if isinstance(max_pixels, _LibraryLimit):
        from ._images import get_max_image_pixels

        max_pixels = get_max_image_pixels()
    elif max_pixels is not None and (
        isinstance(max_pixels, (bool, np.bool_)) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1
    ):
        message = (
            "Expected max_pixels to be a positive int (the largest Rows x Columns to decode) or None for "
            f"no limit. Received: max_pixels={max_pixels!r}"
        )
        raise ArgumentError(message)
    pydicom, pixels = _import_pydicom(path)
    dataset = _read_dataset(pydicom, path)
    notes: list[str] = []
    try:
        _check_pixel_limit(dataset, path, max_pixels)
        rgb = _dataset_to_rgb(dataset, path, pixels, notes)
    except ImageDecodeError:
        raise
    except _corrupt_file_errors(pydicom) as error:
        # pydicom parses elements lazily: a corrupt header only fails when an
        # element is first used, with any of these errors.
        message = (
            f"Could not decode DICOM file {str(path)!r}: expected a complete DICOM image whose "
            f"header matches its pixel data. Received: a corrupt or inconsistent file "
            f"({type(error).__name__}: {error})."
        )
        raise ImageDecodeError(message) from error
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return rgb


def _check_pixel_limit(dataset: Any, path: Path, max_pixels: int | None) -> None:
    """Refuse a file whose header declares more than ``max_pixels`` pixels, before decoding it."""
    if max_pixels is None:
        return
    try:
        rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    except (TypeError, ValueError):
        return  # an unusable header fails when the pixel data is decoded
    if rows * columns <= max_pixels:
        return
    message = (
        f"Refusing to decode DICOM file {str(path)!r}: expected at most {max_pixels:,} pixels (the limit "
        f"that guards against decompression bombs). To read it, raise the limit with read_image(..., "
        f"max_pixels=n), set_max_image_pixels(n) or the environment variable CXRCLASSIFY_MAX_IMAGE_PIXELS "
        f"(None, or 'none', for no limit). Received: a header that declares {columns} x {rows} "
        f"(Columns x Rows) = {rows * columns:,} pixels."
    )
    raise ImageDecodeError(message)


def _import_pydicom(path: Path) -> tuple[Any, SimpleNamespace]:
    """Import pydicom and its pixel functions (pydicom 3, or 2.4 as a fallback)."""
    try:
        import pydicom

        try:  # pydicom >= 3
            from pydicom.pixels import (
                apply_color_lut,
                apply_modality_lut,
                apply_voi,
                apply_windowing,
                convert_color_space,
                get_decoder,
                pixel_array,
            )
        except ImportError:  # pydicom 2.4
            from pydicom.pixel_data_handlers.util import (
                apply_color_lut,
                apply_modality_lut,
                apply_voi,
                apply_windowing,
                convert_color_space,
            )

            get_decoder = pixel_array = None
    except ImportError as error:
        message = (
            f"Reading the DICOM file {str(path)!r} needs the optional dependency pydicom: "
            f'expected it to be installed (pip install "cxrclassify[dicom]"). '
            f"Received: {type(error).__name__}: {error}"
        )
        raise ImageDecodeError(message) from error
    pixels = SimpleNamespace(
        apply_color_lut=apply_color_lut,
        apply_modality_lut=apply_modality_lut,
        apply_voi=apply_voi,
        apply_windowing=apply_windowing,
        convert_color_space=convert_color_space,
        get_decoder=get_decoder,
        pixel_array=pixel_array,
    )
    return pydicom, pixels


def _corrupt_file_errors(pydicom: Any) -> tuple[type[BaseException], ...]:
    """The errors pydicom raises on truncated or corrupt files (not ``Exception``)."""
    from pydicom import errors

    pydicom_errors = tuple(
        getattr(errors, name) for name in ("InvalidDicomError", "BytesLengthException") if hasattr(errors, name)
    )
    return pydicom_errors + (
        EOFError,
        OSError,
        struct.error,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        NotImplementedError,
        OverflowError,
    )


def _read_dataset(pydicom: Any, path: Path) -> Any:
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, force=False)
    except FileNotFoundError:
        message = f"Image file not found: {str(path)!r}."
        raise ImageDecodeError(message) from None
    except InvalidDicomError as error:
        message = (
            f"Could not read {str(path)!r} as DICOM: expected a DICOM file (a 128-byte preamble, "
            f"'DICM' and file meta information). Received: a file without that header ({error})"
        )
        raise ImageDecodeError(message) from error
    except _corrupt_file_errors(pydicom) as error:
        message = (
            f"Could not read DICOM file {str(path)!r}: expected a complete DICOM file. "
            f"Received: a truncated or corrupt file ({type(error).__name__}: {error})."
        )
        raise ImageDecodeError(message) from error


def _dataset_to_rgb(dataset: Any, path: Path, pixels: SimpleNamespace, notes: list[str]) -> np.ndarray:
    global _first_frame_warning_shown
    from pydicom.uid import UID

    if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):
        sop_class = dataset.get("SOPClassUID")
        kind = f"a {UID(str(sop_class)).name} file" if sop_class else "a file"
        message = (
            f"Could not read DICOM file {str(path)!r} as an image: expected a DICOM image. "
            f"Received: {kind} that has no pixel data (it may be a structured report or a "
            f"presentation state, or a truncated file)."
        )
        raise ImageDecodeError(message)
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    if not syntax:
        message = (
            f"Could not decode DICOM file {str(path)!r}: expected file meta information with a "
            f"Transfer Syntax UID. Received: none (the file may be truncated)."
        )
        raise ImageDecodeError(message)
    syntax = UID(str(syntax))
    frames = _number_of_frames(dataset)
    frame = _decode_first_frame(dataset, path, syntax, pixels)
    if frames > 1:
        logger.info("%s holds %d frames; reading only the first", path, frames)
        if not _first_frame_warning_shown:
            _first_frame_warning_shown = True
            notes.append(
                f"DICOM file {str(path)!r} holds {frames} frames: only the first frame is read "
                "(this applies to every multi-frame file; the warning is shown once)."
            )
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
    logger.debug(
        "%s: %s, %s, %d frame(s), %s pixels", path, syntax.name, photometric, frames, frame.dtype
    )
    if photometric == "PALETTE COLOR" and frame.ndim == 2:
        return _fixed_range_to_uint8(pixels.apply_color_lut(frame, dataset))
    if frame.ndim == 3:
        return _color_to_rgb(frame, dataset, syntax, photometric, pixels)
    gray = _monochrome_to_uint8(frame, dataset, path, pixels, notes)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.repeat(gray[..., None], 3, axis=-1)


def _number_of_frames(dataset: Any) -> int:
    value = dataset.get("NumberOfFrames")
    try:
        return max(int(value), 1) if value not in (None, "") else 1
    except (TypeError, ValueError):
        return 1


def _decode_first_frame(dataset: Any, path: Path, syntax: Any, pixels: SimpleNamespace) -> np.ndarray:
    if syntax.is_compressed and pixels.get_decoder is not None:
        try:
            decoder = pixels.get_decoder(syntax)
        except NotImplementedError:
            raise _undecodable(path, syntax, "pydicom has no decoder for it at all") from None
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies)
            raise _undecodable(path, syntax, f"no installed decoder can read it (pydicom: {missing})")
    try:
        if pixels.pixel_array is not None:  # pydicom 3 decodes only the frame asked for
            return np.asarray(pixels.pixel_array(dataset, index=0))
        array = np.asarray(dataset.pixel_array)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        if _number_of_frames(dataset) > 1 and array.ndim == (4 if samples > 1 else 3):
            array = array[0]
        return array
    except _DECODE_ERRORS as error:
        if syntax.is_compressed:
            text = str(error).lower()
            if "missing" in text and "dependenc" in text or "no pixel data handlers" in text:  # pydicom 2
                reason = f"no installed decoder can read it (pydicom: {error})"
            else:
                reason = f"the decoders failed on it ({type(error).__name__}: {error}); the data may be corrupt"
            raise _undecodable(path, syntax, reason) from error
        message = (
            f"Could not decode DICOM file {str(path)!r}: expected uncompressed pixel data that matches "
            f"its header (rows, columns, bits allocated). Received: {syntax.name} pixel data that does "
            f"not ({type(error).__name__}: {error})."
        )
        raise ImageDecodeError(message) from error


def _undecodable(path: Path, syntax: Any, reason: str) -> ImageDecodeError:
    if str(syntax) in _JPEG2000_SYNTAXES:
        install = _INSTALL_DECODER["jpeg2000"]
    elif str(syntax) in _JPEG_SYNTAXES:
        install = _INSTALL_DECODER["jpeg"]
    elif str(syntax) == "1.2.840.10008.1.2.5":
        install = _INSTALL_DECODER["rle"]
    else:
        install = _INSTALL_DECODER["other"]
    message = (
        f"Could not decode the pixel data of DICOM file {str(path)!r}: expected pixel data that an "
        f"installed decoder can read. Received: pixel data compressed as {syntax.name} (transfer "
        f"syntax {syntax}), and {reason}. To read it, install a decoder: {install}."
    )
    return ImageDecodeError(message)


def _color_to_rgb(
    frame: np.ndarray, dataset: Any, syntax: Any, photometric: str, pixels: SimpleNamespace
) -> np.ndarray:
    if frame.shape[-1] != 3:
        message = (
            "Expected a DICOM color image with 3 samples per pixel. "
            f"Received: pixel data of shape {frame.shape}"
        )
        raise ImageDecodeError(message)
    # pydicom 3 converts YBR_FULL(_422) to RGB while decoding; pydicom 2 leaves
    # uncompressed YBR pixel data as it is.
    if pixels.pixel_array is None and photometric in ("YBR_FULL", "YBR_FULL_422") and not syntax.is_compressed:
        frame = pixels.convert_color_space(frame, photometric, "RGB")
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    bits = int(dataset.get("BitsStored", 8 * frame.dtype.itemsize) or 8)
    return _scale_to_uint8(frame.astype(np.float64), 0.0, float(2**bits - 1))


def _fixed_range_to_uint8(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb[..., :3])
    return _scale_to_uint8(rgb[..., :3].astype(np.float64), 0.0, float(np.iinfo(rgb.dtype).max))


def _monochrome_to_uint8(
    frame: np.ndarray,
    dataset: Any,
    path: Path,
    pixels: SimpleNamespace,
    notes: list[str],
) -> np.ndarray:
    values = np.asarray(pixels.apply_modality_lut(frame, dataset), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        message = (
            f"Could not decode DICOM file {str(path)!r}: expected finite pixel values. "
            "Received: pixel data containing NaN or infinity"
        )
        raise ImageDecodeError(message)
    center = _first_number(dataset.get("WindowCenter"))
    width = _first_number(dataset.get("WindowWidth"))
    if center is not None and width is not None:
        try:
            windowed = pixels.apply_windowing(values, dataset, index=0)
            # The window maps to pydicom's output range: probe it with -inf and +inf.
            low, high = pixels.apply_windowing(np.array([-np.inf, np.inf]), dataset, index=0)
        except ValueError as error:
            notes.append(
                f"DICOM file {str(path)!r} has an unusable window (center {center}, width {width}: "
                f"{error}); its full data range is used instead."
            )
        else:
            if np.isfinite(low) and np.isfinite(high) and high > low:
                logger.debug("%s: window center %s, width %s", path, center, width)
                return _scale_to_uint8(windowed, float(low), float(high))
    elif dataset.get("VOILUTSequence"):
        lut_result = _apply_voi_lut_sequence(values, dataset, path, pixels, notes)
        if lut_result is not None:
            return lut_result
    return _scale_to_uint8(values, float(values.min()), float(values.max()))


def _apply_voi_lut_sequence(
    values: np.ndarray, dataset: Any, path: Path, pixels: SimpleNamespace, notes: list[str]
) -> np.ndarray | None:
    """Apply the first VOI LUT, scaling its output range to 0..255; ``None`` if it is unusable."""
    try:
        item = dataset.VOILUTSequence[0]
        entries, first_mapped = int(item.LUTDescriptor[0]) or 2**16, int(item.LUTDescriptor[1])
        # A VOI LUT maps integer values; rescaled values are rounded to integers.
        mapped = pixels.apply_voi(np.round(values).astype(np.int64), dataset, index=0)
        table = pixels.apply_voi(np.arange(first_mapped, first_mapped + entries, dtype=np.int64), dataset, index=0)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, NotImplementedError, struct.error) as error:
        notes.append(
            f"DICOM file {str(path)!r} has an unusable VOI LUT ({type(error).__name__}: {error}); "
            "its full data range is used instead."
        )
        return None
    low, high = float(np.min(table)), float(np.max(table))
    if not high > low:
        notes.append(f"DICOM file {str(path)!r} has a constant VOI LUT; its full data range is used instead.")
        return None
    logger.debug("%s: VOI LUT sequence, output %s..%s", path, low, high)
    return _scale_to_uint8(np.asarray(mapped, dtype=np.float64), low, high)


def _first_number(value: Any) -> float | None:
    """The first value of a possibly multi-valued numeric element, or ``None``."""
    if value is None or isinstance(value, (str, bytes)) and not str(value).strip():
        return None
    if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low..high`` linearly to ``0..255``."""
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = np.round((values - low) * (255.0 / (high - low)))
    return np.clip(scaled, 0, 255).astype(np.uint8)
