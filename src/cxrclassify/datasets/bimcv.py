"""BIMCV-COVID19+ images of the COVID-19 Radiography Database: **training only, development only**.

The COVID-19 Radiography Database (Chowdhury et al., IEEE Access 2020; Rahman
et al., Computers in Biology and Medicine 2021; Qatar University and Dhaka
University, on Kaggle) gathers COVID-19 X-rays from several sources. The files
are fetched from the copy in the GitHub repository
``rtchanon/Machine-Learning-for-COVID-19-detection-from-chest-X-RAYS`` at a
pinned commit (:data:`BIMCV_COMMIT`), as raw files
``COVID-19_Radiography_Dataset/COVID/COVID-NNNN.png``. Only the 1,652 files
thought to come from BIMCV-COVID19+ (Valencia region, Spain; numbers in
COVID-1852...COVID-3616) are listed, with the sha256 of each upstream PNG, in
the package (``registry/bimcv_<commit>.csv``): every upstream download is
verified.

Read this before use:

* **The provenance is inferred, not stated**: from the file-number range, no
  hash match to the database's other sources and a visual sample. A few files
  may come from elsewhere.
* **No patient ids.** BIMCV holds repeat studies of the same patients, and
  many images are near-identical (73 images in 76 pairs of thumbnail
  correlation 0.99 or more; 41 upstream files are byte-identical copies of
  others). Each image is its own group (``bimcv:COVID-NNNN``), so a split by
  patient cannot keep one person on one side. The records are therefore
  **training-only**: their source is in :data:`TRAINING_ONLY_SOURCES`; use
  :func:`split_training_only` to keep them out of validation and test, and
  :func:`check_not_training_only` before evaluating. Near-identical images
  are still joined by :func:`~cxrclassify.load_datasets` (``join_duplicates``).
* **Resolution shortcut.** Every image is 224 x 224 (:data:`BIMCV_IMAGE_SIZE`),
  upscaled from an unknown original size; other sources are larger. A model can
  learn "low resolution and smooth = COVID-19" unless every class is resized
  the same way: recipes mixing this set with other sources must first resize
  every class to the same resolution (224 x 224, or lower), then to the model's
  input size.
* **Licence not verified.** The repository states none; the Kaggle database
  asks for its papers to be cited, and BIMCV-COVID19+ is reportedly CC BY 4.0
  (Vayá et al., arXiv:2006.01174). Use it for development only and do not
  redistribute the images; :func:`bimcv_records` warns so
  (:class:`~cxrclassify.exceptions.DataWarning`).

A mirror (``mirror=``) is laid out
``<mirror>/covid19-radiography-bimcv/COVID/COVID-NNNN.jpg``: by default the
mirror's files are 8-bit grayscale JPEG conversions of the upstream PNGs, whose
hashes differ from the recorded ones, so such a mirror needs ``verify=False``
(a mirror you trust) or its own ``known_hashes``, as a mirror of modified
ieee8023 files does. A mirror of the upstream PNGs themselves
(``mirror_suffix=".png"``) is verified against the registry.
"""

from __future__ import annotations

import csv
import logging
import re
import warnings
from collections.abc import Iterable
from importlib import resources
from typing import Any
from urllib.parse import quote

import numpy as np
from tqdm.auto import tqdm

from .._download import FetchOptions, RemoteFile, _resolve_fetch_options, fetch
from ..exceptions import (
    ArgumentError,
    DataError,
    DataWarning,
    UnverifiedDownloadWarning,
)
from ._records import Sample

__all__ = [
    "BIMCV_COMMIT",
    "BIMCV_IMAGE_SIZE",
    "BIMCV_SITE",
    "BIMCV_SOURCE",
    "TRAINING_ONLY_SOURCES",
    "bimcv_records",
    "bimcv_registry",
    "check_not_training_only",
    "is_training_only",
    "split_training_only",
]

logger = logging.getLogger(__name__)

#: The commit of ``rtchanon/Machine-Learning-for-COVID-19-detection-from-chest-X-RAYS`` the library pins.
BIMCV_COMMIT = "744af3631b6055c5c808f56d7c3d65bd0aa3439d"
#: The ``source`` of every record.
BIMCV_SOURCE = "bimcv"
#: The ``site`` of every record: BIMCV, the Valencia region's medical imaging bank.
BIMCV_SITE = "bimcv-valencia"
#: ``(height, width)`` of every image, upscaled from an unknown size: resize every class to it first.
BIMCV_IMAGE_SIZE = (224, 224)
#: Sources whose records may be trained on but never validated or evaluated on (no patient ids).
TRAINING_ONLY_SOURCES = frozenset({BIMCV_SOURCE})

