"""Frozen-base feature maps: computed once, optionally kept on disk between runs.

While a classifier's base is frozen its output for an image never changes, so
:func:`~cxrclassify.train` runs the base once per image (and once per
augmented *copy* of each training image) and fits the head on the stored
feature maps. (A "view" elsewhere in the library is the radiographic view of
an X-ray, ``Sample.view``: PA, AP, lateral.)

:class:`FeatureCache` keeps them on disk, one ``.npy`` file per split and copy,
named by a sha256 key of everything the features depend on:

* the content of the images (sha256 of their ``uint8`` bytes, shape included);
* the architecture, the base's weights (sha256 of all its weight arrays), the
  preprocessing mode, the image size and the base's dtype policy;
* for augmented copies (copy index >= 1), the augmentation settings, the copy
  index and the seed. Copy 0 is the original image: it does not depend on
  augmentation or seed, so un-augmented runs, validation splits and augmented
  runs share it. (The index entry stores the copy index under its 0.1 name,
  ``"view"``, so caches written by 0.1 stay valid.)

Next to each ``<key>.npy`` a ``<key>.json`` index entry records these settings,
the shape and the dtype; :meth:`FeatureCache.entries` lists them. Files are
written to a temporary name and renamed into place (``os.replace``), so
parallel processes never read a half-written file, and two processes computing
the same entry both leave a valid file.

Features are stored as **float32**, as the base computes them: the head then
sees exactly what it would see through the full model, and cached and uncached
training agree. They are memory-mapped when read, so a cache larger than
memory still works. Size: ``N x copies x h x w x c x 4`` bytes per split (VGG16
at 237 px: 7 x 7 x 512 floats, 100 kB per image and copy).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
from tqdm.auto import tqdm

from ._io import atomic_write
from .augment import AUGMENT_CHUNK, Augmentation, augmented_chunks, derive_seed
from .models import CxrClassifier
from .exceptions import ArgumentError, CxrDeprecationWarning, DataWarning

__all__ = ["FeatureCache", "augmented_features", "extract_features", "view_features", "images_digest", "weights_digest",
           "feature_key"]

logger = logging.getLogger(__name__)

#: Bumped whenever the meaning of a cached file changes.
CACHE_FORMAT = 1

FEATURE_DTYPE = np.float32


class FeatureCache:
    """A folder of feature maps keyed by :func:`feature_key`.

    Parameters
    ----------
    folder : str or os.PathLike
        Where the ``.npy`` files and their ``.json`` index entries live (created
        if missing).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from cxrclassify.features import FeatureCache
    >>> cache = FeatureCache(tempfile.mkdtemp())
    >>> cache.load("0" * 64) is None
    True
    >>> _ = cache.save("0" * 64, np.ones((2, 3), np.float32), {"arch": "demo"})
    >>> cache.load("0" * 64).shape, [entry["arch"] for entry in cache.entries()]
    ((2, 3), ['demo'])
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.folder)!r})"

    def path(self, key: str) -> Path:
        """The ``.npy`` file of ``key``."""
        return self.folder / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        """The array stored under ``key`` (memory-mapped, read-only), or ``None``.

        An unreadable entry (a file truncated by a full disk, say) is reported
        with a warning and treated as missing.
        """
        path = self.path(key)
        if not path.is_file() or not path.with_suffix(".json").is_file():
            return None
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            warnings.warn(f"Ignoring unreadable cached features {str(path)!r}: {error}", DataWarning, stacklevel=2)
            return None

    def save(self, key: str, array: np.ndarray, info: dict[str, Any]) -> Path:
        """Store ``array`` under ``key`` with its index entry ``info``; return the ``.npy`` path."""
        path = self.path(key)
        atomic_write(path, lambda handle: np.save(handle, np.ascontiguousarray(array), allow_pickle=False))
        entry = {**info, "key": key, "shape": list(array.shape), "dtype": str(array.dtype), "created": time.time()}
        atomic_write(path.with_suffix(".json"), lambda handle: handle.write(json.dumps(entry, indent=1).encode()))
        return path

    def write_batches(self, key: str, shape: tuple[int, ...], info: dict[str, Any],
                      fill: Callable[[np.ndarray], None]) -> np.ndarray:
        """Store an array under ``key`` written batch by batch by ``fill(out)`` into a memory map on disk.

        ``out`` stands for a ``shape`` float32 array in a temporary ``.npy`` file in
        the cache folder: ``fill`` assigns each batch to its rows
        (``out[start:stop] = batch``) as they come, and each batch is written
        straight to the file, so memory never holds the whole array (not even as
        the dirty pages of a memory map). On success the file is flushed to disk
        and renamed into place with its index entry, and the stored array is
        returned memory-mapped (read-only); on failure the temporary file is removed.

        Examples
        --------
        >>> import tempfile
        >>> import numpy as np
        >>> from cxrclassify.features import FeatureCache
        >>> cache = FeatureCache(tempfile.mkdtemp())
        >>> def fill(out):
        ...     out[0:3] = np.ones((3, 2), np.float32)
        >>> stored = cache.write_batches("1" * 64, (3, 2), {"arch": "demo"}, fill)
        >>> stored.shape, float(stored.sum()), type(stored).__name__
        ((3, 2), 6.0, 'memmap')
        """
        path = self.path(key)
        handle = tempfile.NamedTemporaryFile(dir=self.folder, prefix=f".{path.name}.", suffix=".part.npy",
                                             delete=False)
        handle.close()
        temporary = Path(handle.name)
        try:
            with open(temporary, "r+b") as handle:
                out = _RowWriter(handle, tuple(shape), np.dtype(FEATURE_DTYPE))
                fill(out)
                out.close()
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        entry = {**info, "key": key, "shape": list(shape), "dtype": np.dtype(FEATURE_DTYPE).name, "created": time.time()}
        atomic_write(path.with_suffix(".json"), lambda handle: handle.write(json.dumps(entry, indent=1).encode()))
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def entries(self) -> list[dict[str, Any]]:
        """The index entries of every stored array."""
        entries = []
        for index_file in sorted(self.folder.glob("*.json")):
            try:
                entries.append(json.loads(index_file.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return entries


class _RowWriter:
    """Rows of a new ``.npy`` file, written with ``os.pwrite`` as they are assigned (``out[a:b] = rows``)."""

    def __init__(self, handle, shape: tuple[int, ...], dtype: np.dtype):
        self.handle = handle
        self.shape = shape
        self.dtype = dtype
        np.lib.format.write_array_header_2_0(handle, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                      "fortran_order": False, "shape": shape})
        handle.flush()
        self.offset = handle.tell()
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._written = np.zeros(shape[0], dtype=bool)

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, key: slice, rows: np.ndarray) -> None:
        start, stop, step = key.indices(self.shape[0])
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if step != 1 or rows.shape != (stop - start, *self.shape[1:]):
            message = f"Expected rows of shape {(stop - start, *self.shape[1:])} for {key}. Received: {rows.shape}"
            raise ArgumentError(message)
        os.pwrite(self.handle.fileno(), memoryview(rows).cast("B"), self.offset + start * self._row_bytes)
        self._written[start:stop] = True

    def close(self) -> None:
        if not self._written.all():
            message = f"Expected every one of the {self.shape[0]} rows written. Received: {int(self._written.sum())}"
            raise ArgumentError(message)
        self.handle.truncate(self.offset + self.shape[0] * self._row_bytes)
        self.handle.flush()
        os.fsync(self.handle.fileno())


