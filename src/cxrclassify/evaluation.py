"""``evaluate``: metrics with confidence intervals, calibration, and breakdowns by source, site and age.

Proportions (accuracy; each class's sensitivity, specificity and precision,
each over its own denominator) get Wilson score intervals. Balanced accuracy,
macro F1 and the one-vs-rest ROC AUCs get percentile bootstrap intervals that
resample *patients* (the records' groups), so that the images of one patient
move together and an interval is not made narrow by several images of the
same person. Calibration is measured by the expected calibration error (ECE)
and can be improved by temperature scaling fitted on the validation split
(:func:`calibrate`). Every count is broken down by image source and, where the
records carry them, by site (hospital, journal, case collection) and by age
group, because a high overall score can come from one source, one site or one
age group that is easy to tell apart.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import keras
import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from scipy.stats import binomtest
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    roc_auc_score,
)

from ._io import to_jsonable
from .datasets import DatasetSplits, ImageSet, check_not_training_only
from .inference import Predictions, predict
from .models import CxrClassifier
from .exceptions import ArgumentError, EvaluationWarning
from .training import _images_at_model_size

__all__ = [
    "AGE_GROUPS",
    "Evaluation",
    "ReliabilityCurve",
    "age_group",
    "calibrate",
    "evaluate",
    "evaluate_predictions",
    "expected_calibration_error",
    "fit_temperature",
    "fit_temperature_from_logits",
    "format_ci",
    "reliability_curve",
    "wilson_interval",
]

logger = logging.getLogger(__name__)

#: The age groups of :attr:`Evaluation.by_age_group`, in display order.
AGE_GROUPS = ("child (<18)", "adult (18-64)", "older adult (65+)", "unknown")

#: Share of bootstrap resamples that may lack a class before an AUC interval is flagged.
MAX_SKIPPED_SHARE = 0.10

# Bootstrap resamples are computed in chunks of at most this many (resample, image) weights.
_CHUNK_ELEMENTS = 2_000_000


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: 73 of 75 is 97.3% (90.8 to 99.3).

    Parameters
    ----------
    successes, trials : int
        The proportion's numerator and denominator.
    confidence : float, default 0.95
        Confidence level of the interval.

    Returns
    -------
    tuple of float
        ``(low, high)``; ``(nan, nan)`` when ``trials`` is 0.

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


def format_ci(value: float, interval: Sequence[float], *, percent: bool = True) -> str:
    """A value with its interval, as ``summary()`` prints it: ``97.3% (90.8 to 99.3)``.

    Parameters
    ----------
    value : float
        The point estimate; ``nan`` prints as ``n/a``.
    interval : pair of float
        ``(low, high)``; an undefined bound prints as ``(CI n/a)``.
    percent : bool, default True
        Percentages with one decimal (proportions); otherwise three decimals (F1, AUC).

    Returns
    -------
    str

    Examples
    --------
    >>> from cxrclassify.evaluation import format_ci, wilson_interval
    >>> format_ci(73 / 75, wilson_interval(73, 75))
    '97.3% (90.8 to 99.3)'
    >>> format_ci(0.9512, (0.9, 0.99), percent=False), format_ci(float("nan"), (0.1, 0.2))
    ('0.951 (0.900 to 0.990)', 'n/a')
    """
    if not np.isfinite(value):
        return "n/a"
    scale, unit, digits = (100.0, "%", 1) if percent else (1.0, "", 3)
    text = f"{value * scale:.{digits}f}{unit}"
    low, high = interval
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{text} (CI n/a)"
    return f"{text} ({low * scale:.{digits}f} to {high * scale:.{digits}f})"


def age_group(age: float | None) -> str:
    """The age group of an age in years: ``"child (<18)"``, ``"adult (18-64)"``, ``"older adult (65+)"``.

    Parameters
    ----------
    age : float or None
        Age in years; ``None`` or ``nan`` gives ``"unknown"``.

    Returns
    -------
    str
        One of :data:`AGE_GROUPS`.

    Examples
    --------
    >>> from cxrclassify.evaluation import age_group
    >>> age_group(4), age_group(18), age_group(64.9), age_group(65), age_group(None)
    ('child (<18)', 'adult (18-64)', 'adult (18-64)', 'older adult (65+)', 'unknown')
    """
    if age is None or not np.isfinite(float(age)):
        return AGE_GROUPS[3]
    if age < 18:
        return AGE_GROUPS[0]
    return AGE_GROUPS[1] if age < 65 else AGE_GROUPS[2]


@dataclass
class ReliabilityCurve:
    """Calibration by confidence bin: what a reliability diagram shows.

    Attributes
    ----------
    bin_edges : numpy.ndarray
        ``(n_bins + 1,)`` equal-width edges on ``[0, 1]``; bin ``b`` is ``(edge b, edge b+1]``.
    confidence : numpy.ndarray
        Mean top-class probability of the images in each bin (``nan`` for an empty bin).
    accuracy : numpy.ndarray
        Share of those images classified correctly (``nan`` for an empty bin).
    count : numpy.ndarray
        Images in each bin.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.evaluation import reliability_curve
    >>> curve = reliability_curve(np.array([0, 1]), np.array([[0.9, 0.1], [0.7, 0.3]]), n_bins=5)
    >>> curve.count.tolist(), round(curve.ece, 2)
    ([0, 0, 0, 1, 1], 0.4)
    """

    bin_edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean of ``|accuracy - confidence|``."""
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.count[filled] * gaps) / self.count.sum())

    def to_dict(self) -> dict[str, Any]:
        """The curve as JSON-serialisable lists (``None`` for empty bins)."""
        return to_jsonable({"bin_edges": self.bin_edges, "confidence": self.confidence,
                          "accuracy": self.accuracy, "count": self.count})


