"""Shortcut audit: is the model looking at the lungs, or at where the image came from?

Models trained on chest X-rays pooled from different collections (adult
COVID-19 patients from many hospitals, children with pneumonia from one) can
score well by recognising the *collection* (its text markers, collimation,
patient age, scanner) instead of the disease (DeGrave, Janizek & Lee, "AI for
radiographic COVID-19 detection selects shortcuts over signal", Nature Machine
Intelligence 3, 610-619, 2021). :func:`audit` gathers three views on it:

* **Where the class activation maps put their mass.** For each image, the map
  of its predicted class (:func:`~cxrclassify.explain.class_activation_maps`)
  is split between the *central box* (the image less a ``border`` fraction on
  each side, where the lung fields of a frontal X-ray lie) and the *border
  band* around it, and separately the four *corner squares* of side
  ``border``, where text, markers and collimation edges sit
  (:func:`region_masks`, :func:`map_shares`); and, with the lung fields
  segmented (:func:`~cxrclassify.segmentation.segment_lungs`), the share
  inside the lungs themselves, beside the lung area (what a uniform map would
  put there). The central box cannot tell a map on the heart or on a marker
  near the centre from one on the lungs; the lung share can.
* **A source probe** (:func:`source_probe`): how well a linear classifier tells
  the images' sources apart from the model's pooled base features, on unseen
  patients. Near-perfect means the source is plainly visible to the model.
* **The out-of-distribution score** of each image, when the model's is fitted
  (:mod:`cxrclassify.models.ood`).

None of them proves a shortcut; each says where to look (the least central
maps, the sources the model tells apart) before trusting a score.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from keras import ops

from ..datasets import DatasetSplits, ImageSet
from .._io import to_jsonable
from ..exceptions import ArgumentError, ArgumentTypeError, DataError
from ..models import CxrClassifier
from ..models.ood import pool_features, pooled_features
from .cam import class_activation_maps

__all__ = ["AuditResult", "SourceProbe", "audit", "map_shares", "region_masks", "source_probe"]

#: Regions of :func:`region_masks`, in the order reported.
REGIONS = ("central", "border", "corners")

_MAX_SPLITS = 5
#: A class whose maps put less than the uniform share plus this in the central box gets a note.
_CENTRAL_MARGIN = 0.05
#: A class whose maps put less than its lung area plus this inside the lung fields gets a note.
_LUNG_MARGIN = 0.05


def region_masks(size: int, border: float = 0.15) -> dict[str, np.ndarray]:
    """Boolean masks of the central box, the border band and the four corners of a square image.

    With ``b = round(border * size)`` pixels: the *central* box is rows and
    columns ``b`` to ``size - b - 1``; the *border* band is everything else; the
    *corners* are the four ``b x b`` squares at the image's corners (part of
    the border band).

    Parameters
    ----------
    size : int
        Side of the image in pixels.
    border : float, default 0.15
        Width of the border band as a fraction of the side, in ``[0, 0.5)``.

    Returns
    -------
    dict of str to numpy.ndarray
        ``"central"``, ``"border"`` and ``"corners"``: ``(size, size)`` bool.

    Examples
    --------
    >>> from cxrclassify.explain.audit import region_masks
    >>> masks = region_masks(20, border=0.1)
    >>> int(masks["central"].sum()), int(masks["border"].sum()), int(masks["corners"].sum())
    (256, 144, 16)
    """
    pixels = _border_pixels(size, border)
    central = np.zeros((size, size), dtype=bool)
    central[pixels:size - pixels, pixels:size - pixels] = True
    corners = np.zeros((size, size), dtype=bool)
    if pixels:
        for rows in (slice(0, pixels), slice(size - pixels, size)):
            for columns in (slice(0, pixels), slice(size - pixels, size)):
                corners[rows, columns] = True
    return {"central": central, "border": ~central, "corners": corners}


def map_shares(
    maps: np.ndarray, *, border: float = 0.15, lung_masks: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The share of each map's mass in the central box, the border band, the corners and the lungs.

    Parameters
    ----------
    maps : numpy.ndarray
        ``(N, S, S)`` non-negative maps (class activation maps).
    border : float, default 0.15
        As in :func:`region_masks`.
    lung_masks : numpy.ndarray, optional
        ``(N, S, S)`` boolean lung fields of the same images (see
        :func:`~cxrclassify.segmentation.segment_lungs`): adds ``"lungs"``, the
        share inside them, and ``"lung_area"``, the share of the image they
        cover (what a uniform map would put in them).

    Returns
    -------
    dict of str to numpy.ndarray
        ``"central"``, ``"border"``, ``"corners"`` (and ``"lungs"``,
        ``"lung_area"``): ``(N,)`` float shares in ``[0, 1]`` (central + border
        = 1); ``nan`` for a map that is all zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.explain.audit import map_shares
    >>> maps = np.zeros((2, 10, 10))
    >>> maps[0, 0, 0] = 1.0  # all the mass in a corner; map 1 is empty
    >>> {name: values.round(2).tolist() for name, values in map_shares(maps, border=0.2).items()}
    {'central': [0.0, nan], 'border': [1.0, nan], 'corners': [1.0, nan]}
    >>> lungs = np.zeros((2, 10, 10), dtype=bool)
    >>> lungs[:, 2:8, 1:9] = True  # 48 of 100 pixels
    >>> maps[0] = lungs[0]  # a map spread evenly over the lungs
    >>> shares = map_shares(maps, border=0.2, lung_masks=lungs)
    >>> float(shares["lungs"][0]), float(shares["lung_area"][0])
    (1.0, 0.48)
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
        message = f"Expected (N, S, S) maps. Received: maps of shape {maps.shape}"
        raise ArgumentError(message)
    masks = region_masks(maps.shape[1], border)
    total = maps.sum(axis=(1, 2))

    def share(region: np.ndarray) -> np.ndarray:
        mass = (maps * region).sum(axis=(1, 2))
        return np.divide(mass, total, out=np.full(len(maps), np.nan), where=total > 0)

    shares = {name: share(masks[name]) for name in REGIONS}
    if lung_masks is not None:
        lung_masks = _check_lung_masks(lung_masks, maps.shape)
        shares["lungs"] = share(lung_masks)
        shares["lung_area"] = lung_masks.mean(axis=(1, 2))
    return shares


def _check_lung_masks(lung_masks: object, shape: tuple[int, ...]) -> np.ndarray:
    masks = np.asarray(lung_masks)
    if masks.shape != tuple(shape):
        message = (f"Expected one lung mask per map, of the maps' shape {tuple(shape)}. "
                   f"Received: lung_masks of shape {masks.shape}")
        raise ArgumentError(message)
    return masks.astype(bool)


@dataclass
class SourceProbe:
    """How well a linear classifier tells the images' sources apart from the model's features.

    Attributes
    ----------
    sources : list of str
        The sources, sorted (``"unknown"`` for images without one).
    counts : dict of str to int
        Images per source.
    n_images, n_patients : int
        Images and patients (groups) probed; an image without a group is its own.
    n_splits : int
        Cross-validation folds, grouped by patient (0 when skipped).
    accuracy, balanced_accuracy : float
        Of the out-of-fold source predictions; ``nan`` when skipped.
    majority_baseline : float
        Accuracy of always answering the commonest source.
    chance_balanced_accuracy : float
        Balanced accuracy of guessing: ``1 / len(sources)``.
    verdict : str
        What the numbers mean, in plain language.
    skipped : str or None
        Why the probe was not run (one source, too few patients), else ``None``.
    label_counts : dict of str to dict of str to int
        Images per source and class: whether the classes are spread evenly
        across the sources.
    label_from_source_accuracy : float
        Accuracy of guessing each image's class as its source's commonest class:
        how much the source alone tells about the label.
    label_majority_baseline : float
        Accuracy of always answering the commonest class.
    notes : list of str
        Caveats met while probing.

    Examples
    --------
    >>> from cxrclassify.explain.audit import SourceProbe
    >>> probe = SourceProbe(sources=["a"], counts={"a": 4}, n_images=4, n_patients=2, skipped="one source")
    >>> probe.to_dict()["balanced_accuracy"] is None
    True
    """

    sources: list[str]
    counts: dict[str, int]
    n_images: int
    n_patients: int
    n_splits: int = 0
    accuracy: float = float("nan")
    balanced_accuracy: float = float("nan")
    majority_baseline: float = float("nan")
    chance_balanced_accuracy: float = float("nan")
    verdict: str = ""
    skipped: str | None = None
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    label_from_source_accuracy: float = float("nan")
    label_majority_baseline: float = float("nan")
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The probe's results as JSON-serialisable types (``nan`` becomes ``None``)."""
        return to_jsonable({
            "sources": self.sources, "counts": self.counts, "n_images": self.n_images,
            "n_patients": self.n_patients, "n_splits": self.n_splits, "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy, "majority_baseline": self.majority_baseline,
            "chance_balanced_accuracy": self.chance_balanced_accuracy, "verdict": self.verdict,
            "skipped": self.skipped, "label_counts": self.label_counts,
            "label_from_source_accuracy": self.label_from_source_accuracy,
            "label_majority_baseline": self.label_majority_baseline, "notes": self.notes,
        })

    def summary(self) -> str:
        """A few lines of text: the scores against their baselines, and the verdict."""
        counts = ", ".join(f"{name} {count}" for name, count in self.counts.items())
        lines = [f"Source probe ({self.n_images} images, {self.n_patients} patients; {counts}):"]
        if self.skipped is None:
            lines.append(
                f"  linear classifier on the model's pooled features, {self.n_splits}-fold cross-validation by "
                f"patient: balanced accuracy {self.balanced_accuracy:.1%} (chance "
                f"{self.chance_balanced_accuracy:.1%}), accuracy {self.accuracy:.1%} (commonest source "
                f"{self.majority_baseline:.1%})")
        if self.label_counts:
            lines.append(f"  class from the source alone: {self.label_from_source_accuracy:.1%} right "
                         f"(commonest class {self.label_majority_baseline:.1%})")
        lines.append(f"  verdict: {self.verdict}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class AuditResult:
    """What :func:`audit` found: where the maps lie, the source probe, the OOD flags.

    Shares are of each image's class activation map for its predicted class
    (see :func:`map_shares`); ``mean`` and ``median`` leave out all-zero maps,
    which are counted in ``n_empty``.

    Attributes
    ----------
    class_names : list of str
        Class names, in the model's order.
    method : str
        The class activation map method.
    border : float
        Width of the border band as a fraction of the image side.
    border_pixels, image_size : int
        The same in pixels, and the image side.
    uniform_central_share, uniform_corner_share : float
        The shares a uniform map would give (the regions' areas): the
        reference to read the shares against.
    n_images : int
        Images audited.
    accuracy : float
        Share of the audited images whose predicted class is their label.
    overall : dict
        ``n``, ``n_empty`` and, per region, ``mean`` and ``median`` share over
        all images, e.g. ``overall["central"]["mean"]``.
    by_true_class, by_predicted_class, by_source : dict of str to dict
        The same per class, by label and by prediction, and per source
        (``"unknown"`` for images without one).
    lungs_measured : bool
        Whether the lung fields were segmented: then every stats dict also has
        ``lungs`` (the share of the map's mass inside the lung fields) and
        ``lung_area`` (the share of the image they cover: what a uniform map
        would put there), and each image row ``lung_share`` and ``lung_area``.
    uniform_lung_share : float
        The mean lung area of the audited images (``nan`` when not measured).
    n_empty_maps : int
        Maps with no mass (no location raises the class's score): left out of the shares.
    worst : list of dict
        The ``n_worst`` images with the least central share, least first (rows of ``images``).
    worst_maps : numpy.ndarray
        ``(len(worst), S, S)`` their maps, to look at.
    images : list of dict
        One row per image: ``input``, ``source``, ``patient``, ``label``,
        ``predicted``, ``confidence``, ``central_share``, ``border_share``,
        ``corner_share``, (``lung_share``, ``lung_area``,) ``ood_score``,
        ``out_of_distribution``.
    source_probe : SourceProbe
        See :func:`source_probe`.
    ood : dict
        ``fitted``, and when fitted ``threshold``, ``n_flagged`` and ``share_flagged``.
    notes : list of str
        What the numbers suggest and caveats, in plain language.
    """

    class_names: list[str]
    method: str
    border: float
    border_pixels: int
    image_size: int
    uniform_central_share: float
    uniform_corner_share: float
    n_images: int
    accuracy: float
    overall: dict[str, Any]
    by_true_class: dict[str, dict[str, Any]]
    by_predicted_class: dict[str, dict[str, Any]]
    n_empty_maps: int
    worst: list[dict[str, Any]]
    worst_maps: np.ndarray
    images: list[dict[str, Any]]
    source_probe: SourceProbe
    ood: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    by_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    lungs_measured: bool = False
    uniform_lung_share: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Everything but the maps, as JSON-serialisable types (``nan`` becomes ``None``)."""
        return to_jsonable({
            "class_names": self.class_names, "method": self.method, "border": self.border,
            "border_pixels": self.border_pixels, "image_size": self.image_size,
            "uniform_central_share": self.uniform_central_share,
            "uniform_corner_share": self.uniform_corner_share, "n_images": self.n_images,
            "accuracy": self.accuracy, "overall": self.overall, "by_true_class": self.by_true_class,
            "by_predicted_class": self.by_predicted_class, "by_source": self.by_source,
            "lungs_measured": self.lungs_measured, "uniform_lung_share": self.uniform_lung_share,
            "n_empty_maps": self.n_empty_maps,
            "worst": self.worst, "images": self.images, "source_probe": self.source_probe.to_dict(),
            "ood": self.ood, "notes": self.notes,
        })

    def summary(self) -> str:
        """A plain-text report: shares overall and per class, the least central images, probe, OOD, notes."""
        lines = [
            (f"Shortcut audit: {self.n_images} images, accuracy {self.accuracy:.1%}; {self.method} maps of the "
             "predicted class"),
            (f"Map mass in the central box (the image less {self.border:.0%} = {self.border_pixels} px of "
             f"{self.image_size} on each side; a uniform map puts {self.uniform_central_share:.0%} there and "
             f"{self.uniform_corner_share:.0%} in the four corners):"),
        ]
        if self.lungs_measured:
            lines.append(f"Map mass inside the segmented lung fields, beside their area (a uniform map puts "
                         f"{self.uniform_lung_share:.0%} there on average):")
        lines.append(f"  {'':<22}{'images':>7}  {'central mean':>12}  {'median':>7}  {'corners mean':>12}"
                     + (f"  {'lungs mean':>10}  {'lung area':>9}" if self.lungs_measured else ""))
        lines.append(_share_row("all", self.overall))
        lines += [_share_row(f"true {name}", stats) for name, stats in self.by_true_class.items()]
        lines += [_share_row(f"predicted {name}", stats) for name, stats in self.by_predicted_class.items()]
        lines += [_share_row(f"source {name}", stats) for name, stats in self.by_source.items()]
        if self.n_empty_maps:
            lines.append(f"  {self.n_empty_maps} all-zero maps left out")
        if self.worst:
            lines.append("Least central maps (look at these first):")
            lines += [f"  {row['central_share']:6.1%} central, {row['corner_share']:6.1%} corners  "
                      f"{row['label']} -> {row['predicted']}  {row['input']}" for row in self.worst]
        lines.append(self.source_probe.summary())
        lines.append(_ood_line(self.ood, self.n_images))
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def audit(
    model: CxrClassifier,
    data: ImageSet | DatasetSplits,
    *,
    method: str = "gradcam",
    border: float = 0.15,
    n_worst: int = 10,
    batch_size: int = 16,
    seed: int = 0,
    lungs: str | np.ndarray | None = "segment",
) -> AuditResult:
    """Look for shortcuts: map mass outside the lungs, visible sources, out-of-distribution images.

    For each image the class activation map of its predicted class is split
    between the central box and the border band and corners (see
    :func:`region_masks`); shares are summarised overall and per class (by
    label and by prediction), and the least central images are listed. A
    source probe (:func:`source_probe`) measures how well the model's features
    tell the images' sources apart; when the model's OOD score is fitted, each
    image's score and flag are reported too.

    Parameters
    ----------
    model : CxrClassifier
        A trained classifier.
    data : ImageSet or DatasetSplits
        The images to audit, at the model's input size. For a
        ``DatasetSplits``, the maps and OOD flags are of its test split, and
        the source probe uses all three splits (more patients, and the
        question is what the features show, not how the model scores).
    method : {"gradcam", "gradcam++", "scorecam"}, default "gradcam"
        The class activation map method.
    border : float, default 0.15
        Width of the border band and side of the corner squares, as a fraction
        of the image side, in ``[0, 0.5)``.
    n_worst : int, default 10
        Images with the least central share to list (and keep the maps of).
    batch_size : int, default 16
        Images per forward pass.
    seed : int, default 0
        Seed of the source probe's cross-validation folds.
    lungs : {"segment", None} or numpy.ndarray, default "segment"
        The lung fields of the audited images, to measure the map mass inside
        them: ``"segment"`` segments them with the shipped lung segmenter
        (:func:`~cxrclassify.segmentation.segment_lungs`), an ``(N, S, S)``
        boolean array gives them (one per audited image, in order), ``None``
        skips the measure.

    Returns
    -------
    AuditResult
        With ``summary()``, ``to_dict()`` and the per-image table ``images``.

    Raises
    ------
    cxrclassify.exceptions.DataError
        If there is no image to audit, or the images are not at the model's input size.
    ValueError
        If ``border``, ``n_worst``, ``batch_size`` or ``method`` is invalid.

    Examples
    --------
    >>> import cxrclassify
    >>> from cxrclassify.explain.audit import audit
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> _ = cxrclassify.train(model, data, epochs=1, progress=False)
    >>> result = audit(model, data, n_worst=3)
    >>> result.n_images == len(data.test), len(result.worst), sorted(result.source_probe.counts)
    (True, 3, ['ieee8023', 'kermany', 'nih'])
    >>> print(result.summary().splitlines()[0])  # doctest: +ELLIPSIS
    Shortcut audit: 5 images, accuracy ...; gradcam maps of the predicted class
    """
    _border_pixels(model.image_size, border)
    _check_positive_int("batch_size", batch_size)
    if isinstance(n_worst, bool) or not isinstance(n_worst, (int, np.integer)) or n_worst < 0:
        message = f"Expected n_worst to be a non-negative integer. Received: n_worst={n_worst!r}"
        raise ArgumentError(message)
    audited, others = _audit_sets(data)
    audited = audited.materialized()  # its maps need its pixels (the test split); the source probe streams the others
    for split in (audited, *others):
        _check_image_size(model, split)
    class_names = list(model.class_names or audited.class_names or
                       [f"class_{index}" for index in range(model.num_classes)])
    lung_masks = _audited_lungs(lungs, audited, batch_size)
    probabilities, pooled, shares = _maps_and_features(model, audited.images, method, border, batch_size, lung_masks)
    predicted = probabilities.argmax(axis=1)
    probe_features = np.concatenate([pooled_features(model, split.images, batch_size=batch_size)
                                     for split in others] + [pooled])
    probe_records = [record for split in (*others, audited) for record in split.records]
    probe_labels = np.concatenate([np.asarray(split.labels) for split in (*others, audited)])
    probe = _probe(probe_features, probe_records, probe_labels, list(audited.class_names), seed)
    ood_scores, ood_flags, ood = _ood(model, pooled)
    rows = _image_rows(audited, class_names, predicted, probabilities, shares, ood_scores, ood_flags)
    worst_indices = _least_central(shares["central"], n_worst)
    worst_maps = (class_activation_maps(model, audited.images[worst_indices], predicted[worst_indices], method=method)
                  if len(worst_indices) else np.zeros((0, model.image_size, model.image_size), np.float32))
    masks = region_masks(model.image_size, border)
    labels = np.asarray(audited.labels)
    result = AuditResult(
        class_names=class_names, method=method, border=float(border),
        border_pixels=_border_pixels(model.image_size, border), image_size=model.image_size,
        uniform_central_share=float(masks["central"].mean()), uniform_corner_share=float(masks["corners"].mean()),
        n_images=len(audited), accuracy=float(np.mean(predicted == labels)),
        overall=_share_stats(shares, np.ones(len(audited), dtype=bool)),
        by_true_class={name: _share_stats(shares, labels == index) for index, name in enumerate(class_names)},
        by_predicted_class={name: _share_stats(shares, predicted == index) for index, name in enumerate(class_names)},
        by_source={name: _share_stats(shares, np.asarray([(source or "unknown") == name for source in audited.sources]))
                   for name in sorted({source or "unknown" for source in audited.sources})},
        lungs_measured=lung_masks is not None,
        uniform_lung_share=float(np.mean(shares["lung_area"])) if lung_masks is not None else float("nan"),
        n_empty_maps=int(np.isnan(shares["central"]).sum()), worst=[rows[index] for index in worst_indices],
        worst_maps=worst_maps, images=rows, source_probe=probe, ood=ood,
    )
    result.notes = _notes(result)
    return result


def source_probe(
    model: CxrClassifier, data: ImageSet | DatasetSplits, *, batch_size: int = 16, seed: int = 0
) -> SourceProbe:
    """How well the model's features tell the images' sources apart, on unseen patients.

    A logistic regression on the standardised, global-average-pooled base
    features predicts each image's ``source`` (from its record), with
    cross-validation grouped by patient (``StratifiedGroupKFold``, as many folds
    as the source with the fewest patients has patients, at most 5, at least 2),
    so that no patient is in both the fitted and the scored fold. Its balanced
    accuracy is read against chance (``1 / number of sources``): near 1.0, the
    source is trivially visible to the model, which can then learn it as a
    shortcut wherever the classes are spread unevenly across sources (see
    ``label_from_source_accuracy``).

    With one source, or a source with a single patient, the probe is skipped
    (``skipped`` says why); this is not an error.

    Parameters
    ----------
    model : CxrClassifier
        The classifier whose base features are probed.
    data : ImageSet or DatasetSplits
        The images (all three splits of a ``DatasetSplits``), at the model's input size.
    batch_size : int, default 16
        Images per forward pass.
    seed : int, default 0
        Seed of the fold assignment.

    Returns
    -------
    SourceProbe
        Scores, baselines and a plain-language verdict.

    Examples
    --------
    >>> import cxrclassify
    >>> from cxrclassify.explain.audit import source_probe
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> probe = source_probe(model, data)
    >>> probe.n_images == sum(len(split) for _, split in data.items()), 0.0 <= probe.balanced_accuracy <= 1.0
    (True, True)
    """
    _check_positive_int("batch_size", batch_size)
    sets = [split for _, split in data.items()] if isinstance(data, DatasetSplits) else [_check_image_set(data)]
    sets = [split for split in sets if len(split)]
    for split in sets:
        _check_image_size(model, split)
    if not sets:
        message = "Expected at least one image to probe. Received: empty data"
        raise DataError(message)
    features = np.concatenate([pooled_features(model, split.images, batch_size=batch_size) for split in sets])
    records = [record for split in sets for record in split.records]
    labels = np.concatenate([np.asarray(split.labels) for split in sets])
    return _probe(features, records, labels, list(sets[0].class_names), seed)


def _probe(features: np.ndarray, records: list, labels: np.ndarray, class_names: list[str], seed: int) -> SourceProbe:
    sources = [str(record.source) if record.source else "unknown" for record in records]
    groups = [str(record.group) if record.group is not None else f"<image {index}>"
              for index, record in enumerate(records)]
    counts = dict(sorted(Counter(sources).items()))
    probe = SourceProbe(sources=list(counts), counts=counts, n_images=len(records), n_patients=len(set(groups)))
    _label_confounding(probe, sources, labels, class_names)
    patients = {name: len({group for group, source in zip(groups, sources) if source == name}) for name in counts}
    if len(counts) < 2:
        probe.skipped = f"all images come from one source ({next(iter(counts), 'none')}): nothing to tell apart"
    elif min(patients.values()) < 2:
        fewest = min(patients, key=patients.get)
        probe.skipped = (f"source {fewest!r} has {patients[fewest]} patient: cross-validation by patient needs "
                         "at least 2 per source")
    if probe.skipped is not None:
        probe.verdict = f"not run: {probe.skipped}."
        return probe
    probe.n_splits = min(_MAX_SPLITS, min(patients.values()))
    predicted = _cross_validated_sources(features, np.asarray(sources), np.asarray(groups), probe, seed)
    probe.accuracy = float(np.mean(predicted == np.asarray(sources)))
    probe.balanced_accuracy = _balanced_accuracy(np.asarray(sources), predicted)
    probe.majority_baseline = max(counts.values()) / len(records)
    probe.chance_balanced_accuracy = 1.0 / len(counts)
    probe.verdict = _probe_verdict(probe)
    return probe


def _cross_validated_sources(
    features: np.ndarray, sources: np.ndarray, groups: np.ndarray, probe: SourceProbe, seed: int
) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedGroupKFold(n_splits=probe.n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        predicted = cross_val_predict(classifier, features.astype(np.float64), sources, groups=groups, cv=folds)
    if any(issubclass(warning.category, ConvergenceWarning) for warning in caught):
        probe.notes.append("the logistic regression did not fully converge in some folds")
    return np.asarray(predicted)


def _label_confounding(probe: SourceProbe, sources: list[str], labels: np.ndarray, class_names: list[str]) -> None:
    if not len(labels) or not class_names:
        return
    probe.label_counts = {
        source: {name: int(np.sum((labels == index) & (np.asarray(sources) == source)))
                 for index, name in enumerate(class_names)}
        for source in probe.counts
    }
    probe.label_from_source_accuracy = float(sum(max(row.values()) for row in probe.label_counts.values()) / len(labels))
    probe.label_majority_baseline = float(np.bincount(labels, minlength=len(class_names)).max() / len(labels))


def _probe_verdict(probe: SourceProbe) -> str:
    chance = probe.chance_balanced_accuracy
    gain = (probe.balanced_accuracy - chance) / (1.0 - chance) if chance < 1.0 else 0.0
    score = f"balanced accuracy {probe.balanced_accuracy:.0%} against {chance:.0%} by chance"
    if gain >= 0.9:
        verdict = (f"the source is trivially visible to the model ({score}): its features tell the sources "
                   "apart almost perfectly on unseen patients.")
    elif gain >= 0.5:
        verdict = f"the source is clearly visible to the model ({score})."
    elif gain >= 0.2:
        verdict = f"the source is partly visible to the model ({score})."
    else:
        verdict = f"the source is not evident in the model's features ({score}: near chance)."
    if probe.label_from_source_accuracy >= probe.label_majority_baseline + 0.1 and gain >= 0.2:
        verdict += (f" The classes are spread unevenly across the sources (the source alone gives the class "
                    f"{probe.label_from_source_accuracy:.0%} of the time, against "
                    f"{probe.label_majority_baseline:.0%} for the commonest class): recognising the source is a "
                    "shortcut to the label. Evaluate on patients from a source not used in training.")
    return verdict


def _maps_and_features(
    model: CxrClassifier, images: np.ndarray, method: str, border: float, batch_size: int,
    lung_masks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Probabilities, pooled base features and map shares; one pass of the base per batch, then the maps."""
    probabilities, pooled = [], []
    shares: dict[str, list[np.ndarray]] = defaultdict(list)
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].astype(np.float32)
        features = model.features(batch)
        batch_probabilities = ops.convert_to_numpy(model.probabilities_from_features(features))
        probabilities.append(batch_probabilities)
        pooled.append(pool_features(ops.convert_to_numpy(features)))
        maps = class_activation_maps(model, batch, batch_probabilities.argmax(axis=1), method=method)
        batch_lungs = None if lung_masks is None else lung_masks[start:start + batch_size]
        for name, values in map_shares(maps, border=border, lung_masks=batch_lungs).items():
            shares[name].append(values)
    return (np.concatenate(probabilities), np.concatenate(pooled).astype(np.float32),
            {name: np.concatenate(values) for name, values in shares.items()})


