"""Lung segmentation: the shipped lung segmenter, and the lung crop and mask the classifier can use.

* :mod:`.unet` -- the network (:func:`build_lung_unet`), a small U-Net on one grayscale channel;
* :mod:`.checkpoint` -- the shipped weights (in ``weights/``), verified by sha256 and loaded once
  (:func:`load_lung_unet`);
* :mod:`.lungs` -- images in, boolean lung masks out (:func:`segment_lungs`), at each image's size;
* :mod:`.preprocess` -- pure functions of ``(image, mask)``: :func:`lung_box`,
  :func:`crop_to_lungs`, :func:`mask_outside_lungs`.

The shipped model, its data, its measured Dice and its failure modes are described in
``MODEL_CARD.md`` next to this file. It is not a diagnostic device.
"""

from .checkpoint import (
    METADATA_FORMAT,
    SHIPPED_METADATA,
    load_lung_unet,
    read_lung_unet_metadata,
)
from .lungs import (
    clean_lung_mask,
    dice_score,
    lung_probabilities,
    segment_lungs,
    unet_input,
)
from .preprocess import DEFAULT_DILATION, crop_to_lungs, lung_box, mask_outside_lungs
from .unet import DEFAULT_INPUT_SIZE, ImageStandardization, build_lung_unet

__all__ = [
    "DEFAULT_DILATION",
    "DEFAULT_INPUT_SIZE",
    "METADATA_FORMAT",
    "SHIPPED_METADATA",
    "ImageStandardization",
    "build_lung_unet",
    "clean_lung_mask",
    "crop_to_lungs",
    "dice_score",
    "load_lung_unet",
    "lung_box",
    "lung_probabilities",
    "mask_outside_lungs",
    "read_lung_unet_metadata",
    "segment_lungs",
    "unet_input",
]