def reliability_curve(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = 15) -> ReliabilityCurve:
    """Bin images by top-class probability into equal-width bins; accuracy and confidence per bin.

    Parameters
    ----------
    labels : array of int
        ``(N,)`` true class indices.
    probabilities : numpy.ndarray
        ``(N, C)`` predicted class probabilities.
    n_bins : int, default 15
        Number of equal-width bins on ``[0, 1]``.

    Returns
    -------
    ReliabilityCurve

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.evaluation import reliability_curve
    >>> curve = reliability_curve(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    >>> int(curve.count.sum()), len(curve.bin_edges)
    (3, 16)
    """
    labels, probabilities = _check_labels_probabilities(labels, probabilities)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        message = f"Expected a positive integer number of bins. Received: n_bins={n_bins!r}"
        raise ArgumentError(message)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return ReliabilityCurve(np.linspace(0.0, 1.0, n_bins + 1), mean_confidence, accuracy, count)


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error on the top-class probability, with equal-width bins.

    ``sum over bins of (images in bin / N) * |accuracy in bin - mean confidence in bin|``:
    0 for a perfectly calibrated classifier.

    Parameters
    ----------
    labels : array of int
        ``(N,)`` true class indices.
    probabilities : numpy.ndarray
        ``(N, C)`` predicted class probabilities.
    n_bins : int, default 15
        Number of equal-width bins.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.evaluation import expected_calibration_error
    >>> probabilities = np.array([[0.99, 0.01]] * 4)
    >>> round(expected_calibration_error(np.array([0, 0, 1, 1]), probabilities), 2)  # says 99%, is 50%
    0.49
    """
    return reliability_curve(labels, probabilities, n_bins).ece


@dataclass
class Evaluation:
    """Metrics of a classifier on one split, each with its confidence interval.

    Intervals are Wilson score intervals for proportions (``accuracy_ci``,
    ``recall_ci``, ``specificity_ci``, ``precision_ci``, each over its own
    denominator) and percentile bootstrap intervals over patients for the rest.
    An undefined value is ``nan`` (``None`` in :meth:`to_dict`).

    Attributes
    ----------
    class_names : list of str
        Class names, in the confusion matrix's order.
    n_images, n_correct : int
        Images evaluated and images classified correctly.
    accuracy : float
        ``n_correct / n_images``.
    accuracy_ci : tuple of float
        Wilson interval of the accuracy.
    precision, recall : dict of str to float
        Per class; ``nan`` where undefined (no prediction of, or no image of, the
        class). ``recall`` is the sensitivity (also reachable as ``sensitivity``).
    confusion_matrix : numpy.ndarray
        ``[true class, predicted class]`` counts.
    by_source : dict of str to dict
        For each image source (``"unknown"`` where not recorded): ``n_images``,
        ``n_correct``, ``accuracy``, ``accuracy_ci``, ``confusion_matrix``,
        ``balanced_accuracy``, ``macro_f1`` (over the classes present in the
        source's labels or predictions), and per class ``recall``, ``recall_ci``,
        ``specificity`` and ``precision`` (``nan`` where undefined, for instance
        the recall of a class with no image from the source).
    predictions : Predictions or None
        The predictions the metrics were computed from (set by :func:`evaluate`).
    precision_ci, recall_ci : dict of str to tuple of float
        Wilson intervals of each class's precision (over images predicted as the
        class) and sensitivity (over images of the class).
    specificity, specificity_ci : dict
        Per class: share of the images of other classes not predicted as the class.
    roc_auc, roc_auc_ci : dict
        One-vs-rest ROC AUC of each class and its bootstrap interval; ``nan`` when
        the data hold no image, or only images, of the class.
    macro_roc_auc, macro_roc_auc_ci : float, tuple of float
        Mean of the per-class AUCs; ``nan`` when any of them is undefined.
    balanced_accuracy, balanced_accuracy_ci : float, tuple of float
        Mean sensitivity over the classes present, and its bootstrap interval.
    macro_f1, macro_f1_ci : float, tuple of float
        Mean F1 over the classes present or predicted, and its bootstrap interval.
    ece : float
        Expected calibration error (equal-width bins on the top-class probability).
    reliability_curve : ReliabilityCurve or None
        Accuracy and confidence per bin, for the reliability diagram.
    log_loss : float
        Mean negative log-likelihood of the true classes.
    temperature : float or None
        The model's temperature when evaluated (``None`` when not known).
    by_age_group : dict of str to dict
        As ``by_source``, by :func:`age_group`; empty when no record carries an age.
    by_site : dict of str to dict
        As ``by_source``, by site (the records' ``site``: a hospital, a journal,
        ``"radiopaedia"``..., ``"unknown"`` where not recorded); empty when no
        record carries a site.
    labels : numpy.ndarray or None
        ``(N,)`` true class indices, for ROC curves.
    probabilities : numpy.ndarray or None
        ``(N, C)`` predicted probabilities.
    n_groups : int
        Patients (groups) the bootstrap resampled; an image without a group counts as one.
    n_ungrouped : int
        Images without a recorded group, each resampled on its own.
    confidence : float
        Confidence level of every interval.
    n_bootstrap, seed : int
        Bootstrap resamples and their random seed.
    bootstrap_skipped : dict of str to int
        Per class, and ``"macro"``: resamples left out of the AUC interval because
        they lacked a positive or a negative image of a class.
    notes : list of str
        Caveats found while computing (undefined AUCs, many skipped resamples);
        each was also raised as a warning.
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
    precision_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    recall_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    specificity: dict[str, float] = field(default_factory=dict)
    specificity_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    roc_auc: dict[str, float] = field(default_factory=dict)
    roc_auc_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    macro_roc_auc: float = float("nan")
    macro_roc_auc_ci: tuple[float, float] = (float("nan"), float("nan"))
    balanced_accuracy: float = float("nan")
    balanced_accuracy_ci: tuple[float, float] = (float("nan"), float("nan"))
    macro_f1: float = float("nan")
    macro_f1_ci: tuple[float, float] = (float("nan"), float("nan"))
    ece: float = float("nan")
    reliability_curve: ReliabilityCurve | None = None
    log_loss: float = float("nan")
    temperature: float | None = None
    by_age_group: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_site: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    n_groups: int = 0
    n_ungrouped: int = 0
    confidence: float = 0.95
    n_bootstrap: int = 0
    seed: int = 0
    bootstrap_skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def sensitivity(self) -> dict[str, float]:
        """Per-class sensitivity: the same as ``recall``."""
        return self.recall

    @property
    def sensitivity_ci(self) -> dict[str, tuple[float, float]]:
        """Wilson interval of each class's sensitivity: the same as ``recall_ci``."""
        return self.recall_ci

    def to_dict(self) -> dict[str, Any]:
        """The metrics as JSON-serialisable Python types (``nan`` becomes ``None``).

        Labels, probabilities and predictions are left out; intervals are ``[low, high]`` lists.
        """
        return to_jsonable({
            "class_names": list(self.class_names),
            "n_images": self.n_images,
            "n_correct": self.n_correct,
            "n_groups": self.n_groups,
            "n_ungrouped": self.n_ungrouped,
            "confidence": self.confidence,
            "accuracy": self.accuracy,
            "accuracy_ci": self.accuracy_ci,
            "balanced_accuracy": self.balanced_accuracy,
            "balanced_accuracy_ci": self.balanced_accuracy_ci,
            "macro_f1": self.macro_f1,
            "macro_f1_ci": self.macro_f1_ci,
            "macro_roc_auc": self.macro_roc_auc,
            "macro_roc_auc_ci": self.macro_roc_auc_ci,
            "precision": self.precision,
            "recall": self.recall,
            "per_class": self._per_class(),
            "confusion_matrix": self.confusion_matrix,
            "calibration": {
                "ece": self.ece,
                "log_loss": self.log_loss,
                "temperature": self.temperature,
                "reliability_curve": None if self.reliability_curve is None else self.reliability_curve.to_dict(),
            },
            "bootstrap": {"n_resamples": self.n_bootstrap, "seed": self.seed, "unit": "patient",
                          "skipped_for_roc_auc": self.bootstrap_skipped},
            "by_source": self.by_source,
            "by_age_group": self.by_age_group,
            "by_site": self.by_site,
            "notes": self.notes,
        })

    def _per_class(self) -> dict[str, dict[str, Any]]:
        support = self.confusion_matrix.sum(axis=1)
        nan_pair = (float("nan"), float("nan"))
        return {
            name: {
                "n_images": support[index],
                "sensitivity": self.recall.get(name, float("nan")),
                "sensitivity_ci": self.recall_ci.get(name, nan_pair),
                "specificity": self.specificity.get(name, float("nan")),
                "specificity_ci": self.specificity_ci.get(name, nan_pair),
                "precision": self.precision.get(name, float("nan")),
                "precision_ci": self.precision_ci.get(name, nan_pair),
                "roc_auc": self.roc_auc.get(name, float("nan")),
                "roc_auc_ci": self.roc_auc_ci.get(name, nan_pair),
            }
            for index, name in enumerate(self.class_names)
        }

    def summary(self) -> str:
        """A plain-text report: overall metrics with intervals, a per-class table, calibration, breakdowns."""
        lines = self._overall_lines() + self._class_table()
        lines += [_breakdown_line("source", name, values, self.class_names) for name, values in self.by_source.items()]
        lines += [_breakdown_line("site", name, values, self.class_names) for name, values in self.by_site.items()]
        lines += [_breakdown_line("age", name, values, self.class_names) for name, values in self.by_age_group.items()]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def _overall_lines(self) -> list[str]:
        temperature = "not recorded" if self.temperature is None else f"{self.temperature:.2f}"
        return [
            f"accuracy {format_ci(self.accuracy, self.accuracy_ci)}, {self.n_correct} of {self.n_images} images",
            f"balanced accuracy {format_ci(self.balanced_accuracy, self.balanced_accuracy_ci)}, "
            f"macro F1 {format_ci(self.macro_f1, self.macro_f1_ci, percent=False)}, "
            f"macro ROC AUC {format_ci(self.macro_roc_auc, self.macro_roc_auc_ci, percent=False)}",
            f"calibration: ECE {self.ece:.3f} ({_n_bins(self.reliability_curve)} bins), log loss {self.log_loss:.3f}, "
            f"temperature {temperature}",
            f"({self.confidence:.0%} intervals: Wilson for proportions; for balanced accuracy, F1 and AUC, "
            f"{self.n_bootstrap} bootstrap resamples of {self._groups_text()})",
        ]

    def _groups_text(self) -> str:
        patients = self.n_groups - self.n_ungrouped
        if not self.n_ungrouped:
            return f"{patients} patients"
        return f"{patients} patients and {self.n_ungrouped} images without a recorded patient"

    def _class_table(self) -> list[str]:
        rows = [f"{'class':<16}{'images':>7}  {'sensitivity':<23}{'specificity':<23}{'precision':<23}ROC AUC"]
        for name, values in self._per_class().items():
            cells = [format_ci(values[metric], values[f"{metric}_ci"]) for metric in
                     ("sensitivity", "specificity", "precision")]
            auc = format_ci(values["roc_auc"], values["roc_auc_ci"], percent=False)
            rows.append(f"{name:<16}{values['n_images']:>7}  " + "".join(f"{cell:<23}" for cell in cells) + auc)
        return rows


