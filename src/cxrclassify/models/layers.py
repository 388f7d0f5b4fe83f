"""Layers the classifiers are built from, registered for safe (de)serialisation."""

from __future__ import annotations

import keras
from keras import ops

from ._registry import PREPROCESSING_MODES
from ..exceptions import ArgumentError

__all__ = ["Preprocessing"]

_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="cxrclassify")
class Preprocessing(keras.layers.Layer):
    """Map RGB pixel values in ``[0, 255]`` to what a base network's weights expect.

    Parameters
    ----------
    mode : str
        ``"caffe"`` (RGB to BGR, ImageNet mean subtracted: VGG16, ResNet50),
        ``"tf"`` (scaled to ``[-1, 1]``: Xception, MobileNetV2),
        ``"torch"`` (scaled to ``[0, 1]``, ImageNet mean and std: torchvision weights)
        or ``"none"``.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.models import Preprocessing
    >>> Preprocessing("tf")(np.array([[[[0.0, 127.5, 255.0]]]])).numpy().round(3).tolist()
    [[[[-1.0, 0.0, 1.0]]]]
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            message = f"Expected mode to be one of {PREPROCESSING_MODES}. Received: mode={mode!r}"
            raise ArgumentError(message)
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
