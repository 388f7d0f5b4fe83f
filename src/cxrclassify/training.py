"""``train``: fit a classifier's head (or all of it) with the paper's settings, or the recommended recipe.

While the base is frozen, the base's output for an image is the same at every
epoch. :func:`train` then runs the base once per image, keeps the feature maps,
and fits the head on them: the paper's 80 epochs cost little more than one
forward pass. With augmentation, it runs the base once per augmented *copy*: the
original image and ``augment_copies - 1`` seeded augmented copies, and each epoch
trains on one copy per image, drawn anew. The head is the classifier's own head, so the
model returned is the full, trained model. With ``cache_dir`` the feature maps
are kept on disk (:mod:`cxrclassify.features`) and reused by later runs.

When the base is trained (fine-tuning), images go through the whole model and
augmentation is applied to each batch as it is made (the slow path).

Everything random in an epoch (the order of the images, the copy drawn for
each, the augmentation of a batch, the dropout masks) is a function of
``(seed, epoch)`` only. An interrupted run resumed from ``checkpoint_dir``
therefore ends with the same weights as a run that was never interrupted.

What seeds what: :func:`~cxrclassify.build_model`'s ``seed`` (default 0) fixes
the weights a model starts from (its head, and its base when ``weights=None``);
:func:`train`'s ``seed`` (default 0) fixes everything drawn while training. The
same two seeds, data and settings give the same weights and history, in any
process (on the same machine and library versions).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import math
import os
import random
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from ._io import atomic_write_bytes, to_jsonable
from .augment import Augmentation, augment_images, derive_seed
from .datasets import DatasetSplits, ImageSet
from .features import FeatureCache, RowReader, augmented_features, extract_features, weights_digest
from .models import CxrClassifier
from .linear_head import LinearHead, balancing_weights, fit_linear_head, set_gap_head
from .models.ood import fit_ood as fit_ood_score, pool_features
from .exceptions import ArgumentError, ArgumentTypeError, CxrDeprecationWarning, DataError, TrainingWarning

__all__ = ["FROM_RECIPE", "PAPER_SETTINGS", "RECOMMENDED_TRAINING", "TRAINING_RECIPES", "Augmentation", "balanced_class_weight", "extract_features", "train", "train_two_stage"]

logger = logging.getLogger(__name__)

#: The training settings of Soares & Soares (2020).
PAPER_SETTINGS = {"epochs": 80, "batch_size": 15, "learning_rate": 1e-3, "optimizer": "adam",
                  "loss": "categorical cross-entropy"}



class _FromRecipe:
    """Default of the options a training recipe sets (see :data:`TRAINING_RECIPES`)."""

    def __repr__(self) -> str:
        return "<from recipe>"


#: Default of :func:`train`'s ``class_weight`` and ``early_stopping``: the value the ``recipe`` gives.
FROM_RECIPE = _FromRecipe()

#: :func:`train`'s defaults (``recipe="recommended"``): the training options of the best variant
#: measured on unseen adult patients (``benchmarks/RESULTS.md``, "Accuracy on unseen adult
#: patients"), on top of the paper's epochs, batch and learning rate. Early stopping needs a
#: validation split; without one the recipe leaves it off.
RECOMMENDED_TRAINING = {"class_weight": "balanced", "early_stopping": 10}

#: Named defaults of :func:`train`'s ``class_weight`` and ``early_stopping``: ``"paper"``
#: (Soares & Soares 2020: neither), ``"recommended"`` (:data:`RECOMMENDED_TRAINING`) and
#: ``"linear"`` (the head fitted in closed form as an L2 logistic regression on the pooled
#: features, :mod:`cxrclassify.linear_head`; balanced classes, no epochs to stop).
TRAINING_RECIPES = {"paper": {"class_weight": None, "early_stopping": None}, "recommended": RECOMMENDED_TRAINING,
                    "linear": {"class_weight": "balanced", "early_stopping": None}}


#: Options renamed since 0.1: old name -> new name (the old one warns, and is removed in 0.4).
RENAMED_OPTIONS = {"augment_views": "augment_copies"}
_RENAMED_DEFAULTS = {"augment_copies": 8}  # TrainConfig's defaults of the new names


def _renamed_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the old names of :data:`RENAMED_OPTIONS` moved to the new ones (with a CxrDeprecationWarning).

    An old name given ``None`` (:func:`train`'s default for it) is dropped. Giving
    both names with different values is an error.
    """
    options = dict(options)
    for old, new in RENAMED_OPTIONS.items():
        value = options.pop(old, None)
        if value is None:
            continue
        warnings.warn(f"The training option {old!r} is renamed {new!r} (\"view\" now means only the radiographic "
                      f"view of an X-ray); {old!r} will be removed in cxrclassify 0.4", CxrDeprecationWarning, stacklevel=4)
        default = _RENAMED_DEFAULTS[new]
        if new in options and options[new] not in (default, value):
            message = (f"Expected {new!r} or its old name {old!r}, not both. "
                       f"Received: {new}={options[new]!r}, {old}={value!r}")
            raise ArgumentTypeError(message)
        options[new] = value
    return options


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of :func:`train`, in one frozen record; the recipes are presets of it.

    The fields are :func:`train`'s keyword arguments, with the same meaning and
    defaults (see its Parameters); ``class_weight`` and ``early_stopping`` take
    the recipe's value. :meth:`preset` gives a recipe's settings, :meth:`replace`
    a copy with some changed, and the record is what ``train(model, data,
    config)`` runs::

        config = TrainConfig.preset("paper", epochs=40)
        cxrclassify.train(model, data, config)

    Examples
    --------
    >>> from cxrclassify.training import TrainConfig
    >>> TrainConfig.preset("paper").class_weight is None, TrainConfig.preset("recommended").early_stopping
    (True, 10)
    >>> TrainConfig.preset("recommended", epochs=5).replace(batch_size=8).epochs
    5
    """

    epochs: int = 80
    batch_size: int = 15
    learning_rate: float = 1e-3
    cache_features: bool | None = None
    seed: int = 0
    checkpoint_dir: str | os.PathLike[str] | None = None
    callbacks: Sequence[keras.callbacks.Callback] = ()
    progress: bool = True
    class_weight: str | Mapping[int | str, float] | None = RECOMMENDED_TRAINING["class_weight"]
    augment: bool | Augmentation = False
    augment_copies: int = 8
    early_stopping: int | None = RECOMMENDED_TRAINING["early_stopping"]
    lr_schedule: str | keras.optimizers.schedules.LearningRateSchedule | None = None
    log_dir: str | os.PathLike[str] | None = None
    strategy: Any = None
    cache_dir: str | os.PathLike[str] | bool | None = None
    fit_ood: bool = True
    recipe: str = "recommended"
    site_balanced: bool = False

    def __post_init__(self) -> None:
        if self.recipe not in TRAINING_RECIPES:
            message = f"Expected recipe to be one of {sorted(TRAINING_RECIPES)}. Received: recipe={self.recipe!r}"
            raise ArgumentError(message)
        object.__setattr__(self, "callbacks", tuple(self.callbacks))

    @classmethod
    def preset(cls, recipe: str = "recommended", **changes: Any) -> TrainConfig:
        """The settings of ``recipe`` (``"recommended"``, ``"paper"``, ``"linear"``), with ``changes``.

        Examples
        --------
        >>> from cxrclassify.training import TrainConfig
        >>> TrainConfig.preset("linear").early_stopping is None
        True
        """
        if recipe not in TRAINING_RECIPES:
            message = f"Expected recipe to be one of {sorted(TRAINING_RECIPES)}. Received: recipe={recipe!r}"
            raise ArgumentError(message)
        return cls(recipe=recipe, **TRAINING_RECIPES[recipe]).replace(**changes)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``; an unknown setting is an error that names it.

        Examples
        --------
        >>> from cxrclassify.training import TrainConfig
        >>> TrainConfig().replace(epochs=3).epochs
        3
        """
        changes = _renamed_options(changes)
        unknown = sorted(set(changes) - set(self.__dataclass_fields__))
        if unknown:
            message = (f"Unknown training option(s) {unknown}. Expected some of {sorted(self.__dataclass_fields__)}. "
                       f"Received: {sorted(changes)}")
            raise ArgumentTypeError(message)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a dict (objects such as callbacks and strategies as they are)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


