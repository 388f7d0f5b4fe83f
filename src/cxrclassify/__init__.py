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

from ._version import __version__
from .crossval import leave_one_source_out
from .datasets import load_datasets
from .evaluation import Evaluation, calibrate, evaluate, evaluate_predictions, fit_temperature
from .exceptions import (
    ArgumentError,
    ArgumentTypeError,
    ChecksumError,
    ConfoundingWarning,
    CxrError,
    CxrWarning,
    DataError,
    DataWarning,
    DownloadError,
    DuplicateImageWarning,
    EvaluationWarning,
    ImageDecodeError,
    MissingFileError,
    ModelError,
    OutputExistsError,
    SplitWarning,
    TrainingWarning,
    UnknownNameError,
    UnverifiedDownloadWarning,
    WeightsUnavailableError,
)
from .explain import audit, explain_images, grad_cam, overlay_heatmap, save_gradcam_overlay
from .inference import Predictions, SkippedInput, predict
from .models import (
    CxrClassifier,
    build_model,
    list_models,
    list_pretrained,
    load_model,
    fit_ood,
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
from .training import train


__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "ChecksumError",
    "ConfoundingWarning",
    "CxrClassifier",
    "CxrError",
    "CxrWarning",
    "DataError",
    "DataWarning",
    "DownloadError",
    "DuplicateImageWarning",
    "Evaluation",
    "EvaluationWarning",
    "ImageDecodeError",
    "MissingFileError",
    "ModelError",
    "OutputExistsError",
    "Predictions",
    "SkippedInput",
    "SplitWarning",
    "TrainingWarning",
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