_REPOSITORY = "rtchanon/Machine-Learning-for-COVID-19-detection-from-chest-X-RAYS"
_RAW_URL = "https://raw.githubusercontent.com/" + _REPOSITORY + "/{commit}/{path}"
_MIRROR_FOLDER = "covid19-radiography-bimcv"
_UPSTREAM_FOLDER = "COVID-19_Radiography_Dataset/COVID"
_NUMBER = re.compile(r"COVID-(\d+)\.png")
_MIRROR_SUFFIXES = (".jpg", ".png")


def _check_commit(commit: str) -> None:
    if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
        message = f"Expected a full 40-character git commit hash. Received: commit={commit!r}"
        raise ArgumentError(message)
    if commit != BIMCV_COMMIT:
        warnings.warn(
            f"COVID-19 Radiography Database commit {commit} is not the pinned {BIMCV_COMMIT}: the package "
            "records no hashes for it, so its files cannot be verified against known checksums.",
            UnverifiedDownloadWarning,
            stacklevel=3,
        )


def _remote_file(commit: str, number: int, sha256: str | None, mirror_suffix: str) -> RemoteFile:
    repository_path = f"{_UPSTREAM_FOLDER}/COVID-{number}.png"
    name = f"COVID/COVID-{number}{mirror_suffix}"
    return RemoteFile(
        name=f"{_MIRROR_FOLDER}/{commit[:12]}/{name}",
        url=_RAW_URL.format(commit=commit, path=quote(repository_path)),
        mirror_path=f"{_MIRROR_FOLDER}/{name}",
        sha256=sha256,
    )


def _registry_hashes(commit: str) -> dict[int, str | None]:
    packaged = resources.files("cxrclassify.datasets") / "registry" / f"bimcv_{BIMCV_COMMIT}.csv"
    with packaged.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    hashes = {}
    for row in rows:
        match = _NUMBER.fullmatch(row["path"].rsplit("/", 1)[-1])
        if match is None:  # the packaged file is checked by the tests; a bad row is a packaging error
            message = f"Expected registry paths like '{_UPSTREAM_FOLDER}/COVID-1852.png'. Received: {row['path']!r}"
            raise DataError(message)
        hashes[int(match.group(1))] = row["sha256"] if commit == BIMCV_COMMIT else None
    return hashes


def bimcv_registry(commit: str = BIMCV_COMMIT, *, mirror_suffix: str = ".png") -> dict[int, RemoteFile]:
    """Remote-file records of the 1,652 BIMCV images, keyed by their upstream number (``1852`` for ``COVID-1852``).

    At the pinned commit each record carries the sha256 of the upstream PNG
    (the package's ``registry/bimcv_<commit>.csv``); at another commit, none.

    Parameters
    ----------
    commit : str, default BIMCV_COMMIT
        Repository commit.
    mirror_suffix : {".png", ".jpg"}, default ".png"
        Suffix of the files under a mirror and in the cache: ``".png"`` for the
        upstream files, ``".jpg"`` for a mirror of JPEG conversions (such as
        ``../shared/data``), whose files do not match the recorded hashes.

    Returns
    -------
    dict of int to RemoteFile
        In upstream number order.

    Examples
    --------
    >>> from cxrclassify.datasets.bimcv import bimcv_registry
    >>> registry = bimcv_registry()
    >>> len(registry), min(registry), max(registry)
    (1652, 1852, 3616)
    >>> record = registry[1852]
    >>> record.sha256[:12], record.mirror_path
    ('dcd7f0bb8a06', 'covid19-radiography-bimcv/COVID/COVID-1852.png')
    >>> record.url.endswith("744af3631b6055c5c808f56d7c3d65bd0aa3439d/COVID-19_Radiography_Dataset/COVID/COVID-1852.png")
    True
    """
    if mirror_suffix not in _MIRROR_SUFFIXES:
        message = f"Expected mirror_suffix to be one of {list(_MIRROR_SUFFIXES)}. Received: mirror_suffix={mirror_suffix!r}"
        raise ArgumentError(message)
    return {number: _remote_file(commit, number, sha256, mirror_suffix)
            for number, sha256 in sorted(_registry_hashes(commit).items())}


def is_training_only(record: Sample) -> bool:
    """Whether a record may be trained on but never validated or evaluated on.

    A record is training-only when its source is one of
    :data:`TRAINING_ONLY_SOURCES` (``"bimcv"``: images without patient ids,
    many near-identical).

    Examples
    --------
    >>> from cxrclassify.datasets import Sample
    >>> from cxrclassify.datasets.bimcv import is_training_only
    >>> is_training_only(Sample("a.jpg", "covid19", source="bimcv")), is_training_only(Sample("b.png", "normal"))
    (True, False)
    """
    return getattr(record, "source", None) in TRAINING_ONLY_SOURCES