#: The recipes as :class:`TrainConfig` presets.
TRAINING_PRESETS = {name: TrainConfig.preset(name) for name in TRAINING_RECIPES}

#: ``lr_schedule="plateau"``: divide the rate by 10 after this many epochs without a better
#: monitored loss (fewer when ``early_stopping`` would stop first: half its patience).
PLATEAU_FACTOR, PLATEAU_PATIENCE, PLATEAU_MIN_LR = 0.1, 5, 1e-7

_RUN_RECORD = "cxrclassify_run.json"
_RUN_STATE = "cxrclassify_state.json"
_BEST_WEIGHTS = "cxrclassify_best_weights.npz"


def train(
    model: CxrClassifier,
    data: DatasetSplits | tuple[ImageSet, ImageSet | None],
    config: TrainConfig | str | None = None,
    *,
    epochs: int = 80,
    batch_size: int = 15,
    learning_rate: float = 1e-3,
    cache_features: bool | None = None,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    progress: bool = True,
    class_weight: str | Mapping[int | str, float] | None | _FromRecipe = FROM_RECIPE,
    augment: bool | Augmentation = False,
    augment_copies: int = 8,
    augment_views: int | None = None,
    early_stopping: int | None | _FromRecipe = FROM_RECIPE,
    lr_schedule: str | keras.optimizers.schedules.LearningRateSchedule | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    strategy: Any = None,
    cache_dir: str | os.PathLike[str] | bool | None = None,
    fit_ood: bool = True,
    recipe: str = "recommended",
    site_balanced: bool = False,
) -> dict[str, list[float]]:
    """Train a classifier: the paper's 80 epochs of Adam at 0.001, batch 15, with class balance.

    The loss is categorical cross-entropy. The model is trained in place; its
    ``class_names`` are set from the data when it has none. The settings used
    are recorded in ``model.metadata["training"]``. By default (``recipe=
    "recommended"``, :data:`RECOMMENDED_TRAINING`) the classes are weighed so
    that each counts as much in the loss and training stops early when the
    validation loss has not improved for 10 epochs: the training options of the
    best variant measured on unseen adult patients (``benchmarks/RESULTS.md``).
    ``recipe="paper"`` gives Soares & Soares (2020) exactly.

    Parameters
    ----------
    model : CxrClassifier
        A model from :func:`~cxrclassify.build_model`.
    data : DatasetSplits or (train, validation)
        What :func:`~cxrclassify.load_datasets` returned, or a pair of
        :class:`~cxrclassify.datasets.ImageSet`; validation may be ``None``.
        Images of another size than the model's ``image_size`` are resized to
        it first (bilinear, as :func:`~cxrclassify.load_datasets` resizes; an
        INFO log line says so); ``data`` is not changed. Loading them with
        ``load_datasets(..., image_size=model.image_size)`` is faster and
        resizes the original files once, not twice.
    config : TrainConfig or str, optional
        Every setting at once: a :class:`TrainConfig` (for instance
        ``TrainConfig.preset("paper", epochs=40)``) or a recipe name. The keyword
        arguments below then change only the settings they give a value other
        than their default. Without it, the ``recipe``'s preset and the keywords.
    epochs : int, default 80
        Passes over the training images.
    batch_size : int, default 15
        Images per gradient step; with a ``strategy``, across all replicas, and
        a multiple of their number.
    learning_rate : float, default 0.001
        Adam's (initial) learning rate.
    cache_features : bool, optional
        Compute the frozen base's output once per image (and augmented copy) and train the
        head on it. Default: whenever the base is frozen. Must be off when the
        base is trained.
    seed : int, default 0
        Seeds everything drawn while training: Python, NumPy and the backend,
        the order of the images, the copies drawn, the augmentation and the
        dropout masks. Training starts from the model's current weights, which
        :func:`~cxrclassify.build_model`'s own ``seed`` (default 0) fixes: a
        model built with the same seed and trained with the same seed, data
        and settings ends with the same weights and history, in any process.
        A model built with ``seed=None`` starts from unseeded weights, and its
        runs do not repeat. The model's seed is recorded as ``model_seed``.
    checkpoint_dir : path, optional
        Where to back up the training state (weights, optimizer, epoch, early
        stopping and learning-rate-plateau counters) at the end of every epoch,
        with :class:`keras.callbacks.BackupAndRestore`. Calling :func:`train`
        again with the same folder after an interruption resumes from the last
        finished epoch and ends with the same weights as an uninterrupted run;
        the folder is emptied when training ends. Resuming with other settings,
        or (with cached features) a base whose weights differ, gives a warning.
    callbacks : sequence of keras.callbacks.Callback
        Extra Keras callbacks (run after the library's own).
    progress : bool, default True
        Show a progress bar over the epochs (and the feature extraction).
    class_weight : {"balanced"}, dict or None, default: from ``recipe``
        Weight of each class in the loss (``None``: all 1): ``"balanced"`` weighs class ``c`` by
        ``n / (k * n_c)`` over the training labels (as scikit-learn's
        ``compute_class_weight``, see :func:`balanced_class_weight`); a dict maps
        class indices or names to weights (missing classes weigh 1). The
        validation loss is not weighted.
    augment : bool or Augmentation, default False
        Randomly rotate, shift, zoom and change the brightness and contrast of
        the training images (``True``: the small ranges of
        :class:`~cxrclassify.augment.Augmentation`; no flips). With cached
        features, ``augment_copies`` copies are computed once; otherwise every
        batch is augmented as it is made. Validation images are never augmented.
    augment_copies : int, default 8
        Versions of each training image with cached features: the original and
        ``augment_copies - 1`` augmented copies. Each epoch uses one per image.
    augment_views : int, optional
        Deprecated name of ``augment_copies`` (it issues a ``CxrDeprecationWarning``, a
        ``FutureWarning``; removed in 0.4): "view" now means only the radiographic view of an X-ray.
    early_stopping : int or None, default: from ``recipe``
        ``None``: run all epochs. An int: stop when the validation loss (the training loss without a validation
        split) has not improved for this many epochs, and put back the weights
        of the best epoch (also when training runs to ``epochs``).
    lr_schedule : {"cosine", "plateau"} or LearningRateSchedule, optional
        ``"cosine"``: cosine decay from ``learning_rate`` to 0 over all the
        steps; ``"plateau"``: divide the rate by 10 when the monitored loss has
        not improved for :data:`PLATEAU_PATIENCE` epochs; or any Keras
        schedule. The history then has a ``learning_rate`` column.
    log_dir : path, optional
        Folder for ``history.csv`` (one row per epoch, written as training goes,
        with :class:`keras.callbacks.CSVLogger`) and ``history.json`` (the
        history and these settings, written at the end).
    strategy : tf.distribute.Strategy, optional
        Train data-parallel, for example over several GPUs with
        ``tf.distribute.MirroredStrategy()``; compiling and fitting happen in
        ``strategy.scope()``. **Build the model under the same scope**
        (``with strategy.scope(): model = build_model(...)``): Keras places a
        model's variables when it is built. ``MultiWorkerMirroredStrategy`` works
        the same way, with ``TF_CONFIG`` set on every worker.
    cache_dir : path or True, optional
        Keep the frozen base's feature maps on disk there and reuse them in
        later runs and other processes (see :mod:`cxrclassify.features`);
        ``True``: ``<data home>/features`` (see ``CXRCLASSIFY_HOME``).
    fit_ood : bool, default True
        At the end, fit the model's out-of-distribution score
        (:func:`~cxrclassify.models.fit_ood`) on the training images'
        pooled base features, its threshold on the validation images'; with
        cached features, from the cached original images (no augmented copy),
        without running the base again. Recorded in ``model.metadata["ood"]``.
    recipe : {"recommended", "paper"}, default "recommended"
        Where ``class_weight`` and ``early_stopping`` take their defaults from
        (:data:`TRAINING_RECIPES`): ``"recommended"``, balanced class weights
        and early stopping after 10 epochs without a better validation loss
        (left off when there is no validation split); ``"paper"``, neither.
        Options passed explicitly win. Recorded in the training metadata.
        ``"linear"`` fits the head of a ``head="gap"`` model with a frozen base
        in closed form: an L2-regularised multinomial logistic regression on
        the standardised pooled base features (:mod:`cxrclassify.linear_head`),
        its ``C`` chosen by validation log-loss; no epochs, no learning rate,
        nothing drawn but the augmented copies. The history then holds one
        entry per column.
    site_balanced : bool, default False
        Weigh the training images so that, within each class, every site
        (:attr:`~cxrclassify.datasets.Sample.site`; images without one count as
        one site) carries the same total weight, on top of ``class_weight``:
        the largest site of a class no longer decides what the class looks
        like.

    Returns
    -------
    dict of str to list of float
        Per-epoch ``loss`` and ``accuracy`` on the training images,
        ``val_loss`` and ``val_accuracy`` when there is a validation split, and
        ``learning_rate`` with a schedule. After a resume, the epochs of this call.

    Raises
    ------
    ValueError
        If the data's class names, number of classes or ``lungs`` do not match
        the model, its images are of another size and not ``uint8`` RGB (which
        cannot be resized), or an option is out of range.

    Examples
    --------
    >>> import cxrclassify
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32)
    >>> history = cxrclassify.train(model, data, epochs=2, progress=False)
    >>> sorted(history), len(history["loss"])
    (['accuracy', 'loss', 'val_accuracy', 'val_loss'], 2)

    With augmentation (4 cached copies per image), class weights and early stopping:

    >>> model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32)
    >>> history = cxrclassify.train(model, data, epochs=3, augment=True, augment_copies=4,
    ...                             class_weight="balanced", early_stopping=2, progress=False)
    >>> model.metadata["training"]["augment_copies"]
    4
    """
    given = {name: value for name, value in locals().items() if name not in ("model", "data", "config")}
    history, _ = _train(model, data, _config_of(config, given))
    return history


