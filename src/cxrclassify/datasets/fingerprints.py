"""Per-image fingerprints for the duplicate checks, their on-disk cache, and a blockwise pair search.

A fingerprint is what the duplicate checks need of an image, computed once
(ideally while decoding it) and never recomputed:

* its *signature*, the unit-norm, zero-mean 32 x 32 grayscale thumbnail of
  :func:`thumbnail_signature` (1,024 ``float32`` values, 4 KiB; dot products of
  signatures are thumbnail correlations);
* its *digest*, the 20-byte SHA-1 of its decoded pixels (identical pixels,
  identical digest).

:func:`find_similar_pairs` searches fingerprints for pairs whose correlation
reaches a threshold one ``block_size`` x ``block_size`` tile of the similarity
matrix at a time, so memory stays bounded whatever the number of images (the
full train x validation matrix of NIH ChestX-ray14 is 89,696 x 11,212 floats,
4 GB; one tile at the default ``block_size`` is 4 MiB). Pairs with identical
pixels are always found, even where the thumbnail is constant.

Signatures are kept in ``float32``: ``float16`` would halve their memory (2 KiB
per image), but on the real X-rays of ``../shared/data`` it moved
correlations by up to 3e-4, which changed the rounded similarity of 5 of the
16 pairs above 0.97 (and the closest correlation to 0.97 was 6e-4 away), and
NumPy has no fast ``float16`` matrix product.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..exceptions import ArgumentError

__all__ = [
    "DIGEST_SIZE",
    "SIGNATURE_SIZE",
    "FingerprintCache",
    "ImageFingerprints",
    "SimilarPairs",
    "find_similar_pairs",
    "fingerprint_images",
    "image_key",
    "thumbnail_signature",
]

#: Side of the grayscale thumbnail of a signature: ``SIGNATURE_SIZE ** 2`` values.
SIGNATURE_SIZE = 32
#: Bytes of an image's digest (SHA-1).
DIGEST_SIZE = 20
#: Version of the fingerprint definition; cached fingerprints of another version are ignored.
FINGERPRINT_VERSION = 1


def thumbnail_signature(image: np.ndarray, size: int = SIGNATURE_SIZE) -> np.ndarray:
    """A unit-norm, zero-mean ``size * size`` grayscale thumbnail: dot products are correlations.

    The image (``(H, W)`` or ``(H, W, 3)``, cast to ``uint8``) is converted to
    grayscale and box-filtered to ``size`` x ``size``. A constant image has no
    correlation with anything: its signature is all zeros.

    Parameters
    ----------
    image : numpy.ndarray
        The image.
    size : int, default 32
        Side of the thumbnail.

    Returns
    -------
    numpy.ndarray
        ``(size * size,)`` ``float32``.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets.splits import thumbnail_signature
    >>> gradient = np.tile(np.arange(128, dtype=np.uint8), (128, 1))
    >>> round(float(thumbnail_signature(gradient) @ thumbnail_signature(gradient[::2, ::2])), 3)
    1.0
    """
    grey = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("L").resize((size, size), Image.Resampling.BOX)
    values = np.asarray(grey, dtype=np.float32).ravel()
    values -= values.mean()
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 0 else values


def _digest(image: np.ndarray) -> bytes:
    return hashlib.sha1(np.asarray(image).tobytes()).digest()


def _frozen(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.setflags(write=False)
    return view


@dataclass(frozen=True, eq=False)
class ImageFingerprints:
    """The fingerprints of ``N`` images: thumbnail signatures and pixel digests, read-only.

    Index it like an array (an integer array, a boolean mask or a slice) for
    the fingerprints of some of the images, in that order; an integer gives a
    one-image :class:`ImageFingerprints`.

    Attributes
    ----------
    signatures : numpy.ndarray
        ``(N, 1024)`` ``float32``: the :func:`thumbnail_signature` of each image
        (all zeros for a constant image).
    digests : numpy.ndarray
        ``(N,)`` of dtype ``S20``: the SHA-1 of each image's decoded pixels
        (``image.tobytes()``).

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets.fingerprints import fingerprint_images
    >>> images = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    >>> fingerprints = fingerprint_images(images)
    >>> len(fingerprints), fingerprints.signatures.shape, fingerprints.digests.dtype
    (3, (3, 1024), dtype('S20'))
    >>> len(fingerprints[[2, 0]]), fingerprints[1:].nbytes
    (2, 8232)
    """

    signatures: np.ndarray
    digests: np.ndarray

    def __post_init__(self) -> None:
        signatures = np.asarray(self.signatures)
        digests = np.asarray(self.digests)
        if signatures.ndim != 2 or signatures.dtype != np.float32:
            message = ("Expected signatures to be a 2-D float32 array (one row per image). "
                       f"Received: shape {signatures.shape}, dtype {signatures.dtype}")
            raise ArgumentError(message)
        if digests.shape != (len(signatures),) or digests.dtype != np.dtype(f"S{DIGEST_SIZE}"):
            message = (f"Expected one {DIGEST_SIZE}-byte digest (dtype S{DIGEST_SIZE}) per signature. "
                       f"Received: {len(signatures)} signatures, digests of shape {digests.shape} "
                       f"and dtype {digests.dtype}")
            raise ArgumentError(message)
        object.__setattr__(self, "signatures", _frozen(signatures))
        object.__setattr__(self, "digests", _frozen(digests))

    def __len__(self) -> int:
        return len(self.signatures)

    def __getitem__(self, index: slice | Sequence[int] | np.ndarray) -> ImageFingerprints:
        if isinstance(index, (int, np.integer)):
            index = [index]
        return ImageFingerprints(self.signatures[index], self.digests[index])

    @property
    def nbytes(self) -> int:
        """Bytes held by the signatures and digests."""
        return int(self.signatures.nbytes + self.digests.nbytes)

    @classmethod
    def empty(cls, dimension: int = SIGNATURE_SIZE * SIGNATURE_SIZE) -> ImageFingerprints:
        """No fingerprint."""
        return cls(np.zeros((0, dimension), np.float32), np.zeros(0, f"S{DIGEST_SIZE}"))

    @classmethod
    def concatenate(cls, parts: Iterable[ImageFingerprints]) -> ImageFingerprints:
        """The fingerprints of ``parts``, one after the other.

        Examples
        --------
        >>> import numpy as np
        >>> from cxrclassify.datasets.fingerprints import ImageFingerprints, fingerprint_images
        >>> images = np.zeros((2, 8, 8, 3), np.uint8)
        >>> len(ImageFingerprints.concatenate([fingerprint_images(images), fingerprint_images(images[:1])]))
        3
        """
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(np.concatenate([part.signatures for part in parts]),
                   np.concatenate([part.digests for part in parts]))


def _as_images(item: object) -> list[np.ndarray]:
    """An item of ``fingerprint_images``'s iterable as a list of images: a 4-D batch or one image."""
    array = np.asarray(item)
    if array.ndim == 4:
        return list(array)
    if array.ndim in (2, 3):
        return [array]
    message = ("Expected images of shape (H, W) or (H, W, C), or batches of shape (N, H, W, C). "
               f"Received: an item of shape {array.shape}")
    raise ArgumentError(message)


