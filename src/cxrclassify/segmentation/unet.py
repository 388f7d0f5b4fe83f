"""The lung segmentation network: a small U-Net on one grayscale channel.

The network takes float32 ``(N, S, S, 1)`` grayscale pixel values in
``[0, 255]`` and returns ``(N, S, S, 1)`` lung probabilities (a sigmoid). Each
image is standardised inside the network (its own mean and standard
deviation), so that films of very different brightness and contrast look alike
to the first convolution.

The layout is Ronneberger et al.'s U-Net (MICCAI 2015), shrunk: ``depth``
levels of two 3 x 3 convolutions (batch normalisation, ReLU) with
``base_filters`` doubling at each level, max pooling on the way down, bilinear
upsampling, a 3 x 3 convolution and the skip connection on the way up. With
the defaults (``base_filters=8``, ``depth=4``) it has 542,641 weights: about
2.4 MB as a ``.weights.h5`` file, trainable on a CPU in minutes.

This module imports nothing from the library but its exceptions.
"""

from __future__ import annotations

import logging

import keras
from keras import ops

from ..exceptions import ArgumentError

__all__ = ["DEFAULT_INPUT_SIZE", "ImageStandardization", "build_lung_unet"]

logger = logging.getLogger(__name__)

#: The side of the square grayscale input of the shipped network.
DEFAULT_INPUT_SIZE = 128


@keras.saving.register_keras_serializable(package="cxrclassify")
class ImageStandardization(keras.layers.Layer):
    """Standardise each image by its own mean and standard deviation.

    ``(x - mean) / max(std, 1)``, over the height, width and channels of each
    image (the floor of 1, on the 0..255 scale, keeps a constant image finite).

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation.unet import ImageStandardization
    >>> x = np.array([[[[0.0], [255.0]]]], dtype="float32")
    >>> ImageStandardization()(x).numpy().ravel().round(3).tolist()
    [-1.0, 1.0]
    """

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = ops.sqrt(ops.mean(ops.square(x - mean), axis=(1, 2, 3), keepdims=True))
        return (x - mean) / ops.maximum(std, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape


def _check_whole(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        message = f"Expected {name} to be an int of at least {minimum}. Received: {name}={value!r}"
        raise ArgumentError(message)
    return value


def build_lung_unet(
    input_size: int = DEFAULT_INPUT_SIZE,
    seed: int = 0,
    *,
    base_filters: int = 8,
    depth: int = 4,
) -> keras.Model:
    """Build the small U-Net that segments the lungs on a grayscale chest X-ray.

    Every weight is drawn from an initialiser seeded from ``seed`` (each layer
    its own ``seed + i``), so that the same arguments build the same weights,
    whatever the global random state.

    Parameters
    ----------
    input_size : int, optional
        Side of the square input, a multiple of ``2 ** depth`` (16 by default).
    seed : int, optional
        Seed of the weight initialisers.
    base_filters : int, optional
        Filters of the first level; each level down doubles them.
    depth : int, optional
        Number of poolings (levels below the first), at least 1.

    Returns
    -------
    keras.Model
        Named ``"lung_unet"``: float32 ``(N, input_size, input_size, 1)``
        grayscale in ``[0, 255]`` in, ``(N, input_size, input_size, 1)`` lung
        probabilities out. Not compiled.

    Raises
    ------
    ArgumentError
        If an argument is not a whole number in range, or ``input_size`` is
        not a multiple of ``2 ** depth``.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.segmentation import build_lung_unet
    >>> model = build_lung_unet(32, base_filters=4, depth=2)
    >>> model.predict(np.zeros((1, 32, 32, 1), "float32"), verbose=0).shape
    (1, 32, 32, 1)
    >>> build_lung_unet(30)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cxrclassify.exceptions.ArgumentError: Expected input_size to be a multiple of 2 ** depth = 16 ... Received: input_size=30
    """
    depth = _check_whole(depth, "depth", minimum=1)
    input_size = _check_whole(input_size, "input_size", minimum=2**depth)
    base_filters = _check_whole(base_filters, "base_filters", minimum=1)
    seed = _check_whole(seed, "seed", minimum=0)
    if input_size % 2**depth:
        message = (
            f"Expected input_size to be a multiple of 2 ** depth = {2**depth} (the network pools {depth} times). "
            f"Received: input_size={input_size}"
        )
        raise ArgumentError(message)

    counter = iter(range(seed, seed + 10_000))

    def conv(x, filters: int, name: str, kernel: int = 3):
        x = keras.layers.Conv2D(
            filters, kernel, padding="same", use_bias=False, name=f"{name}_conv",
            kernel_initializer=keras.initializers.HeNormal(seed=next(counter)),
        )(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        return keras.layers.Activation("relu", name=f"{name}_relu")(x)

    inputs = keras.Input((input_size, input_size, 1), name="grayscale")
    x = ImageStandardization(name="standardize")(inputs)
    skips = []
    for level in range(depth):
        filters = base_filters * 2**level
        x = conv(x, filters, f"down{level}a")
        x = conv(x, filters, f"down{level}b")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level}")(x)
    filters = base_filters * 2**depth
    x = conv(x, filters, "bottom_a")
    x = conv(x, filters, "bottom_b")
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}")(x)
        x = conv(x, filters, f"up{level}_in")
        x = keras.layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = conv(x, filters, f"up{level}a")
        x = conv(x, filters, f"up{level}b")
    outputs = keras.layers.Conv2D(
        1, 1, activation="sigmoid", name="lungs",
        kernel_initializer=keras.initializers.GlorotUniform(seed=next(counter)),
    )(x)
    model = keras.Model(inputs, outputs, name="lung_unet")
    logger.debug("Built lung_unet: input %d px, %d filters, depth %d, %d weights",
                 input_size, base_filters, depth, model.count_params())
    return model
