"""Segment the lungs on chest X-rays: images in, boolean lung masks out, each at its image's own size.

Each image is decoded to RGB (:func:`cxrclassify.datasets.to_rgb_uint8`: a path,
a PIL image or an array), resized to the network's square input
(:func:`cxrclassify.datasets.resize`, whatever its aspect ratio) and converted
to grayscale. The network's lung probabilities are resized back (bilinear) to
the image's own height and width and thresholded; then only the two largest
connected regions are kept and their holes filled (:func:`clean_lung_mask`),
which removes the small specks the network leaves outside the chest (see the
model card, ``segmentation/MODEL_CARD.md``, for what it changes in Dice).

Nothing here is a diagnostic device: the masks are a preprocessing step.
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
from PIL import Image
from scipy import ndimage

from ..datasets._images import ImageInput, resize, to_rgb_uint8
from ..exceptions import ArgumentError, ArgumentTypeError, ModelError

__all__ = ["clean_lung_mask", "dice_score", "lung_probabilities", "segment_lungs", "unet_input"]

logger = logging.getLogger(__name__)

Images = ImageInput | Sequence[ImageInput]


def unet_input(image: ImageInput, input_size: int) -> np.ndarray:
    """One image as the lung segmenter's input: ``(input_size, input_size, 1)`` float32 grayscale in ``[0, 255]``.

    The image is decoded with :func:`~cxrclassify.datasets.to_rgb_uint8`, resized
    to the square with :func:`~cxrclassify.datasets.resize` (antialiased bilinear,
    the aspect ratio not kept) and converted to grayscale with Pillow's
    ``L = 0.299 R + 0.587 G + 0.114 B``.

    Parameters
    ----------
    image : path, PIL.Image.Image or numpy.ndarray
        One image, as :func:`~cxrclassify.datasets.to_rgb_uint8` accepts it.
    input_size : int
        The side of the network's square input.

    Returns
    -------
    numpy.ndarray
        ``(input_size, input_size, 1)`` float32.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation import unet_input
    >>> unet_input(np.full((50, 80), 200, np.uint8), 32).shape
    (32, 32, 1)
    """
    rgb = resize(to_rgb_uint8(image), input_size)
    gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    return gray[..., None]


def _check_model(model: Any) -> keras.Model:
    if model is None:
        # Imported here: importing this module does not need the shipped weights.
        from .checkpoint import load_lung_unet

        return load_lung_unet()
    if not isinstance(model, keras.Model):
        message = (
            "Expected model to be a lung segmenter (a keras.Model from build_lung_unet or load_lung_unet), or None "
            f"for the shipped one. Received: model of type {type(model).__name__}"
        )
        raise ArgumentTypeError(message)
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 1:
        message = (
            "Expected model to take one square grayscale input, (None, S, S, 1), as build_lung_unet builds it. "
            f"Received: model with input shape {model.input_shape}"
        )
        raise ModelError(message)
    return model


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        message = f"Expected batch_size to be a positive int. Received: batch_size={batch_size!r}"
        raise ArgumentError(message)
    return int(batch_size)


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 < float(threshold) < 1.0:
        message = (
            "Expected threshold to be a number strictly between 0 and 1 (a lung probability). "
            f"Received: threshold={threshold!r}"
        )
        raise ArgumentError(message)
    return float(threshold)


def _as_image_list(images: Any) -> tuple[list[Any], str]:
    """The images as a list, and how they came: ``"one"``, ``"list"`` or ``"array"`` (a 4-D batch)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), "array"
    if isinstance(images, (list, tuple)):
        return list(images), "list"
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
        return [images], "one"
    message = (
        "Expected images to be one image (a file path, a PIL.Image.Image or a numpy array), a list or tuple of "
        f"them, or a 4-D (N, H, W, C) array. Received: images of type {type(images).__name__}"
    )
    raise ArgumentTypeError(message)


def _probability_maps(images: list[Any], model: keras.Model, batch_size: int) -> Iterator[np.ndarray]:
    """The lung probability map of each image at its own size, one batch decoded at a time."""
    size = int(model.input_shape[1])
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        shapes, inputs = [], []
        for image in batch:
            rgb = to_rgb_uint8(image)
            shapes.append(rgb.shape[:2])
            inputs.append(unet_input(rgb, size))
        probabilities = np.asarray(model.predict_on_batch(np.stack(inputs)))[..., 0]
        for (height, width), small in zip(shapes, probabilities):
            if (height, width) == small.shape:
                yield small.astype(np.float32)
            else:
                resized = Image.fromarray(small.astype(np.float32)).resize(
                    (width, height), resample=Image.Resampling.BILINEAR)
                yield np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _package(maps: list[np.ndarray], kind: str, images: Any, dtype: type) -> Any:
    """One array for one image, an ``(N, H, W)`` array for a 4-D batch, a list for a list."""
    if kind == "one":
        return maps[0]
    if kind == "array":
        return np.stack(maps) if maps else np.zeros(images.shape[:3], dtype)
    return maps


