"""``predict``: class probabilities and labels for files, folders, arrays or PIL images."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
from keras import ops
from PIL import Image
from tqdm.auto import tqdm

from .datasets import ImageSet
from .datasets._images import is_image_file, resize, to_rgb_uint8
from .exceptions import DataError
from .models import CxrClassifier

__all__ = ["Predictions", "predict"]

logger = logging.getLogger(__name__)

PredictInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray, ImageSet, Iterable[object]]


@dataclass
class Predictions:
    """What :func:`predict` returns, in input order.

    Attributes
    ----------
    probabilities : numpy.ndarray
        ``(N, num_classes)`` class probabilities; rows sum to 1.
    class_indices : numpy.ndarray
        ``(N,)`` index of the most probable class.
    labels : list of str
        Name of the most probable class.
    class_names : list of str
        Name of each column of ``probabilities``.
    inputs : list of str
        The file path of each input, or ``"<array 3>"`` / ``"<PIL image 0>"``
        for in-memory images.
    ood_scores : numpy.ndarray
        ``(N,)`` out-of-distribution score of each image (see
        :class:`~cxrclassify.models.ood.MahalanobisOOD`); ``nan`` when the
        model's OOD score was never fitted.
    out_of_distribution : numpy.ndarray
        ``(N,)`` bool: the score is above the model's OOD threshold (all
        ``False`` when not fitted).

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32,
    ...                                 class_names=["covid19", "normal", "pneumonia"])
    >>> result = cxrclassify.predict(model, np.zeros((2, 40, 40), np.uint8))
    >>> len(result), result.probabilities.shape, result.labels[0] in result.class_names
    (2, (2, 3), True)
    """

    probabilities: np.ndarray
    class_indices: np.ndarray
    labels: list[str]
    class_names: list[str]
    inputs: list[str]
    ood_scores: np.ndarray | None = None
    out_of_distribution: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.ood_scores is None:
            self.ood_scores = np.full(len(self.labels), np.nan, dtype=np.float32)
        if self.out_of_distribution is None:
            self.out_of_distribution = np.zeros(len(self.labels), dtype=bool)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def has_ood_scores(self) -> bool:
        """Whether any input has an OOD score (the model's OOD score was fitted)."""
        return bool(np.isfinite(self.ood_scores).any())

    def to_rows(self) -> list[dict[str, object]]:
        """One dict per input: ``input``, ``label``, one probability column per class, ``ood_score`` and
        ``out_of_distribution`` (``nan`` and ``False`` when the model's OOD score is not fitted).
        """
        return [
            {"input": name, "label": label, **dict(zip(self.class_names, map(float, row))),
             "ood_score": float(score), "out_of_distribution": bool(flagged)}
            for name, label, row, score, flagged in zip(self.inputs, self.labels, self.probabilities,
                                                        self.ood_scores, self.out_of_distribution)
        ]


def predict(model: CxrClassifier, inputs: PredictInput, *, batch_size: int = 16, progress: bool = False) -> Predictions:
    """Classify chest X-rays.

    Parameters
    ----------
    model : CxrClassifier
        A trained classifier.
    inputs : path, folder, PIL image, numpy array, ImageSet or list of these
        A file path, a folder (every PNG, JPEG and DICOM file below it, sorted by path), a
        PIL image, an ``(H, W)`` or ``(H, W, C)`` image array (``C`` in 1, 3, 4), an
        ``(N, H, W, C)`` or ``(N, H, W)`` batch array, an
        :class:`~cxrclassify.datasets.ImageSet`, or a list mixing paths, PIL
        images and single-image arrays. Images of any size and mode are decoded
        to RGB and resized to the model's input size.
    batch_size : int, default 16
        Images decoded and classified at a time; bounds memory.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    Predictions
        Probabilities, predicted indices and labels, in input order, and each
        image's out-of-distribution score and flag (``nan`` and ``False`` when
        the model's OOD score was never fitted, see
        :func:`~cxrclassify.models.ood.fit_ood`). Both come from one pass of
        the base per batch.

    Raises
    ------
    cxrclassify.exceptions.DataError
        If there is no input, or a folder holds no image.
    cxrclassify.exceptions.ImageDecodeError
        If an image cannot be decoded (the message names the file).

    Examples
    --------
    >>> import cxrclassify
    >>> from cxrclassify.datasets import sample_dir
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32,
    ...                                 class_names=["covid19", "normal", "pneumonia"])
    >>> result = cxrclassify.predict(model, sample_dir() / "images" / "normal")
    >>> len(result)
    16
    """
    names, items = _expand_inputs(inputs)
    probabilities = np.zeros((len(items), model.num_classes), dtype=np.float32)
    ood_scores = np.full(len(items), np.nan, dtype=np.float32)
    if not model.ood.is_fitted:
        logger.info("The model's OOD score is not fitted (see cxrclassify.models.ood.fit_ood): no OOD scores")
    batches = range(0, len(items), batch_size)
    for start in tqdm(batches, desc="Predicting", unit="batch", disable=not progress):
        batch = np.stack([_prepare(item, model.image_size) for item in items[start:start + batch_size]])
        stop = start + len(batch)
        probabilities[start:stop], ood_scores[start:stop] = _forward(model, batch.astype(np.float32))
    class_names = list(model.class_names or [f"class_{index}" for index in range(model.num_classes)])
    class_indices = probabilities.argmax(axis=1)
    return Predictions(probabilities, class_indices, [class_names[i] for i in class_indices], class_names, names,
                       ood_scores, model.ood.is_out_of_distribution(ood_scores))


def _forward(model: CxrClassifier, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (as ``model(batch)``) and OOD scores of a batch, from one pass of the base.

    Eager calls of the parts, not ``predict_on_batch`` (which returns one copy per
    replica under a tf.distribute strategy); the head, temperature and softmax are
    :meth:`CxrClassifier.probabilities_from_features`, as in :meth:`CxrClassifier.call`.
    """
    features = model.features(batch)
    probabilities = ops.convert_to_numpy(model.probabilities_from_features(features))
    return probabilities, ops.convert_to_numpy(model.ood(features))


def _prepare(item: object, image_size: int) -> np.ndarray:
    return resize(to_rgb_uint8(item), image_size)


def _expand_inputs(inputs: PredictInput) -> tuple[list[str], list[object]]:
    """Flatten ``inputs`` to a list of single images and a display name for each."""
    if isinstance(inputs, ImageSet):
        return list(inputs.paths), list(inputs.images)
    names: list[str] = []
    items: list[object] = []
    for name, item in _iterate_inputs(inputs):
        names.append(name)
        items.append(item)
    if not items:
        message = f"Expected at least one image to classify. Received: inputs={inputs!r}"
        raise DataError(message)
    return names, items


def _iterate_inputs(inputs: object) -> Iterator[tuple[str, object]]:
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if path.is_dir():
            files = sorted(file for file in path.rglob("*") if is_image_file(file))
            if not files:
                message = f"Found no PNG, JPEG or DICOM image in the folder {str(path)!r}. Received: an empty folder"
                raise DataError(message)
            yield from ((str(file), file) for file in files)
        else:
            yield str(path), path
    elif isinstance(inputs, Image.Image):
        yield "<PIL image 0>", inputs
    elif isinstance(inputs, np.ndarray):
        if inputs.ndim == 4 or (inputs.ndim == 3 and inputs.shape[-1] not in (1, 3, 4)):
            yield from ((f"<array {index}>", image) for index, image in enumerate(inputs))
        else:
            yield "<array 0>", inputs
    elif isinstance(inputs, Sequence) or hasattr(inputs, "__iter__"):
        for index, item in enumerate(inputs):
            if isinstance(item, (str, os.PathLike)):
                yield from _iterate_inputs(item)
            elif isinstance(item, Image.Image):
                yield f"<PIL image {index}>", item
            elif isinstance(item, np.ndarray):
                yield f"<array {index}>", item
            else:
                message = (
                    "Expected each input to be a path, a PIL image or a numpy array. "
                    f"Received: input {index} of type {type(item).__name__}"
                )
                raise TypeError(message)
    else:
        message = (
            "Expected inputs to be a path, a folder, a PIL image, a numpy array or a list of these. "
            f"Received: inputs of type {type(inputs).__name__}"
        )
        raise TypeError(message)
