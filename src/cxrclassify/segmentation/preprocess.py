"""Lung-based preprocessing for the classifier: the lungs' bounding box, a crop to it, the rest blanked out.

Each function is a pure function of ``(image, mask)``: given the mask, the
result depends on nothing else (no model, no state). When ``mask`` is
``None`` the shipped segmenter draws it (:func:`~cxrclassify.segmentation.segment_lungs`).

A mask with no lung pixel does not stop a pipeline: :func:`lung_box` gives the
whole image, :func:`crop_to_lungs` and :func:`mask_outside_lungs` return the
image unchanged, and each issues a :class:`~cxrclassify.exceptions.DataWarning`.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from typing import Any

import numpy as np
from scipy import ndimage

from ..datasets._images import ImageInput, to_rgb_uint8
from ..exceptions import ArgumentError, ArgumentTypeError, DataWarning
from .lungs import _check_mask

__all__ = ["crop_to_lungs", "lung_box", "mask_outside_lungs"]

logger = logging.getLogger(__name__)

#: Default dilation of :func:`mask_outside_lungs`, as a fraction of the image's longer side.
DEFAULT_DILATION = 0.02


def _check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        message = (
            f"Expected {name} to be a number from 0 to 1 (a fraction of the image's size). Received: {name}={value!r}"
        )
        raise ArgumentError(message)
    return float(value)


def _box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(columns[0]), int(columns[-1]) + 1
    pad_rows = round(margin * (bottom - top))
    pad_columns = round(margin * (right - left))
    return (max(0, top - pad_rows), max(0, left - pad_columns),
            min(height, bottom + pad_rows), min(width, right + pad_columns))


def _warn_empty(what: str) -> None:
    message = f"The lung mask is empty (no lung pixel was found): {what}"
    warnings.warn(message, DataWarning, stacklevel=3)


def lung_box(mask: np.ndarray, *, margin: float = 0.05) -> tuple[int, int, int, int]:
    """The bounding box of the lungs, widened by a margin: ``(top, left, bottom, right)``.

    ``bottom`` and ``right`` are exclusive, so that ``image[top:bottom,
    left:right]`` is the crop. Each side is moved out by ``margin`` times the
    box's own height (top and bottom) or width (left and right), and clipped
    to the image.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` boolean or integer lung mask (non-zero is lung).
    margin : float, optional
        The margin, as a fraction of the box's height and width, from 0 to 1.

    Returns
    -------
    tuple of int
        ``(top, left, bottom, right)``; ``(0, 0, H, W)`` when the mask is empty.

    Warns
    -----
    cxrclassify.exceptions.DataWarning
        If the mask is empty (the whole image is returned).

    Raises
    ------
    cxrclassify.exceptions.ArgumentTypeError
        If ``mask`` is not a boolean or integer array.
    cxrclassify.exceptions.ArgumentError
        If ``mask`` is not 2-D, or ``margin`` is outside ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation import lung_box
    >>> mask = np.zeros((100, 120), bool)
    >>> mask[20:80, 10:110] = True
    >>> lung_box(mask)
    (17, 5, 83, 115)
    >>> lung_box(mask, margin=0)
    (20, 10, 80, 110)
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     lung_box(np.zeros((4, 6), bool))
    (0, 0, 4, 6)
    >>> caught[0].category.__name__
    'DataWarning'
    """
    mask = _check_mask(mask)
    margin = _check_fraction(margin, "margin")
    box = _box(mask, margin)
    if box is None:
        _warn_empty("the box is the whole image")
        return (0, 0, mask.shape[0], mask.shape[1])
    return box


def _image_and_mask(image: ImageInput, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    rgb = to_rgb_uint8(image)
    if mask is None:
        from .lungs import segment_lungs

        mask = segment_lungs(rgb)
    mask = _check_mask(mask)
    if mask.shape != rgb.shape[:2]:
        message = (
            "Expected mask to have the image's height and width. "
            f"Received: mask of shape {mask.shape} for an image of shape {rgb.shape[:2]}"
        )
        raise ArgumentError(message)
    return rgb, mask


def crop_to_lungs(image: ImageInput, mask: np.ndarray | None = None, *, margin: float = 0.05) -> np.ndarray:
    """Crop an image to the bounding box of its lungs (:func:`lung_box`), with a margin.

    Parameters
    ----------
    image : path, PIL.Image.Image or numpy.ndarray
        One image, as :func:`~cxrclassify.datasets.to_rgb_uint8` accepts it.
    mask : numpy.ndarray, optional
        ``(H, W)`` lung mask at the image's size; ``None`` to segment the image
        with the shipped segmenter.
    margin : float, optional
        As in :func:`lung_box`.

    Returns
    -------
    numpy.ndarray
        ``(h, w, 3)`` ``uint8`` RGB: the crop, or the whole image when the mask is empty.

    Warns
    -----
    cxrclassify.exceptions.DataWarning
        If the mask is empty.

    Raises
    ------
    cxrclassify.exceptions.ArgumentError
        If the mask's shape is not the image's height and width, or ``margin`` is out of range.
    cxrclassify.exceptions.ImageDecodeError
        If the image cannot be decoded.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation import crop_to_lungs
    >>> image = np.zeros((100, 120), np.uint8)
    >>> mask = np.zeros((100, 120), bool)
    >>> mask[20:80, 10:110] = True
    >>> crop_to_lungs(image, mask).shape
    (66, 110, 3)
    """
    rgb, mask = _image_and_mask(image, mask)
    margin = _check_fraction(margin, "margin")
    box = _box(mask, margin)
    if box is None:
        _warn_empty("the image is returned uncropped")
        return rgb
    top, left, bottom, right = box
    return np.ascontiguousarray(rgb[top:bottom, left:right])


def _check_fill(fill: Any) -> np.ndarray:
    values = np.asarray(fill)
    if (
        values.dtype.kind in "iu"
        and values.shape in ((), (3,))
        and values.size
        and int(values.min()) >= 0
        and int(values.max()) <= 255
        and not isinstance(fill, bool)
    ):
        return values.astype(np.uint8)
    message = f"Expected fill to be an int from 0 to 255, or three of them (R, G, B). Received: fill={fill!r}"
    if values.dtype.kind not in "iu" or isinstance(fill, bool):
        raise ArgumentTypeError(message)
    raise ArgumentError(message)


def mask_outside_lungs(
    image: ImageInput,
    mask: np.ndarray | None = None,
    *,
    fill: int | tuple[int, int, int] = 0,
    dilation: float = DEFAULT_DILATION,
) -> np.ndarray:
    """Blank out everything but the lungs (the mask grown by ``dilation``), keeping the image's size.

    Parameters
    ----------
    image : path, PIL.Image.Image or numpy.ndarray
        One image, as :func:`~cxrclassify.datasets.to_rgb_uint8` accepts it.
    mask : numpy.ndarray, optional
        ``(H, W)`` lung mask at the image's size; ``None`` to segment the image
        with the shipped segmenter.
    fill : int or tuple of int, optional
        The value (0 to 255), or ``(R, G, B)``, given to pixels outside the lungs.
    dilation : float, optional
        How far the mask is grown before masking, as a fraction of the image's
        longer side (a disk: every pixel within that distance of the mask is
        kept), so that the lung borders survive a slightly tight mask; 0 keeps
        the mask as it is.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` ``uint8`` RGB; the image unchanged when the mask is empty.

    Warns
    -----
    cxrclassify.exceptions.DataWarning
        If the mask is empty.

    Raises
    ------
    cxrclassify.exceptions.ArgumentError
        If the mask's shape is not the image's, ``fill`` is out of 0..255, or
        ``dilation`` is outside ``[0, 1]``.
    cxrclassify.exceptions.ArgumentTypeError
        If ``fill`` is not made of ints.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation import mask_outside_lungs
    >>> image = np.full((10, 10), 200, np.uint8)
    >>> mask = np.zeros((10, 10), bool)
    >>> mask[4:6, 4:6] = True
    >>> out = mask_outside_lungs(image, mask, dilation=0)
    >>> out.shape, int(out[..., 0].sum() // 200)
    ((10, 10, 3), 4)
    >>> int(mask_outside_lungs(image, mask, dilation=0.1)[..., 0].sum() // 200)
    12
    """
    rgb, mask = _image_and_mask(image, mask)
    fill_values = _check_fill(fill)
    dilation = _check_fraction(dilation, "dilation")
    if not mask.any():
        _warn_empty("nothing is masked out")
        return rgb
    radius = dilation * max(mask.shape)
    if radius > 0:
        keep = ndimage.distance_transform_edt(~mask) <= radius
    else:
        keep = mask
    out = rgb.copy()
    out[~keep] = fill_values
    return out