def fingerprint_images(images: np.ndarray | Iterable[np.ndarray], *, size: int = SIGNATURE_SIZE) -> ImageFingerprints:
    """Fingerprint images, batch by batch: their thumbnail signatures and pixel digests.

    Parameters
    ----------
    images : numpy.ndarray or iterable
        An ``(N, H, W, C)`` (or ``(N, H, W)``) array, or an iterable whose items
        are single images (``(H, W)`` or ``(H, W, C)``) or batches
        (``(n, H, W, C)``) -- for instance each chunk of images as it is
        decoded, so that nothing but the fingerprints is kept.
    size : int, default 32
        Side of the thumbnails.

    Returns
    -------
    ImageFingerprints
        One fingerprint per image, in order.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets.fingerprints import fingerprint_images
    >>> rng = np.random.default_rng(0)
    >>> batches = (rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8) for _ in range(3))
    >>> fingerprints = fingerprint_images(batches)
    >>> len(fingerprints)
    12
    >>> constant = fingerprint_images(np.zeros((1, 8, 8, 3), np.uint8))
    >>> float(abs(constant.signatures).sum()), len(constant.digests[0])
    (0.0, 20)
    """
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            message = f"Expected an (N, H, W[, C]) array of images. Received: shape {images.shape}"
            raise ArgumentError(message)
        batches: Iterable[list[np.ndarray]] = [list(images)]
    else:
        batches = (_as_images(item) for item in images)
    signatures: list[np.ndarray] = []
    digests: list[bytes] = []
    for batch in batches:
        for image in batch:
            signatures.append(thumbnail_signature(image, size))
            digests.append(_digest(image))
    if not signatures:
        return ImageFingerprints.empty(size * size)
    return ImageFingerprints(np.stack(signatures), np.array(digests, dtype=f"S{DIGEST_SIZE}"))


