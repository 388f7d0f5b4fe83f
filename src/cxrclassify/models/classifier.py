"""``CxrClassifier``: preprocessing, a base network and a head, as one Keras model."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
from pathlib import Path
from typing import Any, Sequence

import keras
from keras import ops

from .._version import __version__
from ..augment import derive_seed
from ..segmentation.options import check_lungs
from ..exceptions import ArgumentError, ArgumentTypeError, MissingFileError, ModelError, WeightsUnavailableError
from ._registry import ArchSpec, get_spec
from .heads import build_head
from .layers import Preprocessing
from .ood import build_ood
from .pretrained import WEIGHTS_MIRROR_ENV, fetch_pretrained, list_pretrained

__all__ = ["CxrClassifier", "build_model"]

logger = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="cxrclassify")
class CxrClassifier(keras.Model):
    """A chest X-ray classifier: preprocessing, a (frozen) base network and a head.

    Takes ``(N, S, S, 3)`` RGB images with values in ``[0, 255]`` and returns
    class probabilities. Its parts are reachable as ``preprocess``, ``base`` and
    ``head`` (the head outputs logits), and ``get_config()`` round-trips, so a
    saved classifier reloads with its class names and settings. Build it with
    :func:`build_model`. Its ``ood`` layer (a
    :class:`~cxrclassify.models.ood.MahalanobisOOD`, fitted by
    :func:`~cxrclassify.models.ood.fit_ood`) scores how unlike the training
    images an image's base features are; it is saved with the model and not
    part of its output.

    Parameters
    ----------
    arch : str
        Registered architecture name (see :func:`~cxrclassify.models.list_models`).
    num_classes : int
        Number of classes.
    class_names : sequence of str, optional
        Name of each output, set by :func:`~cxrclassify.train` when omitted.
    image_size : int, optional
        Side of the square input; the architecture's default when omitted.
    preprocessing : str, optional
        Input preprocessing mode; the architecture's own when omitted.
    head : {"paper", "gap"}
        Head layout (see :func:`~cxrclassify.models.build_head`).
    head_units : int
        Width of the head's hidden layer.
    dropout : float
        Dropout rate of the head.
    base_weights : str or None
        ``"imagenet"``, ``None`` or a path to a weights file for the base. Not part
        of the config: a reloaded classifier gets its weights from the saved file.
    base_trainable : bool or int
        ``False``: the base is frozen (the paper); ``True``: all of it is trained;
        an int ``n``: only its top ``n`` blocks are (see :meth:`set_trainable_blocks`).
    metadata : dict, optional
        Free-form, JSON-serialisable facts kept with the model (weights used, ...).
    temperature : float, default 1.0
        Logits are divided by it before the softmax (temperature scaling; 1.0 changes nothing).
    seed : int, optional
        Makes the initial weights a function of it: the head's initialisers
        and dropout are seeded from ``derive_seed(seed, "head")``, and the base
        is constructed with Python's ``random`` (where Keras draws the seeds of
        unseeded initialisers) seeded from ``derive_seed(seed, "base")``, then
        restored. ``None`` (the class's default; :func:`build_model`'s is 0):
        Keras's own unseeded draws. Kept in the config, so a reloaded model
        says how it was built.
    lungs : {None, "crop", "mask"}, optional
        The lung-field preprocessing its inputs get before they are resized
        (see :mod:`cxrclassify.segmentation.options`): applied by
        :func:`~cxrclassify.predict` and :func:`~cxrclassify.grad_cam` to the
        images they decode, expected of the data :func:`~cxrclassify.train`
        gets, and kept in the config so a saved model keeps it. Not applied
        by calling the model on an array: that array is taken as prepared.
    ood : {"mahalanobis", "knn"}, default "mahalanobis"
        The out-of-distribution score of its ``ood`` layer (see
        :mod:`cxrclassify.models.ood`); kept in the config.
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        *,
        class_names: Sequence[str] | None = None,
        image_size: int | None = None,
        preprocessing: str | None = None,
        head: str = "paper",
        head_units: int = 256,
        dropout: float = 0.5,
        base_weights: str | os.PathLike[str] | None = None,
        base_trainable: bool | int = False,
        metadata: dict[str, Any] | None = None,
        temperature: float = 1.0,
        seed: int | None = None,
        lungs: str | None = None,
        ood: str = "mahalanobis",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        spec = get_spec(arch)
        self.seed = _check_seed(seed)
        self.lungs = check_lungs(lungs)
        self.arch = spec.name
        self.num_classes = _check_num_classes(num_classes)
        self.class_names = None if class_names is None else _check_class_names(class_names, num_classes)
        self.image_size = int(image_size or spec.default_input_size)
        _check_image_size(spec, self.image_size)
        self.preprocessing = preprocessing or spec.preprocessing
        self.head_kind = head
        self.head_units = int(head_units)
        self.dropout = float(dropout)
        self.metadata = dict(metadata or {})
        self._temperature = _check_temperature(temperature)
        self.preprocess = Preprocessing(self.preprocessing, name="preprocessing")
        with _python_random_seeded(None if self.seed is None else derive_seed(self.seed, "base")):
            self.base = _construct_base(spec, base_weights, self.image_size)
        self.trainable_blocks: bool | int = False
        self.set_trainable_blocks(base_trainable)
        feature_shape = tuple(self.base.output.shape[1:])
        self.head = build_head(head, feature_shape, self.num_classes, units=self.head_units, dropout=self.dropout,
                               seed=None if self.seed is None else derive_seed(self.seed, "head"))
        self.ood_method = ood
        self.ood = build_ood(ood, self.num_classes, int(feature_shape[-1]))
        self.build((None, self.image_size, self.image_size, 3))

    @property
    def spec(self) -> ArchSpec:
        """The registry entry of this classifier's architecture."""
        return get_spec(self.arch)

    @property
    def temperature(self) -> float:
        """Divisor of the logits before the softmax (set by temperature scaling)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = _check_temperature(value)
        # Compiled predict functions hold the old value as a constant: rebuild them.
        self.predict_function = None

    @property
    def base_trainable(self) -> bool:
        """Whether any weight of the base network is trained."""
        return bool(self.base.trainable_weights)

    @property
    def blocks(self) -> list[str]:
        """The base's blocks, bottom to top, as the registry's ``block_pattern`` names them."""
        return [block for block in dict.fromkeys(_layer_blocks(self.base, self.spec).values()) if block is not None]

    def set_trainable_blocks(self, blocks: bool | int) -> None:
        """Choose what of the base is trained: nothing, everything, or its top ``blocks`` blocks.

        Batch-normalisation layers stay frozen (and run in inference mode), as is
        usual when fine-tuning on small data.

        Parameters
        ----------
        blocks : bool or int
            ``False`` or ``0``: frozen; ``True``: all; ``n``: the top ``n`` blocks.

        Examples
        --------
        >>> import cxrclassify
        >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
        >>> model.set_trainable_blocks(1)
        >>> sorted({layer.name.split("_")[0] for layer in model.base.layers if layer.trainable_weights})
        ['block5']
        """
        self.trainable_blocks = _set_trainable_blocks(self.base, self.spec, blocks)

    def build(self, input_shape):
        self.preprocess.build(input_shape)
        self.built = True

    def features(self, images, training: bool = False):
        """The base's feature maps for ``images`` (``[0, 255]`` RGB)."""
        return self.base(self.preprocess(images), training=False)

    def logits(self, images, training: bool = False):
        """Class logits (pre-softmax scores) for ``images``."""
        return self.head(self.features(images), training=training)

    def probabilities_from_features(self, features, training: bool = False):
        """Class probabilities from the base's feature maps: the head, the temperature, the softmax.

        What :meth:`call` does after the base, for callers that also need the
        features (prediction with the out-of-distribution score, the audit).
        """
        logits = self.head(features, training=training)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return ops.softmax(logits, axis=-1)

    def call(self, inputs, training: bool = False):
        return self.probabilities_from_features(self.features(inputs), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "class_names": None if self.class_names is None else list(self.class_names),
            "image_size": self.image_size,
            "preprocessing": self.preprocessing,
            "head": self.head_kind,
            "head_units": self.head_units,
            "dropout": self.dropout,
            "base_trainable": self.trainable_blocks,
            "metadata": self.metadata,
            "temperature": self.temperature,
            "seed": self.seed,
            "lungs": self.lungs,
            "ood": self.ood_method,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "CxrClassifier":
        return cls(**config)


def build_model(
    arch: str = "vgg16",
    num_classes: int = 3,
    *,
    weights: str | os.PathLike[str] | None = "imagenet",
    class_names: Sequence[str] | None = None,
    image_size: int | None = None,
    preprocessing: str | None = None,
    head: str = "paper",
    head_units: int = 256,
    dropout: float = 0.5,
    freeze_base: bool = True,
    trainable_blocks: int | None = None,
    weights_mirror: str | os.PathLike[str] | None = None,
    seed: int | None = 0,
    lungs: str | None = None,
    ood: str = "mahalanobis",
) -> CxrClassifier:
    """Build a transfer-learning classifier: a frozen ImageNet base and a fully connected head.

    Parameters
    ----------
    arch : str, default "vgg16"
        ``"vgg16"``, ``"resnet50"``, ``"xception"`` (the paper's), ``"mobilenetv2"``,
        or any architecture added with :func:`~cxrclassify.models.register_model`.
    num_classes : int, default 3
        Number of classes (COVID-19, normal, other pneumonia in the paper).
    weights : {"imagenet", None} or path, default "imagenet"
        Weights of the base: Keras's ImageNet weights (downloaded by Keras on
        first use), ``None`` for random initialisation, or the path of a
        ``.weights.h5`` file of the base without its top.
    class_names : sequence of str, optional
        Name of each class, in output order; set by :func:`~cxrclassify.train`
        from the data when omitted.
    image_size : int, optional
        Side of the square input in pixels (237 for the paper's architectures).
    preprocessing : {"caffe", "tf", "torch", "none"}, optional
        Input preprocessing built into the model; defaults to what the
        architecture's Keras ImageNet weights expect. Set it when a weights file
        was trained with another one (``"torch"`` for torchvision weights).
    head : {"paper", "gap"}, default "paper"
        The paper's flatten + fully connected head, or global pooling + dropout + dense.
    head_units : int, default 256
        Width of the hidden fully connected layer of the ``"paper"`` head.
    dropout : float, default 0.5
        Dropout rate of the head.
    freeze_base : bool, default True
        Keep the base's weights fixed while training (the paper's setting);
        ``False`` trains all of it.
    trainable_blocks : int, optional
        Train only the base's top ``trainable_blocks`` blocks (fine-tuning);
        overrides ``freeze_base``. Batch normalisation stays frozen.
    weights_mirror : str or path, optional
        A base URL or folder holding the Keras ImageNet files by their names, for
        offline sites; defaults to the ``CXRCLASSIFY_WEIGHTS_MIRROR`` environment
        variable. With a mirror, ``weights="imagenet"`` is fetched into the
        library's cache and verified against the hash Keras records for the file
        (see :func:`~cxrclassify.models.list_pretrained`).
    seed : int or None, default 0
        Seed of the initial weights: the head's (its dense layers' initialisers
        and its dropout) and, with ``weights=None``, the base's. The same seed
        builds the same weights in any process; different seeds, different
        heads (build an ensemble with ``seed=0, 1, ...``). ``None``: Keras's
        unseeded draws, different at each call unless
        ``keras.utils.set_random_seed`` was called first. Recorded in
        ``get_config()``. :func:`~cxrclassify.train`'s own ``seed`` seeds what
        is drawn while training; a run repeats when both are the same.
    lungs : {None, "crop", "mask"}, optional
        Lung-field preprocessing of its inputs: crop each image to the box of
        its segmented lungs, or black out what is not lung, before resizing
        (see :mod:`cxrclassify.segmentation.options`). Kept in the model:
        ``predict`` and ``grad_cam`` apply it; load training data with the
        same ``load_datasets(..., lungs=...)`` (``train`` checks).
    ood : {"mahalanobis", "knn"}, default "mahalanobis"
        The out-of-distribution score :func:`~cxrclassify.train` fits and
        :func:`~cxrclassify.predict` reports: the Mahalanobis distance to the
        nearest class mean, or the cosine distance to the nearest training
        image, which flags more of an unseen hospital's X-rays on the recipe
        benchmark (see :mod:`cxrclassify.models.ood`). Kept in the config.

    Returns
    -------
    CxrClassifier
        A Keras model from ``[0, 255]`` RGB images to class probabilities.

    Raises
    ------
    ValueError
        If ``arch`` is unknown (the message lists the valid names), or
        ``num_classes``, ``image_size``, ``head`` or ``seed`` is invalid.
    TypeError
        If ``seed`` is neither an int nor ``None``.
    FileNotFoundError
        If ``weights`` names a file that does not exist.
    cxrclassify.exceptions.ModelError
        If a weights file does not fit the architecture.
    cxrclassify.exceptions.WeightsUnavailableError
        If the ImageNet weights cannot be downloaded (for instance offline).

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=64)
    >>> model.arch, model.image_size, model.base.trainable
    ('vgg16', 64, False)
    >>> model(np.zeros((2, 64, 64, 3))).shape
    TensorShape([2, 3])

    The same seed (0 by default) builds the same weights; another seed, another head:

    >>> same = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=64)
    >>> other = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=64, seed=1)
    >>> all(np.array_equal(a, b) for a, b in zip(model.get_weights(), same.get_weights()))
    True
    >>> np.array_equal(model.head.get_weights()[0], other.head.get_weights()[0])
    False
    """
    weights_description = "random initialisation" if weights is None else os.fspath(weights)
    mirror = weights_mirror if weights_mirror is not None else (os.environ.get(WEIGHTS_MIRROR_ENV) or None)
    if weights == "imagenet" and mirror is not None:
        name = f"{get_spec(arch).name}.imagenet"
        if name not in list_pretrained():
            message = (
                f"No verifiable ImageNet weights record for {arch!r} to fetch from a mirror. Expected one of "
                f"{list_pretrained(kind='base')}. Received: weights_mirror={os.fspath(mirror)!r}"
            )
            raise ModelError(message)
        weights = fetch_pretrained(name, mirror=mirror)
        weights_description = f"imagenet (Keras file {Path(weights).name}, via mirror)"
    return CxrClassifier(
        arch,
        num_classes,
        class_names=class_names,
        image_size=image_size,
        preprocessing=preprocessing,
        head=head,
        head_units=head_units,
        dropout=dropout,
        base_weights=weights,
        base_trainable=trainable_blocks if trainable_blocks is not None else not freeze_base,
        metadata={"base_weights": weights_description, "cxrclassify_version": __version__},
        seed=seed,
        lungs=lungs,
        ood=ood,
    )


def _layer_blocks(base: keras.Model, spec: ArchSpec) -> dict[str, str | None]:
    """The block of each layer of ``base``: the last block named by ``spec.block_pattern`` so far."""
    pattern = re.compile(spec.block_pattern) if spec.block_pattern else None
    blocks: dict[str, str | None] = {}
    current = None
    for layer in base.layers:
        match = pattern.match(layer.name) if pattern else None
        current = match.group(1) if match else current
        blocks[layer.name] = current
    return blocks


def _set_trainable_blocks(base: keras.Model, spec: ArchSpec, blocks: bool | int) -> bool | int:
    if isinstance(blocks, bool) or blocks == 0:
        base.trainable = bool(blocks)
        if blocks:
            _freeze_batch_norm(base)
        return bool(blocks)
    if not isinstance(blocks, int) or blocks < 0:
        message = f"Expected a bool or a non-negative number of blocks. Received: blocks={blocks!r}"
        raise ArgumentError(message)
    layer_blocks = _layer_blocks(base, spec)
    ordered = [block for block in dict.fromkeys(layer_blocks.values()) if block is not None]
    if not ordered:
        message = (
            f"Architecture {spec.name!r} names no blocks (its ArchSpec has no block_pattern): it can be frozen "
            f"or trained whole. Received: blocks={blocks}"
        )
        raise ArgumentError(message)
    if blocks > len(ordered):
        message = f"{spec.name!r} has {len(ordered)} blocks. Received: blocks={blocks}"
        raise ArgumentError(message)
    top = set(ordered[len(ordered) - blocks:])
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer_blocks[layer.name] in top
    _freeze_batch_norm(base)
    return blocks


def _freeze_batch_norm(base: keras.Model) -> None:
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _check_seed(seed: int | None) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        message = f"Expected seed to be an int or None. Received: seed={seed!r} of type {type(seed).__name__}"
        raise ArgumentTypeError(message)
    if seed < 0:
        message = f"Expected seed to be a non-negative int. Received: seed={seed}"
        raise ArgumentError(message)
    return int(seed)


@contextlib.contextmanager
def _python_random_seeded(seed: int | None):
    """Run the block with Python's ``random`` seeded from ``seed`` (nothing when ``None``), then restore it.

    An initialiser given no seed takes one from Python's ``random`` when it is
    made (``keras.random.make_default_seed``), and so does a dropout layer's
    seed generator: seeding it makes every weight a network constructed in the
    block starts from a function of ``seed``, whatever the network's layers,
    without touching the caller's random state.
    """
    if seed is None:
        yield
        return
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        message = f"Expected a positive temperature. Received: temperature={temperature!r}"
        raise ArgumentError(message)
    return float(temperature)


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        message = f"Expected num_classes to be an integer of at least 2. Received: num_classes={num_classes!r}"
        raise ArgumentError(message)
    return num_classes


def _check_class_names(class_names: Sequence[str], num_classes: int) -> list[str]:
    names = [str(name) for name in class_names]
    if len(names) != num_classes or len(set(names)) != len(names):
        message = (
            f"Expected {num_classes} distinct class names, one per output. Received: class_names={names}"
        )
        raise ArgumentError(message)
    return names


def _check_image_size(spec: ArchSpec, image_size: int) -> None:
    if image_size < spec.min_input_size:
        message = (
            f"Architecture {spec.name!r} needs inputs of at least {spec.min_input_size} x "
            f"{spec.min_input_size} pixels. Received: image_size={image_size}"
        )
        raise ArgumentError(message)


def _construct_base(spec: ArchSpec, weights: str | os.PathLike[str] | None, image_size: int) -> keras.Model:
    input_shape = (image_size, image_size, 3)
    if weights is None:
        return spec.constructor(include_top=False, weights=None, input_shape=input_shape)
    if weights == "imagenet":
        try:
            return spec.constructor(include_top=False, weights="imagenet", input_shape=input_shape)
        except Exception as error:  # Keras raises a bare Exception when the download fails.
            message = (
                f"Could not obtain the ImageNet weights of {spec.name!r} (Keras downloads them on first "
                f"use; this machine may be offline): {error}. Pass weights=None for random "
                "initialisation, or weights=<path to a .weights.h5 file of the base without its top>."
            )
            raise WeightsUnavailableError(message) from error
    path = Path(weights)
    if not path.is_file():
        message = (
            f"Expected weights to be 'imagenet', None or the path of a weights file. "
            f"Received: weights={os.fspath(weights)!r}, which is not a file"
        )
        raise MissingFileError(message)
    base = spec.constructor(include_top=False, weights=None, input_shape=input_shape)
    try:
        base.load_weights(str(path))
    except (ValueError, OSError, KeyError) as error:
        message = (
            f"The weights file {str(path)!r} does not fit architecture {spec.name!r} without its top "
            f"(expected a file saved from keras.applications.{base.name} with include_top=False): {error}"
        )
        raise ModelError(message) from error
    logger.info("Loaded %s base weights from %s", spec.name, path)
    return base
