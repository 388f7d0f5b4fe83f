"""Class activation maps (Grad-CAM, Grad-CAM++, Score-CAM) through the classifier's nested base.

The usual way of computing Grad-CAM on a transfer-learning model (asking the
outer model for an inner layer's output) fails with a "graph disconnected" error
or returns ``None`` gradients, because the base is a model nested inside the
classifier. Here the base is split where the map is taken: one model from the
base's input to both the chosen layer's output and the base's output; the head
is then applied to that output inside the same gradient tape.

Every method works on a batch at once: :func:`class_activation_maps` takes an
``(N, S, S, 3)`` batch at the model's input size and returns ``(N, S, S)`` maps
with one forward (and, for the gradient methods, one backward) pass;
:func:`grad_cam` takes anything :func:`~cxrclassify.inference.predict` takes and returns
maps at each image's own size.

The passes are compiled: one ``tf.function`` per classifier and layer (cached
with the classifier, traced once, its batch dimension left free so that a
smaller last batch does not retrace it), not eager calls of the layers. Score-CAM
scores its masked images ``score_batch_size`` at a time, each chunk of masks
built inside the compiled pass, so its memory is that of one forward pass of
``score_batch_size`` images whatever the number of channels and images.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from ..datasets._images import ImageInput, to_rgb_uint8
from ..exceptions import ArgumentError, DataWarning, ModelError
from ..inference import (
    PredictInput,
    Predictions,
    SkippedInput,
    _check_on_error,
    _decoded_chunks,
    _expand_inputs,
    _forward,
    _predictions,
    _skipped_summary,
    model_inputs,
)
from ..models import CxrClassifier
from ..plots import _get_colormap, plot_cam_grid

__all__ = [
    "CAM_METHODS",
    "class_activation_maps",
    "explain_images",
    "grad_cam",
    "overlay_heatmap",
    "save_gradcam_overlay",
]

logger = logging.getLogger(__name__)

#: Names of the class-activation-map methods: Grad-CAM, Grad-CAM++ and Score-CAM.
CAM_METHODS = ("gradcam", "gradcam++", "scorecam")

_METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM"}

#: Default number of masked images Score-CAM scores per compiled forward pass (``score_batch_size``).
SCORECAM_BATCH_SIZE = 16

_CAM_MODELS: weakref.WeakKeyDictionary[CxrClassifier, dict[str, keras.Model]] = weakref.WeakKeyDictionary()
# Compiled passes. Keyed weakly by what they compute through and holding no strong reference to their key
# (only to its parts), so that they go with the classifier: nothing accumulates over models or calls.
_LAYER_FUNCTIONS: weakref.WeakKeyDictionary[object, "_LayerFunctions"] = weakref.WeakKeyDictionary()
_SCORE_FUNCTIONS: weakref.WeakKeyDictionary[CxrClassifier, "tf.types.experimental.PolymorphicFunction"] = (
    weakref.WeakKeyDictionary())


def grad_cam(
    model: CxrClassifier,
    images: PredictInput,
    class_index: int | Sequence[int] | None = None,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    batch_size: int = 16,
    max_channels: int = 256,
    score_batch_size: int = SCORECAM_BATCH_SIZE,
) -> np.ndarray | list[np.ndarray]:
    """Class activation maps of one or many images, for the predicted (or a given) class.

    ``method="gradcam"`` (the default) is Grad-CAM (Selvaraju et al., ICCV
    2017): the gradient of the class's logit (not the saturated softmax) with
    respect to a convolutional layer's feature maps, averaged over positions,
    weighs those maps; their positive weighted sum is the map.
    ``"gradcam++"`` (Chattopadhay et al., WACV 2018) weighs each position's
    positive gradient by the closed-form coefficients for an exponential of the
    logit, which spreads the map over several instances of the evidence.
    ``"scorecam"`` (Wang et al., CVPR Workshops 2020) uses no gradient: each
    channel's activation map, upsampled and scaled to ``[0, 1]``, masks the image,
    and how much the class's logit for the masked image exceeds its logit for a
    black image is the channel's weight (zero where it does not exceed it).
    These definitions differ from tf-keras-vis's and pytorch-grad-cam's in
    ways that change the maps: see :ref:`which-definitions`.

    Images are decoded, resized to the model's input size and explained
    ``batch_size`` at a time, each batch with one compiled forward and backward
    pass (see :func:`class_activation_maps`); each map is then resized to its
    image's own size.

    Parameters
    ----------
    model : CxrClassifier
        A classifier from :func:`~cxrclassify.models.build_model`.
    images : path, folder, PIL image, numpy array, ImageSet or list of these
        What :func:`~cxrclassify.inference.predict` takes: one image (a file path, a PIL
        image, an ``(H, W)`` or ``(H, W, C)`` array, ``C`` in 1, 3, 4), an
        ``(N, H, W, C)`` batch array (grayscale as ``(N, H, W, 1)``; see
        :func:`~cxrclassify.inference.predict` for the array rules), or a folder, an
        :class:`~cxrclassify.datasets.ImageSet` or a list.
    class_index : int or sequence of int, optional
        Class explained: one int for every image, or one per image; the
        predicted class of each image when omitted.
    method : {"gradcam", "gradcam++", "scorecam"}, default "gradcam"
        How the map is computed (see above).
    layer : str, optional
        Name of a 4-D layer of the base; the architecture's last convolutional
        layer when omitted.
    batch_size : int, default 16
        Images decoded and explained at a time; bounds memory.
    max_channels : int, default 256
        Score-CAM only: the number of channels (those with the highest mean
        activation) whose masked images are scored, per image.
    score_batch_size : int, default 16
        Score-CAM only: images per compiled forward pass, the masked copies
        (built chunk by chunk inside the pass) and the images themselves. It
        bounds memory: no pass holds more than this many images' activations,
        whatever ``max_channels`` and the number of images (``batch_size``
        images are decoded at a time, held as pixels). It does not change the
        maps.

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        float32 maps in ``[0, 1]`` at each image's original size: one ``(H, W)``
        map for one image, an ``(N, H, W)`` array for a batch array, a list of
        ``(H_i, W_i)`` maps, in input order, for a folder, an ImageSet or a list.
        A map is all zeros when no location raises the class's score (it is
        not rescaled from nothing).

    Raises
    ------
    ValueError
        If ``method`` is unknown, a class index is out of range or ``layer`` is
        not a 4-D layer of the base.
    cxrclassify.exceptions.DataError
        If there is no image, or a folder holds none.
    cxrclassify.exceptions.ImageDecodeError
        If an image cannot be decoded (the message names the file).

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.datasets import sample_records
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=64)
    >>> path = sample_records()[0].path
    >>> heatmap = cxrclassify.grad_cam(model, path)
    >>> heatmap.shape == cxrclassify.datasets.read_image(path).shape[:2]
    True
    >>> 0.0 <= float(heatmap.min()) and float(heatmap.max()) <= 1.0
    True
    >>> cxrclassify.grad_cam(model, np.zeros((3, 50, 40, 1), np.uint8), class_index=[0, 1, 2]).shape
    (3, 50, 40)
    """
    method = _check_method(method)
    _check_positive(batch_size, "batch_size")
    _check_positive(score_batch_size, "score_batch_size")
    _cam_model(model, layer or model.spec.last_conv_layer)  # a bad layer fails before any decoding
    names, items = _expand_inputs(images)
    chosen = _check_class_indices(model, class_index, len(items), "class_index")
    heatmaps = [
        heatmap
        for batch in _decoded_batches(model, items, batch_size, names)
        for heatmap in _batch_heatmaps(model, batch, chosen, method, layer, max_channels, score_batch_size)
    ]
    if _is_single_image(images):
        return heatmaps[0]
    if isinstance(images, np.ndarray):
        return np.stack(heatmaps)
    return heatmaps


def _is_single_image(images: object) -> bool:
    """Whether ``grad_cam`` returns one map for ``images`` (``predict``'s rule for one image)."""
    if isinstance(images, (str, os.PathLike)):
        return not Path(images).is_dir()
    if isinstance(images, Image.Image):
        return True
    if isinstance(images, np.ndarray):
        return images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (1, 3, 4))
    return False


