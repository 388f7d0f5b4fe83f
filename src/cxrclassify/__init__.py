"""cxrclassify: chest X-ray classification by transfer learning, explained with Grad-CAM.

The five calls::

    data = load_datasets("sample")                  # or a folder root/<class>/<image>
    model = build_model("vgg16", num_classes=len(data.class_names))
    history = train(model, data)                     # the paper's settings, class-balanced
    result = predict(model, "xray.png")
    heatmap = grad_cam(model, "xray.png")

And the checks that the numbers mean what they seem to: ``audit(model, data)`` (does the
model look at the lungs, can it read the image's source?), ``leave_one_source_out``
(train without a source, test on it) and the out-of-distribution flag of ``predict``.

Not a diagnostic device: see the documentation on what the numbers do and do not show.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .exceptions import (
    ArgumentError,
    ArgumentTypeError,
    ChecksumError,
    ConfoundingWarning,
    CxrDeprecationWarning,
    CxrError,
    CxrWarning,
    DataError,
    DataWarning,
    DecodeWorkerError,
    DownloadError,
    DuplicateImageWarning,
    EvaluationWarning,
    ImageDecodeError,
    IndexOutOfRangeError,
    MissingFileError,
    ModelError,
    OutputExistsError,
    SplitWarning,
    TrainingWarning,
    TruncatedFrameError,
    UnknownNameError,
    UnverifiedDownloadWarning,
    WeightsUnavailableError,
)

#: Public name -> the submodule that defines it. TensorFlow takes seconds to import, so the
#: submodules that need it are imported on first use of one of their names (PEP 562): the
#: command line's ``--help`` and ``import cxrclassify`` itself stay fast.
_LAZY_NAMES = {
    "leave_one_source_out": "crossval",
    "load_datasets": "datasets",
    "Evaluation": "evaluation",
    "calibrate": "evaluation",
    "evaluate": "evaluation",
    "evaluate_predictions": "evaluation",
    "fit_temperature": "evaluation",
    "audit": "explain",
    "explain_images": "explain",
    "grad_cam": "explain",
    "overlay_heatmap": "explain",
    "save_gradcam_overlay": "explain",
    "Predictions": "inference",
    "SkippedInput": "inference",
    "predict": "inference",
    "CxrClassifier": "models",
    "build_model": "models",
    "list_models": "models",
    "list_pretrained": "models",
    "load_model": "models",
    "fit_ood": "models",
    "load_pretrained": "models",
    "register_model": "models",
    "plot_cam_grid": "plots",
    "plot_confusion_matrix": "plots",
    "plot_history": "plots",
    "plot_reliability_diagram": "plots",
    "plot_roc_curves": "plots",
    "save_evaluation_figures": "plots",
    "segment_lungs": "segmentation",
    "train": "training",
    "TrainConfig": "training",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .crossval import leave_one_source_out
    from .datasets import load_datasets
    from .evaluation import Evaluation, calibrate, evaluate, evaluate_predictions, fit_temperature
    from .explain import audit, explain_images, grad_cam, overlay_heatmap, save_gradcam_overlay
    from .inference import Predictions, SkippedInput, predict
    from .models import (
        CxrClassifier,
        build_model,
        fit_ood,
        list_models,
        list_pretrained,
        load_model,
        load_pretrained,
        register_model,
    )
    from .plots import (
        plot_cam_grid,
        plot_confusion_matrix,
        plot_history,
        plot_reliability_diagram,
        plot_roc_curves,
        save_evaluation_figures,
    )
    from .segmentation import segment_lungs
    from .training import TrainConfig, train


def __getattr__(name: str) -> Any:
    """Import the submodule defining a public name on first use, then cache the name here."""
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        try:  # a submodule: cxrclassify.datasets, cxrclassify.models...
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
        message = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(message)
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "ChecksumError",
    "ConfoundingWarning",
    "CxrClassifier",
    "CxrDeprecationWarning",
    "CxrError",
    "CxrWarning",
    "DataError",
    "DataWarning",
    "DecodeWorkerError",
    "DownloadError",
    "DuplicateImageWarning",
    "Evaluation",
    "EvaluationWarning",
    "ImageDecodeError",
    "IndexOutOfRangeError",
    "MissingFileError",
    "ModelError",
    "OutputExistsError",
    "Predictions",
    "SkippedInput",
    "SplitWarning",
    "TrainConfig",
    "TrainingWarning",
    "TruncatedFrameError",
    "UnknownNameError",
    "UnverifiedDownloadWarning",
    "WeightsUnavailableError",
    "__version__",
    "audit",
    "build_model",
    "calibrate",
    "evaluate",
    "evaluate_predictions",
    "explain_images",
    "fit_ood",
    "fit_temperature",
    "grad_cam",
    "leave_one_source_out",
    "list_models",
    "list_pretrained",
    "load_datasets",
    "load_model",
    "load_pretrained",
    "segment_lungs",
    "overlay_heatmap",
    "plot_cam_grid",
    "plot_confusion_matrix",
    "plot_history",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "predict",
    "register_model",
    "save_evaluation_figures",
    "save_gradcam_overlay",
    "train",
]