#: train's keyword defaults: a keyword passed with another value changes the config's setting.
def _keyword_defaults() -> dict[str, Any]:
    parameters = inspect.signature(train).parameters
    return {name: parameter.default for name, parameter in parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY}


def _config_of(config: TrainConfig | str | None, given: Mapping[str, Any]) -> _Resolved:
    """The settings a call of :func:`train` runs: the config (or the recipe's preset) and the keywords passed.

    With no ``config``, the ``recipe`` keyword's preset, updated with every keyword;
    ``class_weight`` and ``early_stopping`` left at their default come from the
    recipe. With a ``config``, it is used as it is, updated with the keywords
    whose value differs from :func:`train`'s default.
    """
    defaults = _keyword_defaults()
    given = _renamed_options(given)
    if config is None or isinstance(config, str):
        recipe = config if isinstance(config, str) else given.get("recipe", "recommended")
        options = {name: value for name, value in given.items() if value is not FROM_RECIPE and name != "recipe"}
        resolved = TrainConfig.preset(recipe, **options)
        return _Resolved(resolved, frozenset(name for name in ("class_weight", "early_stopping")
                                             if given.get(name, FROM_RECIPE) is FROM_RECIPE))
    if not isinstance(config, TrainConfig):
        message = f"Expected config to be a TrainConfig or a recipe name. Received: config={config!r}"
        raise ArgumentTypeError(message)
    changes = {name: value for name, value in given.items()
               if value is not FROM_RECIPE and not _same(value, defaults.get(name))}
    return _Resolved(config.replace(**changes), frozenset())


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default) and type(value) is type(default)
    except Exception:  # an object without a usable ==
        return value is default


@dataclass(frozen=True)
class _Resolved:
    """A :class:`TrainConfig` and which of its settings came from the recipe rather than the caller."""

    config: TrainConfig
    from_recipe: frozenset[str]


def _train(model: CxrClassifier, data: Any, resolved: _Resolved | None = None,
           **options: Any) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """:func:`train`; returns this call's history and the full one (earlier epochs of a resumed run included)."""
    if resolved is None:
        resolved = _config_of(None, options)
    config = resolved.config
    train_set, validation_set = _training_splits(data)
    _check_data_fits_model(model, train_set, validation_set)
    _check_counts(epochs=config.epochs, batch_size=config.batch_size, augment_copies=config.augment_copies)
    _check_lr_schedule(config.lr_schedule)
    _check_batch_splits(config.strategy, min(config.batch_size, len(train_set)))
    train_set, validation_set = _images_at_model_size((train_set, validation_set), model)
    if model.class_names is None:
        model.class_names = list(train_set.class_names)
    use_cache = (not model.base_trainable) if config.cache_features is None else bool(config.cache_features)
    if use_cache and model.base_trainable:
        message = "cache_features=True needs a frozen base. Received: a model whose base is trainable"
        raise ArgumentError(message)
    if validation_set is None and "early_stopping" in resolved.from_recipe:
        config = config.replace(early_stopping=None)  # the recipe's early stopping needs a validation split
    if validation_set is None and (config.early_stopping is not None or config.lr_schedule == "plateau"):
        warnings.warn("There is no validation split: early stopping and the plateau schedule watch the "
                      "training loss instead.", TrainingWarning, stacklevel=3)

    keras.utils.set_random_seed(config.seed)
    if config.recipe == "linear":
        return _train_linear(model, train_set, validation_set, use_cache, config)
    fit_model, batches, validation_data, settings, temporary = _fit_data(model, train_set, validation_set, use_cache,
                                                                         config)
    checkpoint_dir, strategy = config.checkpoint_dir, config.strategy
    resuming = _prepare_checkpoint(checkpoint_dir, settings, model if use_cache else None)
    with contextlib.nullcontext() if strategy is None else strategy.scope():
        _check_built_under(strategy, fit_model)
        rate = _learning_rate(config.lr_schedule, config.learning_rate, config.epochs * len(batches))
        fit_model.compile(optimizer=keras.optimizers.Adam(learning_rate=rate),
                          loss=keras.losses.CategoricalCrossentropy(from_logits=use_cache), metrics=["accuracy"])
        run_callbacks = _callbacks(
            config.callbacks, checkpoint_dir, config.progress, config.epochs, seed=config.seed,
            batches=batches, monitor=settings["monitor"], early_stopping=config.early_stopping,
            lr_schedule=config.lr_schedule, log_dir=config.log_dir, resuming=resuming)
        with _multi_worker_fit(fit_model, strategy):  # a no-op unless the strategy spans several workers
            fitted = fit_model.fit(batches, validation_data=validation_data,
                                   validation_batch_size=config.batch_size, epochs=config.epochs,
                                   shuffle=False, verbose=0, callbacks=run_callbacks)
    history = {name: [float(value) for value in values] for name, values in fitted.history.items()}
    full_history = _with_earlier_epochs(history, run_callbacks)
    model.metadata["training"] = _plain_json({**settings, "model_seed": getattr(model, "seed", None),
                                         **_stopping_record(run_callbacks, len(full_history["loss"]))})
    if config.log_dir is not None:
        _write_history_json(Path(config.log_dir), full_history, model.metadata["training"])
    logger.info("Trained %s for %d epochs on %d images", model.arch, len(history.get("loss", ())), len(train_set))
    if config.fit_ood:  # on copy 0 (the original images) of the cached features, else one pass of the base
        cached = (batches.copies[0], None if validation_data is None else _inputs_of(validation_data)) if use_cache \
            else None
        fit_ood_score(model, (train_set, validation_set), batch_size=config.batch_size, features=cached)
    if temporary is not None:
        del batches, validation_data
        shutil.rmtree(temporary, ignore_errors=True)
    return history, full_history