class RowReader:
    """The rows of an array stored in a ``.npy`` file, read with ``os.pread``: nothing stays mapped.

    A memory map's pages count in the process's resident memory once touched, so an
    epoch over features on disk would grow it to the file's size; reading the rows
    each batch needs keeps it at a batch (the operating system's page cache still
    keeps the file warm, outside the process).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from cxrclassify.features import RowReader
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
    >>> np.save(path, np.arange(12, dtype=np.float32).reshape(4, 3))
    >>> rows = RowReader(np.load(path, mmap_mode="r"))
    >>> rows.shape, rows[[3, 1]].tolist(), float(rows[1:3].sum())
    ((4, 3), [[9.0, 10.0, 11.0], [3.0, 4.0, 5.0]], 33.0)
    """

    def __init__(self, stored: np.memmap):
        if not isinstance(stored, np.memmap) or stored.filename is None or not stored.flags.c_contiguous:
            message = f"Expected a C-contiguous memory map of a .npy file. Received: {type(stored).__name__}"
            raise ArgumentError(message)
        self.path = stored.filename
        self.offset = int(stored.offset)
        self.shape = tuple(stored.shape)
        self.dtype = stored.dtype
        self.ndim = len(self.shape)
        self._row_shape = self.shape[1:]
        self._row_bytes = int(np.prod(self._row_shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = self[0:len(self)]
        return rows if dtype is None else rows.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._read_run(start, max(start, stop))
            key = np.arange(start, stop, step)
        if isinstance(key, (int, np.integer)):
            return self._read_run(int(key) % len(self), int(key) % len(self) + 1)[0]
        indices = np.asarray(key, dtype=np.int64)
        out = np.empty((len(indices), *self._row_shape), dtype=self.dtype)
        with open(self.path, "rb", buffering=0) as handle:
            for position, row in enumerate(indices.tolist()):
                out[position] = self._pread(handle, row, 1)[0]
        return out

    def _read_run(self, start: int, stop: int) -> np.ndarray:
        with open(self.path, "rb", buffering=0) as handle:
            return self._pread(handle, start, stop - start)

    def _pread(self, handle, start: int, count: int) -> np.ndarray:
        size = count * self._row_bytes
        data = os.pread(handle.fileno(), size, self.offset + start * self._row_bytes) if size else b""
        if len(data) != size:
            message = f"Expected {size} bytes of rows {start} to {start + count} in {self.path!r}. Received: {len(data)}"
            raise ArgumentError(message)
        return np.frombuffer(data, dtype=self.dtype).reshape(count, *self._row_shape).copy()


def extract_features(
    model: CxrClassifier, images: np.ndarray, *, batch_size: int = 16, progress: bool = True
) -> np.ndarray:
    """Run the model's preprocessing and base over ``images`` and return the feature maps.

    Parameters
    ----------
    model : CxrClassifier
        The classifier whose base is run.
    images : numpy.ndarray
        ``(N, S, S, 3)`` RGB images in ``[0, 255]``.
    batch_size : int, default 16
        Images per forward pass.
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    numpy.ndarray
        ``(N, h, w, c)`` float32 feature maps, the head's input.

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.training import extract_features
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> extract_features(model, np.zeros((3, 32, 32, 3), np.uint8), progress=False).shape
    (3, 1, 1, 512)
    """
    with tqdm(total=len(images), desc=f"Features ({model.arch})", unit="image", disable=not progress) as bar:
        return _compute_copy(model, images, 0, None, 0, batch_size, bar)


def augmented_features(
    model: CxrClassifier,
    images: np.ndarray,
    *,
    copies: int = 1,
    augmentation: Augmentation | None = None,
    seed: int = 0,
    cache: FeatureCache | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> list[np.ndarray]:
    """The feature maps of ``copies`` versions of every image: the original, then augmented ones.

    Copy 0 is the images themselves; copy ``c >= 1`` is
    ``augment_images(images, augmentation, seed=derive_seed(seed, "view", c))``
    (see :mod:`cxrclassify.augment`; the seed's ``"view"`` salt is the 0.1 name,
    kept so that the same seed gives the same copies).
    With a ``cache``, copies already stored are read back instead of computed,
    and new ones are stored.

    Parameters
    ----------
    model : CxrClassifier
        The classifier whose (frozen) base is run.
    images : numpy.ndarray
        ``(N, S, S, 3)`` ``uint8`` RGB images.
    copies : int, default 1
        Number of copies, the original included.
    augmentation : Augmentation, optional
        Needed when ``copies > 1``.
    seed : int, default 0
        Seed of the augmented copies.
    cache : FeatureCache, optional
        Where to look for, and store, the features.
    batch_size : int, default 16
        Images per forward pass.
    progress : bool, default True
        Show a progress bar over the images still to compute.

    Returns
    -------
    list of numpy.ndarray
        ``copies`` float32 arrays of shape ``(N, h, w, c)`` (memory-mapped when
        read from the cache).

    Raises
    ------
    ArgumentError
        If ``copies`` is below 1, or above 1 without an ``augmentation``.

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.augment import Augmentation
    >>> from cxrclassify.features import augmented_features
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype(np.uint8)
    >>> features = augmented_features(model, images, copies=3, augmentation=Augmentation(), progress=False)
    >>> len(features), features[0].shape
    (3, (2, 1, 1, 512))
    """
    if copies < 1 or (copies > 1 and augmentation is None):
        message = (f"Expected copies=1, or copies > 1 with an augmentation. "
                   f"Received: copies={copies}, augmentation={augmentation}")
        raise ArgumentError(message)
    identity = _identity(model, images) if cache is not None else None
    found: dict[int, np.ndarray] = {}
    if cache is not None:
        for copy_index in range(copies):
            stored = cache.load(feature_key(identity, copy_index, augmentation, seed))
            if stored is not None and stored.shape[0] == len(images):
                found[copy_index] = stored
        if found:
            logger.info("Read %d of %d augmented copies' features of %d images from %s", len(found), copies,
                        len(images), cache)
    missing = [copy_index for copy_index in range(copies) if copy_index not in found]
    bar = tqdm(total=len(missing) * len(images), desc=f"Features ({model.arch})", unit="image",
               disable=not progress or not missing)
    shape = (len(images), *_feature_shape(model))
    with bar:
        for copy_index in missing:
            if cache is None:
                found[copy_index] = _compute_copy(model, images, copy_index, augmentation, seed, batch_size, bar)
            else:  # written to disk batch by batch: memory holds one batch, not the split's features
                found[copy_index] = cache.write_batches(
                    feature_key(identity, copy_index, augmentation, seed), shape,
                    _index_entry(identity, copy_index, augmentation, seed),
                    lambda out, index=copy_index: _compute_copy(model, images, index, augmentation, seed,
                                                                batch_size, bar, out=out))
    return [found[copy_index] for copy_index in range(copies)]


def view_features(model: CxrClassifier, images: np.ndarray, *, views: int = 1, **options: Any) -> list[np.ndarray]:
    """Deprecated name of :func:`augmented_features` (``views`` is ``copies``); removed in 0.4.

    "View" now means only the radiographic view of an X-ray (``Sample.view``).

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.features import view_features
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     features = view_features(model, np.zeros((1, 32, 32, 3), np.uint8), progress=False)
    >>> caught[0].category.__name__, len(features)
    ('CxrDeprecationWarning', 1)
    """
    warnings.warn("view_features(views=...) is renamed augmented_features(copies=...) and will be removed in "
                  "cxrclassify 0.4", CxrDeprecationWarning, stacklevel=2)
    return augmented_features(model, images, copies=views, **options)


def images_digest(images: np.ndarray) -> str:
    """sha256 of the images' bytes, shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.features import images_digest
    >>> len(images_digest(np.zeros((1, 4, 4, 3), np.uint8)))
    64
    """
    content_digest = getattr(images, "content_digest", None)
    if callable(content_digest):  # images decoded on demand: their files and decoding settings, not their pixels
        return content_digest()
    images = np.ascontiguousarray(images)
    digest = hashlib.sha256(f"{images.shape}|{images.dtype.str}|".encode())
    digest.update(memoryview(images).cast("B"))
    return digest.hexdigest()


def weights_digest(model: CxrClassifier) -> str:
    """sha256 of all the base's weight arrays (names, shapes, dtypes and values), in order.

    Examples
    --------
    >>> import cxrclassify
    >>> from cxrclassify.features import weights_digest
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> weights_digest(model) == weights_digest(model)
    True
    """
    digest = hashlib.sha256()
    for variable in model.base.weights:
        values = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{variable.path}|{values.shape}|{values.dtype.str}|".encode())
        digest.update(memoryview(values).cast("B"))
    return digest.hexdigest()


def feature_key(identity: dict[str, Any], copy_index: int, augmentation: Augmentation | None, seed: int) -> str:
    """The cache key of one augmented copy of one split: sha256 of what its features depend on.

    Parameters
    ----------
    identity : dict
        ``images`` (:func:`images_digest`), ``arch``, ``base_weights``
        (:func:`weights_digest`), ``preprocessing``, ``image_size`` and
        ``dtype_policy``.
    copy_index : int
        Copy index; 0 is the original images, whose key ignores
        ``augmentation`` and ``seed``.
    augmentation : Augmentation or None
        The augmentation of copies ``>= 1``.
    seed : int
        The seed of copies ``>= 1``.

    Returns
    -------
    str
        64 hexadecimal digits.

    Examples
    --------
    >>> from cxrclassify.augment import Augmentation
    >>> from cxrclassify.features import feature_key
    >>> identity = {"images": "ab", "arch": "vgg16", "base_weights": "cd", "preprocessing": "caffe", "image_size": 32}
    >>> feature_key(identity, 0, Augmentation(), 1) == feature_key(identity, 0, None, 2)
    True
    >>> feature_key(identity, 1, Augmentation(), 1) == feature_key(identity, 1, Augmentation(), 2)
    False
    """
    entry = _index_entry(identity, copy_index, augmentation, seed)
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode("utf-8")).hexdigest()


def _index_entry(identity: dict[str, Any], copy_index: int, augmentation: Augmentation | None,
                 seed: int) -> dict[str, Any]:
    augmented = copy_index > 0
    return {
        "format": CACHE_FORMAT,
        **identity,
        "view": int(copy_index),  # the 0.1 name of the copy index: renaming it would invalidate every cache
        "augmentation": augmentation.to_dict() if augmented and augmentation is not None else None,
        "seed": int(seed) if augmented else None,
        "augment_chunk": AUGMENT_CHUNK if augmented else None,
        "dtype": np.dtype(FEATURE_DTYPE).name,
    }


def _identity(model: CxrClassifier, images: np.ndarray) -> dict[str, Any]:
    return {
        "images": images_digest(images),
        "arch": model.arch,
        "base_weights": weights_digest(model),
        "preprocessing": model.preprocessing,
        "image_size": int(model.image_size),
        "dtype_policy": _dtype_policy(model),
    }


def _dtype_policy(model: CxrClassifier) -> str:
    policy = getattr(model.base, "dtype_policy", None)
    return str(getattr(policy, "name", policy))


def _feature_shape(model: CxrClassifier) -> tuple[int, ...]:
    """The shape of one image's feature maps (the head's input)."""
    return tuple(int(size) for size in model.head.input_shape[1:])


def _compute_copy(
    model: CxrClassifier, images: np.ndarray, copy_index: int, augmentation: Augmentation | None, seed: int,
    batch_size: int, bar: tqdm, *, out: np.ndarray | None = None,
) -> np.ndarray:
    """One copy's features, batch by batch, into ``out`` (a new array when ``None``; a memory map on disk)."""
    if out is None:
        out = np.empty((len(images), *_feature_shape(model)), dtype=FEATURE_DTYPE)
    if copy_index == 0:
        chunks: Any = _slices(images, max(batch_size, 1) * 8)
    else:  # "view": the salt's 0.1 name, kept so that a seed gives the same copies
        chunks = augmented_chunks(images, augmentation, seed=derive_seed(seed, "view", copy_index))
    row = 0
    for chunk in chunks:
        for first in range(0, len(chunk), batch_size):
            features = _features_of_batch(model, np.asarray(chunk[first:first + batch_size]), bar)
            out[row:row + len(features)] = features
            row += len(features)
    return out


def _slices(images: np.ndarray, size: int):
    """``images`` in consecutive slices of ``size`` (a lazy set decodes each slice when it is taken)."""
    for start in range(0, len(images), size):
        yield images[start:start + size]


def _features_of_batch(model: CxrClassifier, images: np.ndarray, bar: tqdm) -> np.ndarray:
    features = keras.ops.convert_to_numpy(model.features(images.astype(np.float32)))
    bar.update(len(images))
    return features.astype(FEATURE_DTYPE, copy=False)