def image_key(path: str | os.PathLike[str], *, image_size: int, lungs: str | None = None,
              common_resolution: int | None = None) -> str:
    """A cache key naming one decoded image: the file (path, size, modification time) and how it was decoded.

    Any change of the file or of the decoding gives another key, so a cached
    fingerprint is never served for other pixels.

    Parameters
    ----------
    path : str or os.PathLike
        The image file (it must exist).
    image_size, lungs, common_resolution
        The decoding options of :func:`~cxrclassify.datasets.load_datasets`.

    Returns
    -------
    str
        ``"<absolute path>:<bytes>:<mtime_ns>:<image_size>:<lungs>:<common_resolution>"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from cxrclassify.datasets.fingerprints import image_key
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.png"
    >>> _ = path.write_bytes(b"12345")
    >>> key = image_key(path, image_size=64)
    >>> key.split(":")[1], key.endswith(":64:None:None")
    ('5', True)
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return f"{resolved}:{stat.st_size}:{stat.st_mtime_ns}:{image_size}:{lungs}:{common_resolution}"


class FingerprintCache:
    """Fingerprints on disk, keyed by a string per decoded image, so that a second load computes nothing.

    The folder holds one uncompressed ``.npz`` file per chunk of fingerprints
    stored together (their UTF-8 keys, signatures and digests: about 4.3 KiB
    an image), written atomically;
    several processes may share it. Only the keys of every chunk are read to
    find a fingerprint, and only the chunks holding wanted keys are read
    further. A key must change whenever the decoded pixels may change: use
    :func:`image_key` (file path, size and modification time, and the decoding
    options).

    Parameters
    ----------
    folder : str or os.PathLike
        The cache folder, created when first written to.

    Attributes
    ----------
    computed : int
        Images fingerprinted by this object so far (the cache misses).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from cxrclassify.datasets.fingerprints import FingerprintCache
    >>> cache = FingerprintCache(tempfile.mkdtemp())
    >>> images = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    >>> first = cache.fingerprints(["a", "b", "c"], images)
    >>> again = FingerprintCache(cache.folder).fingerprints(["c", "a"], images[[2, 0]])
    >>> cache.computed, np.array_equal(again.signatures, first.signatures[[2, 0]])
    (3, True)
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.computed = 0
        self._index: dict[str, tuple[str, int]] = {}
        self._seen: set[str] = set()

    def _chunks(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob(f"v{FINGERPRINT_VERSION}-*.npz"))

    def _refresh(self) -> None:
        """Read the keys of chunks not read yet."""
        for chunk in self._chunks():
            if chunk.name in self._seen:
                continue
            try:
                with np.load(chunk) as stored:
                    keys = [key.decode() for key in stored["keys"].tolist()]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                continue  # unreadable: its fingerprints are computed again
            self._seen.add(chunk.name)
            for row, key in enumerate(keys):
                self._index.setdefault(key, (chunk.name, row))

    def _forget(self, name: str) -> None:
        self._index = {key: place for key, place in self._index.items() if place[0] != name}
        self._seen.discard(name)

    def __len__(self) -> int:
        self._refresh()
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        self._refresh()
        return key in self._index

    def get(self, keys: Sequence[str]) -> tuple[ImageFingerprints, np.ndarray]:
        """The cached fingerprints of ``keys`` and which keys were found.

        Returns
        -------
        fingerprints : ImageFingerprints
            One per key, in order (zeros where not found).
        found : numpy.ndarray
            ``(len(keys),)`` ``bool``.
        """
        self._refresh()
        keys = list(keys)
        found = np.array([key in self._index for key in keys], dtype=bool)
        by_chunk: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for position, key in enumerate(keys):
            if found[position]:
                name, row = self._index[key]
                by_chunk[name].append((position, row))
        signatures = digests = None
        for name, wanted in by_chunk.items():
            positions, rows = (np.array(column) for column in zip(*wanted))
            try:
                with np.load(self.folder / name) as stored:
                    chunk_signatures, chunk_digests = stored["signatures"], stored["digests"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # removed or damaged meanwhile
                self._forget(name)
                found[positions] = False
                continue
            if signatures is None:
                signatures = np.zeros((len(keys), chunk_signatures.shape[1]), np.float32)
                digests = np.zeros(len(keys), f"S{DIGEST_SIZE}")
            signatures[positions] = chunk_signatures[rows]
            digests[positions] = chunk_digests[rows]
        if signatures is None:
            signatures = np.zeros((len(keys), SIGNATURE_SIZE * SIGNATURE_SIZE), np.float32)
            digests = np.zeros(len(keys), f"S{DIGEST_SIZE}")
        return ImageFingerprints(signatures, digests), found

    def put(self, keys: Sequence[str], fingerprints: ImageFingerprints) -> None:
        """Store ``fingerprints`` under ``keys`` (one key per fingerprint) as one new chunk."""
        keys = list(keys)
        if len(keys) != len(fingerprints):
            message = f"Expected one key per fingerprint. Received: {len(keys)} keys, {len(fingerprints)} fingerprints"
            raise ArgumentError(message)
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"v{FINGERPRINT_VERSION}-{hashlib.sha1(chr(0).join(keys).encode()).hexdigest()[:20]}.npz"
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".partial-", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, keys=np.array([key.encode() for key in keys], dtype=bytes), signatures=fingerprints.signatures,
                         digests=fingerprints.digests)
            os.replace(temporary, self.folder / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._seen.add(name)
        for row, key in enumerate(keys):
            self._index.setdefault(key, (name, row))

    def fingerprints(
        self,
        keys: Sequence[str],
        images: np.ndarray | Sequence[np.ndarray] | Callable[[np.ndarray], np.ndarray | Iterable[np.ndarray]],
    ) -> ImageFingerprints:
        """The fingerprints of ``keys``: cached ones read, missing ones computed from ``images`` and stored.

        Parameters
        ----------
        keys : sequence of str
            One key per image (see :func:`image_key`).
        images : numpy.ndarray, sequence or callable
            The images of ``keys``, in order (only the missing ones are read,
            by integer-array indexing for an array, item by item for a
            sequence), or a callable given the positions of the missing keys
            and returning their images (an array, or an iterable of images or
            batches, as :func:`fingerprint_images` takes).

        Returns
        -------
        ImageFingerprints
            One per key, in order.
        """
        keys = list(keys)
        cached, found = self.get(keys)
        missing = np.flatnonzero(~found)
        if len(missing) == 0:
            return cached
        if callable(images) and not isinstance(images, np.ndarray):
            source = images(missing)
        elif isinstance(images, np.ndarray):
            source = images[missing]
        else:
            source = (images[int(position)] for position in missing)
        computed = fingerprint_images(source)
        if len(computed) != len(missing):
            message = f"Expected {len(missing)} images for the missing keys. Received: {len(computed)}"
            raise ArgumentError(message)
        self.computed += len(missing)
        unique: dict[str, int] = {}
        for offset, position in enumerate(missing.tolist()):
            unique.setdefault(keys[position], offset)
        chosen = np.array(list(unique.values()), dtype=np.int64)
        self.put(list(unique), computed[chosen])
        signatures = np.array(cached.signatures)
        digests = np.array(cached.digests)
        signatures[missing] = computed.signatures
        digests[missing] = computed.digests
        return ImageFingerprints(signatures, digests)


@dataclass(frozen=True, eq=False)
class SimilarPairs:
    """Pairs of images whose thumbnail correlation reaches a threshold, or whose pixels are identical.

    Sorted by ``(first, second)``.

    Attributes
    ----------
    first, second : numpy.ndarray
        ``int64`` indices of the two images of each pair: into ``a`` and into
        ``b`` (or both into ``a``, with ``first < second``, when ``b`` is None).
    similarity : numpy.ndarray
        ``float32`` thumbnail correlation of each pair; 1.0 where the pixels
        are identical (also where the thumbnail is constant and has no
        correlation).
    exact : numpy.ndarray
        ``bool``: whether the pixel digests are identical.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets.fingerprints import fingerprint_images, find_similar_pairs
    >>> images = np.zeros((3, 8, 8, 3), np.uint8)
    >>> images[1] = 7
    >>> pairs = find_similar_pairs(fingerprint_images(images), min_similarity=0.97)
    >>> len(pairs), pairs.first.tolist(), pairs.second.tolist()
    (1, [0], [2])
    """

    first: np.ndarray
    second: np.ndarray
    similarity: np.ndarray
    exact: np.ndarray

    def __len__(self) -> int:
        return len(self.first)


def _exact_pairs(a: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs with identical digests: ``a`` x ``b``, or within ``a`` (``i < j``) when ``b`` is None."""
    other = a if b is None else b
    positions: dict[bytes, list[int]] = defaultdict(list)
    for index, digest in enumerate(other.tolist()):
        positions[digest].append(index)
    if b is None and all(len(found) == 1 for found in positions.values()):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first: list[int] = []
    second: list[int] = []
    for index, digest in enumerate(a.tolist()):
        for partner in positions.get(digest, ()):
            if b is not None or partner > index:
                first.append(index)
                second.append(partner)
    return np.array(first, dtype=np.int64), np.array(second, dtype=np.int64)


def find_similar_pairs(
    a: ImageFingerprints,
    b: ImageFingerprints | None = None,
    *,
    min_similarity: float,
    block_size: int = 1024,
) -> SimilarPairs:
    """Pairs of ``a`` x ``b`` (or of ``a`` with itself) whose thumbnail correlation reaches ``min_similarity``.

    The similarity matrix is computed one ``block_size`` x ``block_size`` tile
    at a time, its entries at or above the threshold kept and the tile
    discarded, so peak memory is about ``block_size ** 2`` floats plus the
    pairs found, never ``len(a) * len(b)``. Within ``a`` only the tiles above
    the diagonal are computed. Pairs with identical pixel digests are always
    found (with similarity 1.0), even where the thumbnail is constant.

    Parameters
    ----------
    a : ImageFingerprints
        The first images.
    b : ImageFingerprints, optional
        The second images; ``None`` looks for pairs ``i < j`` within ``a``.
    min_similarity : float
        Smallest thumbnail correlation counted (for instance
        :data:`~cxrclassify.datasets.splits.NEAR_DUPLICATE_SIMILARITY`).
    block_size : int, default 1024
        Side of the tiles: rows of ``a`` and columns of ``b`` compared at a
        time (4 MiB of similarities at 1024). Results do not depend on it.

    Returns
    -------
    SimilarPairs
        Sorted by ``(first, second)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets.fingerprints import fingerprint_images, find_similar_pairs
    >>> rng = np.random.default_rng(0)
    >>> a = fingerprint_images(rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8))
    >>> b = a[[4, 1]]
    >>> pairs = find_similar_pairs(a, b, min_similarity=0.97, block_size=2)
    >>> pairs.first.tolist(), pairs.second.tolist(), pairs.exact.tolist()
    ([1, 4], [1, 0], [True, True])
    """
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        message = f"Expected block_size to be a positive whole number. Received: block_size={block_size!r}"
        raise ArgumentError(message)
    within = b is None
    other = a if b is None else b
    if a.signatures.shape[1] != other.signatures.shape[1]:
        message = ("Expected signatures of one size. "
                   f"Received: {a.signatures.shape[1]} and {other.signatures.shape[1]} values")
        raise ArgumentError(message)
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for row_start in range(0, len(a), block_size):
        rows = a.signatures[row_start:row_start + block_size]
        column_start = row_start if within else 0
        for column_start in range(column_start, len(other), block_size):
            tile = rows @ other.signatures[column_start:column_start + block_size].T
            keep = tile >= min_similarity
            if within and column_start == row_start:
                keep &= np.triu(np.ones(tile.shape, dtype=bool), k=1)
            row, column = np.nonzero(keep)
            if len(row):
                firsts.append(row + row_start)
                seconds.append(column + column_start)
                values.append(tile[row, column])
    exact_first, exact_second = _exact_pairs(a.digests, None if within else other.digests)
    first = np.concatenate([*firsts, exact_first]).astype(np.int64)
    second = np.concatenate([*seconds, exact_second]).astype(np.int64)
    similarity = np.concatenate([*values, np.ones(len(exact_first), np.float32)]).astype(np.float32)
    exact = a.digests[first] == other.digests[second]
    similarity[exact] = 1.0
    order = np.lexsort((second, first))
    first, second, similarity, exact = first[order], second[order], similarity[order], exact[order]
    if len(first) > 1:  # an exact pair found by both searches
        unique = np.ones(len(first), dtype=bool)
        unique[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
        first, second, similarity, exact = first[unique], second[unique], similarity[unique], exact[unique]
    return SimilarPairs(first, second, similarity, exact)