def _inputs_of(validation_data: Any) -> Any:
    return validation_data.inputs if isinstance(validation_data, _ArrayBatches) else validation_data[0]


def _fit_data(
    model: CxrClassifier, train_set: ImageSet, validation_set: ImageSet | None, use_cache: bool, config: TrainConfig,
) -> tuple[keras.Model, _EpochBatches, Any, dict[str, Any], Path | None]:
    """The model to fit (the head on cached features, or the whole model), its batches, validation data, settings,
    and the temporary feature folder to remove after training (``None`` when there is none)."""
    temporary = None
    augmentation = _augmentation(config.augment)
    copies = config.augment_copies if augmentation is not None else 1
    sample_weights, class_weights = _sample_weights(config.class_weight, train_set)
    if config.site_balanced:
        sample_weights = _site_balanced(sample_weights, train_set)
    cache = _feature_cache(config.cache_dir, use_cache)
    if cache is None and use_cache and train_set.streamed:
        # Streamed images: their features go to disk batch by batch too (a folder removed after training).
        cache = FeatureCache(tempfile.mkdtemp(prefix="cxrclassify-features-"))
        temporary = cache.folder
    seed, progress = config.seed, config.progress
    if use_cache:
        fit_model = model.head
        train_copies = augmented_features(model, train_set.images, copies=copies, augmentation=augmentation,
                                          seed=seed, cache=cache, progress=progress)
        validation_inputs = None if validation_set is None else augmented_features(
            model, validation_set.images, cache=cache, progress=progress)[0]
        if train_set.streamed:  # read the rows each batch needs: an epoch would map the whole file into memory
            train_copies = [RowReader(features) if isinstance(features, np.memmap) else features
                            for features in train_copies]
            if isinstance(validation_inputs, np.memmap):
                validation_inputs = RowReader(validation_inputs)
    else:
        fit_model = model
        train_copies = [train_set.images]
        validation_inputs = None if validation_set is None else (
            validation_set.images if validation_set.streamed else validation_set.images.astype(np.float32))
    batches = _EpochBatches(train_copies, train_set.one_hot(), batch_size=config.batch_size, seed=seed,
                            sample_weights=sample_weights, augmentation=None if use_cache else augmentation)
    validation_data = None if validation_set is None else (validation_inputs, validation_set.one_hot())
    if validation_data is not None and not type(validation_inputs) is np.ndarray:
        # Features on disk or images decoded on demand: Keras would copy arrays whole; batches stream.
        validation_data = _ArrayBatches(validation_inputs, validation_set.one_hot(), batch_size=config.batch_size)
    strategy = config.strategy
    settings = {
        "recipe": config.recipe, "epochs": config.epochs, "batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "optimizer": "adam", "seed": seed, "cached_features": use_cache, "train_images": len(train_set),
        "validation_images": 0 if validation_set is None else len(validation_set),
        "data_manifest_sha256": _manifest_digest(train_set, validation_set),
        "class_weight": class_weights, "site_balanced": bool(config.site_balanced),
        "augmentation": None if augmentation is None else augmentation.to_dict(),
        "augment_copies": copies if use_cache else None, "early_stopping": config.early_stopping,
        "lr_schedule": _schedule_name(config.lr_schedule),
        "monitor": "val_loss" if validation_set is not None else "loss",
        "trainable_blocks": model.trainable_blocks, "strategy": None if strategy is None else type(strategy).__name__,
        "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync),
        "feature_cache": None if cache is None else str(cache.folder),
    }
    return fit_model, batches, validation_data, settings, temporary


def train_two_stage(
    model: CxrClassifier,
    data: DatasetSplits | tuple[ImageSet, ImageSet | None],
    *,
    head_epochs: int = 20,
    fine_tune_epochs: int = 10,
    fine_tune_blocks: int | bool = 2,
    fine_tune_learning_rate: float = 1e-5,
    **train_options: Any,
) -> dict[str, list]:
    """Train the head on the frozen base, then fine-tune the base's top blocks with it.

    Stage ``"head"``: the base is frozen and :func:`train` fits the head on
    cached features (``learning_rate``, default 0.001). Stage ``"fine_tune"``:
    ``model.set_trainable_blocks(fine_tune_blocks)`` and the whole model is
    trained at ``fine_tune_learning_rate``, starting from the trained head, so
    that the random head's large gradients never reach the pretrained base.

    Parameters
    ----------
    model : CxrClassifier
        A model from :func:`~cxrclassify.build_model`; its base is frozen for
        the first stage whatever its setting.
    data : DatasetSplits or (train, validation)
        As for :func:`train` (images of another size are resized once, for
        both stages).
    head_epochs : int, default 20
        Epochs of the first stage.
    fine_tune_epochs : int, default 10
        Epochs of the second stage.
    fine_tune_blocks : int or True, default 2
        Top blocks of the base trained in the second stage (``True``: all).
    fine_tune_learning_rate : float, default 1e-5
        Adam's learning rate in the second stage.
    **train_options
        Any other option of :func:`train` (``batch_size``, ``seed``,
        ``augment``, ``class_weight``, ``early_stopping``, ``lr_schedule``,
        ``cache_dir``, ...), used in both stages. ``checkpoint_dir`` and
        ``log_dir`` get a ``head`` and a ``fine_tune`` subfolder; a run
        interrupted in the second stage does not redo the first.

    Returns
    -------
    dict
        The two histories one after the other, with a ``stage`` list saying
        which stage each epoch belongs to (``"head"`` or ``"fine_tune"``).

    Raises
    ------
    TypeError
        If ``epochs`` or ``cache_features`` is passed (each stage sets its own).
    ValueError
        If ``fine_tune_blocks`` is below 1 or more than the base has.

    Examples
    --------
    >>> import cxrclassify
    >>> from cxrclassify.training import train_two_stage
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32)
    >>> history = train_two_stage(model, data, head_epochs=1, fine_tune_epochs=1, fine_tune_blocks=1, progress=False)
    >>> history["stage"], model.trainable_blocks
    (['head', 'fine_tune'], 1)
    """
    for name in ("epochs", "cache_features"):
        if name in train_options:
            message = f"train_two_stage sets {name} per stage (head_epochs, fine_tune_epochs). Received: {name}=..."
            raise ArgumentTypeError(message)
    if fine_tune_blocks is not True and (isinstance(fine_tune_blocks, bool) or fine_tune_blocks < 1):
        message = f"Expected fine_tune_blocks to be True or at least 1. Received: fine_tune_blocks={fine_tune_blocks!r}"
        raise ArgumentError(message)
    checkpoint_dir = train_options.pop("checkpoint_dir", None)
    log_dir = train_options.pop("log_dir", None)
    checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir)
    train_set, validation_set = _training_splits(data)
    if _needs_resizing(train_set, model) or _needs_resizing(validation_set, model):
        _check_data_fits_model(model, train_set, validation_set)
        data = tuple(_images_at_model_size((train_set, validation_set), model))  # once for both stages
    model.set_trainable_blocks(False)
    head_history, head_record = _head_stage(model, data, head_epochs, checkpoint, log_dir, train_options)
    model.set_trainable_blocks(fine_tune_blocks)
    fine_options = {key: value for key, value in train_options.items() if key not in ("cache_dir", "learning_rate")}
    _, fine_history = _train(model, data, epochs=fine_tune_epochs, learning_rate=fine_tune_learning_rate,
                             cache_features=False, checkpoint_dir=_subfolder(checkpoint, "fine_tune"),
                             log_dir=_subfolder(log_dir, "fine_tune"), **fine_options)
    if checkpoint is not None:
        for name in ("head_stage.npz", "head_history.json"):
            (checkpoint / name).unlink(missing_ok=True)
    history = _concatenate_histories([("head", head_history), ("fine_tune", fine_history)])
    model.metadata["training"] = {**model.metadata["training"], "recipe": "two_stage", "head_stage": head_record}
    if log_dir is not None:
        _write_history_json(Path(log_dir), history, model.metadata["training"])
    return history