class _Batch:
    """Images decoded at their own size, their indices in the input, and the batch at the model's size."""

    def __init__(self, indices: list[int], originals: list[np.ndarray], inputs: np.ndarray,
                 boxes: list[tuple[int, int, int, int]]):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.originals = originals
        self.inputs = inputs
        self.boxes = boxes


def _decoded_batches(
    model: CxrClassifier,
    items: list[object],
    batch_size: int,
    names: list[str] | None = None,
    on_error: str = "raise",
    skipped: list[SkippedInput] | None = None,
):
    """Batches of decoded inputs; with ``on_error="skip"`` the undecodable ones go to ``skipped`` instead."""
    names = names if names is not None else [f"<input {index}>" for index in range(len(items))]
    skipped = skipped if skipped is not None else []
    for indices, originals in _decoded_chunks(items, names, batch_size, on_error, skipped):
        yield _Batch(indices, originals, *model_inputs(model, originals))


def _batch_heatmaps(
    model: CxrClassifier, batch: _Batch, chosen: np.ndarray | None, method: str, layer: str | None, max_channels: int,
    score_batch_size: int = SCORECAM_BATCH_SIZE,
) -> list[np.ndarray]:
    classes = None if chosen is None else chosen[batch.indices]
    maps = class_activation_maps(model, batch.inputs, classes, method=method, layer=layer, max_channels=max_channels,
                                 score_batch_size=score_batch_size)
    return [_heatmap_on_image(heatmap, rgb.shape[:2], box) for heatmap, rgb, box in
            zip(maps, batch.originals, batch.boxes)]