def evaluate(
    model: CxrClassifier,
    data: ImageSet | DatasetSplits,
    *,
    batch_size: int = 16,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Evaluation:
    """Evaluate a classifier: every metric with its confidence interval, calibration, breakdowns.

    Reports accuracy, balanced accuracy, macro F1, per-class sensitivity,
    specificity, precision and one-vs-rest ROC AUC (per class and their mean),
    the expected calibration error and the confusion matrix. Proportions get
    Wilson intervals; balanced accuracy, F1 and AUCs get bootstrap intervals
    that resample patients (the records' groups). Every count is also broken
    down by image source and, where recorded, by site and by age group,
    because a high overall score can come from one source (or one hospital,
    one journal) that is easy to tell apart.

    Parameters
    ----------
    model : CxrClassifier
        A trained classifier; its current ``temperature`` is used and recorded.
    data : ImageSet or DatasetSplits
        The images to evaluate on; for a ``DatasetSplits``, its test split.
        Images of another size than the model's ``image_size`` are resized to
        it (bilinear, as :func:`~cxrclassify.load_datasets` resizes; an INFO
        log line says so); loading them at ``model.image_size`` is faster and
        exact.
    batch_size : int, default 16
        Images classified at a time.
    n_bootstrap : int, default 1000
        Bootstrap resamples of patients; 0 leaves the bootstrap intervals undefined.
    seed : int, default 0
        Seed of the bootstrap.
    confidence : float, default 0.95
        Confidence level of every interval.

    Returns
    -------
    Evaluation
        The metrics, with ``summary()`` and ``to_dict()``.

    Warns
    -----
    EvaluationWarning
        When an AUC is undefined, or more than 10% of the bootstrap resamples
        lack a class (the same text is kept in ``Evaluation.notes``).

    See Also
    --------
    evaluate_predictions : the same from labels and probabilities.
    calibrate : temperature scaling fitted on the validation split.

    Examples
    --------
    >>> import cxrclassify
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> _ = cxrclassify.train(model, data, epochs=1, progress=False)
    >>> import warnings
    >>> with warnings.catch_warnings():  # 5 test images: many resamples lack a class
    ...     warnings.simplefilter("ignore")
    ...     result = cxrclassify.evaluate(model, data.test)
    >>> result.n_images == len(data.test), result.confusion_matrix.shape, result.temperature
    (True, (3, 3), 1.0)
    """
    split = data.test if isinstance(data, DatasetSplits) else data
    _check_split(model, split, "evaluate on")
    split = _images_at_model_size([split], model, log=logger)[0]
    predictions = predict(model, split, batch_size=batch_size)
    result = _evaluate(
        split.labels, predictions.probabilities, list(split.class_names),
        groups=split.groups, sources=split.sources, ages=[getattr(record, "age", None) for record in split.records],
        sites=[getattr(record, "site", None) for record in split.records],
        n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, n_bins=15, temperature=model.temperature,
    )
    result.predictions = predictions
    for note in result.notes:
        warnings.warn(note, EvaluationWarning, stacklevel=2)
    return result


def evaluate_predictions(
    labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    groups: Sequence[str | None] | None = None,
    sources: Sequence[str | None] | None = None,
    ages: Sequence[float | None] | None = None,
    sites: Sequence[str | None] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    n_bins: int = 15,
    temperature: float | None = None,
) -> Evaluation:
    """The metrics of :func:`evaluate` from true labels and predicted probabilities (no model needed).

    Parameters
    ----------
    labels : array of int
        ``(N,)`` true class indices.
    probabilities : numpy.ndarray
        ``(N, C)`` predicted probabilities; the prediction is the most probable class.
    class_names : sequence of str
        Name of each of the ``C`` classes.
    groups : sequence of str or None, optional
        Patient of each image: the bootstrap resamples patients, so that a
        patient's images move together. ``None`` (or a ``None`` entry) makes an
        image its own group.
    sources : sequence of str or None, optional
        Source of each image, for ``by_source`` (``"unknown"`` where ``None``).
    ages : sequence of float or None, optional
        Age of each image's patient in years, for ``by_age_group``.
    sites : sequence of str or None, optional
        Site of each image, for ``by_site`` (``"unknown"`` where ``None``; left
        empty when every entry is ``None``).
    n_bootstrap : int, default 1000
        Bootstrap resamples; 0 leaves the bootstrap intervals undefined.
    seed : int, default 0
        Seed of the bootstrap.
    confidence : float, default 0.95
        Confidence level of every interval.
    n_bins : int, default 15
        Bins of the ECE and reliability curve.
    temperature : float, optional
        The temperature the probabilities were made with, to record.

    Returns
    -------
    Evaluation
        With ``predictions`` left as ``None``.

    Warns
    -----
    EvaluationWarning
        When an AUC is undefined, or more than 10% of the bootstrap resamples lack a class.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.evaluation import evaluate_predictions
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> probabilities = np.array([[.8, .1, .1], [.4, .5, .1], [.2, .7, .1],
    ...                           [.1, .8, .1], [.1, .2, .7], [.2, .1, .7]])
    >>> result = evaluate_predictions(labels, probabilities, ["a", "b", "c"],
    ...                               groups=["p1", "p1", "p2", "p3", "p4", "p5"], n_bootstrap=0)  # too few to resample
    >>> result.n_correct, round(result.balanced_accuracy, 3), round(result.roc_auc["a"], 3), result.n_groups
    (5, 0.833, 1.0, 5)
    >>> from cxrclassify.evaluation import format_ci
    >>> format_ci(result.accuracy, result.accuracy_ci)
    '83.3% (43.6 to 97.0)'
    """
    result = _evaluate(labels, probabilities, class_names, groups=groups, sources=sources, ages=ages, sites=sites,
                       n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, n_bins=n_bins,
                       temperature=temperature)
    for note in result.notes:
        warnings.warn(note, EvaluationWarning, stacklevel=2)
    return result


def _evaluate(labels, probabilities, class_names, *, groups, sources, ages, n_bootstrap, seed, confidence, n_bins,
              temperature, sites=None) -> Evaluation:
    labels, probabilities = _check_labels_probabilities(labels, probabilities)
    class_names = _check_class_names(class_names, probabilities.shape[1])
    n_bootstrap, confidence = _check_bootstrap_settings(n_bootstrap, confidence)
    n = len(labels)
    predicted = probabilities.argmax(axis=1)
    groups = _per_image(groups, n, "groups")
    group_ids = _group_ids(groups)
    point = _point_estimates(labels, predicted, probabilities, len(class_names))
    resampled = _bootstrap(labels, predicted, probabilities, group_ids, n_bootstrap, seed)
    auc_ci, skipped = _auc_intervals(resampled, class_names, confidence)
    curve = reliability_curve(labels, probabilities, n_bins)
    per_class = _per_class_proportions(point["confusion_matrix"], class_names, confidence)
    sources = [source or "unknown" for source in _per_image(sources, n, "sources")]
    sites = _per_image(sites, n, "sites")
    has_site = any(sites)
    sites = [site or "unknown" for site in sites]
    ages = _per_image(ages, n, "ages")
    has_age = any(age is not None and np.isfinite(float(age)) for age in ages)
    return Evaluation(
        class_names=class_names,
        n_images=n,
        n_correct=point["n_correct"],
        accuracy=point["n_correct"] / n,
        accuracy_ci=wilson_interval(point["n_correct"], n, confidence),
        confusion_matrix=point["confusion_matrix"],
        by_source=_breakdown(sources, sorted(set(sources)), labels, predicted, class_names, confidence),
        by_site=_breakdown(sites, sorted(set(sites)), labels, predicted, class_names, confidence) if has_site else {},
        by_age_group=(_breakdown([age_group(age) for age in ages], AGE_GROUPS, labels, predicted, class_names,
                                 confidence) if has_age else {}),
        **per_class,
        roc_auc=dict(zip(class_names, point["roc_auc"].tolist())),
        roc_auc_ci={name: auc_ci[name] for name in class_names},
        macro_roc_auc=point["macro_roc_auc"],
        macro_roc_auc_ci=auc_ci["macro"],
        balanced_accuracy=point["balanced_accuracy"],
        balanced_accuracy_ci=_percentile_interval(resampled["balanced_accuracy"], confidence),
        macro_f1=point["macro_f1"],
        macro_f1_ci=_percentile_interval(resampled["macro_f1"], confidence),
        ece=curve.ece,
        reliability_curve=curve,
        log_loss=_log_loss(labels, probabilities),
        temperature=None if temperature is None else float(temperature),
        labels=labels,
        probabilities=probabilities,
        n_groups=int(group_ids.max()) + 1,
        n_ungrouped=sum(group is None for group in groups),
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        seed=seed,
        bootstrap_skipped=skipped,
        notes=_auc_notes(point["roc_auc"], skipped, class_names, labels, n_bootstrap),
    )


def _point_estimates(labels: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, n_classes: int) -> dict:
    classes = list(range(n_classes))
    aucs = np.array([_roc_auc(labels == index, probabilities[:, index]) for index in classes])
    return {
        "n_correct": int((labels == predicted).sum()),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes),
        "balanced_accuracy": _balanced_accuracy(labels, predicted),
        "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=np.nan)),
        "roc_auc": aucs,
        "macro_roc_auc": float(aucs.mean()),
    }


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log-likelihood, rows renormalised (float32 softmax rows sum to 1 only roughly)."""
    normalised = probabilities / probabilities.sum(axis=1, keepdims=True)
    return float(log_loss(labels, normalised, labels=list(range(probabilities.shape[1]))))


def _roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


def _balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in ``labels``, without sklearn's warnings about the others."""
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true", "A single label was found"
        warnings.filterwarnings("ignore", category=UserWarning, module=r"sklearn\.")
        return float(balanced_accuracy_score(labels, predicted))