def balanced_class_weight(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Class weights ``n / (k * n_c)`` that make every class count as much in the loss.

    ``n`` is the number of labels, ``k`` the number of classes present and
    ``n_c`` the count of class ``c``: scikit-learn's
    ``compute_class_weight("balanced", ...)``. Absent classes weigh 1.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer class indices.
    num_classes : int
        Number of classes.

    Returns
    -------
    dict of int to float
        The weight of each class index.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.training import balanced_class_weight
    >>> balanced_class_weight(np.array([0, 0, 0, 1]), 2)
    {0: 0.6666666666666666, 1: 2.0}
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = int(np.count_nonzero(counts))
    return {c: float(len(labels) / (present * counts[c])) if counts[c] else 1.0 for c in range(num_classes)}


class _EpochBatches(keras.utils.PyDataset):
    """The batches of one epoch, a function of ``(seed, epoch)`` only.

    ``copies`` holds ``C`` arrays of the same ``N`` inputs (feature maps of the
    augmented copies, or the images). Each epoch draws an order of the images and a copy
    per image from ``(seed, epoch)``; ``epoch`` is set by :class:`_EpochSeeds`
    at the start of each epoch, before Keras asks for the epoch's first batch.
    """

    def __init__(self, copies: Sequence[np.ndarray], targets: np.ndarray, *, batch_size: int, seed: int,
                 sample_weights: np.ndarray | None = None, augmentation: Augmentation | None = None):
        super().__init__()
        self.copies = list(copies)
        self.targets = targets
        self.batch_size = int(batch_size)
        self.seed = seed
        self.sample_weights = sample_weights
        self.augmentation = augmentation
        self.epoch = 0
        self._plans: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.batch_size)

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's order of the images and the copy drawn for each image."""
        plan = self._plans.get(epoch)
        if plan is None:
            rng = np.random.default_rng(derive_seed(self.seed, "epoch", epoch))
            plan = rng.permutation(len(self.targets)), rng.integers(0, len(self.copies), size=len(self.targets))
            self._plans = {epoch: plan}
        return plan

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        epoch = self.epoch
        order, chosen = self.plan(epoch)
        rows = order[index * self.batch_size:(index + 1) * self.batch_size]
        inputs = self._gather(rows, chosen[rows])
        if self.augmentation is not None:
            inputs = augment_images(inputs, self.augmentation, seed=derive_seed(self.seed, "batch", epoch, index))
        batch = (inputs, self.targets[rows])
        return batch if self.sample_weights is None else (*batch, self.sample_weights[rows])

    def _gather(self, rows: np.ndarray, chosen_copies: np.ndarray) -> np.ndarray:
        if len(self.copies) == 1:
            return np.asarray(self.copies[0][rows], dtype=np.float32)
        inputs = np.empty((len(rows), *self.copies[0].shape[1:]), dtype=np.float32)
        for copy_index in np.unique(chosen_copies):
            mask = chosen_copies == copy_index
            inputs[mask] = self.copies[copy_index][rows[mask]]
        return inputs


class _ArrayBatches(keras.utils.PyDataset):
    """``(inputs, targets)`` in order, ``batch_size`` rows at a time: for inputs on disk or decoded on demand."""

    def __init__(self, inputs: Any, targets: np.ndarray, *, batch_size: int):
        super().__init__()
        self.inputs = inputs
        self.targets = targets
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return np.asarray(self.inputs[rows], dtype=np.float32), self.targets[rows]


class _EpochSeeds(keras.callbacks.Callback):
    """At each epoch's start: tell the batches the epoch, and reseed what is random from ``(seed, epoch)``.

    Keras layers draw their randomness (dropout masks) from their own
    seed-generator variables, which checkpoints do not save; setting them from
    the epoch makes a resumed epoch draw what the uninterrupted run drew.
    """

    def __init__(self, seed: int, batches: _EpochBatches):
        super().__init__()
        self.seed = seed
        self.batches = batches

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.batches.epoch = epoch
        # Python's and NumPy's global generators; not the backend's (tf.random.set_seed
        # makes TensorFlow retrace the training step, a quarter of a second per epoch).
        random.seed(derive_seed(self.seed, "python", epoch))
        np.random.seed(derive_seed(self.seed, "numpy", epoch))
        states = [variable for variable in self.model.variables if variable.name == "seed_generator_state"]
        for index, state in enumerate(states):
            state.assign(np.array([derive_seed(self.seed, "layers", epoch, index), 0], dtype=state.dtype))


