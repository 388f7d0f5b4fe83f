"""Cross-source validation: train on every source but one, test on the one left out.

A test split drawn from the same sources as the training data says little about
images from elsewhere: a model can learn the hospital, scanner or age group of
each class instead of the disease, and such a shortcut scores well on its own
sources. Leaving a whole source out of training and testing on it measures how
the model carries over to a source it has never seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from .datasets import DatasetSplits, ImageSet
from .datasets.splits import stratified_group_split
from .evaluation import Evaluation, evaluate, format_ci
from .exceptions import ArgumentTypeError, DataError, UnknownNameError
from .models import CxrClassifier, build_model
from .training import train

__all__ = ["CrossSourceResult", "SourceFold", "leave_one_source_out", "pool_splits", "subset"]

logger = logging.getLogger(__name__)

ModelFactory = Callable[[], CxrClassifier]


@dataclass
class SourceFold:
    """One fold of :func:`leave_one_source_out`: the source held out and the model's score on it.

    Attributes
    ----------
    held_out : str
        The source the model never saw in training.
    n_train, n_validation, n_test : int
        Images used to train, to validate and to test (all of the held-out source).
    unseen_classes : list of str
        Classes of the held-out source that no training image had: the model
        cannot get those right, whatever it learned.
    evaluation : Evaluation
        Metrics on the held-out source.
    """

    held_out: str
    n_train: int
    n_validation: int
    n_test: int
    unseen_classes: list[str]
    evaluation: Evaluation

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fold and its evaluation."""
        return {"held_out": self.held_out, "n_train": self.n_train, "n_validation": self.n_validation,
                "n_test": self.n_test, "unseen_classes": list(self.unseen_classes),
                "evaluation": self.evaluation.to_dict()}


@dataclass
class CrossSourceResult:
    """What :func:`leave_one_source_out` returns: one :class:`SourceFold` per held-out source.

    Examples
    --------
    >>> result.summary().splitlines()[0]  # doctest: +SKIP
    'Leave-one-source-out: 3 folds'
    """

    folds: list[SourceFold] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)

    def __getitem__(self, source: str) -> SourceFold:
        for fold in self.folds:
            if fold.held_out == source:
                return fold
        message = f"No fold held out source {source!r}. Expected one of {[f.held_out for f in self.folds]}."
        raise UnknownNameError(message)

    def summary(self) -> str:
        """One line per held-out source: images, accuracy and macro F1 with 95% CIs, unseen classes."""
        lines = [f"Leave-one-source-out: {len(self.folds)} folds (train on the other sources, test on this one)"]
        for fold in self.folds:
            evaluation = fold.evaluation
            unseen = f"; classes never seen in training: {', '.join(fold.unseen_classes)}" if fold.unseen_classes else ""
            lines.append(
                f"  {fold.held_out}: {fold.n_test} test images ({fold.n_train} train), accuracy "
                f"{format_ci(evaluation.accuracy, evaluation.accuracy_ci)}, macro F1 "
                f"{format_ci(evaluation.macro_f1, evaluation.macro_f1_ci, percent=False)}{unseen}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: class names and every fold."""
        return {"class_names": list(self.class_names), "folds": [fold.to_dict() for fold in self.folds]}


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
    return ImageSet(np.concatenate([split.images for split in splits]),
                    np.concatenate([split.labels for split in splits]),
                    [record for split in splits for record in split.records], list(data.class_names))


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
    return ImageSet(images.images[indices], images.labels[indices], [images.records[i] for i in indices],
                    list(images.class_names))


def leave_one_source_out(
    data: DatasetSplits | ImageSet,
    model: str | ModelFactory,
    *,
    sources: Sequence[str] | None = None,
    build_options: Mapping[str, Any] | None = None,
    train_options: Mapping[str, Any] | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> CrossSourceResult:
    """Train on all sources but one and test on the one left out, for each source in turn.

    The images of all splits of ``data`` are pooled. For each held-out source,
    the images of the other sources are split into training and validation by
    patient (stratified by class, see
    :func:`~cxrclassify.datasets.stratified_group_split`), a fresh model is
    trained on them, and it is evaluated on every image of the held-out source.
    Classes of the held-out source that no training image has are reported in
    ``unseen_classes`` (and logged): a source holding a class no other source has
    cannot be left out meaningfully for that class.

    Parameters
    ----------
    data : DatasetSplits or ImageSet
        Images with their records; each record's ``source`` names its source.
    model : str or callable
        An architecture name (built with :func:`~cxrclassify.build_model` and
        ``build_options`` for each fold, with ``seed``) or a function returning
        a fresh, untrained classifier (called after
        ``keras.utils.set_random_seed(seed)``, so that a factory drawing
        unseeded weights repeats too; one passing its own seed to
        ``build_model`` is clearer).
    sources : sequence of str, optional
        The sources to hold out in turn; every source of ``data`` by default.
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
        One fold per held-out source, with ``summary()`` and ``to_dict()``.

    Raises
    ------
    cxrclassify.exceptions.DataError
        If an image has no source, there are fewer than two sources, or a
        source named in ``sources`` is not in ``data``.

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
    """
    pooled = pool_splits(data)
    held_out_sources = _sources_to_hold_out(pooled, sources)
    result = CrossSourceResult(class_names=list(pooled.class_names))
    for source in held_out_sources:
        fold = _run_fold(pooled, source, model, build_options=dict(build_options or {}),
                         train_options=dict(train_options or {}), validation_fraction=validation_fraction,
                         seed=seed, n_bootstrap=n_bootstrap)
        logger.info("Held out %s: accuracy %.3f on %d images", source, fold.evaluation.accuracy, fold.n_test)
        result.folds.append(fold)
    return result


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
    if sources is None:
        return present
    unknown = [source for source in sources if source not in present]
    if unknown:
        message = f"Expected sources among {present}. Received: sources={list(sources)}"
        raise DataError(message)
    return list(sources)


def _run_fold(pooled: ImageSet, source: str, model: str | ModelFactory, *, build_options: dict[str, Any],
              train_options: dict[str, Any], validation_fraction: float, seed: int, n_bootstrap: int) -> SourceFold:
    """Train a fresh model without ``source`` and evaluate it on ``source``."""
    is_held_out = np.array([record_source == source for record_source in pooled.sources])
    test_set = subset(pooled, np.flatnonzero(is_held_out))
    training_pool = subset(pooled, np.flatnonzero(~is_held_out))
    train_set, validation_set = _train_validation(training_pool, validation_fraction, seed)
    seen = set(train_set.labels.tolist())
    unseen = [pooled.class_names[label] for label in sorted(set(test_set.labels.tolist()) - seen)]
    if unseen:
        logger.warning("Held-out source %s has classes no training image has: %s", source, unseen)
    classifier = _fresh_model(model, pooled, build_options, seed)
    train(classifier, (train_set, validation_set), **{"seed": seed, **train_options})
    evaluation = evaluate(classifier, test_set, n_bootstrap=n_bootstrap, seed=seed)
    return SourceFold(source, len(train_set), 0 if validation_set is None else len(validation_set),
                      len(test_set), unseen, evaluation)


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
                           **{"seed": seed, **build_options})
    keras.utils.set_random_seed(seed)  # what an unseeded factory draws: the same for every fold and process
    built = model()
    if not isinstance(built, CxrClassifier):
        message = f"Expected the model factory to return a CxrClassifier. Received: {type(built).__name__}"
        raise ArgumentTypeError(message)
    return built
