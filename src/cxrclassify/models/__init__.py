"""The model zoo: architectures, heads and the classifier built from them."""

from ._registry import PREPROCESSING_MODES, ArchSpec, get_spec, list_models, register_model
from .classifier import CxrClassifier, build_model
from .heads import HEADS, build_head
from .io import export_savedmodel, export_tflite, load_model, read_export_metadata, savedmodel_predict, tflite_predict
from .layers import Preprocessing
from .ood import MahalanobisOOD, NearestNeighbourOOD, fit_ood, pool_features, pooled_features
from .pretrained import (
    WEIGHTS_MIRROR_ENV,
    PretrainedCfg,
    fetch_pretrained,
    get_pretrained_cfg,
    list_pretrained,
    model_card,
    register_pretrained,
)
from ._builder import load_pretrained, pretrained_cfg_from_file, write_bundled_record

__all__ = [
    "MahalanobisOOD",
    "NearestNeighbourOOD",
    "fit_ood",
    "pool_features",
    "pooled_features",
    "WEIGHTS_MIRROR_ENV",
    "PretrainedCfg",
    "fetch_pretrained",
    "get_pretrained_cfg",
    "list_pretrained",
    "load_pretrained",
    "model_card",
    "pretrained_cfg_from_file",
    "register_pretrained",
    "write_bundled_record",
    "ArchSpec",
    "CxrClassifier",
    "HEADS",
    "PREPROCESSING_MODES",
    "Preprocessing",
    "build_head",
    "build_model",
    "get_spec",
    "list_models",
    "load_model",
    "export_savedmodel",
    "export_tflite",
    "read_export_metadata",
    "savedmodel_predict",
    "tflite_predict",
    "register_model",
]