class _LogLearningRate(keras.callbacks.Callback):
    """Add the optimizer's learning rate at the end of each epoch to the logs."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class _RunState(keras.callbacks.Callback):
    """Back up, and restore on resume, what ``BackupAndRestore`` does not keep.

    That is the history of the finished epochs, and the counters of early
    stopping and of the plateau schedule (epochs without improvement, best loss,
    best weights), which would otherwise start over after an interruption.
    """

    _FIELDS = {keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch", "stopped_epoch"),
               keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter")}

    def __init__(self, folder: Path, watched: Sequence[keras.callbacks.Callback]):
        super().__init__()
        self.folder = folder
        self.watched = list(watched)
        self.earlier: dict[str, list[float]] = {}
        self._history: dict[str, list[float]] = {}
        self._saved_best_weights: object = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        epoch, path = _checkpoint_epoch(self.folder), self.folder / _RUN_STATE
        self.earlier = {}
        if epoch is not None and path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            self.earlier = {name: values[:epoch] for name, values in saved["history"].items()}
            if saved["epoch"] == epoch:
                self._restore(saved["callbacks"])
            elif self.watched:
                warnings.warn("The early stopping and plateau counters of the checkpoint are from another epoch "
                              "than its weights; they start over.", TrainingWarning, stacklevel=2)
        self._history = {name: list(values) for name, values in self.earlier.items()}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in (logs or {}).items():
            self._history.setdefault(name, []).append(float(value))
        state = {"epoch": epoch + 1, "history": self._history, "callbacks": [
            {name: _plain_json(getattr(callback, name, None)) for name in self._fields(callback)}
            for callback in self.watched]}
        for callback in self.watched:
            best = getattr(callback, "best_weights", None)
            if isinstance(callback, keras.callbacks.EarlyStopping) and best is not None \
                    and best is not self._saved_best_weights:  # written when they change, not every epoch
                atomic_write_bytes(self.folder / _BEST_WEIGHTS, _npz_bytes(best))
                self._saved_best_weights = best
        atomic_write_bytes(self.folder / _RUN_STATE, json.dumps(_plain_json(state)).encode("utf-8"))

    def _restore(self, saved: list[dict[str, Any]]) -> None:
        for callback, fields in zip(self.watched, saved):
            for name, value in fields.items():
                setattr(callback, name, value)
            if isinstance(callback, keras.callbacks.EarlyStopping) and (self.folder / _BEST_WEIGHTS).is_file():
                with np.load(self.folder / _BEST_WEIGHTS) as arrays:
                    callback.best_weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
                self._saved_best_weights = callback.best_weights

    def _fields(self, callback: keras.callbacks.Callback) -> tuple[str, ...]:
        return next(fields for kind, fields in self._FIELDS.items() if isinstance(callback, kind))


def _callbacks(
    extra: Sequence[keras.callbacks.Callback], checkpoint_dir: str | os.PathLike[str] | None,
    progress: bool, epochs: int, *, seed: int = 0, batches: _EpochBatches | None = None, monitor: str = "val_loss",
    early_stopping: int | None = None, lr_schedule: Any = None, log_dir: str | os.PathLike[str] | None = None,
    resuming: bool = False,
) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = []
    if checkpoint_dir is not None:
        # First, so that the epoch's state is backed up before any other callback can stop the run.
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.BackupAndRestore(os.fspath(checkpoint_dir), double_checkpoint=True))
    if batches is not None:
        callbacks.append(_EpochSeeds(seed, batches))
    watched = []
    if early_stopping is not None:
        watched.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=early_stopping,
                                                     restore_best_weights=True))
    if lr_schedule == "plateau":
        watched.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=PLATEAU_FACTOR, patience=_plateau_patience(early_stopping),
            min_lr=PLATEAU_MIN_LR))
    elif lr_schedule is not None:
        callbacks.append(_LogLearningRate())
    callbacks += watched
    if checkpoint_dir is not None:
        callbacks.append(_RunState(Path(checkpoint_dir), watched))
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.CSVLogger(os.fspath(Path(log_dir) / "history.csv"), append=resuming))
    callbacks += list(extra)
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(epochs=epochs, verbose=0, desc="Training"))
    return callbacks


def _head_stage(
    model: CxrClassifier, data: Any, epochs: int, checkpoint: Path | None, log_dir: Any, options: dict[str, Any],
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Stage one of :func:`train_two_stage`, or its saved result when a resumed run already finished it."""
    done = None if checkpoint is None else checkpoint / "head_stage.npz"
    if done is not None and done.is_file() and (checkpoint / "head_history.json").is_file():
        logger.info("Head stage already finished in %s: loading its weights", checkpoint)
        with np.load(done) as arrays:
            model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])
        saved = json.loads((checkpoint / "head_history.json").read_text(encoding="utf-8"))
        return saved["history"], saved["record"]
    _, history = _train(model, data, epochs=epochs, checkpoint_dir=_subfolder(checkpoint, "head"),
                        log_dir=_subfolder(log_dir, "head"), **options)
    record = dict(model.metadata["training"])
    if checkpoint is not None:
        checkpoint.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(checkpoint / "head_history.json",
                            json.dumps(_plain_json({"history": history, "record": record})).encode("utf-8"))
        atomic_write_bytes(done, _npz_bytes(model.get_weights()))  # last: it marks the stage as done
    return history, record


def _concatenate_histories(stages: Sequence[tuple[str, dict[str, list[float]]]]) -> dict[str, list]:
    names = list(dict.fromkeys(name for _, history in stages for name in history))
    combined: dict[str, list] = {name: [] for name in names}
    combined["stage"] = []
    for stage, history in stages:
        length = len(history.get("loss", next(iter(history.values()), [])))
        for name in names:
            combined[name] += history.get(name, [math.nan] * length)
        combined["stage"] += [stage] * length
    return combined


def _subfolder(folder: str | os.PathLike[str] | None, name: str) -> Path | None:
    return None if folder is None else Path(folder) / name


def _augmentation(augment: bool | Augmentation) -> Augmentation | None:
    if isinstance(augment, Augmentation):
        return augment
    if isinstance(augment, bool):
        return Augmentation() if augment else None
    message = f"Expected augment to be a bool or an Augmentation. Received: augment={augment!r}"
    raise ArgumentTypeError(message)


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            message = f"Expected {name} to be a positive integer. Received: {name}={value!r}"
            raise ArgumentError(message)


def _sample_weights(
    class_weight: str | Mapping[int | str, float] | None, train_set: ImageSet,
) -> tuple[np.ndarray | None, list[float] | None]:
    """Per-image loss weights from ``class_weight``, and the per-class weights for the record."""
    if class_weight is None:
        return None, None
    num_classes = len(train_set.class_names)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            message = f"Expected class_weight to be None, 'balanced' or a dict. Received: class_weight={class_weight!r}"
            raise ArgumentError(message)
        weights = balanced_class_weight(train_set.labels, num_classes)
    elif isinstance(class_weight, Mapping):
        weights = {index: 1.0 for index in range(num_classes)}
        for key, value in class_weight.items():
            index = train_set.class_names.index(key) if key in train_set.class_names else key
            if not isinstance(index, (int, np.integer)) or not 0 <= index < num_classes:
                message = (f"Expected class_weight keys to be class indices or names {train_set.class_names}. "
                           f"Received: key {key!r}")
                raise ArgumentError(message)
            weights[int(index)] = value
    else:
        message = f"Expected class_weight to be None, 'balanced' or a dict. Received: class_weight={class_weight!r}"
        raise ArgumentTypeError(message)
    per_class = np.array([float(weights[index]) for index in range(num_classes)], dtype=np.float32)
    if not np.all(np.isfinite(per_class)) or np.any(per_class < 0):
        message = f"Expected finite, non-negative class weights. Received: class_weight={class_weight!r}"
        raise ArgumentError(message)
    return per_class[np.asarray(train_set.labels)], per_class.tolist()


def _site_balanced(sample_weights: np.ndarray | None, train_set: ImageSet) -> np.ndarray:
    """``sample_weights`` (or ones) times weights that give every site of a class the same total weight."""
    site_weights = balancing_weights(train_set.labels, class_weight=None, sites=train_set.sites)
    base = np.ones(len(train_set), dtype=np.float64) if sample_weights is None else sample_weights.astype(np.float64)
    return (base * site_weights).astype(np.float32)