def split_training_only(records: Iterable[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Separate training-only records from the rest, keeping their order.

    Recipe code splits the rest by patient and adds the training-only records to
    the training split alone.

    Returns
    -------
    training_only, others : list of Sample
        The records of :data:`TRAINING_ONLY_SOURCES`, and all the others.

    Examples
    --------
    >>> from cxrclassify.datasets import Sample
    >>> from cxrclassify.datasets.bimcv import split_training_only
    >>> records = [Sample("a.jpg", "covid19", source="bimcv"), Sample("b.png", "normal", source="nih")]
    >>> [[r.path for r in part] for part in split_training_only(records)]
    [['a.jpg'], ['b.png']]
    """
    training_only: list[Sample] = []
    others: list[Sample] = []
    for record in records:
        (training_only if is_training_only(record) else others).append(record)
    return training_only, others


def check_not_training_only(records: Iterable[Sample], *, purpose: str = "evaluation") -> None:
    """Refuse records of training-only sources where a model is validated or evaluated.

    Parameters
    ----------
    records : iterable of Sample
        The records of a validation or test split, or of an evaluation.
    purpose : str, default "evaluation"
        What the records are for, named in the message.

    Raises
    ------
    cxrclassify.exceptions.DataError
        If any record's source is in :data:`TRAINING_ONLY_SOURCES`; the
        message counts them per source and names the first.

    Examples
    --------
    >>> from cxrclassify.datasets import Sample
    >>> from cxrclassify.datasets.bimcv import check_not_training_only
    >>> check_not_training_only([Sample("b.png", "normal", source="nih")])
    >>> check_not_training_only([Sample("a.jpg", "covid19", source="bimcv")], purpose="the test split")
    Traceback (most recent call last):
    ...
    cxrclassify.exceptions.DataError: Expected no records of the training-only sources ['bimcv'] in the test split: they have no patient ids, so scores on them count the same patients seen in training. Received: 1 record(s) of source 'bimcv' (1), such as 'a.jpg'
    """
    offending = [record for record in records if is_training_only(record)]
    if not offending:
        return
    counts: dict[str, int] = {}
    for record in offending:
        counts[record.source] = counts.get(record.source, 0) + 1
    per_source = ", ".join(f"{source!r} ({count})" for source, count in sorted(counts.items()))
    message = (
        f"Expected no records of the training-only sources {sorted(TRAINING_ONLY_SOURCES)} in {purpose}: they "
        "have no patient ids, so scores on them count the same patients seen in training. "
        f"Received: {len(offending)} record(s) of source {per_source}, such as {offending[0].path!r}"
    )
    raise DataError(message)


def _choose(numbers: Iterable[int] | None, n: int | None, seed: int, available: list[int]) -> list[int]:
    if numbers is not None:
        wanted = list(dict.fromkeys(numbers))
        if any(isinstance(number, bool) or not isinstance(number, (int, np.integer)) for number in wanted):
            message = f"Expected numbers to be whole numbers (1852 for COVID-1852.png). Received: numbers={wanted[:5]!r}"
            raise ArgumentError(message)
        wanted = [int(number) for number in wanted]
        known = set(available)
        unknown = [number for number in wanted if number not in known]
        if unknown:
            message = (
                f"Expected numbers of the BIMCV images (in {available[0]}..{available[-1]}; not every number in "
                f"the range is one). Received: {len(unknown)} unknown, such as {unknown[:5]}"
            )
            raise DataError(message)
        available = sorted(wanted)
    if n is None:
        return available
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= len(available):
        message = f"Expected n to be a whole number in 1..{len(available)}, or None for all. Received: n={n!r}"
        raise ArgumentError(message)
    rng = np.random.default_rng(seed)
    return [available[i] for i in sorted(rng.choice(len(available), size=int(n), replace=False))]


def bimcv_records(
    *,
    label: str = "covid19",
    numbers: Iterable[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    commit: str = BIMCV_COMMIT,
    mirror_suffix: str = ".jpg",
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> list[Sample]:
    """Training-only records of the BIMCV COVID-19 images; only those selected are fetched.

    .. warning::
       Training only, development only. The images carry no patient ids and
       many are near-identical, so they must never be validated or evaluated
       on (:func:`split_training_only`, :func:`check_not_training_only`); every
       image is 224 x 224, so every class must be resized the same way first;
       the licence was not verified (a :class:`~cxrclassify.exceptions.DataWarning`
       says so on every call).

    Parameters
    ----------
    label : str, default "covid19"
        Class label of every image.
    numbers : iterable of int, optional
        Upstream numbers to take (``1852`` for ``COVID-1852.png``); all 1,652 by default.
    n : int, optional
        Draw this many of them (seeded); all by default.
    seed : int, default 0
        Seed of the draw.
    commit : str
        Repository commit; :data:`BIMCV_COMMIT` by default. Another one is
        fetched unverified, with a warning.
    mirror_suffix : {".jpg", ".png"}, default ".jpg"
        With ``mirror``: the suffix of its files, ``".jpg"`` for the JPEG
        conversions of ``../shared/data`` (verify with ``known_hashes``, or pass
        ``verify=False``), ``".png"`` for a mirror of the upstream PNGs
        (verified against the registry). Without a mirror the upstream PNGs
        are fetched and verified.
    fetch_options : FetchOptions, optional
        Cache folder, mirror, verification, pins and progress bars: see
        :class:`~cxrclassify.datasets.FetchOptions`. Files go to
        ``<data_home>/covid19-radiography-bimcv/<commit[:12]>/COVID/COVID-NNNN<suffix>``
        (their ``known_hashes`` names, such as
        ``"covid19-radiography-bimcv/744af3631b60/COVID/COVID-1852.jpg"``); a
        mirror is laid out ``<mirror>/covid19-radiography-bimcv/COVID/COVID-NNNN.jpg``.
    **fetch_keywords
        ``data_home``, ``mirror``, ``verify``, ``known_hashes`` and ``progress``
        one by one instead (not with ``fetch_options``).

    Returns
    -------
    list of Sample
        One record per image, in number order: ``label``, the image as its own
        group (``bimcv:COVID-NNNN``), source ``"bimcv"`` (training-only, see
        :data:`TRAINING_ONLY_SOURCES`), site ``"bimcv-valencia"``; no age, sex
        or view is known.

    Raises
    ------
    cxrclassify.exceptions.ChecksumError
        If a file does not match its recorded sha256 (a mirror of JPEG
        conversions without ``verify=False`` or ``known_hashes``); the file is
        not kept.
    cxrclassify.exceptions.DownloadError
        If a file cannot be fetched.
    cxrclassify.exceptions.DataError
        If ``numbers`` names an image not in the set.

    Warns
    -----
    DataWarning
        Once per call: the licence is not verified, development use only.

    Examples
    --------
    >>> import pathlib, tempfile, warnings
    >>> import numpy as np
    >>> from PIL import Image
    >>> from cxrclassify.datasets import bimcv_records, is_training_only
    >>> mirror = pathlib.Path(tempfile.mkdtemp())
    >>> (mirror / "covid19-radiography-bimcv" / "COVID").mkdir(parents=True)
    >>> Image.fromarray(np.zeros((224, 224), np.uint8)).save(mirror / "covid19-radiography-bimcv/COVID/COVID-1852.jpg")
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # development only; a mirror of modified files, not verified
    ...     records = bimcv_records(numbers=[1852], mirror=mirror, verify=False, data_home=tempfile.mkdtemp(),
    ...                             progress=False)
    >>> [(r.label, r.group, r.source, r.site, is_training_only(r)) for r in records]
    [('covid19', 'bimcv:COVID-1852', 'bimcv', 'bimcv-valencia', True)]
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="bimcv_records")
    _check_commit(commit)
    suffix = mirror_suffix if options.mirror is not None else ".png"
    registry = bimcv_registry(commit, mirror_suffix=suffix)
    warnings.warn(
        "The BIMCV images of the COVID-19 Radiography Database are for development only: their licence is not "
        "verified (the repository states none; BIMCV-COVID19+ is reportedly CC BY 4.0 and the Kaggle database asks "
        "for its papers to be cited). Do not redistribute them, train on them only (no patient ids), and resize "
        "every class to the same resolution first (every image is 224 x 224).",
        DataWarning,
        stacklevel=2,
    )
    chosen = _choose(numbers, n, seed, list(registry))
    records = []
    per_image = options.replace(progress=False)
    for index, number in enumerate(tqdm(chosen, desc="BIMCV images", unit="img", disable=not options.progress)):
        with warnings.catch_warnings():
            if index:  # said for the first file (verify=False, or an unpinned commit), not for every one
                warnings.filterwarnings("ignore", message="verify=False", category=UnverifiedDownloadWarning)
                warnings.filterwarnings("ignore", message=".*no checksum is recorded",
                                        category=UnverifiedDownloadWarning)
            path = fetch(registry[number], options=per_image)
        records.append(Sample(path=str(path), label=label, group=f"{BIMCV_SOURCE}:COVID-{number}",
                              source=BIMCV_SOURCE, site=BIMCV_SITE))
    logger.info("bimcv: %d images (training only; each its own group; all 224 x 224)", len(records))
    return records
