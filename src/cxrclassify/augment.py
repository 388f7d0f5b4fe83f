"""``Augmentation``: small, seeded geometric and intensity changes to chest X-rays.

The ranges are deliberately small: a chest radiograph is taken in a standard
position, and large rotations or shifts make images no scanner produces.
Horizontal flips are off by default because anatomy is not left-right
symmetric (the heart is on the patient's left; a mirrored film is a different,
rare condition, dextrocardia).

The transformations are Keras's own preprocessing layers
(``RandomFlip``, ``RandomRotation``, ``RandomZoom``, ``RandomTranslation``,
``RandomBrightness``, ``RandomContrast``), applied to ``[0, 255]`` images with an
explicit seed, so that the same seed always gives the same images: the views
:func:`~cxrclassify.train` caches, and the batches it augments when the base is
fine-tuned, can be reproduced and resumed exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Iterator

import keras
import numpy as np
from .exceptions import ArgumentError

__all__ = ["Augmentation", "augment_images", "augmented_chunks", "derive_seed"]

#: Images transformed with one seed draw. Part of what a seed means, so fixed.
AUGMENT_CHUNK = 32

_FILL_MODES = ("constant", "nearest", "reflect", "wrap")


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random changes made to training images.

    Each image gets its own draw, uniform within each range.

    Parameters
    ----------
    rotation : float, default 5.0
        Largest rotation, in degrees, either way.
    shift : float, default 0.05
        Largest shift, as a fraction of the image side, along each axis.
    zoom : float, default 0.1
        Largest zoom in or out, as a fraction of the image side (aspect kept).
    brightness : float, default 0.1
        Largest brightness change, as a fraction of the ``[0, 255]`` range.
    contrast : float, default 0.1
        Largest contrast change: the contrast is multiplied by a factor in
        ``[1 - contrast, 1 + contrast]``.
    horizontal_flip : bool, default False
        Mirror half of the images left-right. Off: anatomy is not symmetric.
    fill_mode : {"constant", "nearest", "reflect", "wrap"}, default "constant"
        How the pixels a rotation, shift or zoom uncovers are filled
        (``"constant"``: black, like the film's unexposed border).

    Raises
    ------
    ValueError
        If a range is negative or too large, or ``fill_mode`` is unknown.

    Examples
    --------
    >>> from cxrclassify.augment import Augmentation
    >>> Augmentation()  # doctest: +NORMALIZE_WHITESPACE
    Augmentation(rotation=5.0, shift=0.05, zoom=0.1, brightness=0.1, contrast=0.1,
                 horizontal_flip=False, fill_mode='constant')
    >>> Augmentation(rotation=0, brightness=0.2).to_dict()["brightness"]
    0.2
    """

    rotation: float = 5.0
    shift: float = 0.05
    zoom: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    horizontal_flip: bool = False
    fill_mode: str = "constant"

    def __post_init__(self) -> None:
        limits = {"rotation": 180.0, "shift": 1.0, "zoom": 1.0, "brightness": 1.0, "contrast": 1.0}
        for name, limit in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < limit:
                message = f"Expected {name} to be a number in [0, {limit:g}). Received: {name}={value!r}"
                raise ArgumentError(message)
            object.__setattr__(self, name, float(value))
        if not isinstance(self.horizontal_flip, bool):
            message = f"Expected horizontal_flip to be a bool. Received: horizontal_flip={self.horizontal_flip!r}"
            raise ArgumentError(message)
        if self.fill_mode not in _FILL_MODES:
            message = f"Expected fill_mode to be one of {list(_FILL_MODES)}. Received: fill_mode={self.fill_mode!r}"
            raise ArgumentError(message)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict."""
        return asdict(self)

    @cached_property
    def layers(self) -> list[keras.layers.Layer]:
        """The Keras preprocessing layers, in the order they are applied (no-op ranges left out)."""
        layers: list[keras.layers.Layer] = []
        if self.horizontal_flip:
            layers.append(keras.layers.RandomFlip("horizontal"))
        if self.rotation:
            layers.append(keras.layers.RandomRotation(self.rotation / 360.0, fill_mode=self.fill_mode))
        if self.zoom:
            layers.append(keras.layers.RandomZoom(self.zoom, fill_mode=self.fill_mode))
        if self.shift:
            layers.append(keras.layers.RandomTranslation(self.shift, self.shift, fill_mode=self.fill_mode))
        if self.brightness:
            layers.append(keras.layers.RandomBrightness(self.brightness, value_range=(0, 255)))
        if self.contrast:
            layers.append(keras.layers.RandomContrast(self.contrast, value_range=(0, 255)))
        return layers


def augment_images(images: np.ndarray, augmentation: Augmentation, *, seed: int) -> np.ndarray:
    """Apply ``augmentation`` to ``[0, 255]`` images, reproducibly.

    The images are transformed in chunks of :data:`AUGMENT_CHUNK`, chunk ``k``
    with a seed derived from ``(seed, k)``: the same images and seed always give
    the same output, whatever else runs in between.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, S, S, 3)`` RGB images with values in ``[0, 255]`` (any real dtype).
    augmentation : Augmentation
        The ranges to draw from.
    seed : int
        Seed of the draws.

    Returns
    -------
    numpy.ndarray
        ``(N, S, S, 3)`` float32 images, clipped to ``[0, 255]``.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.augment import Augmentation, augment_images
    >>> images = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3)).astype(np.uint8)
    >>> first = augment_images(images, Augmentation(), seed=1)
    >>> first.shape, first.dtype, bool(np.array_equal(first, augment_images(images, Augmentation(), seed=1)))
    ((2, 16, 16, 3), dtype('float32'), True)
    """
    chunks = list(augmented_chunks(images, augmentation, seed=seed))
    if not chunks:
        return np.zeros(np.shape(images), np.float32)
    return np.concatenate(chunks)


def augmented_chunks(images: np.ndarray, augmentation: Augmentation, *, seed: int) -> Iterator[np.ndarray]:
    """:func:`augment_images`, one chunk of :data:`AUGMENT_CHUNK` images at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.augment import Augmentation, augmented_chunks
    >>> [len(chunk) for chunk in augmented_chunks(np.zeros((40, 8, 8, 3)), Augmentation(), seed=0)]
    [32, 8]
    """
    if not hasattr(images, "shape"):
        images = np.asarray(images)
    if len(images.shape) != 4 or images.shape[-1] != 3:
        message = f"Expected (N, S, S, 3) RGB images. Received: images of shape {images.shape}"
        raise ArgumentError(message)
    for index, start in enumerate(range(0, len(images), AUGMENT_CHUNK)):
        # One chunk at a time: images decoded on demand are decoded a chunk at a time.
        chunk = np.asarray(images[start:start + AUGMENT_CHUNK])
        yield _augment_chunk(chunk, augmentation, derive_seed(seed, index))


def derive_seed(*parts: object) -> int:
    """A seed in ``[0, 2**31)`` derived from ``parts`` (the same parts, the same seed).

    Examples
    --------
    >>> from cxrclassify.augment import derive_seed
    >>> derive_seed(0, "view", 3) == derive_seed(0, "view", 3), derive_seed(0, 1) == derive_seed(0, 2)
    (True, False)
    """
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _augment_chunk(images: np.ndarray, augmentation: Augmentation, seed: int) -> np.ndarray:
    batch = keras.ops.convert_to_tensor(images.astype(np.float32))
    generator = keras.random.SeedGenerator(seed)
    for layer in augmentation.layers:
        transformation = layer.get_random_transformation(batch, training=True, seed=generator)
        batch = layer.transform_images(batch, transformation, training=True)
    return np.clip(keras.ops.convert_to_numpy(batch), 0.0, 255.0).astype(np.float32, copy=False)