def _train_linear(
    model: CxrClassifier, train_set: ImageSet, validation_set: ImageSet | None, use_cache: bool, config: TrainConfig,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``recipe="linear"``: the gap head as an L2 logistic regression on the pooled features, then the OOD score."""
    if model.base_trainable or not use_cache:
        message = ("recipe='linear' fits the head on the frozen base's features. Received: a model whose base is "
                   "trainable, or cache_features=False")
        raise ArgumentError(message)
    if model.head_kind != "gap":
        message = ("recipe='linear' needs a 'gap' head: build the model with build_model(..., head='gap'). "
                   f"Received: head={model.head_kind!r}")
        raise ArgumentError(message)
    for name in ("checkpoint_dir", "strategy", "lr_schedule"):
        if getattr(config, name) is not None:
            message = f"recipe='linear' has no epochs: {name} does not apply. Received: {name}={getattr(config, name)!r}"
            raise ArgumentError(message)
    augmentation = _augmentation(config.augment)
    copies = config.augment_copies if augmentation is not None else 1
    cache = _feature_cache(config.cache_dir, use_cache)
    train_copies = augmented_features(model, train_set.images, copies=copies, augmentation=augmentation,
                                seed=config.seed, cache=cache, progress=config.progress)
    pooled = [pool_features(np.asarray(features)) for features in train_copies]
    validation_maps = None if validation_set is None else augmented_features(
        model, validation_set.images, cache=cache, progress=config.progress)[0]
    validation_pooled = None if validation_maps is None else pool_features(np.asarray(validation_maps))
    labels = np.asarray(train_set.labels)
    _, class_weights = _sample_weights(config.class_weight, train_set)
    weights = balancing_weights(labels, class_weight=None if class_weights is None else dict(enumerate(class_weights)),
                                sites=train_set.sites if config.site_balanced else None)
    head = fit_linear_head(np.concatenate(pooled), np.tile(labels, copies), num_classes=model.num_classes,
                           sample_weight=np.tile(weights, copies),
                           validation=None if validation_pooled is None else (validation_pooled, validation_set.labels))
    set_gap_head(model, head)
    history = _linear_history(head, pooled[0], labels, validation_pooled,
                              None if validation_set is None else np.asarray(validation_set.labels))
    model.metadata["training"] = _plain_json({
        "recipe": "linear", "seed": config.seed, "cached_features": True, "train_images": len(train_set),
        "validation_images": 0 if validation_set is None else len(validation_set),
        "data_manifest_sha256": _manifest_digest(train_set, validation_set), "class_weight": class_weights,
        "site_balanced": bool(config.site_balanced),
        "augmentation": None if augmentation is None else augmentation.to_dict(), "augment_copies": copies,
        "linear_c": head.c, "linear_validation_log_loss": {str(key): value for key, value in
                                                           head.validation_log_loss.items()},
        "model_seed": getattr(model, "seed", None), "feature_cache": None if cache is None else str(cache.folder),
    })
    if config.log_dir is not None:
        _write_history_json(Path(config.log_dir), history, model.metadata["training"])
    logger.info("Fitted the linear head of %s on %d images (C=%g)", model.arch, len(train_set), head.c)
    if config.fit_ood:
        fit_ood_score(model, (train_set, validation_set), batch_size=config.batch_size,
                      features=(train_copies[0], validation_maps))
    return history, history


def _linear_history(
    head: LinearHead, train_features: np.ndarray, train_labels: np.ndarray,
    validation_features: np.ndarray | None, validation_labels: np.ndarray | None,
) -> dict[str, list[float]]:
    """One-entry history of a linear head: log-loss and accuracy on train (and validation)."""
    def scores(features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        probabilities = np.clip(head.predict_proba(features), 1e-7, 1.0)
        loss = float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels])))
        return loss, float(np.mean(probabilities.argmax(axis=1) == labels))

    loss, accuracy = scores(train_features, train_labels)
    history = {"loss": [loss], "accuracy": [accuracy]}
    if validation_features is not None:
        val_loss, val_accuracy = scores(validation_features, validation_labels)
        history.update(val_loss=[val_loss], val_accuracy=[val_accuracy])
    return history


def _feature_cache(cache_dir: str | os.PathLike[str] | bool | None, use_cache: bool) -> FeatureCache | None:
    if cache_dir is None or cache_dir is False:
        return None
    if not use_cache:
        warnings.warn("cache_dir is not used: features are cached only with a frozen base and "
                      "cache_features not False.", TrainingWarning, stacklevel=5)
        return None
    if cache_dir is True:
        from ._cache import get_data_home

        return FeatureCache(get_data_home() / "features")
    return FeatureCache(cache_dir)


def _schedule_name(lr_schedule: Any) -> str | None:
    if lr_schedule is None or isinstance(lr_schedule, str):
        return lr_schedule
    return type(lr_schedule).__name__


def _check_lr_schedule(lr_schedule: Any) -> None:
    if lr_schedule in (None, "cosine", "plateau") or isinstance(
            lr_schedule, keras.optimizers.schedules.LearningRateSchedule):
        return
    message = (f"Expected lr_schedule to be None, 'cosine', 'plateau' or a keras LearningRateSchedule. "
               f"Received: lr_schedule={lr_schedule!r}")
    raise ArgumentError(message)


def _learning_rate(lr_schedule: Any, learning_rate: float, total_steps: int) -> Any:
    if lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, total_steps))
    if isinstance(lr_schedule, keras.optimizers.schedules.LearningRateSchedule):
        return lr_schedule
    return learning_rate


def _plateau_patience(early_stopping: int | None) -> int:
    if early_stopping is None:
        return PLATEAU_PATIENCE
    return max(1, min(PLATEAU_PATIENCE, early_stopping // 2))


def _check_batch_splits(strategy: Any, first_batch: int) -> None:
    """Keras builds a distributed model from the mean of the replicas' first batches: they must be equal."""
    replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
    if first_batch % replicas:
        message = (
            f"With {replicas} replicas, batch_size must be a multiple of {replicas} (Keras splits each batch "
            f"evenly across them). Received: batch_size giving a first batch of {first_batch} images"
        )
        raise ArgumentError(message)


def _check_built_under(strategy: Any, fit_model: keras.Model) -> None:
    if strategy is None or not fit_model.weights:
        return
    variable = fit_model.weights[0]
    if not strategy.extended.variable_created_in_scope(getattr(variable, "value", variable)):
        message = (
            "The model must be built under the strategy's scope: `with strategy.scope(): model = "
            f"build_model(...)`. Received: a model built outside strategy={type(strategy).__name__}"
        )
        raise ArgumentError(message)


def _spans_workers(strategy: Any) -> bool:
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` over more than one worker (Keras' own test)."""
    if strategy is None:
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


@contextlib.contextmanager
def _multi_worker_fit(fit_model: keras.Model, strategy: Any):
    """Around ``fit``: make Keras 3 fit and evaluate under a ``MultiWorkerMirroredStrategy`` of several workers.

    Keras 3 (up to 3.15 at least, keras-team/keras#20585) fails there twice: it
    builds the model from a cross-worker mean of the first batch, which
    ``strategy.reduce`` cannot take as a tuple, and it averages each step's
    scalar logs over an axis 0 they do not have. For the duration of the fit,
    the model is built from this worker's own part of the first batch (only
    its shapes are used), and each step returns its logs with a leading axis
    of one, so that the mean over the workers applies. Nothing else changes:
    the data, the gradients' all-reduce and the epoch's metrics (read from the
    metrics' variables, summed over all replicas) are Keras'. With any other
    strategy, or a single worker, this does nothing.
    """
    if not _spans_workers(strategy):
        yield
        return
    import tensorflow as tf

    def with_batch_axis(logs: Any) -> Any:
        return tf.nest.map_structure(lambda value: tf.reshape(value, [1]) if tf.is_tensor(value)
                                     and value.shape.rank == 0 else value, logs)

    def local_part(value: Any) -> Any:
        distributed = isinstance(value, tf.distribute.DistributedValues)
        return strategy.experimental_local_results(value)[0] if distributed else value

    def symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(local_part, next(batches))
                break
        with strategy.scope():
            fit_model._symbolic_build(data_batch=data_batch)

    train_step, test_step = fit_model.train_step, fit_model.test_step
    overrides = {"_maybe_symbolic_build": symbolic_build, "train_step": lambda data: with_batch_axis(train_step(data)),
                 "test_step": lambda data: with_batch_axis(test_step(data))}
    for name, function in overrides.items():
        setattr(fit_model, name, function)
    try:
        yield
    finally:
        for name in overrides:
            delattr(fit_model, name)


def _prepare_checkpoint(
    checkpoint_dir: str | os.PathLike[str] | None, settings: dict[str, Any], cached_model: CxrClassifier | None,
) -> bool:
    """Check that a checkpoint being resumed fits this run, record the run; return whether it resumes."""
    if checkpoint_dir is None:
        return False
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"settings": settings, "base_weights": None if cached_model is None else weights_digest(cached_model)}
    resuming = _checkpoint_epoch(folder) is not None
    previous_path = folder / _RUN_RECORD
    if resuming and previous_path.is_file():
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
        if previous.get("base_weights") != record["base_weights"]:
            warnings.warn(f"The checkpoint in {str(folder)!r} was made with other base weights: the head goes on "
                          "training on other features, and the result will differ from an uninterrupted run. "
                          "Resume with the same base (the same weights file, or for weights=None the same "
                          "build_model seed).",
                          TrainingWarning, stacklevel=4)
        changed = sorted(key for key in settings if previous["settings"].get(key) != _plain_json(settings[key]))
        if changed:
            warnings.warn(f"Resuming the checkpoint in {str(folder)!r} with other settings ({', '.join(changed)}): "
                          "the result will differ from an uninterrupted run.", TrainingWarning, stacklevel=4)
    if resuming:
        logger.info("Resuming from the checkpoint in %s (epoch %s)", folder, _checkpoint_epoch(folder))
    atomic_write_bytes(previous_path, json.dumps(_plain_json(record)).encode("utf-8"))
    return resuming


def _checkpoint_epoch(folder: Path) -> int | None:
    """The number of finished epochs a BackupAndRestore folder holds, or None."""
    path = folder / "training_metadata.json"
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError):
        return None


def _stopping_record(callbacks: Sequence[keras.callbacks.Callback], epochs: int) -> dict[str, Any]:
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping):
            stopped = int(callback.stopped_epoch)
            return {"stopped_early": stopped > 0, "epochs_run": stopped + 1 if stopped else epochs,
                    "best_epoch": int(callback.best_epoch) + 1}
    return {"epochs_run": epochs}


def _with_earlier_epochs(
    history: dict[str, list[float]], callbacks: Sequence[keras.callbacks.Callback],
) -> dict[str, list[float]]:
    """``history`` preceded by the epochs a resumed run had finished before its interruption."""
    earlier = next((callback.earlier for callback in callbacks if isinstance(callback, _RunState)), {})
    if not earlier:
        return history
    return {name: earlier.get(name, [math.nan] * len(earlier.get("loss", ()))) + values
            for name, values in history.items()}


def _plain_json(value: Any) -> Any:
    """JSON-ready, keeping infinities (an early-stopping "best" starts at inf and is read back on resume)."""
    return to_jsonable(value, keep_infinity=True)


def _write_history_json(log_dir: Path, history: dict[str, list], record: dict[str, Any]) -> None:
    """``history.json``: every epoch's metrics and the settings of the run."""
    payload = {"history": _plain_json(history), "settings": _plain_json(record)}
    atomic_write_bytes(log_dir / "history.json", json.dumps(payload, indent=1).encode("utf-8"))


def _npz_bytes(arrays: Sequence[np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(array) for array in arrays])
    return buffer.getvalue()


def _manifest_digest(train_set: ImageSet, validation_set: ImageSet | None) -> str:
    """sha256 of what the model was trained on: split, path, label, patient and source of every image."""
    import hashlib

    digest = hashlib.sha256()
    for split_name, split in (("train", train_set), ("validation", validation_set)):
        for record in split.records if split is not None else ():
            fields = (split_name, record.path, record.label, record.group or "", record.source or "")
            digest.update(("\t".join(fields) + "\n").encode("utf-8"))
    return digest.hexdigest()


def _training_splits(data: DatasetSplits | tuple[ImageSet, ImageSet | None]) -> tuple[ImageSet, ImageSet | None]:
    if isinstance(data, DatasetSplits):
        train_set, validation_set = data.train, data.validation
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], ImageSet):
        train_set, validation_set = data
    else:
        message = (
            "Expected data to be what load_datasets returned, or a (train, validation) pair of ImageSet. "
            f"Received: data of type {type(data).__name__}"
        )
        raise ArgumentTypeError(message)
    if len(train_set) == 0:
        message = "Expected at least one training image. Received: an empty training split"
        raise ArgumentError(message)
    if validation_set is not None and len(validation_set) == 0:
        validation_set = None
    return train_set, validation_set


def _check_data_fits_model(model: CxrClassifier, train_set: ImageSet, validation_set: ImageSet | None) -> None:
    class_names = list(train_set.class_names)
    if len(class_names) != model.num_classes:
        message = (
            f"The model has {model.num_classes} outputs but the data has {len(class_names)} classes "
            f"{class_names}. Build the model with num_classes={len(class_names)}. "
            f"Received: num_classes={model.num_classes}"
        )
        raise ArgumentError(message)
    if model.class_names is not None and list(model.class_names) != class_names:
        message = (
            f"The model's class names {list(model.class_names)} differ from the data's. "
            f"Received: class_names={class_names}"
        )
        raise ArgumentError(message)
    for split in (train_set, validation_set):
        if split is not None and getattr(split, "lungs", None) != model.lungs:
            message = (
                f"The model expects images prepared with lungs={model.lungs!r}. Received: images loaded with "
                f"lungs={getattr(split, 'lungs', None)!r}; load them with load_datasets(..., lungs={model.lungs!r})"
            )
            raise ArgumentError(message)


def _needs_resizing(split: ImageSet | None, model: CxrClassifier) -> bool:
    return split is not None and tuple(split.images.shape[1:3]) != (model.image_size, model.image_size)


def _images_at_model_size(
    splits: Sequence[ImageSet | None], model: CxrClassifier, *, log: logging.Logger = logger,
) -> list[ImageSet | None]:
    """``splits`` with their images at the model's input size: those of another size resized, the others as they are.

    A split whose images already are ``model.image_size`` square is returned
    itself (no copy, nothing logged); ``None`` stays ``None``. Any other split
    is returned as a new :class:`~cxrclassify.datasets.ImageSet` with the same
    labels, records, class names and ``lungs`` and its images resized with
    :func:`~cxrclassify.datasets.resize` (Pillow's bilinear, reducing gap 2:
    what :func:`~cxrclassify.load_datasets` applies to the decoded files),
    one image at a time into a new ``uint8`` array, so that memory holds the
    split, its resized copy and one image. The split passed in is not changed.
    One INFO line on ``log`` says what was resized. Resizing an image that was
    already resized is not the same as resizing the original file once:
    loading at ``model.image_size`` is faster and exact.

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.datasets import ImageSet, Sample
    >>> from cxrclassify.training import _images_at_model_size
    >>> model = cxrclassify.build_model("vgg16", num_classes=2, weights=None, image_size=32)
    >>> split = ImageSet(np.zeros((2, 48, 48, 3), np.uint8), np.array([0, 1]),
    ...                  [Sample("a.png", "a"), Sample("b.png", "b")], ["a", "b"])
    >>> resized, missing = _images_at_model_size([split, None], model)
    >>> resized.images.shape, split.images.shape, missing
    ((2, 32, 32, 3), (2, 48, 48, 3), None)
    >>> _images_at_model_size([resized], model)[0] is resized
    True
    """
    size = model.image_size
    result: list[ImageSet | None] = []
    resized_shapes: list[str] = []
    for split in splits:
        if not _needs_resizing(split, model):
            result.append(split)
            continue
        try:
            result.append(split.resized(size))
        except DataError as error:
            raise ArgumentError(f"The model expects {size} x {size} RGB uint8 images. {error}") from None
        images = split.images
        resized_shapes.append(f"{len(images)} image{'' if len(images) == 1 else 's'} of "
                              f"{images.shape[1]} x {images.shape[2]}")
    if resized_shapes:
        log.info("Resized %s to the model's %d x %d input (bilinear, as load_datasets does). "
                 "load_datasets(..., image_size=%d) is faster and exact: it resizes the original files once.",
                 " and ".join(resized_shapes), size, size, size)
    return result