def lung_probabilities(images: Images, *, batch_size: int = 16, model: keras.Model | None = None) -> Any:
    """The network's lung probability of each pixel, at each image's own height and width.

    Parameters
    ----------
    images : path, PIL.Image.Image, numpy.ndarray, or a list of them
        One image or several, as :func:`~cxrclassify.datasets.to_rgb_uint8`
        accepts each; a 4-D ``(N, H, W, C)`` array is a batch. A 3-D array is
        one image (``(H, W, 3)``, ``(H, W, 4)`` or ``(H, W, 1)``): pass a
        stack of grayscale images as ``(N, H, W, 1)``.
    batch_size : int, optional
        Images decoded and run through the network at a time.
    model : keras.Model, optional
        A network from :func:`~cxrclassify.segmentation.build_lung_unet`;
        ``None`` for the shipped one (:func:`~cxrclassify.segmentation.load_lung_unet`).

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        float32 probabilities in ``[0, 1]``: one ``(H, W)`` array for one image,
        an ``(N, H, W)`` array for a 4-D batch, a list for a list.

    Raises
    ------
    cxrclassify.exceptions.ArgumentTypeError
        If ``images`` or ``model`` is of a type not accepted.
    cxrclassify.exceptions.ArgumentError
        If ``batch_size`` is not a positive int.
    cxrclassify.exceptions.ImageDecodeError
        If an image cannot be decoded.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation import lung_probabilities
    >>> maps = lung_probabilities([np.zeros((64, 48), np.uint8), np.zeros((30, 70, 3), np.uint8)])
    >>> [m.shape for m in maps]
    [(64, 48), (30, 70)]
    """
    batch_size = _check_batch_size(batch_size)
    items, kind = _as_image_list(images)
    model = _check_model(model)
    return _package(list(_probability_maps(items, model, batch_size)), kind, images, np.float32)


def _check_mask(mask: Any, name: str = "mask") -> np.ndarray:
    if not isinstance(mask, np.ndarray):
        message = (
            f"Expected {name} to be a 2-D numpy array (True or non-zero = lung). "
            f"Received: {name} of type {type(mask).__name__}"
        )
        raise ArgumentTypeError(message)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2 or mask.size == 0:
        message = f"Expected {name} to be a non-empty 2-D (H, W) array. Received: {name} of shape {mask.shape}"
        raise ArgumentError(message)
    if mask.dtype.kind not in "biu":
        message = (
            f"Expected {name} to be a boolean or integer array (True or non-zero = lung); threshold probabilities "
            f"first, e.g. probabilities > 0.5. Received: {name} of dtype {mask.dtype}"
        )
        raise ArgumentTypeError(message)
    return mask.astype(bool, copy=False)


def clean_lung_mask(mask: np.ndarray, *, keep: int = 2) -> np.ndarray:
    """Keep the ``keep`` largest connected regions of a lung mask and fill their holes.

    Regions are 8-connected. A mask with no lung pixel comes back empty.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` boolean (or integer: non-zero is lung).
    keep : int, optional
        How many regions to keep: 2, the two lungs.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation import clean_lung_mask
    >>> mask = np.zeros((9, 12), bool)
    >>> mask[1:7, 1:5] = mask[1:7, 7:11] = True   # two lungs
    >>> mask[3, 2] = False                          # a hole
    >>> mask[8, 6] = True                           # a speck
    >>> cleaned = clean_lung_mask(mask)
    >>> bool(cleaned[3, 2]), bool(cleaned[8, 6]), int(cleaned.sum())
    (True, False, 48)
    """
    mask = _check_mask(mask)
    if isinstance(keep, bool) or not isinstance(keep, numbers.Integral) or keep < 1:
        message = f"Expected keep to be a positive int (the number of regions kept). Received: keep={keep!r}"
        raise ArgumentError(message)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count > keep:
        sizes = np.bincount(labels.ravel())[1:]
        kept = np.argsort(sizes, kind="stable")[::-1][:keep] + 1
        mask = np.isin(labels, kept)
    return ndimage.binary_fill_holes(mask)


