"""``predict``: class probabilities and labels for files, folders, arrays or PIL images."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Union

import numpy as np
from keras import ops
from PIL import Image
from tqdm.auto import tqdm

from .datasets import ImageSet
from .datasets._images import is_image_file, resize, to_rgb_uint8
from .segmentation.options import prepare_lung_fields
from .exceptions import ArgumentError, ArgumentTypeError, DataError, DataWarning, ImageDecodeError
from .models import CxrClassifier

__all__ = ["ON_ERROR", "Predictions", "SkippedInput", "predict"]

logger = logging.getLogger(__name__)

PredictInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray, ImageSet, Iterable[object]]

#: Values of ``on_error``: ``"raise"`` stops at the first image that cannot be decoded,
#: ``"skip"`` leaves it out and lists it in :attr:`Predictions.skipped`.
ON_ERROR = ("raise", "skip")

#: Channel counts of an image array's last axis: grayscale, RGB, RGBA.
_CHANNELS = (1, 3, 4)

#: numpy dtype kinds of pixel arrays: bool, signed and unsigned integers, floats.
_PIXEL_KINDS = "biuf"


@dataclass(frozen=True)
class SkippedInput:
    """An input that :func:`predict` (or :func:`~cxrclassify.explain.explain_images`) left out with ``on_error="skip"``.

    Attributes
    ----------
    index : int
        Its position in the input order (a folder's images sorted by path, lists flattened),
        counting the skipped inputs too.
    input : str
        Its file path, or ``"<array 3>"`` / ``"<PIL image 0>"`` for in-memory images.
    reason : str
        The message of the :class:`~cxrclassify.exceptions.ImageDecodeError` it raised.

    Examples
    --------
    >>> from cxrclassify.inference import SkippedInput
    >>> SkippedInput(2, "scans/broken.png", "Could not decode image file 'scans/broken.png'").input
    'scans/broken.png'
    """

    index: int
    input: str
    reason: str


@dataclass(eq=False)
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
    skipped : list of SkippedInput
        The inputs left out because they could not be decoded (``on_error="skip"``), in input
        order; empty otherwise. They have no row in the arrays above (``N`` counts the
        classified images only) but have one in :meth:`to_rows`.

    Notes
    -----
    Two ``Predictions`` are equal (``==``) when every attribute is: arrays are
    compared with :func:`numpy.array_equal` (``nan`` OOD scores equal to each
    other), lists element by element. They are mutable, hence not hashable.

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32,
    ...                                 class_names=["covid19", "normal", "pneumonia"])
    >>> result = cxrclassify.predict(model, np.zeros((2, 40, 40, 1), np.uint8))
    >>> len(result), result.probabilities.shape, result.labels[0] in result.class_names
    (2, (2, 3), True)
    >>> result == cxrclassify.predict(model, [np.zeros((40, 40), np.uint8)] * 2)
    True
    """

    probabilities: np.ndarray
    class_indices: np.ndarray
    labels: list[str]
    class_names: list[str]
    inputs: list[str]
    ood_scores: np.ndarray | None = None
    out_of_distribution: np.ndarray | None = None
    skipped: list[SkippedInput] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ood_scores is None:
            self.ood_scores = np.full(len(self.labels), np.nan, dtype=np.float32)
        if self.out_of_distribution is None:
            self.out_of_distribution = np.zeros(len(self.labels), dtype=bool)

    def __len__(self) -> int:
        return len(self.labels)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Predictions):
            return NotImplemented
        return all(_field_equal(getattr(self, item.name), getattr(other, item.name)) for item in fields(self))

    __hash__ = None  # type: ignore[assignment]  # mutable, with array fields

    @property
    def has_ood_scores(self) -> bool:
        """Whether any input has an OOD score (the model's OOD score was fitted)."""
        return bool(np.isfinite(self.ood_scores).any())

    def to_rows(self, *, include_skipped: bool = True) -> list[dict[str, object]]:
        """One dict per input, in input order, skipped inputs included.

        Each has ``input``, ``label``, one probability column per class, ``ood_score``,
        ``out_of_distribution`` (``nan`` and ``False`` when the model's OOD score is not
        fitted) and ``error``: ``None`` for a classified image; for an input in
        :attr:`skipped`, the reason it could not be decoded, every other value ``None``
        (an empty cell in a CSV file).

        Parameters
        ----------
        include_skipped : bool, default True
            Also give a row to each input in :attr:`skipped`, at its place in the input order.

        Examples
        --------
        >>> import numpy as np
        >>> from cxrclassify.inference import Predictions, SkippedInput
        >>> result = Predictions(np.array([[0.25, 0.75]]), np.array([1]), ["b"], ["a", "b"], ["x.png"],
        ...                      skipped=[SkippedInput(0, "bad.png", "not an image")])
        >>> [(row["input"], row["b"], row["error"]) for row in result.to_rows()]
        [('bad.png', None, 'not an image'), ('x.png', 0.75, None)]
        """
        rows = [
            {"input": name, "label": label, **dict(zip(self.class_names, map(float, row))),
             "ood_score": float(score), "out_of_distribution": bool(flagged), "error": None}
            for name, label, row, score, flagged in zip(self.inputs, self.labels, self.probabilities,
                                                        self.ood_scores, self.out_of_distribution)
        ]
        if not include_skipped or not self.skipped:
            return rows
        empty = {"label": None, **{name: None for name in self.class_names}, "ood_score": None,
                 "out_of_distribution": None}
        pending = sorted(self.skipped, key=lambda skipped: skipped.index)
        merged: list[dict[str, object]] = []
        kept = 0
        for position in range(len(rows) + len(pending)):
            if pending and (pending[0].index <= position or kept == len(rows)):
                skipped = pending.pop(0)
                merged.append({"input": skipped.input, **empty, "error": skipped.reason})
            else:
                merged.append(rows[kept])
                kept += 1
        return merged