def _audited_lungs(lungs: object, audited: ImageSet, batch_size: int) -> np.ndarray | None:
    """The lung fields of the audited images: segmented, given, or none."""
    if lungs is None:
        return None
    if isinstance(lungs, str):
        if lungs != "segment":
            message = f"Expected lungs='segment', None or an array of lung masks. Received: lungs={lungs!r}"
            raise ArgumentError(message)
        from ..segmentation import segment_lungs

        return np.asarray(segment_lungs(audited.images, batch_size=batch_size), dtype=bool)
    return _check_lung_masks(lungs, audited.images.shape[:3])


def _ood(model: CxrClassifier, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    scores = model.ood.score(pooled)
    flags = model.ood.is_out_of_distribution(scores)
    if not model.ood.is_fitted:
        return scores, flags, {"fitted": False}
    return scores, flags, {"fitted": True, "threshold": model.ood.threshold, "n_flagged": int(flags.sum()),
                           "share_flagged": float(flags.mean()) if len(flags) else float("nan")}


def _image_rows(
    audited: ImageSet, class_names: list[str], predicted: np.ndarray, probabilities: np.ndarray,
    shares: dict[str, np.ndarray], ood_scores: np.ndarray, ood_flags: np.ndarray,
) -> list[dict[str, Any]]:
    return [
        {
            "input": record.path, "source": record.source, "patient": record.group,
            "label": class_names[int(label)], "predicted": class_names[int(guess)],
            "confidence": float(probabilities[index, guess]),
            "central_share": float(shares["central"][index]), "border_share": float(shares["border"][index]),
            "corner_share": float(shares["corners"][index]),
            **({"lung_share": float(shares["lungs"][index]), "lung_area": float(shares["lung_area"][index])}
               if "lungs" in shares else {}),
            "ood_score": float(ood_scores[index]), "out_of_distribution": bool(ood_flags[index]),
        }
        for index, (record, label, guess) in enumerate(zip(audited.records, audited.labels, predicted))
    ]


def _least_central(central: np.ndarray, n_worst: int) -> np.ndarray:
    finite = np.flatnonzero(np.isfinite(central))
    order = finite[np.argsort(central[finite], kind="stable")]
    return order[:n_worst]


def _share_stats(shares: dict[str, np.ndarray], selected: np.ndarray) -> dict[str, Any]:
    central = shares["central"][selected]
    stats: dict[str, Any] = {"n": int(selected.sum()), "n_empty": int(np.isnan(central).sum())}
    for name in shares:
        values = shares[name][selected]
        values = values[np.isfinite(values)]
        stats[name] = {"mean": float(values.mean()) if len(values) else float("nan"),
                       "median": float(np.median(values)) if len(values) else float("nan")}
    return stats


def _notes(result: AuditResult) -> list[str]:
    notes = []
    uniform = result.uniform_central_share
    for name, stats in result.by_predicted_class.items():
        share = stats["central"]["mean"]
        if stats["n"] and math.isfinite(share) and share < uniform + _CENTRAL_MARGIN:
            notes.append(f"maps of images predicted {name} put little more mass in the central box ({share:.0%}) than a "
                         f"uniform map ({uniform:.0%}), or less: the model may rely on the borders (markers, text, "
                         "collimation) for this class; look at the least central images")
    if result.lungs_measured:
        for name, stats in result.by_predicted_class.items():
            inside, area = stats["lungs"]["mean"], stats["lung_area"]["mean"]
            if stats["n"] and math.isfinite(inside) and inside < area + _LUNG_MARGIN:
                notes.append(f"maps of images predicted {name} put no more mass inside the lung fields ({inside:.0%}) "
                             f"than a uniform map would ({area:.0%}): the model may decide this class from outside "
                             "the lungs (heart, markers, text, edges)")
    if result.n_empty_maps:
        notes.append(f"{result.n_empty_maps} of {result.n_images} maps are all zero (no location raises the "
                     "predicted class's score) and are left out of the shares")
    if result.n_images < 20:
        notes.append(f"only {result.n_images} images audited: the shares are rough")
    return notes


def _share_row(name: str, stats: dict[str, Any]) -> str:
    def percent(value: float) -> str:
        return "-" if not math.isfinite(value) else f"{value:.1%}"

    row = (f"  {name:<22}{stats['n']:>7}  {percent(stats['central']['mean']):>12}  "
           f"{percent(stats['central']['median']):>7}  {percent(stats['corners']['mean']):>12}")
    if "lungs" in stats:
        row += f"  {percent(stats['lungs']['mean']):>10}  {percent(stats['lung_area']['mean']):>9}"
    return row


def _ood_line(ood: dict[str, Any], n_images: int) -> str:
    if not ood.get("fitted"):
        return "OOD score: not fitted (see cxrclassify.models.ood.fit_ood)"
    return (f"OOD score: {ood['n_flagged']} of {n_images} images above the threshold {ood['threshold']:.3g} "
            f"({ood['share_flagged']:.1%}; about 5% expected for in-distribution images at the default quantile)")


def _audit_sets(data: ImageSet | DatasetSplits) -> tuple[ImageSet, list[ImageSet]]:
    """The split to audit, and the other splits the source probe also uses."""
    if isinstance(data, DatasetSplits):
        audited, others = data.test, [data.train, data.validation]
    else:
        audited, others = _check_image_set(data), []
    if len(audited) == 0:
        message = "Expected at least one image to audit. Received: an empty split"
        raise DataError(message)
    return audited, [split for split in others if split is not None and len(split)]


def _check_image_set(data: object) -> ImageSet:
    if not isinstance(data, ImageSet):
        message = ("Expected data to be an ImageSet or what load_datasets returned. "
                   f"Received: data of type {type(data).__name__}")
        raise ArgumentTypeError(message)
    return data


def _check_image_size(model: CxrClassifier, split: ImageSet) -> None:
    if split.images.ndim != 4 or split.images.shape[1:] != (model.image_size, model.image_size, 3):
        message = (f"Expected images of shape (N, {model.image_size}, {model.image_size}, 3), the model's input "
                   f"size; load them with image_size={model.image_size}. Received: images of shape "
                   f"{split.images.shape}")
        raise DataError(message)


def _border_pixels(size: int, border: float) -> int:
    if isinstance(border, bool) or not isinstance(border, (int, float)) or not 0.0 <= border < 0.5:
        message = f"Expected border to be a fraction in [0, 0.5). Received: border={border!r}"
        raise ArgumentError(message)
    pixels = round(border * size)
    if 2 * pixels >= size:
        message = f"The border leaves no central box in a {size}-pixel image. Received: border={border}"
        raise ArgumentError(message)
    return pixels


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        message = f"Expected {name} to be a positive integer. Received: {name}={value!r}"
        raise ArgumentError(message)


def _balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    recalls = [float(np.mean(predicted[truth == name] == name)) for name in np.unique(truth)]
    return float(np.mean(recalls)) if recalls else float("nan")
