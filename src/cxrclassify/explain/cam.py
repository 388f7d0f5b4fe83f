"""Grad-CAM through the classifier's nested, frozen base.

The usual way of computing Grad-CAM on a transfer-learning model (asking the
outer model for an inner layer's output) fails with a "graph disconnected" error
or returns ``None`` gradients, because the base is a model nested inside the
classifier. Here the base is split where Grad-CAM needs it: one model from the
base's input to both its last convolutional layer and its output; the head is
then applied to that output inside the same gradient tape.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from PIL import Image

from ..datasets._images import ImageInput, resize, to_rgb_uint8
from ..models import CxrClassifier

__all__ = ["grad_cam", "overlay_heatmap", "save_gradcam_overlay"]

_CAM_MODELS: "weakref.WeakKeyDictionary[CxrClassifier, dict[str, keras.Model]]" = weakref.WeakKeyDictionary()


def grad_cam(
    model: CxrClassifier,
    image: ImageInput,
    class_index: int | None = None,
    *,
    layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM heatmap of one image for the predicted (or a given) class.

    The gradient of the class's logit (not the saturated softmax) with respect
    to the last convolutional layer's feature maps weighs those maps; their
    positive weighted sum, scaled to ``[0, 1]`` and resized to the image's own
    size, is the heatmap (Selvaraju et al., ICCV 2017).

    Parameters
    ----------
    model : CxrClassifier
        A classifier from :func:`~cxrclassify.build_model`.
    image : path, PIL image or numpy array
        One chest X-ray of any size and mode.
    class_index : int, optional
        Class to explain; the predicted class when omitted.
    layer : str, optional
        Name of a convolutional layer of the base; the architecture's last
        convolutional layer when omitted.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float32 heatmap in ``[0, 1]`` at the image's original size.
        All zeros when no location raises the class's score.

    Raises
    ------
    ValueError
        If ``class_index`` is out of range or ``layer`` is not in the base.

    Examples
    --------
    >>> import cxrclassify
    >>> from cxrclassify.datasets import sample_records
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=64)
    >>> path = sample_records()[0].path
    >>> heatmap = cxrclassify.grad_cam(model, path)
    >>> heatmap.shape == cxrclassify.datasets.read_image(path).shape[:2]
    True
    >>> 0.0 <= float(heatmap.min()) and float(heatmap.max()) <= 1.0
    True
    """
    rgb = to_rgb_uint8(image)
    batch = resize(rgb, model.image_size)[None].astype(np.float32)
    if class_index is not None and not 0 <= int(class_index) < model.num_classes:
        message = (
            f"Expected class_index between 0 and {model.num_classes - 1}. Received: class_index={class_index}"
        )
        raise ValueError(message)
    cams = _grad_cam_batch(model, batch, None if class_index is None else [int(class_index)], layer)
    return _resize_heatmap(cams[0], rgb.shape[:2])


def _grad_cam_batch(
    model: CxrClassifier, batch: np.ndarray, class_indices: list[int] | None, layer: str | None
) -> np.ndarray:
    """Grad-CAM maps at feature-map resolution for a batch, one forward and backward pass."""
    cam_model = _cam_model(model, layer or model.spec.last_conv_layer)
    inputs = tf.convert_to_tensor(batch)
    with tf.GradientTape() as tape:
        # The base is frozen: the tape records nothing unless the input is watched,
        # and the gradient to the feature maps would be None.
        tape.watch(inputs)
        conv_maps, features = cam_model(model.preprocess(inputs), training=False)
        logits = model.head(features, training=False)
        chosen = tf.argmax(logits, axis=-1) if class_indices is None else tf.constant(class_indices)
        scores = tf.gather(logits, chosen, axis=1, batch_dims=1)
    gradients = tape.gradient(scores, conv_maps)
    if gradients is None:  # pragma: no cover - guarded by construction, kept as a clear failure.
        message = f"Grad-CAM found no gradient from the logits to layer {layer!r} of {model.arch!r}."
        raise RuntimeError(message)
    channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(channel_weights * conv_maps, axis=-1)).numpy()
    peaks = cams.max(axis=(1, 2), keepdims=True)
    return np.divide(cams, peaks, out=np.zeros_like(cams), where=peaks > 0).astype(np.float32)


def _cam_model(model: CxrClassifier, layer: str) -> keras.Model:
    """A model from the base's input to (``layer``'s output, the base's output), cached per classifier."""
    per_model = _CAM_MODELS.setdefault(model, {})
    if layer not in per_model:
        try:
            target = model.base.get_layer(layer)
        except ValueError:
            names = [candidate.name for candidate in model.base.layers if len(candidate.output.shape) == 4]
            message = (
                f"Layer {layer!r} is not in the {model.arch!r} base. Expected one of its 4-D layers, "
                f"for instance {names[-3:]}. Received: layer={layer!r}"
            )
            raise ValueError(message) from None
        per_model[layer] = keras.Model(model.base.inputs, [target.output, model.base.output])
    return per_model[layer]


def _resize_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    resized = Image.fromarray(np.ascontiguousarray(heatmap, dtype=np.float32)).resize((width, height), Image.Resampling.BILINEAR)
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
        raise ValueError(message)
    rgb = to_rgb_uint8(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != rgb.shape[:2]:
        heatmap = _resize_heatmap(heatmap, rgb.shape[:2])
    coloured = colormaps[colormap](np.clip(heatmap, 0.0, 1.0))[..., :3] * 255.0
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