def _per_class_proportions(matrix: np.ndarray, class_names: list[str], confidence: float) -> dict[str, dict]:
    """Precision, recall (sensitivity) and specificity of each class, with Wilson intervals."""
    true_positive = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    negatives = matrix.sum() - support
    true_negative = negatives - (predicted - true_positive)
    values = {"precision": (true_positive, predicted), "recall": (true_positive, support),
              "specificity": (true_negative, negatives)}
    result = {}
    for metric, (successes, trials) in values.items():
        result[metric] = {name: _ratio(successes[i], trials[i]) for i, name in enumerate(class_names)}
        result[f"{metric}_ci"] = {name: wilson_interval(successes[i], trials[i], confidence)
                                  for i, name in enumerate(class_names)}
    return result


def _ratio(successes: int, trials: int) -> float:
    return float(successes / trials) if trials else float("nan")


def _breakdown(keys: Sequence[str], order: Sequence[str], labels: np.ndarray, predicted: np.ndarray,
               class_names: list[str], confidence: float) -> dict[str, dict[str, Any]]:
    keys = np.asarray(keys, dtype=object)
    return {key: _subset_metrics(labels[keys == key], predicted[keys == key], class_names, confidence)
            for key in order if (keys == key).any()}


def _subset_metrics(labels: np.ndarray, predicted: np.ndarray, class_names: list[str],
                    confidence: float) -> dict[str, Any]:
    n_images = len(labels)
    n_correct = int((labels == predicted).sum())
    matrix = confusion_matrix(labels, predicted, labels=list(range(len(class_names))))
    support = matrix.sum(axis=1)
    return {
        "n_images": n_images,
        "n_correct": n_correct,
        "accuracy": n_correct / n_images,
        "accuracy_ci": wilson_interval(n_correct, n_images, confidence),
        "confusion_matrix": matrix,
        "balanced_accuracy": _balanced_accuracy(labels, predicted),
        "recall": {name: _ratio(matrix[i, i], support[i]) for i, name in enumerate(class_names)},
        "recall_ci": {name: wilson_interval(matrix[i, i], support[i], confidence)
                      for i, name in enumerate(class_names)},
        "specificity": {name: _ratio(n_images - support[i] - (matrix[:, i].sum() - matrix[i, i]),
                                     n_images - support[i]) for i, name in enumerate(class_names)},
        "precision": {name: _ratio(matrix[i, i], matrix[:, i].sum()) for i, name in enumerate(class_names)},
        "macro_f1": _present_classes_f1(labels, predicted),
    }