def segment_lungs(
    images: Images,
    *,
    threshold: float = 0.5,
    batch_size: int = 16,
    model: keras.Model | None = None,
    postprocess: bool = True,
) -> Any:
    """Segment the lungs: one boolean mask per image, at the image's own height and width.

    The network runs at its fixed square input size (128 px for the shipped
    one); its probabilities are resized back to each image's size, then
    thresholded, and (``postprocess=True``) only the two largest connected
    regions are kept, their holes filled (:func:`clean_lung_mask`).

    Parameters
    ----------
    images : path, PIL.Image.Image, numpy.ndarray, or a list of them
        One image or several, as :func:`~cxrclassify.datasets.to_rgb_uint8`
        accepts each; a 4-D ``(N, H, W, C)`` array is a batch. A 3-D array is
        one image: pass a stack of grayscale images as ``(N, H, W, 1)``.
    threshold : float, optional
        Lung probability above which a pixel is lung, in ``(0, 1)``.
    batch_size : int, optional
        Images decoded and run through the network at a time.
    model : keras.Model, optional
        A network from :func:`~cxrclassify.segmentation.build_lung_unet`;
        ``None`` for the shipped one, loaded once and verified against the
        sha256 recorded next to it (:func:`~cxrclassify.segmentation.load_lung_unet`).
    postprocess : bool, optional
        Keep the two largest regions and fill holes.

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        Boolean masks (``True`` = lung): one ``(H, W)`` array for one image, an
        ``(N, H, W)`` array for a 4-D batch, a list (of possibly different
        sizes) for a list or tuple.

    Raises
    ------
    cxrclassify.exceptions.ArgumentTypeError
        If ``images`` or ``model`` is of a type not accepted.
    cxrclassify.exceptions.ArgumentError
        If ``threshold`` or ``batch_size`` is out of range.
    cxrclassify.exceptions.ImageDecodeError
        If an image cannot be decoded.
    cxrclassify.exceptions.ChecksumError
        If the shipped weights file does not match its recorded sha256.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation import segment_lungs
    >>> mask = segment_lungs(np.zeros((64, 80), np.uint8))
    >>> mask.shape, mask.dtype
    ((64, 80), dtype('bool'))
    >>> segment_lungs(np.zeros((64, 64), np.uint8), threshold=1.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cxrclassify.exceptions.ArgumentError: Expected threshold to be a number strictly between 0 and 1 ... Received: threshold=1.5

    With the shipped sample (``cxrclassify.datasets.sample_dir()``), on a real film:

    >>> from cxrclassify.datasets import sample_dir
    >>> mask = segment_lungs(sample_dir() / "images" / "covid19" / "2168a917.jpg")
    >>> bool(0.2 < mask.mean() < 0.6)
    True
    """
    threshold = _check_threshold(threshold)
    batch_size = _check_batch_size(batch_size)
    items, kind = _as_image_list(images)
    model = _check_model(model)
    masks = []
    for probabilities in _probability_maps(items, model, batch_size):
        mask = probabilities > threshold
        masks.append(clean_lung_mask(mask) if postprocess else mask)
    logger.debug("Segmented the lungs of %d image(s)", len(masks))
    return _package(masks, kind, images, bool)


def dice_score(mask: np.ndarray, reference: np.ndarray) -> float:
    """The Dice overlap ``2 |A & B| / (|A| + |B|)`` of two masks of the same shape.

    Two empty masks agree perfectly (1.0).

    Parameters
    ----------
    mask, reference : numpy.ndarray
        ``(H, W)`` boolean or integer masks (non-zero is lung).

    Returns
    -------
    float
        In ``[0, 1]``.

    Raises
    ------
    cxrclassify.exceptions.ArgumentError
        If the shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation import dice_score
    >>> a = np.zeros((4, 4), bool); a[:, :2] = True
    >>> b = np.zeros((4, 4), bool); b[:, 1:3] = True
    >>> dice_score(a, b)
    0.5
    """
    mask = _check_mask(mask)
    reference = _check_mask(reference, "reference")
    if mask.shape != reference.shape:
        message = (
            "Expected mask and reference of the same (H, W) shape. "
            f"Received: mask of shape {mask.shape}, reference of shape {reference.shape}"
        )
        raise ArgumentError(message)
    total = int(mask.sum()) + int(reference.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(mask, reference).sum()) / total