def _field_equal(left: object, right: object) -> bool:
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        left, right = np.asarray(left), np.asarray(right)
        nan_aware = np.issubdtype(left.dtype, np.inexact) and np.issubdtype(right.dtype, np.inexact)
        return bool(np.array_equal(left, right, equal_nan=nan_aware))
    return bool(left == right)


def predict(
    model: CxrClassifier,
    inputs: PredictInput,
    *,
    batch_size: int = 16,
    progress: bool = False,
    on_error: str = "raise",
) -> Predictions:
    """Classify chest X-rays.

    Parameters
    ----------
    model : CxrClassifier
        A trained classifier.
    inputs : path, folder, PIL image, numpy array, ImageSet or list of these
        A file path, a folder (every PNG, JPEG and DICOM file below it, sorted by path), a
        PIL image, a numpy array (one image or a batch: see Notes), an
        :class:`~cxrclassify.datasets.ImageSet`, or a list mixing paths, folders, PIL
        images and single-image arrays (``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
        ``(H, W, 4)``; of any sizes). Images of any size and mode are decoded to RGB
        and resized to the model's input size (see
        :func:`~cxrclassify.datasets.to_rgb_uint8` for the pixel values accepted).
    batch_size : int, default 16
        Images decoded and classified at a time; bounds memory. A positive integer.
    progress : bool, default False
        Show a progress bar.
    on_error : {"raise", "skip"}, default "raise"
        What an image that cannot be decoded (an unreadable or corrupt file, an
        array that is not an image) does: ``"raise"`` its
        :class:`~cxrclassify.exceptions.ImageDecodeError`; ``"skip"``: it is left
        out, logged (WARNING), listed in :attr:`Predictions.skipped` with the reason,
        and one :class:`~cxrclassify.exceptions.DataWarning` gives the count. The
        other images are classified, in input order. It does not apply to problems
        of ``inputs`` as a whole (its type, a batch array's shape or dtype, an
        empty folder), which always raise.

    Returns
    -------
    Predictions
        Probabilities, predicted indices and labels, in input order, and each
        image's out-of-distribution score and flag (``nan`` and ``False`` when
        the model's OOD score was never fitted, see
        :func:`~cxrclassify.models.ood.fit_ood`). Both come from one pass of
        the base per batch. With ``on_error="skip"``, the inputs left out are in
        ``skipped``; every input may have been (then the result has no row).

    Raises
    ------
    cxrclassify.exceptions.ArgumentError
        If ``batch_size`` is not a positive integer, ``on_error`` is not
        ``"raise"`` or ``"skip"``, or an array passed as ``inputs`` has a shape
        that is neither one image nor a batch (see Notes).
    cxrclassify.exceptions.ArgumentTypeError
        If ``model`` is not a :class:`~cxrclassify.models.CxrClassifier`, or
        ``inputs`` (or an item of a list) is of another type.
    cxrclassify.exceptions.DataError
        If there is no input, or a folder holds no image.
    cxrclassify.exceptions.ImageDecodeError
        If an array passed as ``inputs`` does not hold numbers (an object or
        string array), or, with ``on_error="raise"``, an image cannot be decoded
        (the message names the file, or the ``"<array i>"`` of a list).

    Warns
    -----
    cxrclassify.exceptions.DataWarning
        With ``on_error="skip"``, once, when images were skipped.

    Notes
    -----
    A numpy array passed as ``inputs`` is read by its number of dimensions:

    ==========================================  ============================================
    array                                       read as
    ==========================================  ============================================
    ``(H, W)``                                  one grayscale image
    ``(H, W, C)``, ``C`` in 1, 3, 4             one image (grayscale, RGB, RGBA)
    ``(N, H, W, C)``, ``C`` in 1, 3, 4          a batch of ``N`` images
    any other 3-D array: ``(5, 40, 40)``, ...   ambiguous: ArgumentError
    1-D, 5-D, or 4-D with another ``C``         ArgumentError
    not numbers (object or string dtype)        ImageDecodeError
    ==========================================  ============================================

    A 3-D array whose last axis is not 1, 3 or 4 could be a batch of grayscale
    images or one image with too many channels, so it is refused rather than
    guessed.
    Pass a batch of grayscale images as ``(N, H, W, 1)`` (``images[..., None]``)
    or as a list of ``(H, W)`` arrays; images of different sizes as a list.

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.datasets import sample_dir
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32,
    ...                                 class_names=["covid19", "normal", "pneumonia"])
    >>> result = cxrclassify.predict(model, sample_dir() / "images" / "normal")
    >>> len(result)
    16
    >>> len(cxrclassify.predict(model, np.zeros((5, 40, 40, 1), np.uint8)))  # 5 grayscale images
    5

    With ``on_error="skip"``, an unreadable file is left out and listed:

    >>> import pathlib, tempfile, warnings
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "broken.png").write_bytes(b"not an image")
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", cxrclassify.DataWarning)
    ...     result = cxrclassify.predict(model, [folder / "broken.png", np.zeros((40, 40), np.uint8)],
    ...                                  on_error="skip")
    >>> result.inputs, [skipped.input for skipped in result.skipped] == [str(folder / "broken.png")]
    (['<array 1>'], True)
    """
    _check_model(model)
    batch_size = _check_batch_size(batch_size)
    on_error = _check_on_error(on_error)
    names, items = _expand_inputs(inputs)
    if not model.ood.is_fitted:
        logger.info("The model's OOD score is not fitted (see cxrclassify.models.ood.fit_ood): no OOD scores")
    skipped: list[SkippedInput] = []
    kept: list[int] = []
    probabilities: list[np.ndarray] = []
    ood_scores: list[np.ndarray] = []
    chunks = _decoded_chunks(items, names, batch_size, on_error, skipped)
    total = -(-len(items) // batch_size)
    for indices, images in tqdm(chunks, total=total, desc="Predicting", unit="batch", disable=not progress):
        batch_probabilities, batch_scores = _forward(model, model_inputs(model, images)[0])
        kept += indices
        probabilities.append(batch_probabilities)
        ood_scores.append(batch_scores)
    if skipped:
        warnings.warn(_skipped_summary(skipped, len(items)), DataWarning, stacklevel=2)
    return _predictions(model, [names[index] for index in kept], probabilities, ood_scores, skipped)


def _predictions(
    model: CxrClassifier,
    names: list[str],
    probabilities: list[np.ndarray],
    ood_scores: list[np.ndarray],
    skipped: list[SkippedInput],
) -> Predictions:
    """Predictions from per-batch probabilities and OOD scores (possibly no batch at all)."""
    class_names = list(model.class_names or [f"class_{index}" for index in range(model.num_classes)])
    stacked = (np.concatenate(probabilities).astype(np.float32, copy=False) if probabilities
               else np.zeros((0, model.num_classes), dtype=np.float32))
    scores = (np.concatenate(ood_scores).astype(np.float32, copy=False) if ood_scores
              else np.zeros(0, dtype=np.float32))
    class_indices = stacked.argmax(axis=1)
    return Predictions(stacked, class_indices, [class_names[i] for i in class_indices], class_names, names,
                       scores, model.ood.is_out_of_distribution(scores), skipped)


def _forward(model: CxrClassifier, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (as ``model(batch)``) and OOD scores of a batch, from one pass of the base.

    Eager calls of the parts, not ``predict_on_batch`` (which returns one copy per
    replica under a tf.distribute strategy); the head, temperature and softmax are
    :meth:`CxrClassifier.probabilities_from_features`, as in :meth:`CxrClassifier.call`.
    """
    features = model.features(batch)
    probabilities = ops.convert_to_numpy(model.probabilities_from_features(features))
    return probabilities, ops.convert_to_numpy(model.ood(features))


def model_inputs(
    model: CxrClassifier, images: list[np.ndarray]
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Decoded RGB images as the model's input batch: its ``lungs`` preprocessing, then resized.

    Returns the ``(N, S, S, 3)`` float32 batch and, per image, the box of the
    image the model sees (the lung box for ``lungs="crop"``, the whole image
    otherwise), as :func:`~cxrclassify.segmentation.options.prepare_lung_fields`.

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.inference import model_inputs
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> batch, boxes = model_inputs(model, [np.zeros((40, 50, 3), np.uint8)])
    >>> batch.shape, boxes
    ((1, 32, 32, 3), [(0, 0, 40, 50)])
    """
    prepared, boxes = prepare_lung_fields(images, model.lungs)
    batch = np.stack([resize(rgb, model.image_size) for rgb in prepared]).astype(np.float32)
    return batch, boxes


def _decoded_chunks(
    items: list[object],
    names: list[str],
    batch_size: int,
    on_error: str,
    skipped: list[SkippedInput],
) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """``batch_size`` inputs at a time: the input indices decoded and their RGB images.

    With ``on_error="skip"`` an input whose decoding raises ImageDecodeError is logged
    and appended to ``skipped``; a chunk of which nothing decoded is not yielded.
    """
    for start in range(0, len(items), batch_size):
        indices: list[int] = []
        images: list[np.ndarray] = []
        for index in range(start, min(start + batch_size, len(items))):
            try:
                rgb = _decode(items[index], names[index])
            except ImageDecodeError as error:
                if on_error == "raise":
                    raise
                logger.warning("Skipped %s: %s", names[index], error)
                skipped.append(SkippedInput(index, names[index], str(error)))
                continue
            indices.append(index)
            images.append(rgb)
        if indices:
            yield indices, images


def _decode(item: object, name: str) -> np.ndarray:
    """``to_rgb_uint8(item)``; the ImageDecodeError of an in-memory image names it (a file's names the file)."""
    if isinstance(item, (str, os.PathLike)):
        return to_rgb_uint8(item)
    try:
        if isinstance(item, np.ndarray) and item.dtype.kind not in _PIXEL_KINDS:
            message = (f"Expected an image array of numbers (bool, integers or floats). "
                       f"Received: dtype={item.dtype}")
            raise ImageDecodeError(message)
        return to_rgb_uint8(item)
    except ImageDecodeError as error:
        message = f"Could not decode {name}: {error}"
        raise ImageDecodeError(message) from error
    except OSError as error:
        if not isinstance(item, Image.Image):
            raise
        # A PIL image is read lazily: a truncated or corrupt file fails only now, with Pillow's OSError.
        message = (f"Could not decode {name}: expected a PIL image whose pixel data can be read. "
                   f"Received: an unreadable image ({type(error).__name__}: {error})")
        raise ImageDecodeError(message) from error


def _skipped_summary(skipped: list[SkippedInput], total: int) -> str:
    first = skipped[0]
    more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    return (f"Skipped {len(skipped)} of {total} inputs that could not be decoded ({first.input}{more}); "
            "each is listed, with the reason, in Predictions.skipped and logged.")


def _check_model(model: object) -> None:
    if not isinstance(model, CxrClassifier):
        message = ("Expected model to be a CxrClassifier (see cxrclassify.build_model or "
                   f"cxrclassify.load_model). Received: model of type {type(model).__name__}")
        raise ArgumentTypeError(message)


def _check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        message = f"Expected batch_size to be a positive integer. Received: batch_size={batch_size!r}"
        raise ArgumentError(message)
    return int(batch_size)


def _check_on_error(on_error: object) -> str:
    if not isinstance(on_error, str) or on_error not in ON_ERROR:
        message = (f"Expected on_error to be one of {list(ON_ERROR)}: raise the error of an image that cannot "
                   f"be decoded, or skip it. Received: on_error={on_error!r}")
        raise ArgumentError(message)
    return on_error


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
                message = f"Found no PNG, JPEG, TIFF or DICOM image in the folder {str(path)!r}. Received: an empty folder"
                raise DataError(message)
            yield from ((str(file), file) for file in files)
        else:
            yield str(path), path
    elif isinstance(inputs, Image.Image):
        yield "<PIL image 0>", inputs
    elif isinstance(inputs, np.ndarray):
        if _is_batch_array(inputs):
            yield from ((f"<array {index}>", image) for index, image in enumerate(inputs))
        else:
            yield "<array 0>", inputs
    elif not isinstance(inputs, (bytes, bytearray, memoryview, Mapping)) and (
            isinstance(inputs, Sequence) or hasattr(inputs, "__iter__")):
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
                raise ArgumentTypeError(message)
    else:
        message = (
            "Expected inputs to be a path, a folder, a PIL image, a numpy array, an ImageSet or a list of these. "
            f"Received: inputs of type {type(inputs).__name__}"
        )
        raise ArgumentTypeError(message)


def _is_batch_array(array: np.ndarray) -> bool:
    """Whether an array passed as ``inputs`` is a batch (True) or one image (False); raise if neither.

    The rules of :func:`predict`'s Notes: ``(N, H, W, C)`` with ``C`` in 1, 3, 4 is a batch,
    ``(H, W)`` and ``(H, W, C)`` with ``C`` in 1, 3, 4 one image; any other shape is refused,
    as is an array that does not hold numbers.
    """
    if array.dtype.kind not in _PIXEL_KINDS:
        message = (
            "Expected inputs to be an array of pixel values (bool, integers or floats); for images of "
            "different sizes, or file paths, pass a list. "
            f"Received: inputs.dtype={array.dtype} (shape {array.shape})"
        )
        raise ImageDecodeError(message)
    if array.ndim == 4 and array.shape[-1] in _CHANNELS:
        return True
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in _CHANNELS):
        return False
    if array.ndim == 3:
        message = (
            "Ambiguous image array: a 3-D array is one image only when its last axis (channels) is 1, 3 or 4, "
            "and a batch must be 4-D. Pass a batch of grayscale images as (N, H, W, 1) (images[..., None]) "
            f"or as a list of (H, W) arrays, or one image as (H, W). Received: inputs.shape={array.shape}"
        )
    else:
        message = (
            "Expected inputs to be one image array, (H, W) or (H, W, C), or a batch (N, H, W, C), "
            f"with C in 1, 3 or 4 channels. Received: inputs.shape={array.shape}"
        )
    raise ArgumentError(message)
