"""Datasets: records, image decoding, patient-level splits and the bundled sample."""

from ._images import IMAGE_SUFFIXES, read_image, resize, to_rgb_uint8
from ._load import (
    DEFAULT_IMAGE_SIZE,
    decode_records,
    list_recipes,
    load_datasets,
    register_recipe,
    sample_dir,
    sample_records,
)
from ._records import DatasetSplits, ImageSet, Sample, as_samples, read_manifest, write_manifest
from .folder import records_from_folder
from .splits import stratified_group_split

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DatasetSplits",
    "IMAGE_SUFFIXES",
    "ImageSet",
    "Sample",
    "as_samples",
    "decode_records",
    "list_recipes",
    "load_datasets",
    "read_image",
    "read_manifest",
    "records_from_folder",
    "register_recipe",
    "resize",
    "sample_dir",
    "sample_records",
    "stratified_group_split",
    "to_rgb_uint8",
    "write_manifest",
]
