"""Images decoded on demand: records that stream, and their ``tf.data`` pipeline.

A :class:`LazyImages` is what an :class:`~cxrclassify.datasets.ImageSet` holds when
it was loaded with ``load_datasets(..., stream=True)``: the records' files, decoded
and resized only when a slice of them is asked for, so that memory holds a batch, not
the collection. It behaves as a read-only ``(N, S, S, 3)`` ``uint8`` array: ``len``,
``shape``, ``dtype``, indexing by an integer, a slice or an array of indices (each
decodes just those images) and ``numpy.asarray`` (decodes all of them: for small sets).

Every image is decoded exactly as the eager path decodes it (the same
:func:`~cxrclassify.datasets.read_image`, the same resizing and lung-field
preparation), so a streamed split and a materialised one hold the same pixels.

:meth:`LazyImages.as_dataset` (and :meth:`ImageSet.as_dataset
<cxrclassify.datasets.ImageSet.as_dataset>`) gives a ``tf.data.Dataset`` with parallel
decoding (``num_parallel_calls=tf.data.AUTOTUNE``), prefetching, a deterministic order
by default, optional seeded shuffling, and sharding: explicitly by ``shard=(count,
index)``, or automatically by ``tf.distribute`` (the source is a range of indices, so
``AutoShardPolicy.DATA`` splits it by element).

This module imports TensorFlow only inside :meth:`LazyImages.as_dataset`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import ArgumentError, IndexOutOfRangeError
from ._images import get_max_image_pixels, read_image, resize

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from ._records import Sample

__all__ = ["LazyImages", "is_lazy"]

#: Images decoded (and, with ``lungs``, segmented) together by :meth:`LazyImages.iter_batches`.
DECODE_CHUNK = 32
#: Where :meth:`LazyImages.as_dataset` may decode the files.
DECODE_PLACES = ("auto", "threads", "processes")
#: The fewest images for which ``decode_in="auto"`` starts worker processes.
PROCESS_DECODE_MIN_IMAGES = 256
#: ``tf.data.AUTOTUNE``, without importing TensorFlow.
AUTOTUNE = -1


class LazyImages:
    """The images of ``samples``, decoded and resized to ``image_size`` only when read.

    Parameters
    ----------
    samples : sequence of Sample
        The records, in order; only their ``path`` is read.
    image_size : int
        Side of the square images.
    lungs : {None, "crop", "mask"}, optional
        Lung-field preparation before resizing (see :func:`~cxrclassify.load_datasets`).
    common_resolution : int, optional
        Square side every image is first resized to (see :func:`~cxrclassify.load_datasets`).

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets import sample_records
    >>> from cxrclassify.datasets.stream import LazyImages
    >>> images = LazyImages(sample_records()[:4], 32)
    >>> images.shape, images.dtype, images[1:3].shape
    ((4, 32, 32, 3), dtype('uint8'), (2, 32, 32, 3))
    >>> bool((np.asarray(images)[2] == images[2]).all())
    True
    """

    def __init__(self, samples: Sequence[Sample], image_size: int, *, lungs: str | None = None,
                 common_resolution: int | None = None):
        self.samples = list(samples)
        self.image_size = int(image_size)
        self.lungs = lungs
        self.common_resolution = common_resolution

    # ------------------------------------------------------------------ the array protocol

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.samples), self.image_size, self.image_size, 3)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def nbytes(self) -> int:
        """Bytes the images would take in memory, decoded."""
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"LazyImages({len(self)} images, {self.image_size} px, lungs={self.lungs!r}, "
                f"common_resolution={self.common_resolution!r})")

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            index = int(key)
            if not -len(self) <= index < len(self):
                message = f"Expected an index in [{-len(self)}, {len(self)}). Received: {index}"
                raise IndexOutOfRangeError(message)
            return self.decode([index % len(self)])[0]
        if isinstance(key, tuple):  # images[a:b, ...]: decode the rows, then index the rest
            return self[key[0]][(slice(None), *key[1:])]
        if isinstance(key, slice):
            return self.decode(range(*key.indices(len(self))))
        indices = np.asarray(key)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        return self.decode(indices.astype(np.int64).tolist())

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.iter_batches():
            yield from batch

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.decode(range(len(self)))
        return array if dtype is None else array.astype(dtype)

    def astype(self, dtype: Any, copy: bool = True) -> np.ndarray:
        """Every image, decoded, as an array of ``dtype`` (for small sets)."""
        return np.asarray(self).astype(dtype, copy=False)

    def take(self, indices: Sequence[int]) -> LazyImages:
        """The images at ``indices``, still lazy.

        Examples
        --------
        >>> from cxrclassify.datasets import sample_records
        >>> from cxrclassify.datasets.stream import LazyImages
        >>> len(LazyImages(sample_records(), 32).take([0, 5, 7]))
        3
        """
        return LazyImages([self.samples[int(index)] for index in indices], self.image_size, lungs=self.lungs,
                          common_resolution=self.common_resolution)

    @classmethod
    def concatenate(cls, parts: Sequence[LazyImages]) -> LazyImages:
        """The images of ``parts``, one after the other, still lazy (they must share their decoding settings).

        Examples
        --------
        >>> from cxrclassify.datasets import sample_records
        >>> from cxrclassify.datasets.stream import LazyImages
        >>> records = sample_records()
        >>> len(LazyImages.concatenate([LazyImages(records[:2], 32), LazyImages(records[5:6], 32)]))
        3
        """
        parts = list(parts)
        if not parts:
            message = "Expected at least one LazyImages to concatenate. Received: none"
            raise ArgumentError(message)
        settings = {(part.image_size, part.lungs, part.common_resolution) for part in parts}
        if len(settings) > 1:
            message = ("Expected LazyImages decoded the same way (image_size, lungs, common_resolution). "
                       f"Received: {sorted(settings, key=str)}")
            raise ArgumentError(message)
        first = parts[0]
        return cls([sample for part in parts for sample in part.samples], first.image_size, lungs=first.lungs,
                   common_resolution=first.common_resolution)

    # ---------------------------------------------------------------------------- decoding

    def decode(self, indices: Sequence[int] | range) -> np.ndarray:
        """The images at ``indices`` as one ``(n, S, S, 3)`` ``uint8`` array, decoded now.

        Examples
        --------
        >>> from cxrclassify.datasets import sample_records
        >>> from cxrclassify.datasets.stream import LazyImages
        >>> LazyImages(sample_records(), 32).decode([0, 1]).shape
        (2, 32, 32, 3)
        """
        indices = list(indices)
        out = np.empty((len(indices), self.image_size, self.image_size, 3), dtype=np.uint8)
        for start in range(0, len(indices), DECODE_CHUNK):
            chunk = indices[start:start + DECODE_CHUNK]
            out[start:start + len(chunk)] = self._decode_chunk(chunk)
        return out

    def _decode_chunk(self, indices: Sequence[int]) -> np.ndarray:
        rgbs = [read_image(self.samples[index].path) for index in indices]
        if self.common_resolution is not None:
            rgbs = [resize(rgb, self.common_resolution) for rgb in rgbs]
        if self.lungs is not None:
            from ..segmentation.options import prepare_lung_fields

            rgbs = prepare_lung_fields(rgbs, self.lungs)[0]
        return np.stack([resize(rgb, self.image_size) for rgb in rgbs]) if rgbs else np.empty(
            (0, self.image_size, self.image_size, 3), np.uint8)

    def iter_batches(self, batch_size: int = DECODE_CHUNK, *, decode_in: str = "auto") -> Iterator[np.ndarray]:
        """The images in order, ``batch_size`` at a time (the last batch may be smaller).

        With worker processes (``decode_in``, as in :meth:`as_dataset`: ``"auto"``
        uses them for :data:`PROCESS_DECODE_MIN_IMAGES` images or more, without
        ``lungs``, on more than one core), the next batches are decoded ahead, one
        per available core, while the current one is used.

        Examples
        --------
        >>> from cxrclassify.datasets import sample_records
        >>> from cxrclassify.datasets.stream import LazyImages
        >>> [len(batch) for batch in LazyImages(sample_records()[:5], 32).iter_batches(2)]
        [2, 2, 1]
        """
        _check_batch_size(batch_size)
        starts = range(0, len(self), batch_size)
        decode_batch, processes = self._batch_decoder(None, decode_in)
        if decode_batch == self.decode:
            for start in starts:
                yield self.decode(range(start, min(start + batch_size, len(self))))
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=processes) as executor:
            pending: deque = deque()
            try:
                for start in starts:
                    chosen = list(range(start, min(start + batch_size, len(self))))
                    pending.append(executor.submit(decode_batch, chosen))
                    if len(pending) > processes:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def content_digest(self) -> str:
        """sha256 of what the decoded images depend on: each file's path, size and modification time, and
        the decoding settings (not the pixels: computing it decodes nothing).

        Examples
        --------
        >>> from cxrclassify.datasets import sample_records
        >>> from cxrclassify.datasets.stream import LazyImages
        >>> images = LazyImages(sample_records()[:3], 32)
        >>> images.content_digest() == LazyImages(sample_records()[:3], 32).content_digest()
        True
        >>> images.content_digest() == LazyImages(sample_records()[:3], 64).content_digest()
        False
        """
        digest = hashlib.sha256(f"lazy|{self.image_size}|{self.lungs}|{self.common_resolution}|".encode())
        for sample in self.samples:
            try:
                info = os.stat(sample.path)
                stamp = f"{info.st_size}:{info.st_mtime_ns}"
            except OSError:
                stamp = "missing"
            digest.update(f"{os.path.abspath(sample.path)}|{stamp}\n".encode())
        return digest.hexdigest()

    # ---------------------------------------------------------------------------- tf.data

    def as_dataset(
        self,
        labels: np.ndarray | None = None,
        *,
        batch_size: int | None = 32,
        num_classes: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        repeat: bool = False,
        shard: tuple[int, int] | None = None,
        num_parallel_calls: int | None = None,
        decode_in: str = "auto",
        deterministic: bool = True,
        prefetch: bool = True,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """A ``tf.data.Dataset`` of the images (and labels), decoded in parallel as it is iterated.

        Parameters
        ----------
        labels : numpy.ndarray, optional
            ``(N,)`` integer labels: the dataset then yields ``(images, labels)``
            pairs, the labels one-hot when ``num_classes`` is given.
        batch_size : int or None, default 32
            Images per element; ``None`` for single images.
        num_classes : int, optional
            One-hot encode the labels with this many classes.
        shuffle : bool, default False
            Shuffle the order (seeded; the same ``seed`` gives the same order).
        seed : int, default 0
            Seed of the shuffle.
        repeat : bool, default False
            Repeat indefinitely (for ``steps_per_epoch`` training).
        shard : tuple of int, optional
            Keep every ``count``-th image starting at ``index`` (before shuffling):
            the part of one of ``count`` workers. Under ``tf.distribute``, leave it
            ``None``: the strategy shards the dataset itself.
        num_parallel_calls : int, optional
            Batches decoded at once (each by one thread or one worker process);
            default ``tf.data.AUTOTUNE`` (with processes: one per available
            core). ``1`` decodes in this process, one batch at a time. With
            ``lungs``, always 1: the segmenter is a Keras model, run on whole
            batches in this process.
        decode_in : {"auto", "threads", "processes"}, default "auto"
            Where the files are decoded. ``"threads"``: in this process (Pillow
            holds Python's interpreter lock for part of each decode, so threads
            scale poorly: about 1.24x for two on two cores). ``"processes"``: in
            worker processes started once per process and shared (see
            ``cxrclassify.datasets._decode_pool``; same decoder, same pixels).
            ``"auto"``: processes when more than one call is asked for, there is
            more than one core, no ``lungs``, and at least
            :data:`PROCESS_DECODE_MIN_IMAGES` images (their start, about 2 s,
            is not worth it for fewer); threads otherwise.
        deterministic : bool, default True
            Keep the order whatever the parallelism (``False`` may be faster).
        prefetch : bool, default True
            Prepare the next elements while the current one is used.
        drop_remainder : bool, default False
            Drop a last, smaller batch.

        Returns
        -------
        tf.data.Dataset
            ``uint8`` images of shape ``(batch, S, S, 3)`` (and labels).

        Raises
        ------
        ArgumentError
            If ``labels`` do not match the images, or an option is out of range.

        Examples
        --------
        >>> from cxrclassify.datasets import sample_records
        >>> from cxrclassify.datasets.stream import LazyImages
        >>> dataset = LazyImages(sample_records()[:5], 32).as_dataset(batch_size=2)
        >>> [tuple(batch.shape) for batch in dataset.as_numpy_iterator()]
        [(2, 32, 32, 3), (2, 32, 32, 3), (1, 32, 32, 3)]
        """
        import tensorflow as tf

        if labels is not None and len(labels) != len(self):
            message = f"Expected one label per image ({len(self)}). Received: {len(labels)} labels"
            raise ArgumentError(message)
        indices = _index_batches(len(self), batch_size=batch_size, shard=shard, shuffle=shuffle, seed=seed,
                                 repeat=repeat, drop_remainder=drop_remainder)
        decode_batch, calls = self._batch_decoder(num_parallel_calls, decode_in)
        side = self.image_size

        def decode_indices(batch_indices):
            images = tf.numpy_function(lambda chosen: decode_batch(chosen.tolist()), [batch_indices], tf.uint8,
                                       stateful=False)
            images.set_shape((None, side, side, 3))
            return images, batch_indices

        dataset = indices.map(decode_indices, num_parallel_calls=calls, deterministic=deterministic)
        return _finish_dataset(dataset, labels, num_classes=num_classes, single=batch_size is None,
                               deterministic=deterministic, prefetch=prefetch)

    def _batch_decoder(self, num_parallel_calls: int | None, decode_in: str):
        """The function that decodes a list of indices, and the number of batches to decode at once.

        ``num_parallel_calls=None`` or ``AUTOTUNE`` (``-1``): one per available core with
        processes, ``AUTOTUNE`` with threads.
        """
        from ._decode_pool import available_cores, shared_decode_pool

        if decode_in not in DECODE_PLACES:
            message = f"Expected decode_in to be one of {list(DECODE_PLACES)}. Received: decode_in={decode_in!r}"
            raise ArgumentError(message)
        if num_parallel_calls is not None and num_parallel_calls != AUTOTUNE and (
                isinstance(num_parallel_calls, bool) or not isinstance(num_parallel_calls, (int, np.integer))
                or num_parallel_calls < 1):
            message = ("Expected num_parallel_calls to be None, tf.data.AUTOTUNE or a whole number of at least 1. "
                       f"Received: num_parallel_calls={num_parallel_calls!r}")
            raise ArgumentError(message)
        if self.lungs is not None:
            return self.decode, 1
        autotune = num_parallel_calls is None or num_parallel_calls == AUTOTUNE
        processes = available_cores() if autotune else int(num_parallel_calls)
        use_processes = decode_in == "processes" or (
            decode_in == "auto" and processes > 1 and available_cores() > 1
            and len(self) >= PROCESS_DECODE_MIN_IMAGES)
        if not use_processes:
            return self.decode, (AUTOTUNE if autotune else int(num_parallel_calls))
        pool = shared_decode_pool(processes)
        paths = [os.fspath(sample.path) for sample in self.samples]
        limit = get_max_image_pixels()

        def decode_in_workers(chosen: list[int]) -> np.ndarray:
            return pool.decode([paths[index] for index in chosen], self.image_size,
                               common_resolution=self.common_resolution, max_pixels=limit)

        return decode_in_workers, processes


def is_lazy(images: object) -> bool:
    """Whether ``images`` decode on demand (a :class:`LazyImages`) rather than sit in memory.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets.stream import is_lazy
    >>> is_lazy(np.zeros((1, 2, 2, 3), np.uint8))
    False
    """
    return isinstance(images, LazyImages)


def array_dataset(images: np.ndarray, labels: np.ndarray | None = None, **options: Any) -> tf.data.Dataset:
    """:meth:`LazyImages.as_dataset` for images already in memory (same options, same order).

    ``num_parallel_calls`` and ``decode_in`` are accepted and ignored: nothing is decoded.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets.stream import array_dataset
    >>> batches = array_dataset(np.zeros((3, 8, 8, 3), np.uint8), batch_size=2)
    >>> [len(batch) for batch in batches.as_numpy_iterator()]
    [2, 1]
    """
    import tensorflow as tf

    batch_size = options.pop("batch_size", 32)
    num_classes = options.pop("num_classes", None)
    deterministic = options.pop("deterministic", True)
    prefetch = options.pop("prefetch", True)
    options.pop("num_parallel_calls", None)
    options.pop("decode_in", None)
    order = {name: options.pop(name) for name in ("shuffle", "seed", "repeat", "shard", "drop_remainder")
             if name in options}
    if options:
        message = f"Unknown options {sorted(options)}. Expected those of LazyImages.as_dataset"
        raise ArgumentError(message)
    if labels is not None and len(labels) != len(images):
        message = f"Expected one label per image ({len(images)}). Received: {len(labels)} labels"
        raise ArgumentError(message)
    indices = _index_batches(len(images), batch_size=batch_size, **order)
    pixels = tf.constant(np.asarray(images))
    dataset = indices.map(lambda index: (tf.gather(pixels, index), index))
    return _finish_dataset(dataset, labels, num_classes=num_classes, single=batch_size is None,
                           deterministic=deterministic, prefetch=prefetch)


def _index_batches(count: int, *, batch_size: int | None, shard: tuple[int, int] | None = None,
                   shuffle: bool = False, seed: int = 0, repeat: bool = False,
                   drop_remainder: bool = False) -> tf.data.Dataset:
    """Batches of image indices: ``range(count)`` sharded, shuffled, repeated, then batched.

    With ``batch_size=None`` the indices come :data:`DECODE_CHUNK` at a time (and
    :func:`_finish_dataset` unbatches them after decoding).
    """
    import tensorflow as tf

    if batch_size is not None:
        _check_batch_size(batch_size)
    indices = tf.data.Dataset.range(count)
    if shard is not None:
        shard_count, shard_index = _check_shard(shard)
        indices = indices.shard(shard_count, shard_index)
    if shuffle:
        indices = indices.shuffle(max(1, count), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    if batch_size is None:
        return indices.batch(DECODE_CHUNK)
    return indices.batch(batch_size, drop_remainder=drop_remainder)


def _finish_dataset(dataset: tf.data.Dataset, labels: np.ndarray | None, *, num_classes: int | None,
                    single: bool, deterministic: bool, prefetch: bool) -> tf.data.Dataset:
    """Attach the labels to ``(images, indices)`` batches, unbatch ``single`` ones, set the options."""
    import tensorflow as tf

    if labels is None:
        dataset = dataset.map(lambda images, _: images)
    else:
        table = tf.constant(np.asarray(labels, dtype=np.int64))

        def with_labels(images, index):
            chosen = tf.gather(table, index)
            return images, (tf.one_hot(chosen, num_classes) if num_classes else chosen)

        dataset = dataset.map(with_labels)
    if single:
        dataset = dataset.unbatch()
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset


def _check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        message = f"Expected batch_size to be a whole number of at least 1. Received: batch_size={batch_size!r}"
        raise ArgumentError(message)
    return int(batch_size)


def _check_shard(shard: object) -> tuple[int, int]:
    if (not isinstance(shard, (tuple, list)) or len(shard) != 2
            or not all(isinstance(part, (int, np.integer)) and not isinstance(part, bool) for part in shard)
            or not 0 <= shard[1] < shard[0]):
        message = f"Expected shard=(count, index) with 0 <= index < count. Received: shard={shard!r}"
        raise ArgumentError(message)
    return int(shard[0]), int(shard[1])
