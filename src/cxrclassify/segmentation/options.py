"""The classifier's ``lungs`` option: crop to the lung box, or blank out what is not lung, before resizing.

One option, ``lungs``, names it wherever images are prepared for a model:
``load_datasets(..., lungs=...)``, ``build_model(..., lungs=...)`` (kept in the
model's config, so a saved model prepares its inputs the same way), and
``predict`` / ``grad_cam``, which read it from the model.

* ``None``: the whole image (the paper's input).
* ``"crop"``: the bounding box of the segmented lung fields, with a margin
  (:func:`~cxrclassify.segmentation.lung_box`), then resized: the text, markers
  and collimation edges outside the box are gone and the lungs fill the input.
* ``"mask"``: the whole image with every pixel outside the (slightly dilated)
  lung fields set to black (:func:`~cxrclassify.segmentation.mask_outside_lungs`).

The lungs are segmented at each image's own size, before the image is resized
for the model, by the shipped segmenter (:func:`~cxrclassify.segmentation.segment_lungs`).
This module imports nothing of the library but its exceptions until an image
is prepared, so that the models and the data loaders can check the option cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..exceptions import ArgumentError

__all__ = ["LUNG_MODES", "check_lungs", "prepare_lung_fields"]

#: The values of the ``lungs`` option besides ``None``.
LUNG_MODES = ("crop", "mask")


def check_lungs(lungs: object) -> str | None:
    """``lungs`` if it is ``None``, ``"crop"`` or ``"mask"``; an :class:`ArgumentError` otherwise.

    Examples
    --------
    >>> from cxrclassify.segmentation.options import check_lungs
    >>> check_lungs("crop"), check_lungs(None)
    ('crop', None)
    """
    if lungs is None or (isinstance(lungs, str) and lungs in LUNG_MODES):
        return lungs
    message = f"Expected lungs to be None, 'crop' or 'mask'. Received: lungs={lungs!r}"
    raise ArgumentError(message)


def prepare_lung_fields(
    images: Sequence[np.ndarray], lungs: str | None, *, batch_size: int = 16
) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]]]:
    """Apply the ``lungs`` option to RGB images of any sizes, segmenting them in batches.

    Parameters
    ----------
    images : sequence of numpy.ndarray
        ``(H, W, 3)`` ``uint8`` RGB images, each at its own size.
    lungs : {None, "crop", "mask"}
        See the module's description.
    batch_size : int, default 16
        Images per pass of the segmenter.

    Returns
    -------
    prepared : list of numpy.ndarray
        The images cropped to their lung box, or blanked outside the lungs, or
        unchanged (``lungs=None``), still at their own (cropped) size.
    boxes : list of tuple of int
        Where each prepared image lies in its input, ``(top, left, bottom,
        right)`` with the bottom and right exclusive: the lung box for
        ``"crop"``, the whole image otherwise. A class activation map of the
        prepared image is pasted back into this box to overlay the input.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation.options import prepare_lung_fields
    >>> image = np.zeros((40, 30, 3), np.uint8)
    >>> prepared, boxes = prepare_lung_fields([image], None)
    >>> prepared[0].shape, boxes
    ((40, 30, 3), [(0, 0, 40, 30)])
    """
    lungs = check_lungs(lungs)
    images = [np.asarray(image) for image in images]
    whole = [(0, 0, image.shape[0], image.shape[1]) for image in images]
    if lungs is None or not images:
        return list(images), whole
    from . import lungs as segmenter
    from . import preprocess

    masks = segmenter.segment_lungs(list(images), batch_size=batch_size)
    if lungs == "mask":
        return [preprocess.mask_outside_lungs(image, mask) for image, mask in zip(images, masks)], whole
    boxes = [tuple(int(edge) for edge in preprocess.lung_box(mask)) for mask in masks]
    prepared = [image[top:bottom, left:right] for image, (top, left, bottom, right) in zip(images, boxes)]
    return prepared, boxes