def _present_classes_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Macro F1 over the classes present in ``labels`` or ``predicted`` (a source may lack some classes)."""
    present = sorted(set(labels.tolist()) | set(predicted.tolist()))
    return float(f1_score(labels, predicted, labels=present, average="macro", zero_division=0)) if present else float("nan")


def _breakdown_line(kind: str, name: str, values: dict[str, Any], class_names: list[str]) -> str:
    recalls = ", ".join(f"{cls} {values['recall'][cls]:.1%}" for cls in class_names
                        if np.isfinite(values["recall"][cls]))
    return (f"{kind} {name}: accuracy {format_ci(values['accuracy'], values['accuracy_ci'])}, "
            f"{values['n_correct']} of {values['n_images']}; balanced accuracy {values['balanced_accuracy']:.1%}; "
            f"macro F1 {values['macro_f1']:.3f}; "
            f"sensitivity {recalls}")


# --- bootstrap over patients --------------------------------------------------------------------


def _group_ids(groups: Sequence[str | None]) -> np.ndarray:
    """Integer group of each image, ``0 .. G-1``; an image without a group is a group of its own."""
    keys = [("group", group) if group is not None else ("image", index) for index, group in enumerate(groups)]
    index_of: dict[tuple, int] = {}
    return np.array([index_of.setdefault(key, len(index_of)) for key in keys], dtype=np.int64)


def _bootstrap(labels: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, group_ids: np.ndarray,
               n_bootstrap: int, seed: int) -> dict[str, np.ndarray]:
    """Balanced accuracy, macro F1 and AUCs of ``n_bootstrap`` resamples of the groups.

    A resample draws ``G`` groups with replacement; each image then counts as
    many times as its group was drawn. Statistics are computed from these
    weights for a chunk of resamples at once.
    """
    n_groups = int(group_ids.max()) + 1
    plan = _statistics_plan(labels, predicted, probabilities)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // len(labels))
    parts = [_weighted_statistics(np.ones((0, len(labels))), plan)]
    for start in range(0, n_bootstrap, chunk):
        counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=min(chunk, n_bootstrap - start))
        parts.append(_weighted_statistics(counts[:, group_ids].astype(np.float64), plan))
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _statistics_plan(labels: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """What the weighted statistics need, computed once: one-hot labels, and each class's score order."""
    n_classes = probabilities.shape[1]
    true = np.eye(n_classes)[labels]
    guess = np.eye(n_classes)[predicted]
    aucs = []
    for index in range(n_classes):
        order = np.argsort(probabilities[:, index], kind="stable")
        scores = probabilities[order, index]
        starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
        aucs.append((order, starts, true[order, index]))
    return {"true": true, "hit": true * guess, "guess": guess, "aucs": aucs}