def _heatmap_on_image(heatmap: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """A map of the model's input placed on the whole image: resized into ``box`` (the lung crop), zero outside."""
    top, left, bottom, right = box
    if (top, left, bottom, right) == (0, 0, *size):
        return _resize_heatmap(heatmap, size)
    placed = np.zeros(size, dtype=np.float32)
    placed[top:bottom, left:right] = _resize_heatmap(heatmap, (bottom - top, right - left))
    return placed


def explain_images(
    model: CxrClassifier,
    images: PredictInput,
    out: str | os.PathLike[str],
    *,
    method: str = "gradcam",
    class_index: int | Sequence[int] | None = None,
    layer: str | None = None,
    alpha: float = 0.4,
    colormap: str = "jet",
    grid: bool = True,
    grid_size: int = 16,
    batch_size: int = 16,
    max_channels: int = 256,
    on_error: str = "raise",
    score_batch_size: int = SCORECAM_BATCH_SIZE,
) -> list[Path]:
    """Classify and explain images; write overlays, raw maps, a grid figure and a CSV of predictions.

    For image ``i`` (its position in the input order) it writes
    ``NNNN_<name>_overlay.png`` (the map over the X-ray, see
    :func:`overlay_heatmap`) and ``NNNN_<name>_map.npy`` (the ``(H, W)`` float32
    map at the image's size); then ``predictions.csv`` and, with ``grid``,
    ``cam_grid.png``: the first ``grid_size`` images, titled with the predicted
    class and its probability, beside their overlays, titled with the method and
    the class explained (see :func:`~cxrclassify.plots.plot_cam_grid`).

    ``predictions.csv`` has one row per input, in input order: ``input``,
    ``label``, one probability column per class, ``ood_score``,
    ``out_of_distribution`` (what :func:`~cxrclassify.inference.predict` returns
    for the same model and images, from the same pass of the base), ``explained``
    (the class the map is for), ``overlay``, ``map`` (the file names) and
    ``error``: empty for an explained image; for an image skipped with
    ``on_error="skip"``, the reason it could not be decoded, every other cell
    but ``input`` empty (and no overlay or map is written for it, so ``NNNN``
    has a gap).

    Parameters
    ----------
    model : CxrClassifier
        A classifier.
    images : path, folder, PIL image, numpy array, ImageSet or list of these
        As for :func:`grad_cam`.
    out : path
        Output folder, created if needed.
    method, class_index, layer, batch_size, max_channels, score_batch_size
        As for :func:`grad_cam` (one class index per input, skipped inputs included).
    alpha, colormap
        As for :func:`overlay_heatmap`.
    grid : bool, default True
        Also write ``cam_grid.png`` (unless no image was explained).
    grid_size : int, default 16
        Most images shown in the grid.
    on_error : {"raise", "skip"}, default "raise"
        As for :func:`~cxrclassify.inference.predict`: ``"skip"`` leaves out the
        images that cannot be decoded (logged, in ``predictions.csv`` with their
        ``error``, counted in one :class:`~cxrclassify.exceptions.DataWarning`)
        and explains the others.

    Returns
    -------
    list of pathlib.Path
        The files written: overlays and maps image by image, then the CSV, then the grid.

    Raises
    ------
    cxrclassify.exceptions.ArgumentError
        If ``method``, ``alpha``, ``colormap``, ``batch_size``, ``layer``,
        ``class_index`` or ``on_error`` is not valid, or an array's shape is
        neither one image nor a batch (see :func:`~cxrclassify.inference.predict`).
    cxrclassify.exceptions.DataError
        If there is no image, or a folder holds none.
    cxrclassify.exceptions.ImageDecodeError
        With ``on_error="raise"``, if an image cannot be decoded (the message names it).

    Warns
    -----
    cxrclassify.exceptions.DataWarning
        With ``on_error="skip"``, once, when images were skipped.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> import cxrclassify
    >>> from cxrclassify.explain import explain_images
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32, class_names=["a", "b", "c"])
    >>> paths = explain_images(model, np.zeros((2, 40, 40, 1), np.uint8), tempfile.mkdtemp())
    >>> sorted(path.name for path in paths)[-4:]
    ['0001_array_1_map.npy', '0001_array_1_overlay.png', 'cam_grid.png', 'predictions.csv']
    """
    written, predictions = _explain_images(
        model, images, out, method=method, class_index=class_index, layer=layer, alpha=alpha,
        colormap=colormap, grid=grid, grid_size=grid_size, batch_size=batch_size, max_channels=max_channels,
        on_error=on_error, score_batch_size=score_batch_size,
    )
    if predictions.skipped:
        total = len(predictions) + len(predictions.skipped)
        warnings.warn(_skipped_summary(predictions.skipped, total), DataWarning, stacklevel=2)
    return written


def _explain_images(
    model: CxrClassifier,
    images: PredictInput,
    out: str | os.PathLike[str],
    *,
    method: str,
    class_index: int | Sequence[int] | None,
    layer: str | None,
    alpha: float,
    colormap: str,
    grid: bool,
    grid_size: int,
    batch_size: int,
    max_channels: int,
    on_error: str,
    score_batch_size: int = SCORECAM_BATCH_SIZE,
) -> tuple[list[Path], Predictions]:
    """:func:`explain_images` without its warning: the files written and the predictions (with ``skipped``)."""
    method = _check_method(method)
    _get_colormap(colormap)
    if not 0.0 <= alpha <= 1.0:
        message = f"Expected alpha between 0 and 1. Received: alpha={alpha}"
        raise ArgumentError(message)
    _check_positive(batch_size, "batch_size")
    _check_positive(score_batch_size, "score_batch_size")
    on_error = _check_on_error(on_error)
    _cam_model(model, layer or model.spec.last_conv_layer)
    names, items = _expand_inputs(images)
    chosen = _check_class_indices(model, class_index, len(items), "class_index")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    skipped: list[SkippedInput] = []
    kept: list[int] = []
    probabilities: list[np.ndarray] = []
    ood_scores: list[np.ndarray] = []
    explained: list[int] = []  # the class explained, per explained image
    by_input = np.zeros(len(items), dtype=np.int64)  # the same, by input index
    written: list[Path] = []
    files: list[tuple[str, str]] = []
    shown: list[tuple[np.ndarray, np.ndarray]] = []
    for batch in _decoded_batches(model, items, batch_size, names, on_error, skipped):
        # The same pass of the base as predict: probabilities and OOD scores equal to predict's.
        batch_probabilities, batch_scores = _forward(model, batch.inputs.astype(np.float32))
        batch_explained = batch_probabilities.argmax(axis=1) if chosen is None else chosen[batch.indices]
        by_input[batch.indices] = batch_explained
        heatmaps = _batch_heatmaps(model, batch, by_input, method, layer, max_channels, score_batch_size)
        for index, rgb, heatmap in zip(batch.indices.tolist(), batch.originals, heatmaps):
            stem = f"{index:04d}_{_file_stem(names[index])}"
            overlay = save_gradcam_overlay(rgb, heatmap, out / f"{stem}_overlay.png", alpha=alpha, colormap=colormap)
            raw = out / f"{stem}_map.npy"
            np.save(raw, heatmap)
            written += [overlay, raw]
            files.append((overlay.name, raw.name))
            if len(shown) < grid_size:
                shown.append((rgb, heatmap))
        kept += batch.indices.tolist()
        probabilities.append(batch_probabilities)
        ood_scores.append(batch_scores)
        explained += [int(value) for value in batch_explained]
    predictions = _predictions(model, [names[index] for index in kept], probabilities, ood_scores, skipped)
    written.append(_write_predictions_csv(out / "predictions.csv", predictions, explained, files))
    if grid and shown:
        class_names = predictions.class_names
        titles = [_grid_title(predictions, index) for index in range(len(shown))]
        explained_titles = [f"{_METHOD_TITLES[method]}: {class_names[explained[index]]}"
                            for index in range(len(shown))]
        plot_cam_grid([rgb for rgb, _ in shown], [heatmap for _, heatmap in shown], out / "cam_grid.png",
                      titles=titles, alpha=alpha, colormap=colormap, overlay_title=explained_titles)
        written.append(out / "cam_grid.png")
    if skipped:
        logger.info("Explained %d images with %s, skipped %d that could not be decoded; wrote %s",
                    len(predictions), method, len(skipped), out)
    else:
        logger.info("Explained %d images with %s; wrote %s", len(predictions), method, out)
    return written, predictions


def _file_stem(name: str) -> str:
    stem = Path(name).stem if not name.startswith("<") else name.strip("<>")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "image"


def _grid_title(predictions: Predictions, index: int, width: int = 30) -> str:
    """The image's file name (shortened to ``width`` characters), predicted class and probability."""
    name = predictions.inputs[index]
    name = name if name.startswith("<") else Path(name).name
    if len(name) > width:
        name = name[:width // 2 - 1] + "..." + name[-(width // 2 - 2):]
    probability = float(predictions.probabilities[index].max())
    return f"{name}\n{predictions.labels[index]} ({probability:.2f})"


def _write_predictions_csv(
    path: Path, predictions: Predictions, explained: list[int], files: list[tuple[str, str]]
) -> Path:
    """One row per input in input order: the explained images' predictions and files, the skipped ones' error."""
    fields = ["input", "label", *predictions.class_names, "ood_score", "out_of_distribution", "explained", "overlay",
              "map", "error"]
    extras = iter([{"explained": predictions.class_names[int(index)], "overlay": overlay, "map": raw}
                   for index, (overlay, raw) in zip(explained, files)])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in predictions.to_rows():
            extra = {} if row["error"] is not None else next(extras)
            writer.writerow({**row, **extra})
    return path


def class_activation_maps(
    model: CxrClassifier,
    batch: np.ndarray,
    class_indices: int | Sequence[int] | np.ndarray | None = None,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    max_channels: int = 256,
    score_batch_size: int = SCORECAM_BATCH_SIZE,
) -> np.ndarray:
    """Class activation maps of a batch already at the model's input size.

    The lower-level, batched function behind :func:`grad_cam`: no decoding, no
    resizing to the images' own sizes. Grad-CAM and Grad-CAM++ take one
    compiled forward and one backward pass for the whole batch. Score-CAM takes
    one forward pass of the images and one of a black image, then scores
    ``N * min(max_channels, channels)`` masked images ``score_batch_size`` at a
    time, each chunk of masks built inside the compiled pass: its memory is
    that of a forward pass of ``score_batch_size`` images, whatever ``N`` and
    ``max_channels``.

    Parameters
    ----------
    model : CxrClassifier
        A classifier from :func:`~cxrclassify.models.build_model`.
    batch : numpy.ndarray
        ``(N, S, S, 3)`` RGB images at the model's input size ``S``, ``uint8`` or
        float with values in ``[0, 255]`` (what the model itself takes).
    class_indices : int or sequence of int, optional
        Class explained: one int for every image, one per image, or the
        predicted class of each image when omitted.
    method : {"gradcam", "gradcam++", "scorecam"}, default "gradcam"
        See :func:`grad_cam`.
    layer : str, optional
        Name of a 4-D layer of the base; the architecture's last convolutional
        layer (``model.spec.last_conv_layer``) when omitted.
    max_channels : int, default 256
        Score-CAM only: the channels with the highest mean activation of each
        image used as masks (all channels when the layer has fewer).
    score_batch_size : int, default 16
        Score-CAM only: images per compiled forward pass, masked ones and the
        batch's own (which is scored in chunks of this size too). It bounds
        memory and does not change the maps.

    Returns
    -------
    numpy.ndarray
        ``(N, S, S)`` float32 maps in ``[0, 1]``, each scaled so that its maximum
        is 1, or all zeros when no location raises the class's score.

    Raises
    ------
    ValueError
        If ``method`` is unknown, ``batch`` has another shape, a class index is
        out of range or ``layer`` is not a 4-D layer of the base.

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.explain import class_activation_maps
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> batch = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    >>> maps = class_activation_maps(model, batch, class_indices=[0, 1, 2, 0], method="gradcam++")
    >>> maps.shape, maps.dtype, bool(0.0 <= maps.min() and maps.max() <= 1.0)
    ((4, 32, 32), dtype('float32'), True)
    """
    method = _check_method(method)
    inputs = _check_batch(model, batch)
    chosen = _check_class_indices(model, class_indices, len(inputs), "class_indices")
    cam_model = _cam_model(model, layer or model.spec.last_conv_layer)
    if len(inputs) == 0:
        return np.zeros((0, model.image_size, model.image_size), dtype=np.float32)
    if method == "scorecam":
        low_resolution = _score_cam(model, cam_model, inputs, chosen, _check_positive(max_channels, "max_channels"),
                                    _check_positive(score_batch_size, "score_batch_size"))
    else:
        low_resolution = _gradient_cam(model, cam_model, inputs, chosen, plus=method == "gradcam++")
    return _upsample_and_scale(low_resolution, model.image_size)


def _gradient_cam(
    model: CxrClassifier, cam_model: keras.Model, inputs: np.ndarray, chosen: np.ndarray | None, *, plus: bool
) -> np.ndarray:
    """Grad-CAM or Grad-CAM++ maps at the layer's resolution, one compiled forward and backward pass."""
    classes = np.full(len(inputs), -1, dtype=np.int32) if chosen is None else chosen
    conv_maps, gradients = _layer_functions(model, cam_model).gradients(tf.constant(inputs), tf.constant(classes))
    activations = conv_maps.numpy().astype(np.float64)
    gradients = gradients.numpy().astype(np.float64)
    if plus:
        weights = _gradcam_plus_plus_weights(activations, gradients)
    else:
        weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("nhwk,nk->nhw", activations, weights), 0.0)


class _LayerFunctions:
    """The compiled passes through one cam model (one classifier and layer), each traced once.

    The batch dimension of their signatures is free: a smaller last batch runs
    the same graph, without retracing or padding. They hold a weak reference to
    the cam model (their key in ``_LAYER_FUNCTIONS``), so they go with it.
    """

    def __init__(self, model: CxrClassifier, cam_model: keras.Model):
        # Only the parts: a reference to the classifier (or its cam model) would keep it alive forever.
        cam_ref, preprocess, head, arch = weakref.ref(cam_model), model.preprocess, model.head, model.arch
        images_spec = tf.TensorSpec((None, model.image_size, model.image_size, 3), tf.float32)

        @tf.function(input_signature=[images_spec, tf.TensorSpec((None,), tf.int32)], autograph=False)
        def gradients(images, classes):
            """The layer's feature maps and the gradient of each image's class logit (-1: predicted) to them."""
            with tf.GradientTape() as tape:
                # The base is frozen: the tape records nothing unless the input is watched,
                # and the gradient to the feature maps would be None.
                tape.watch(images)
                conv_maps, features = cam_ref()(preprocess(images), training=False)
                logits = head(features, training=False)
                predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
                indices = tf.where(classes < 0, predicted, classes)
                scores = tf.gather(logits, indices, axis=1, batch_dims=1)
            found = tape.gradient(scores, conv_maps)
            if found is None:  # pragma: no cover - guarded by construction, kept as a clear failure.
                message = f"Found no gradient from the logits to the chosen layer of {arch!r}."
                raise ModelError(message)
            return conv_maps, found

        @tf.function(input_signature=[images_spec], autograph=False)
        def activations(images):
            """The layer's feature maps and the logits."""
            conv_maps, features = cam_ref()(preprocess(images), training=False)
            return conv_maps, head(features, training=False)

        self.gradients = gradients
        self.activations = activations


def _layer_functions(model: CxrClassifier, cam_model: keras.Model) -> _LayerFunctions:
    functions = _LAYER_FUNCTIONS.get(cam_model)
    if functions is None:
        functions = _LAYER_FUNCTIONS[cam_model] = _LayerFunctions(model, cam_model)
    return functions


def _score_function(model: CxrClassifier):
    """The compiled masked pass of Score-CAM, one per classifier (cached; holds its parts, not the classifier).

    ``scores(images, index, low)`` takes ``(M, S, S, 3)`` images, ``(B,)`` indices
    into them and ``(B, h, w)`` activation maps; it upsamples each map bilinearly
    to ``S x S``, scales it to ``[0, 1]`` by its own range (a constant map becomes
    zeros), multiplies image ``index[i]`` by map ``i`` and returns the
    ``(B, classes)`` logits of the ``B`` masked images. A zero image gives the
    black image's logits. The images are gathered inside the graph: a chunk
    costs no copy of them.
    """
    function = _SCORE_FUNCTIONS.get(model)
    if function is not None:
        return function
    preprocess, base, head, size = model.preprocess, model.base, model.head, model.image_size

    @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32),
                                  tf.TensorSpec((None,), tf.int32),
                                  tf.TensorSpec((None, None, None), tf.float32)], autograph=False)
    def scores(images, index, low):
        masks = tf.image.resize(low[..., None], (size, size), method="bilinear")
        lowest = tf.reduce_min(masks, axis=(1, 2), keepdims=True)
        spread = tf.reduce_max(masks, axis=(1, 2), keepdims=True) - lowest
        masks = tf.math.divide_no_nan(masks - lowest, spread)
        masked = tf.gather(images, index) * masks
        return head(base(preprocess(masked), training=False), training=False)

    _SCORE_FUNCTIONS[model] = scores
    return scores


