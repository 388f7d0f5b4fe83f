"""Cross-source validation: train on every source but one, test on the one left out.

A test split drawn from the same sources as the training data says little about
images from elsewhere: a model can learn the hospital, scanner or age group of
each class instead of the disease, and such a shortcut scores well on its own
sources. Leaving a whole source out of training and testing on it measures how
the model carries over to a source it has never seen. A source can itself mix
sites (ieee8023 gathers Radiopaedia, Eurorad, SIRM, one hospital and dozens of
journals): ``by="site"`` leaves out one site at a time instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from .datasets import DatasetSplits, ImageSet
from .datasets.splits import stratified_group_split
from .datasets.stream import LazyImages, is_lazy
from .evaluation import Evaluation, evaluate, format_ci
from .exceptions import ArgumentError, ArgumentTypeError, DataError, UnknownNameError
from .inference import predict
from .models import CxrClassifier, build_model
from .training import train

__all__ = ["CrossSourceResult", "SourceFold", "leave_one_source_out", "pool_splits", "subset"]

logger = logging.getLogger(__name__)

ModelFactory = Callable[[], CxrClassifier]
#: What :func:`leave_one_source_out` can hold out: a record's ``source`` or its ``site``.
_KEYS = ("source", "site")


@dataclass
class SourceFold:
    """One fold of :func:`leave_one_source_out`: the source (or site) held out and the model's score on it.

    Attributes
    ----------
    held_out : str
        The source (or, with ``by="site"``, the site) the model never saw in training.
    n_train, n_validation, n_test : int
        Images used to train, to validate and to test (all of the held-out source or site).
    unseen_classes : list of str
        Classes of the held-out source that no training image had: the model
        cannot get those right, whatever it learned.
    evaluation : Evaluation
        Metrics on the held-out source.
    ood_flagged : float
        Share of the held-out images the fold's model flags out-of-distribution
        (its OOD score fitted on the fold's training images, the threshold on
        its validation images): how often the flag catches the new source.
        ``nan`` when the score was not fitted.
    ood_flagged_validation : float
        The same share on the fold's validation images, the in-distribution
        images the threshold was set on (about 5% by construction, at the
        default quantile): the flag's cost on images like the training ones.
    """

    held_out: str
    n_train: int
    n_validation: int
    n_test: int
    unseen_classes: list[str]
    evaluation: Evaluation
    ood_flagged: float = float("nan")
    ood_flagged_validation: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fold and its evaluation."""
        return {"held_out": self.held_out, "n_train": self.n_train, "n_validation": self.n_validation,
                "n_test": self.n_test, "unseen_classes": list(self.unseen_classes),
                "evaluation": self.evaluation.to_dict(),
                "ood_flagged": None if math.isnan(self.ood_flagged) else self.ood_flagged,
                "ood_flagged_validation": (None if math.isnan(self.ood_flagged_validation)
                                           else self.ood_flagged_validation)}


