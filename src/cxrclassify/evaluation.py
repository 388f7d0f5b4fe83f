"""``evaluate``: accuracy with its confidence interval, per-class precision and recall,
the confusion matrix, and every count broken down by the images' source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from .datasets import DatasetSplits, ImageSet
from .inference import Predictions, predict
from .models import CxrClassifier

__all__ = ["Evaluation", "evaluate", "wilson_interval"]


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: 73 of 75 is 97.3% (90.8 to 99.3).

    Examples
    --------
    >>> from cxrclassify.evaluation import wilson_interval
    >>> low, high = wilson_interval(73, 75)
    >>> round(low, 3), round(high, 3)
    (0.908, 0.993)
    """
    if trials == 0:
        return (float("nan"), float("nan"))
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(interval.low), float(interval.high))


@dataclass
class Evaluation:
    """Metrics of a classifier on one split.

    Attributes
    ----------
    class_names : list of str
        Class names, in the confusion matrix's order.
    n_images, n_correct : int
        Images evaluated and images classified correctly.
    accuracy : float
        ``n_correct / n_images``.
    accuracy_ci : tuple of float
        95% Wilson interval of the accuracy.
    precision, recall : dict of str to float
        Per class; ``nan`` where undefined (no prediction of, or no image of, the class).
    confusion_matrix : numpy.ndarray
        ``[true class, predicted class]`` counts.
    by_source : dict of str to dict
        For each image source: ``n_images``, ``n_correct``, ``accuracy``, ``accuracy_ci``
        and its own ``confusion_matrix``, so that a score made of one easy source shows.
    predictions : Predictions
        The predictions the metrics were computed from.
    """

    class_names: list[str]
    n_images: int
    n_correct: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    precision: dict[str, float]
    recall: dict[str, float]
    confusion_matrix: np.ndarray
    by_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictions: Predictions | None = None

    def to_dict(self) -> dict[str, Any]:
        """The metrics as JSON-serialisable Python types."""
        return {
            "class_names": list(self.class_names),
            "n_images": self.n_images,
            "n_correct": self.n_correct,
            "accuracy": self.accuracy,
            "accuracy_ci95": list(self.accuracy_ci),
            "precision": _nan_to_none(self.precision),
            "recall": _nan_to_none(self.recall),
            "confusion_matrix": self.confusion_matrix.tolist(),
            "by_source": {
                source: {**values, "accuracy_ci95": list(values["accuracy_ci"]),
                         "confusion_matrix": values["confusion_matrix"].tolist()}
                for source, values in self.by_source.items()
            },
        }

    def summary(self) -> str:
        """A plain-text report: accuracy with its interval, per-class and per-source lines."""
        low, high = self.accuracy_ci
        lines = [
            f"accuracy {self.accuracy:.1%} (95% CI {low:.1%} to {high:.1%}), "
            f"{self.n_correct} of {self.n_images} images",
            f"{'class':<16}{'precision':>10}{'recall':>10}{'images':>8}",
        ]
        support = self.confusion_matrix.sum(axis=1)
        for index, name in enumerate(self.class_names):
            lines.append(f"{name:<16}{_fmt(self.precision[name]):>10}{_fmt(self.recall[name]):>10}{support[index]:>8}")
        for source, values in self.by_source.items():
            lines.append(f"source {source}: accuracy {values['accuracy']:.1%}, {values['n_correct']} of {values['n_images']}")
        return "\n".join(lines)


def evaluate(
    model: CxrClassifier, data: ImageSet | DatasetSplits, *, batch_size: int = 16
) -> Evaluation:
    """Evaluate a classifier: accuracy with a 95% CI, per-class precision and recall, confusion matrix.

    Every count is also broken down by the images' source, because a high
    overall score can come from one source that is easy to tell apart.

    Parameters
    ----------
    model : CxrClassifier
        A trained classifier.
    data : ImageSet or DatasetSplits
        The images to evaluate on; for a ``DatasetSplits``, its test split.
    batch_size : int, default 16
        Images classified at a time.

    Returns
    -------
    Evaluation
        The metrics, with ``summary()`` and ``to_dict()``.

    Examples
    --------
    >>> import cxrclassify
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> _ = cxrclassify.train(model, data, epochs=1, progress=False)
    >>> result = cxrclassify.evaluate(model, data.test)
    >>> result.n_images == len(data.test), result.confusion_matrix.shape
    (True, (3, 3))
    """
    split = data.test if isinstance(data, DatasetSplits) else data
    if len(split) == 0:
        message = "Expected at least one image to evaluate on. Received: an empty split"
        raise ValueError(message)
    if model.num_classes != len(split.class_names):
        message = (
            f"The model has {model.num_classes} outputs but the data has {len(split.class_names)} classes. "
            f"Received: class_names={split.class_names}"
        )
        raise ValueError(message)
    predictions = predict(model, split, batch_size=batch_size)
    true = split.labels
    predicted = predictions.class_indices
    class_names = list(split.class_names)
    labels = list(range(len(class_names)))
    precision, recall, _, _ = precision_recall_fscore_support(
        true, predicted, labels=labels, zero_division=np.nan
    )
    n_correct = int((true == predicted).sum())
    return Evaluation(
        class_names=class_names,
        n_images=len(true),
        n_correct=n_correct,
        accuracy=n_correct / len(true),
        accuracy_ci=wilson_interval(n_correct, len(true)),
        precision=dict(zip(class_names, map(float, precision))),
        recall=dict(zip(class_names, map(float, recall))),
        confusion_matrix=confusion_matrix(true, predicted, labels=labels),
        by_source=_by_source(split, predicted, labels),
        predictions=predictions,
    )


def _by_source(split: ImageSet, predicted: np.ndarray, labels: list[int]) -> dict[str, dict[str, Any]]:
    sources = np.array([source or "unknown" for source in split.sources], dtype=object)
    breakdown = {}
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        n_correct = int((split.labels[mask] == predicted[mask]).sum())
        n_images = int(mask.sum())
        breakdown[source] = {
            "n_images": n_images,
            "n_correct": n_correct,
            "accuracy": n_correct / n_images,
            "accuracy_ci": wilson_interval(n_correct, n_images),
            "confusion_matrix": confusion_matrix(split.labels[mask], predicted[mask], labels=labels),
        }
    return breakdown


def _fmt(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def _nan_to_none(values: dict[str, float]) -> dict[str, float | None]:
    return {key: None if np.isnan(value) else value for key, value in values.items()}