def _weighted_statistics(weights: np.ndarray, plan: dict[str, Any]) -> dict[str, np.ndarray]:
    """Statistics of each row of ``weights`` ``(B, N)``: image ``i`` counts ``weights[b, i]`` times."""
    support = weights @ plan["true"]
    hits = weights @ plan["hit"]
    guessed = weights @ plan["guess"]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of a row without any defined class
        recall = np.where(support > 0, hits / support, np.nan)
        f1 = np.where(support + guessed > 0, 2 * hits / (support + guessed), np.nan)
        roc_auc = np.stack([_weighted_auc(weights, *auc) for auc in plan["aucs"]], axis=1)
        return {"balanced_accuracy": np.nanmean(recall, axis=1), "macro_f1": np.nanmean(f1, axis=1),
                "roc_auc": roc_auc, "macro_roc_auc": roc_auc.mean(axis=1)}


def _weighted_auc(weights: np.ndarray, order: np.ndarray, starts: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC AUC of each row of weights; ties count one half, as in ``roc_auc_score``."""
    ordered = weights[:, order]
    positives = np.add.reduceat(ordered * positive, starts, axis=1)
    negatives = np.add.reduceat(ordered * (1.0 - positive), starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    numerator = np.sum(positives * (below + 0.5 * negatives), axis=1)
    denominator = positives.sum(axis=1) * negatives.sum(axis=1)
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def _auc_intervals(resampled: dict[str, np.ndarray], class_names: list[str],
                   confidence: float) -> tuple[dict[str, tuple[float, float]], dict[str, int]]:
    columns = {name: resampled["roc_auc"][:, index] for index, name in enumerate(class_names)}
    columns["macro"] = resampled["macro_roc_auc"]
    intervals = {name: _percentile_interval(values, confidence) for name, values in columns.items()}
    skipped = {name: int(np.isnan(values).sum()) for name, values in columns.items()}
    return intervals, skipped


def _auc_notes(aucs: np.ndarray, skipped: dict[str, int], class_names: list[str], labels: np.ndarray,
               n_bootstrap: int) -> list[str]:
    notes = []
    for index, name in enumerate(class_names):
        if np.isnan(aucs[index]):
            lacking = "no image" if not (labels == index).any() else "only images"
            notes.append(f"ROC AUC of {name!r} is undefined: the data hold {lacking} of the class "
                         "(the macro ROC AUC is undefined too).")
    flagged = [f"{name} {count} of {n_bootstrap}" for name, count in skipped.items()
               if n_bootstrap and count > MAX_SKIPPED_SHARE * n_bootstrap
               and np.isfinite(aucs.mean() if name == "macro" else aucs[class_names.index(name)])]
    if flagged:
        notes.append(f"More than {MAX_SKIPPED_SHARE:.0%} of the bootstrap resamples lacked a positive or a "
                     f"negative image and were left out of the ROC AUC intervals ({', '.join(flagged)}): those "
                     "intervals rest on the other resamples and are likely too narrow; evaluate on more patients.")
    return notes


# --- temperature scaling -------------------------------------------------------------------------


def fit_temperature_from_logits(logits: np.ndarray, labels: np.ndarray, *,
                                bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature ``T`` minimising the negative log-likelihood of ``softmax(logits / T)``.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(N, C)`` pre-softmax scores (not divided by any temperature).
    labels : array of int
        ``(N,)`` true class indices.
    bounds : pair of float, default (0.05, 20.0)
        The search interval of ``T`` (searched on a log scale).

    Returns
    -------
    float
        The fitted temperature; above 1 softens an overconfident classifier.

    Warns
    -----
    EvaluationWarning
        When the fitted temperature lies at a bound of the search interval.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.evaluation import fit_temperature_from_logits
    >>> rng = np.random.default_rng(0)
    >>> true_logits = rng.normal(0, 2, (4000, 3))
    >>> labels = np.array([rng.choice(3, p=np.exp(z) / np.exp(z).sum()) for z in true_logits])
    >>> round(fit_temperature_from_logits(3 * true_logits, labels), 1)  # logits made 3 times too sharp
    3.0
    """
    temperature, problem = _fit_temperature(logits, labels, bounds)
    if problem:
        warnings.warn(problem, EvaluationWarning, stacklevel=2)
    return temperature


def fit_temperature(model: CxrClassifier, validation_set: ImageSet | DatasetSplits, *, batch_size: int = 16) -> float:
    """Fit the temperature of ``model`` on validation data by minimising the negative log-likelihood.

    Only the model's logits are used (the current temperature does not
    matter); the model is not changed. Fit on the validation split, never on
    the test split, or the test metrics are no longer an honest estimate.

    Parameters
    ----------
    model : CxrClassifier
        A trained classifier.
    validation_set : ImageSet or DatasetSplits
        The validation images; for a ``DatasetSplits``, its validation split.
        Images of another size are resized to the model's, as for :func:`evaluate`.
    batch_size : int, default 16
        Images passed through the model at a time.

    Returns
    -------
    float
        The temperature ``T`` for which ``softmax(logits / T)`` fits the labels best.

    Examples
    --------
    >>> import cxrclassify
    >>> from cxrclassify.evaluation import fit_temperature
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> _ = cxrclassify.train(model, data, epochs=1, progress=False)
    >>> import warnings
    >>> with warnings.catch_warnings():  # 5 validation images: the fit may hit a bound
    ...     warnings.simplefilter("ignore")
    ...     temperature = fit_temperature(model, data)  # on data.validation
    >>> temperature > 0, model.temperature  # the model is unchanged
    (True, 1.0)
    """
    temperature, problem, _ = _fit_on_validation(model, validation_set, batch_size)
    if problem:
        warnings.warn(problem, EvaluationWarning, stacklevel=2)
    return temperature


def calibrate(model: CxrClassifier, validation_set: ImageSet | DatasetSplits, *, batch_size: int = 16) -> float:
    """Temperature scaling: fit the temperature on the validation split and set ``model.temperature``.

    The temperature is fitted on the validation split only (never pass the test
    split: its metrics would stop being an honest estimate). Dividing the
    logits by one number changes no prediction, so accuracy, the confusion
    matrix and the ROC AUCs stay the same; only the probabilities become better
    calibrated. The fitted value is also noted in ``model.metadata["calibration"]``.

    Parameters
    ----------
    model : CxrClassifier
        A trained classifier; its ``temperature`` is set.
    validation_set : ImageSet or DatasetSplits
        The validation images; for a ``DatasetSplits``, its validation split.
        Images of another size are resized to the model's, as for :func:`evaluate`.
    batch_size : int, default 16
        Images passed through the model at a time.

    Returns
    -------
    float
        The temperature now set on the model.

    Examples
    --------
    >>> import cxrclassify
    >>> from cxrclassify.evaluation import calibrate
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> _ = cxrclassify.train(model, data, epochs=1, progress=False)
    >>> import warnings
    >>> with warnings.catch_warnings():  # 5 validation images: the fit may hit a bound
    ...     warnings.simplefilter("ignore")
    ...     temperature = calibrate(model, data)  # on data.validation
    >>> model.temperature == temperature
    True
    """
    temperature, problem, split = _fit_on_validation(model, validation_set, batch_size)
    if problem:
        warnings.warn(problem, EvaluationWarning, stacklevel=2)
    model.temperature = temperature
    model.metadata["calibration"] = {"method": "temperature scaling", "temperature": temperature,
                                     "fitted_on": f"validation split, {len(split)} images"}
    return temperature


def _fit_on_validation(
    model: CxrClassifier, validation_set: ImageSet | DatasetSplits, batch_size: int
) -> tuple[float, str, ImageSet]:
    """Fit the temperature on a validation split: (temperature, warning text or "", the split used)."""
    split = validation_set.validation if isinstance(validation_set, DatasetSplits) else validation_set
    _check_split(model, split, "fit the temperature on")
    split = _images_at_model_size([split], model, log=logger)[0]
    temperature, problem = _fit_temperature(_logits(model, split.images, batch_size), split.labels)
    return temperature, problem, split


def _fit_temperature(logits: Any, labels: Any, bounds: tuple[float, float] = (0.05, 20.0)) -> tuple[float, str]:
    """The temperature minimising the NLL (searched on log T), and a warning text if it lies at a bound."""
    logits, labels = _check_logits(logits, labels)
    low, high = float(bounds[0]), float(bounds[1])
    if not 0 < low < high:
        message = f"Expected bounds (low, high) with 0 < low < high. Received: bounds={bounds!r}"
        raise ArgumentError(message)
    true_logits = logits[np.arange(len(labels)), labels]

    def negative_log_likelihood(log_temperature: float) -> float:
        temperature = np.exp(log_temperature)
        return float(np.mean(logsumexp(logits / temperature, axis=1) - true_logits / temperature))

    fitted = minimize_scalar(negative_log_likelihood, bounds=(np.log(low), np.log(high)), method="bounded",
                             options={"xatol": 1e-6})
    temperature = float(np.exp(fitted.x))
    at_bound = min(temperature / low, high / temperature) < 1.01
    problem = (f"The fitted temperature {temperature:.3g} lies at a bound of the search interval {bounds}: the "
               "validation images may be too few, or the model's scores carry no information about them."
               if at_bound else "")
    return temperature, problem


def _logits(model: CxrClassifier, images: np.ndarray, batch_size: int) -> np.ndarray:
    batches = [keras.ops.convert_to_numpy(model.logits(images[start:start + batch_size].astype(np.float32)))
               for start in range(0, len(images), batch_size)]
    return np.concatenate(batches).astype(np.float64)


# --- checks and conversions ----------------------------------------------------------------------


def _check_split(model: CxrClassifier, split: ImageSet, purpose: str) -> None:
    if len(split) == 0:
        message = f"Expected at least one image to {purpose}. Received: an empty split"
        raise ArgumentError(message)
    if model.num_classes != len(split.class_names):
        message = (
            f"The model has {model.num_classes} outputs but the data has {len(split.class_names)} classes. "
            f"Received: class_names={split.class_names}"
        )
        raise ArgumentError(message)
    if getattr(split, "lungs", None) != model.lungs:
        message = (f"The model expects images prepared with lungs={model.lungs!r}. Received: images loaded with "
                   f"lungs={getattr(split, 'lungs', None)!r}; load them with load_datasets(..., lungs={model.lungs!r})")
        raise ArgumentError(message)
    check_not_training_only(split.records, purpose=f"the images to {purpose}")


def _check_labels_probabilities(labels: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] == 0 or probabilities.shape[1] < 2:
        message = (f"Expected probabilities of shape (N, C) with N >= 1 and C >= 2. "
                   f"Received: shape {probabilities.shape}")
        raise ArgumentError(message)
    if not np.isfinite(probabilities).all() or (probabilities < 0).any() or (probabilities > 1).any():
        message = "Expected probabilities in [0, 1]. Received: values outside [0, 1], nan or inf"
        raise ArgumentError(message)
    sums = probabilities.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        message = (f"Expected each row of probabilities to sum to 1. "
                   f"Received: row sums from {sums.min():g} to {sums.max():g}")
        raise ArgumentError(message)
    return _check_labels(labels, probabilities.shape), probabilities


def _check_logits(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2 or not np.isfinite(logits).all():
        message = f"Expected finite logits of shape (N, C) with N >= 1 and C >= 2. Received: shape {logits.shape}"
        raise ArgumentError(message)
    return logits, _check_labels(labels, logits.shape)


def _check_labels(labels: Any, shape: tuple[int, int]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (shape[0],) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        message = f"Expected {shape[0]} integer labels, one per row. Received: labels of shape {labels.shape}, " \
                  f"dtype {labels.dtype}"
        raise ArgumentError(message)
    if labels.min() < 0 or labels.max() >= shape[1]:
        message = f"Expected labels in 0..{shape[1] - 1}. Received: labels from {labels.min()} to {labels.max()}"
        raise ArgumentError(message)
    return labels.astype(np.int64)


def _check_class_names(class_names: Sequence[str], n_classes: int) -> list[str]:
    names = [str(name) for name in class_names]
    if len(names) != n_classes or len(set(names)) != n_classes:
        message = f"Expected {n_classes} distinct class names, one per column. Received: class_names={names}"
        raise ArgumentError(message)
    return names


def _check_bootstrap_settings(n_bootstrap: int, confidence: float) -> tuple[int, float]:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        message = f"Expected a non-negative integer number of resamples. Received: n_bootstrap={n_bootstrap!r}"
        raise ArgumentError(message)
    if not 0 < confidence < 1:
        message = f"Expected a confidence level between 0 and 1. Received: confidence={confidence!r}"
        raise ArgumentError(message)
    return int(n_bootstrap), float(confidence)


def _per_image(values: Sequence[Any] | None, n: int, name: str) -> list[Any]:
    if values is None:
        return [None] * n
    values = list(values)
    if len(values) != n:
        message = f"Expected one entry of {name} per image ({n}). Received: {len(values)} entries"
        raise ArgumentError(message)
    return values


def _n_bins(curve: ReliabilityCurve | None) -> int:
    return 0 if curve is None else len(curve.count)