@dataclass
class CrossSourceResult:
    """What :func:`leave_one_source_out` returns: one :class:`SourceFold` per held-out source or site.

    Attributes
    ----------
    folds : list of SourceFold
        One per held-out source (or site), in the order they were held out.
    class_names : list of str
        The classes, in the evaluations' order.
    by : str
        What was held out: ``"source"`` or ``"site"`` (the ``by`` of the call).

    Examples
    --------
    >>> result.summary().splitlines()[0]  # doctest: +SKIP
    'Leave-one-source-out: 3 folds'
    """

    folds: list[SourceFold] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    by: str = "source"

    def __getitem__(self, source: str) -> SourceFold:
        for fold in self.folds:
            if fold.held_out == source:
                return fold
        message = f"No fold held out {self.by} {source!r}. Expected one of {[f.held_out for f in self.folds]}."
        raise UnknownNameError(message)

    def summary(self) -> str:
        """One line per held-out source (or site): images, accuracy and macro F1 with 95% CIs, unseen classes."""
        lines = [f"Leave-one-{self.by}-out: {len(self.folds)} folds (train on the other {self.by}s, test on this one)"]
        for fold in self.folds:
            evaluation = fold.evaluation
            unseen = f"; classes never seen in training: {', '.join(fold.unseen_classes)}" if fold.unseen_classes else ""
            lines.append(
                f"  {fold.held_out}: {fold.n_test} test images ({fold.n_train} train), accuracy "
                f"{format_ci(evaluation.accuracy, evaluation.accuracy_ci)}, macro F1 "
                f"{format_ci(evaluation.macro_f1, evaluation.macro_f1_ci, percent=False)}{unseen}{_ood_note(fold)}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: what was held out (``by``), class names and every fold."""
        return {"by": self.by, "class_names": list(self.class_names),
                "folds": [fold.to_dict() for fold in self.folds]}


def pool_splits(data: DatasetSplits | ImageSet) -> ImageSet:
    """All images of ``data`` in one :class:`~cxrclassify.datasets.ImageSet` (train, then validation, then test).

    Examples
    --------
    >>> import cxrclassify
    >>> from cxrclassify.crossval import pool_splits
    >>> data = cxrclassify.load_datasets("sample", image_size=16, progress=False)
    >>> len(pool_splits(data)) == sum(len(split) for _, split in data.items())
    True
    """
    if isinstance(data, ImageSet):
        return data
    splits = [split for _, split in data.items() if len(split)]
    if not splits:
        message = "Expected data with at least one image. Received: empty train, validation and test splits"
        raise DataError(message)
    if all(is_lazy(split.images) for split in splits):  # streamed splits stay streamed
        images = LazyImages.concatenate([split.images for split in splits])
    else:
        images = np.concatenate([np.asarray(split.images) for split in splits])
    return ImageSet(images, np.concatenate([split.labels for split in splits]),
                    [record for split in splits for record in split.records], list(data.class_names),
                    lungs=splits[0].lungs)


def subset(images: ImageSet, indices: Sequence[int] | np.ndarray) -> ImageSet:
    """The images of ``images`` at ``indices``, with their labels and records.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets import ImageSet, Sample
    >>> from cxrclassify.crossval import subset
    >>> both = ImageSet(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1]),
    ...                 [Sample("a.png", "x"), Sample("b.png", "y")], ["x", "y"])
    >>> subset(both, [1]).paths
    ['b.png']
    """
    indices = np.asarray(indices, dtype=int)
    chosen = images.images.take(indices) if is_lazy(images.images) else images.images[indices]
    return ImageSet(chosen, images.labels[indices], [images.records[i] for i in indices],
                    list(images.class_names), lungs=images.lungs)


def leave_one_source_out(
    data: DatasetSplits | ImageSet,
    model: str | ModelFactory,
    *,
    by: str = "source",
    sources: Sequence[str] | None = None,
    build_options: Mapping[str, Any] | None = None,
    train_options: Mapping[str, Any] | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> CrossSourceResult:
    """Train on all sources (or sites) but one and test on the one left out, for each in turn.

    The images of all splits of ``data`` are pooled. For each held-out source,
    the images of the other sources are split into training and validation by
    patient (stratified by class, see
    :func:`~cxrclassify.datasets.stratified_group_split`), a fresh model is
    trained on them, and it is evaluated on every image of the held-out source.
    Classes of the held-out source that no training image has are reported in
    ``unseen_classes`` (and logged): a source holding a class no other source has
    cannot be left out meaningfully for that class.

    With ``by="site"`` the same is done with the records' ``site`` (a hospital,
    a journal, ``"radiopaedia"``...) in place of their ``source``, which tests
    whether the model carries over to a site inside a source that mixes many.
    Images without a site (``site`` is ``None``) are never held out: they are
    always in training (and validation), in every fold. A patient with images
    both in the held-out source or site and in training is logged as a warning:
    such a fold is not fully unseen.

    Parameters
    ----------
    data : DatasetSplits or ImageSet
        Images with their records; each record's ``source`` names its source
        (with ``by="site"``, its ``site`` names its site, where known).
    model : str or callable
        An architecture name (built with :func:`~cxrclassify.build_model` and
        ``build_options`` for each fold, with ``seed``) or a function returning
        a fresh, untrained classifier (called after
        ``keras.utils.set_random_seed(seed)``, so that a factory drawing
        unseeded weights repeats too; one passing its own seed to
        ``build_model`` is clearer).
    by : {"source", "site"}, default "source"
        Hold out one source, or one site, at a time. Recorded in the result's ``by``.
    sources : sequence of str, optional
        The sources (with ``by="site"``: the sites) to hold out in turn; every
        one of ``data`` by default.
    build_options : mapping, optional
        Keyword arguments of :func:`~cxrclassify.build_model` when ``model`` is a name.
        ``num_classes``, ``class_names`` and ``image_size`` come from ``data``;
        ``seed`` is ``seed`` unless given here.
    train_options : mapping, optional
        Keyword arguments of :func:`~cxrclassify.train` (``epochs``, ``class_weight``, ...).
    validation_fraction : float, default 0.1
        Share of the training sources' patients kept for validation (0: none).
    seed : int, default 0
        Seed of the validation split, the initial weights (every fold's model
        is built with it, so the folds start from the same weights and differ
        only by their data), the training and the bootstrap. The same seed
        repeats every fold exactly, in any process. ``train_options`` may set
        training's own ``seed``.
    n_bootstrap : int, default 1000
        Bootstrap resamples of :func:`~cxrclassify.evaluate`.

    Returns
    -------
    CrossSourceResult
        One fold per held-out source (or site), with ``by``, ``summary()`` and ``to_dict()``.

    Raises
    ------
    cxrclassify.exceptions.ArgumentError
        If ``by`` is neither ``"source"`` nor ``"site"``.
    cxrclassify.exceptions.DataError
        If an image has no source (``by="source"``), there are fewer than two
        sources (``by="site"``: no site, or a single site and no image without
        one to train on), or one named in ``sources`` is not in ``data``.

    Examples
    --------
    >>> import warnings
    >>> import cxrclassify
    >>> from cxrclassify.crossval import leave_one_source_out
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> with warnings.catch_warnings():  # tiny folds: bootstrap resamples lack classes
    ...     warnings.simplefilter("ignore")
    ...     result = leave_one_source_out(data, "vgg16", build_options={"weights": None},
    ...                                   train_options={"epochs": 1, "progress": False},
    ...                                   sources=["nih"], n_bootstrap=0)
    >>> fold = result["nih"]
    >>> fold.n_test, fold.unseen_classes
    (16, [])
    >>> leave_one_source_out(data, "vgg16", by="hospital")
    Traceback (most recent call last):
    ...
    cxrclassify.exceptions.ArgumentError: Expected by='source' or 'site'. Received: by='hospital'
    """
    if by not in _KEYS:
        message = f"Expected by='source' or 'site'. Received: by={by!r}"
        raise ArgumentError(message)
    pooled = pool_splits(data)
    keys = pooled.sources if by == "source" else pooled.sites
    held_out_keys = (_sources_to_hold_out(pooled, sources) if by == "source"
                     else _sites_to_hold_out(pooled, sources))
    result = CrossSourceResult(class_names=list(pooled.class_names), by=by)
    for key in held_out_keys:
        fold = _run_fold(pooled, keys, key, model, by=by, build_options=dict(build_options or {}),
                         train_options=dict(train_options or {}), validation_fraction=validation_fraction,
                         seed=seed, n_bootstrap=n_bootstrap)
        logger.info("Held out %s %s: accuracy %.3f on %d images", by, key, fold.evaluation.accuracy, fold.n_test)
        result.folds.append(fold)
    return result


def _sites_to_hold_out(pooled: ImageSet, sites: Sequence[str] | None) -> list[str]:
    present = sorted({site for site in pooled.sites if site})
    without = sum(not site for site in pooled.sites)
    if not present or (len(present) < 2 and not without):
        message = (
            f"Expected images from at least two sites, or one site and images without a site to train on. "
            f"Received: sites={present} and {without} images without a site"
        )
        raise DataError(message)
    return _requested(present, sites, "sites")


def _sources_to_hold_out(pooled: ImageSet, sources: Sequence[str] | None) -> list[str]:
    missing = [record.path for record in pooled.records if not record.source]
    if missing:
        message = (
            f"Expected every image to name its source for a cross-source validation. Received: {len(missing)} "
            f"images without one, for instance {missing[0]!r}"
        )
        raise DataError(message)
    present = sorted(set(pooled.sources))
    if len(present) < 2:
        message = f"Expected images from at least two sources. Received: sources={present}"
        raise DataError(message)
    return _requested(present, sources, "sources")


def _requested(present: list[str], requested: Sequence[str] | None, kind: str) -> list[str]:
    """``requested`` (the ``sources`` argument) if all are among ``present``; all of ``present`` when None."""
    if requested is None:
        return present
    if any(key not in present for key in requested):
        message = f"Expected {kind} among {present}. Received: sources={list(requested)}"
        raise DataError(message)
    return list(requested)


def _run_fold(pooled: ImageSet, keys: Sequence[str | None], source: str, model: str | ModelFactory, *, by: str,
              build_options: dict[str, Any], train_options: dict[str, Any], validation_fraction: float, seed: int,
              n_bootstrap: int) -> SourceFold:
    """Train a fresh model without the images whose key (source or site) is ``source``; evaluate it on them."""
    is_held_out = np.array([key == source for key in keys], dtype=bool)
    test_set = subset(pooled, np.flatnonzero(is_held_out))
    training_pool = subset(pooled, np.flatnonzero(~is_held_out))
    shared = {group for group in test_set.groups if group} & {group for group in training_pool.groups if group}
    if shared:
        logger.warning("Held-out %s %s shares %d patients with the training images, for instance %r", by, source,
                       len(shared), min(shared))
    train_set, validation_set = _train_validation(training_pool, validation_fraction, seed)
    seen = set(train_set.labels.tolist())
    unseen = [pooled.class_names[label] for label in sorted(set(test_set.labels.tolist()) - seen)]
    if unseen:
        logger.warning("Held-out %s %s has classes no training image has: %s", by, source, unseen)
    classifier = _fresh_model(model, pooled, build_options, seed)
    train(classifier, (train_set, validation_set), **{"seed": seed, **train_options})
    evaluation = evaluate(classifier, test_set, n_bootstrap=n_bootstrap, seed=seed)
    flagged, flagged_validation = float("nan"), float("nan")
    if classifier.ood.is_fitted:
        flagged = float(np.mean(evaluation.predictions.out_of_distribution))
        if validation_set is not None:
            flagged_validation = float(np.mean(predict(classifier, validation_set.images).out_of_distribution))
    return SourceFold(source, len(train_set), 0 if validation_set is None else len(validation_set),
                      len(test_set), unseen, evaluation, flagged, flagged_validation)


def _ood_note(fold: SourceFold) -> str:
    if math.isnan(fold.ood_flagged):
        return ""
    validation = "" if math.isnan(fold.ood_flagged_validation) else f" (validation {fold.ood_flagged_validation:.0%})"
    return f"; flagged out-of-distribution {fold.ood_flagged:.0%}{validation}"


def _train_validation(pool: ImageSet, validation_fraction: float, seed: int) -> tuple[ImageSet, ImageSet | None]:
    if validation_fraction <= 0:
        return pool, None
    groups = [record.group or record.path for record in pool.records]
    train_indices, validation_indices, _ = stratified_group_split(
        pool.labels, groups, validation_fraction=validation_fraction, test_fraction=0.0, seed=seed)
    validation_set = subset(pool, validation_indices) if len(validation_indices) else None
    return subset(pool, train_indices), validation_set


def _fresh_model(model: str | ModelFactory, pooled: ImageSet, build_options: dict[str, Any],
                 seed: int) -> CxrClassifier:
    if isinstance(model, str):
        image_size = int(pooled.images.shape[1])
        return build_model(model, len(pooled.class_names), class_names=pooled.class_names, image_size=image_size,
                           **{"seed": seed, "lungs": pooled.lungs, **build_options})
    keras.utils.set_random_seed(seed)  # what an unseeded factory draws: the same for every fold and process
    built = model()
    if not isinstance(built, CxrClassifier):
        message = f"Expected the model factory to return a CxrClassifier. Received: {type(built).__name__}"
        raise ArgumentTypeError(message)
    return built
