"""Datasets: records, image decoding, patient-level splits, the sources and the bundled sample.

Fetching (``fetch``, the cache, mirrors) lives in :mod:`cxrclassify._download`
and is re-exported here.
"""

from .._archives import checked_archive_members, extract_archive
from .._cache import cache_info, clear_data_home, get_data_home
from .._download import FetchOptions, RemoteFile, fetch, resolve_fetch_options
from ._dicom import read_dicom
from ._images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS_ENV,
    get_max_image_pixels,
    read_image,
    resize,
    set_max_image_pixels,
    to_rgb_uint8,
)
from ._load import (
    DEFAULT_IMAGE_SIZE,
    decode_records,
    list_datasets,
    list_recipes,
    load_datasets,
    register_dataset,
    register_recipe,
    sample_dir,
    sample_records,
)
from ._records import (
    DatasetSplits,
    ImageSet,
    Sample,
    as_samples,
    check_records,
    parse_age,
    read_csv_rows,
    read_manifest,
    write_manifest,
)
from .bimcv import (
    BIMCV_COMMIT,
    TRAINING_ONLY_SOURCES,
    bimcv_records,
    check_not_training_only,
    is_training_only,
    split_training_only,
)
from .composite import (
    adult_controls_records,
    describe_composition,
    format_composition,
    soares2020_records,
    warn_if_confounded,
    warn_if_sources_confound,
)
from .cxnet import CXNET_COMMIT, cxnet_records, read_cxnet_metadata, select_cxnet_rows
from .fingerprints import (
    FingerprintCache,
    ImageFingerprints,
    SimilarPairs,
    find_similar_pairs,
    fingerprint_images,
    image_key,
)
from .folder import assign_patients, records_from_folder
from .ieee8023 import IEEE8023_COMMIT, ieee8023_records
from .kermany import kermany_records
from .nih import nih_records, read_nih_labels
from .sites import ieee8023_site, site_from_url
from .splits import (
    DuplicatePair,
    GroupJoin,
    find_cross_split_duplicates,
    join_duplicate_groups,
    stratified_group_split,
)

__all__ = [
    "BIMCV_COMMIT",
    "CXNET_COMMIT",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "MAX_IMAGE_PIXELS_ENV",
    "IEEE8023_COMMIT",
    "IMAGE_SUFFIXES",
    "TRAINING_ONLY_SOURCES",
    "DatasetSplits",
    "DuplicatePair",
    "FetchOptions",
    "FingerprintCache",
    "GroupJoin",
    "ImageFingerprints",
    "ImageSet",
    "RemoteFile",
    "Sample",
    "SimilarPairs",
    "adult_controls_records",
    "as_samples",
    "assign_patients",
    "bimcv_records",
    "cache_info",
    "check_not_training_only",
    "check_records",
    "checked_archive_members",
    "clear_data_home",
    "cxnet_records",
    "decode_records",
    "describe_composition",
    "extract_archive",
    "fetch",
    "find_cross_split_duplicates",
    "find_similar_pairs",
    "fingerprint_images",
    "format_composition",
    "get_data_home",
    "get_max_image_pixels",
    "ieee8023_site",
    "image_key",
    "site_from_url",
    "ieee8023_records",
    "is_training_only",
    "join_duplicate_groups",
    "kermany_records",
    "list_datasets",
    "list_recipes",
    "load_datasets",
    "nih_records",
    "parse_age",
    "read_dicom",
    "read_csv_rows",
    "read_cxnet_metadata",
    "read_image",
    "read_manifest",
    "read_nih_labels",
    "records_from_folder",
    "register_dataset",
    "register_recipe",
    "resize",
    "resolve_fetch_options",
    "sample_dir",
    "sample_records",
    "select_cxnet_rows",
    "set_max_image_pixels",
    "soares2020_records",
    "split_training_only",
    "stratified_group_split",
    "to_rgb_uint8",
    "warn_if_confounded",
    "warn_if_sources_confound",
    "write_manifest",
]