def _gradcam_plus_plus_weights(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM++ channel weights (Chattopadhay et al. 2018, closed form for an exponential score).

    With ``Y = exp(S)``, the higher derivatives are powers of the first-order
    gradient ``g`` of the logit ``S``: ``alpha = g^2 / (2 g^2 + sum(A) g^3)``
    and ``w_k = sum(alpha * relu(g))``, times ``exp(S)``, a positive factor per
    image that the scaling to ``[0, 1]`` removes (so it is left out: no overflow).
    """
    squared = gradients**2
    cubed = squared * gradients
    activation_sums = activations.sum(axis=(1, 2), keepdims=True)
    denominators = 2.0 * squared + activation_sums * cubed
    alphas = np.divide(squared, denominators, out=np.zeros_like(squared), where=denominators != 0.0)
    weights = (alphas * np.maximum(gradients, 0.0)).sum(axis=(1, 2))
    return np.nan_to_num(weights, nan=0.0, posinf=0.0, neginf=0.0)


def _score_cam(
    model: CxrClassifier, cam_model: keras.Model, inputs: np.ndarray, chosen: np.ndarray | None, max_channels: int,
    batch_size: int = SCORECAM_BATCH_SIZE,
) -> np.ndarray:
    """Score-CAM maps at the layer's resolution (Wang et al. 2020), the masked images scored in chunks.

    Each selected channel's activation map, upsampled to the input size and
    scaled to ``[0, 1]``, masks the image; the class's logit for the masked image
    minus its logit for a black image (the channel-wise increase of confidence)
    weighs the activation map, where positive. The images go ``batch_size`` at
    a time through one compiled pass for their feature maps, then their masked
    copies ``batch_size`` at a time, each chunk's masks built inside its pass:
    no pass holds more than ``batch_size`` images.
    """
    functions, scores_of = _layer_functions(model, cam_model), _score_function(model)
    size = model.image_size
    maps: list[np.ndarray] = []  # (count, h, w) per group, at the layer's resolution: small
    baseline = None
    for start in range(0, len(inputs), batch_size):
        group = tf.constant(inputs[start:start + batch_size])
        conv_maps, logits = functions.activations(group)
        activations = conv_maps.numpy().astype(np.float32)
        del conv_maps
        count, kept = activations.shape[0], min(max_channels, activations.shape[-1])
        classes = (np.argmax(logits.numpy(), axis=-1).astype(np.int32) if chosen is None
                   else chosen[start:start + count])
        # Per image, the channels with the highest mean activation (stable order for ties).
        order = np.argsort(-activations.mean(axis=(1, 2)), axis=-1, kind="stable")[:, :kept]
        selected = np.take_along_axis(activations, order[:, None, None, :], axis=-1)  # (count, h, w, kept)
        del activations
        if baseline is None:
            baseline = scores_of(tf.zeros((1, size, size, 3)), tf.zeros((1,), tf.int32),
                                 tf.zeros((1, *selected.shape[1:3]))).numpy()[0]
        scores = np.empty(count * kept, dtype=np.float64)
        for first in range(0, count * kept, batch_size):
            pairs = np.arange(first, min(first + batch_size, count * kept))
            images, channels_of_pairs = pairs // kept, pairs % kept
            low = np.ascontiguousarray(selected[images, :, :, channels_of_pairs])  # (chunk, h, w)
            chunk_logits = scores_of(group, tf.constant(images.astype(np.int32)), tf.constant(low)).numpy()
            scores[pairs] = chunk_logits[np.arange(len(pairs)), classes[images]] - baseline[classes[images]]
        # The channel-wise increase of confidence, kept where positive: a map is all zeros when no masked image
        # raises the class's score above the black image's.
        weights = np.maximum(scores.reshape(count, kept), 0.0)
        maps.append(np.maximum(np.einsum("nhwk,nk->nhw", selected.astype(np.float64), weights), 0.0))
    return np.concatenate(maps)


def _upsample_and_scale(maps: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(N, h, w)`` non-negative maps to ``(N, size, size)`` and divide each by its maximum."""
    upsampled = tf.image.resize(maps[..., None].astype(np.float32), (size, size), method="bilinear").numpy()[..., 0]
    upsampled = np.maximum(np.nan_to_num(upsampled, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    peaks = upsampled.max(axis=(1, 2), keepdims=True)
    scaled = np.divide(upsampled, peaks, out=np.zeros_like(upsampled), where=peaks > 0)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _check_method(method: str) -> str:
    name = str(method).lower().replace("-", "").replace("_", "")
    if name == "gradcampp":
        name = "gradcam++"
    if name not in CAM_METHODS:
        message = f"Unknown class activation map method. Expected one of {list(CAM_METHODS)}. Received: method={method!r}"
        raise ArgumentError(message)
    return name


def _check_positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        message = f"Expected {name} to be a positive integer. Received: {name}={value!r}"
        raise ArgumentError(message)
    return int(value)


def _check_batch(model: CxrClassifier, batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch)
    size = model.image_size
    if batch.ndim != 4 or batch.shape[1:] != (size, size, 3):
        message = (
            f"Expected a batch of shape (N, {size}, {size}, 3), RGB at the model's input size. "
            f"Received: batch of shape {batch.shape}"
        )
        raise ArgumentError(message)
    return batch.astype(np.float32)


def _check_class_indices(
    model: CxrClassifier, class_indices: object, count: int, name: str
) -> np.ndarray | None:
    """``None``, or one class index per image as an int32 array, checked against the model's classes."""
    if class_indices is None:
        return None
    values = np.asarray(class_indices)
    if values.ndim == 0:
        values = np.full(count, values)
    if values.ndim != 1 or len(values) != count or not np.issubdtype(values.dtype, np.integer):
        message = f"Expected an int or one integer class index per image ({count}). Received: {name}={class_indices!r}"
        raise ArgumentError(message)
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() >= model.num_classes):
        message = f"Expected {name} between 0 and {model.num_classes - 1}. Received: {name}={class_indices!r}"
        raise ArgumentError(message)
    return values.astype(np.int32)


def _cam_model(model: CxrClassifier, layer: str) -> keras.Model:
    """A model from the base's input to (``layer``'s output, the base's output), cached per classifier."""
    per_model = _CAM_MODELS.setdefault(model, {})
    if layer not in per_model:
        candidates = [candidate.name for candidate in model.base.layers if _is_4d(candidate)]
        try:
            target = model.base.get_layer(layer)
        except ValueError:
            target = None
        if target is None or not _is_4d(target):
            where = "is not in" if target is None else "is not a 4-D (feature-map) layer of"
            message = (
                f"Layer {layer!r} {where} the {model.arch!r} base. Expected one of its 4-D layers, "
                f"for instance {candidates[-3:]}. Received: layer={layer!r}"
            )
            raise ArgumentError(message)
        per_model[layer] = keras.Model(model.base.inputs, [target.output, model.base.output])
    return per_model[layer]


def _is_4d(layer: keras.layers.Layer) -> bool:
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):  # a layer used more than once has no single output
        return False


def _resize_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    heatmap = np.ascontiguousarray(heatmap, dtype=np.float32)
    if heatmap.shape == (height, width):
        return np.clip(heatmap, 0.0, 1.0)
    resized = Image.fromarray(heatmap).resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def overlay_heatmap(
    image: ImageInput, heatmap: np.ndarray, *, alpha: float = 0.4, colormap: str = "jet"
) -> np.ndarray:
    """Blend a heatmap, coloured with a matplotlib colormap, over an X-ray.

    Parameters
    ----------
    image : path, PIL image or numpy array
        The X-ray (grayscale or RGB).
    heatmap : numpy.ndarray
        ``(h, w)`` values in ``[0, 1]``; resized to the image's size if needed.
    alpha : float, default 0.4
        Opacity of the heatmap.
    colormap : str, default "jet"
        Name of a matplotlib colormap.

    Raises
    ------
    ValueError
        If ``alpha`` is not in ``[0, 1]`` or ``colormap`` names no matplotlib colormap.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` ``uint8`` RGB overlay.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.explain import overlay_heatmap
    >>> overlay_heatmap(np.zeros((20, 30), np.uint8), np.ones((5, 5))).shape
    (20, 30, 3)
    """
    if not 0.0 <= alpha <= 1.0:
        message = f"Expected alpha between 0 and 1. Received: alpha={alpha}"
        raise ArgumentError(message)
    rgb = to_rgb_uint8(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != rgb.shape[:2]:
        heatmap = _resize_heatmap(heatmap, rgb.shape[:2])
    coloured = _get_colormap(colormap)(np.clip(heatmap, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * coloured
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def save_gradcam_overlay(
    image: ImageInput,
    heatmap: np.ndarray,
    path: str | os.PathLike[str],
    *,
    alpha: float = 0.4,
    colormap: str = "jet",
) -> Path:
    """Write a Grad-CAM overlay (see :func:`overlay_heatmap`) as a PNG file.

    Parameters
    ----------
    image : path, PIL image or numpy array
        The X-ray the heatmap explains.
    heatmap : numpy.ndarray
        What :func:`grad_cam` returned for it.
    path : path
        Where to write the PNG; parent folders are created.
    alpha, colormap
        As in :func:`overlay_heatmap`.

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from cxrclassify import save_gradcam_overlay
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "overlay.png"
    >>> save_gradcam_overlay(np.zeros((16, 16), np.uint8), np.eye(16), out).is_file()
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_heatmap(image, heatmap, alpha=alpha, colormap=colormap)).save(path, format="PNG")
    return path
