"""COVID-CXNet's COVID-19 chest X-rays (Haghanifar et al., figshare doi:10.6084/m9.figshare.12580328).

Files are fetched as raw files of the GitHub repository ``armiro/COVID-CXNet``
at a pinned commit (:data:`CXNET_COMMIT`): the metadata file ``metadata.csv``
at the repository's root first (one row per image, 23 columns: ``filename``,
``patient_id``, ``sex``, ``age``, ``view``, ``label``, ``pcr_test``, ...,
``location``, ..., ``url``), then only the selected images, from
``chest_xray_images/covid19/<filename>``. The images are CC BY 4.0 (attribute
the DOI above); the code is MIT.

The metadata file's path was established from the repository's stored file
listing: ``metadata.csv`` at the root is its only CSV file, and its header is
the 23 columns above. Upstream publishes no checksums: as for NIH
ChestX-ray14, the first download of each file records its sha256 and warns
(:class:`~cxrclassify.exceptions.UnverifiedDownloadWarning`), later uses are
checked against it, and ``known_hashes`` pins files.

**Filter before use.** The collection holds PCR-negative patients, children
(file names with a ``p`` suffix, such as ``446p.jpg``), images its authors
marked "COVID-19 but normal-looking" (a ``-`` suffix, such as ``280-.jpg``) and
a row without a label. :func:`select_cxnet_rows` drops them by default, each
rule a keyword that can be turned off, and counts (and logs) what each rule
dropped. Rows with a blank ``pcr_test`` (the source page reported no test:
mostly Radiopaedia and Eurorad cases) are kept by default; pass
``drop_pcr_unknown=True`` to drop them.

Caveats:

* Images are gathered from many places, many cut from paper figures with arrows
  and labels: the same shortcut risk as ieee8023. Each record's ``site`` (from
  its ``url``, :func:`cxrclassify.datasets.sites.site_from_url`) lets metrics be
  broken down by site.
* Some people are filed under two patient ids with the same picture under two
  file numbers (332/351, 330/349, 361/370, 409/788, 410/789, 411/790):
  :func:`~cxrclassify.load_datasets` joins the groups of identical and
  near-identical images before it splits, so keep ``join_duplicates=True``.
* Some images may also be in later ieee8023 releases; the same join catches
  those that are loaded together.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tqdm.auto import tqdm

from .._cache import get_data_home
from .._download import FetchOptions, RemoteFile, _resolve_fetch_options, fetch
from ..exceptions import ArgumentError, DataError, UnverifiedDownloadWarning
from ._records import Sample, parse_age, read_csv_rows
from .sites import site_from_url

__all__ = [
    "CXNET_COLUMNS",
    "CXNET_COMMIT",
    "CXNET_FILTER_RULES",
    "CXNET_SOURCE",
    "CxnetSelection",
    "cxnet_name_flags",
    "cxnet_records",
    "fetch_cxnet_metadata",
    "read_cxnet_metadata",
    "select_cxnet_rows",
]

logger = logging.getLogger(__name__)

#: The commit of ``armiro/COVID-CXNet`` the library pins.
CXNET_COMMIT = "3ade488b3828705706fc5f58c0667421d8b04a01"
#: The ``source`` of every COVID-CXNet record.
CXNET_SOURCE = "covid-cxnet"
#: The 23 columns of the upstream ``metadata.csv``, in order.
CXNET_COLUMNS = (
    "filename", "patient_id", "sex", "age", "view", "label", "pcr_test", "survival", "location",
    "admission_offset", "symptom_offset", "also_had_ct", "has_fever", "has_cough", "has_dyspnea", "has_diarrhea",
    "spo2", "other_symptoms", "medical_background", "opacification", "other", "is_bilateral", "url",
)
#: The rules of :func:`select_cxnet_rows`, in the order they are applied; a dropped row is counted
#: under the first rule that drops it.
CXNET_FILTER_RULES = (
    "duplicate_file", "blank_label", "other_label", "pcr_negative", "pcr_unknown", "pediatric", "normal_looking",
)

_RAW_URL = "https://raw.githubusercontent.com/armiro/COVID-CXNet/{commit}/{path}"
_MIRROR_FOLDER = "covid-cxnet"
_METADATA = "metadata.csv"
_IMAGE_FOLDER = "chest_xray_images/covid19"
_REQUIRED = ("filename", "patient_id", "sex", "age", "view", "label", "pcr_test", "location", "url")
_NAME = re.compile(r"(?P<number>\d+)(?P<flags>[A-Za-z-]*)")
_SEXES = {"male": "M", "m": "M", "female": "F", "f": "F"}


def cxnet_name_flags(filename: str) -> tuple[bool, bool]:
    """Whether a COVID-CXNet file name marks a child and a "COVID-19 but normal-looking" image.

    The collection marks them in the file name, after the number: a ``p``
    (pediatric, ``446p.jpg``), a ``-`` (normal-looking, ``280-.jpg``), or both
    (``481p-.jpg``).

    Parameters
    ----------
    filename : str
        The file name (``"446p.jpg"``).

    Returns
    -------
    pediatric, normal_looking : bool
        The two marks.

    Examples
    --------
    >>> from cxrclassify.datasets.cxnet import cxnet_name_flags
    >>> cxnet_name_flags("446p.jpg"), cxnet_name_flags("280-.jpg"), cxnet_name_flags("481p-.jpg")
    ((True, False), (False, True), (True, True))
    >>> cxnet_name_flags("370.jfif")
    (False, False)
    """
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    match = _NAME.fullmatch(stem.strip())
    flags = match.group("flags").lower() if match else ""
    return "p" in flags, "-" in flags


def _check_commit(commit: str) -> None:
    if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
        message = f"Expected a full 40-character git commit hash. Received: commit={commit!r}"
        raise ArgumentError(message)


def _remote_file(commit: str, repository_path: str) -> RemoteFile:
    return RemoteFile(
        name=f"{_MIRROR_FOLDER}/{commit[:12]}/{repository_path}",
        url=_RAW_URL.format(commit=commit, path=quote(repository_path)),
        mirror_path=f"{_MIRROR_FOLDER}/{repository_path}",
    )


def fetch_cxnet_metadata(
    *,
    commit: str = CXNET_COMMIT,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> Path:
    """Fetch (or find in the cache) COVID-CXNet's ``metadata.csv`` at ``commit``.

    The file is ``metadata.csv`` at the repository's root, cached as
    ``<data_home>/covid-cxnet/<commit[:12]>/metadata.csv`` and taken from
    ``<mirror>/covid-cxnet/metadata.csv`` with a mirror. No checksum is
    published: the first download records its sha256 and warns; pin it with
    ``known_hashes={"covid-cxnet/3ade488b3828/metadata.csv": sha256}``.

    Parameters are those of :func:`cxnet_records`.

    Returns
    -------
    pathlib.Path
        The cached file.

    Raises
    ------
    cxrclassify.exceptions.ArgumentError
        If ``commit`` is not a full commit hash.
    cxrclassify.exceptions.DownloadError
        If the file cannot be fetched (its ``ChecksumError`` when it does not
        match a ``known_hashes`` pin).

    Examples
    --------
    >>> import pathlib, tempfile, warnings
    >>> from cxrclassify.datasets.cxnet import fetch_cxnet_metadata
    >>> mirror = pathlib.Path(tempfile.mkdtemp())
    >>> (mirror / "covid-cxnet").mkdir()
    >>> _ = (mirror / "covid-cxnet" / "metadata.csv").write_text("filename,patient_id\\n260.jpg,10\\n")
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # no checksum is published: it warns and records one
    ...     path = fetch_cxnet_metadata(mirror=mirror, data_home=tempfile.mkdtemp(), progress=False)
    >>> path.as_posix().endswith("covid-cxnet/3ade488b3828/metadata.csv")
    True
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="fetch_cxnet_metadata")
    _check_commit(commit)
    return fetch(_remote_file(commit, _METADATA), options=options)


def read_cxnet_metadata(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read COVID-CXNet's ``metadata.csv`` into one dict per row (a UTF-8 byte order mark skipped).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    list of dict
        The rows, values as in the file.

    Raises
    ------
    cxrclassify.exceptions.DataError
        If a needed column (filename, patient_id, sex, age, view, label,
        pcr_test, location, url) is missing, or a ``filename`` is not a plain
        file name; the message names the file (and the row).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify.datasets.cxnet import CXNET_COLUMNS, read_cxnet_metadata
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metadata.csv"
    >>> row = {column: "" for column in CXNET_COLUMNS}
    >>> row.update(filename="260.jpg", patient_id="10", label="COVID-19", pcr_test="positive")
    >>> _ = path.write_text(",".join(CXNET_COLUMNS) + "\\n" + ",".join(row.values()) + "\\n", encoding="utf-8-sig")
    >>> read_cxnet_metadata(path)[0]["patient_id"]
    '10'
    """
    path = Path(path)
    rows = read_csv_rows(path)
    missing = [column for column in _REQUIRED if column not in (rows[0] if rows else {})]
    if not rows or missing:
        message = (
            f"{str(path)!r} is not a COVID-CXNet metadata.csv: expected a header with the columns "
            f"{list(_REQUIRED)} and at least one row. Received: "
            + (f"a file missing {missing}" if rows else "no row")
        )
        raise DataError(message)
    for number, row in enumerate(rows, start=1):
        name = row["filename"].strip()
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            message = (
                f"{str(path)!r}, row {number}: expected a filename that is a file name (like '260.jpg'). "
                f"Received: filename={row['filename']!r}"
            )
            raise DataError(message)
        row["filename"] = name
    return rows


@dataclass(frozen=True)
class CxnetSelection:
    """The rows :func:`select_cxnet_rows` kept, and how many each rule dropped.

    Attributes
    ----------
    rows : list of dict
        The rows kept, in file order.
    dropped : dict of str to int
        Rows dropped by each rule of :data:`CXNET_FILTER_RULES`, in order; a
        row is counted under the first rule that drops it, so the counts add up
        to the rows dropped. A rule turned off drops nothing.
    matched : dict of str to int
        Rows each rule matches, counted independently and whether the rule is
        on or not (``matched["pcr_unknown"]`` is the rows with a blank PCR test
        even when they are kept).
    total : int
        Rows read.

    Examples
    --------
    >>> from cxrclassify.datasets.cxnet import CxnetSelection
    >>> selection = CxnetSelection(rows=[{"filename": "1.jpg"}], dropped={"pediatric": 1}, total=2)
    >>> len(selection), selection.dropped_total
    (1, 1)
    """

    rows: list[dict[str, str]]
    dropped: dict[str, int] = field(default_factory=dict)
    matched: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def dropped_total(self) -> int:
        """Rows dropped, all rules together."""
        return sum(self.dropped.values())

    def summary(self) -> str:
        """One line: rows kept of rows read, and what each rule dropped."""
        parts = ", ".join(f"{rule} {count}" for rule, count in self.dropped.items() if count)
        return f"kept {len(self.rows)} of {self.total} rows; dropped: {parts or 'none'}"


def _pcr(row: Mapping[str, str]) -> str:
    value = (row.get("pcr_test") or "").strip().lower()
    return value if value in ("positive", "negative") else ""


def select_cxnet_rows(
    rows: Iterable[Mapping[str, str]],
    *,
    labels: Iterable[str] = ("COVID-19",),
    drop_blank_label: bool = True,
    drop_pcr_negative: bool = True,
    drop_pcr_unknown: bool = False,
    drop_pediatric: bool = True,
    adult_age: float | None = 18,
    drop_normal_looking: bool = True,
) -> CxnetSelection:
    """Apply the default filter to COVID-CXNet metadata rows, counting what each rule drops.

    The rules, in order (:data:`CXNET_FILTER_RULES`); a row is counted under
    the first that drops it:

    ``duplicate_file``
        A file listed twice is kept once, in its first row (always).
    ``blank_label`` (``drop_blank_label=True``)
        Rows without a ``label``. With ``False`` they are kept (and labelled
        as the rest by :func:`cxnet_records`).
    ``other_label``
        Rows whose ``label`` is not one of ``labels`` (case and spaces ignored).
    ``pcr_negative`` (``drop_pcr_negative=True``)
        Rows whose ``pcr_test`` is ``negative``.
    ``pcr_unknown`` (``drop_pcr_unknown=False``)
        Rows whose ``pcr_test`` is blank (or neither ``positive`` nor
        ``negative``): the source reported no test. **Kept by default**: the
        collection gathers cases reported as COVID-19, and a blank field means
        unreported, not negative (these are mostly Radiopaedia and Eurorad
        cases, among them the pairs of one person filed twice).
    ``pediatric`` (``drop_pediatric=True``)
        Children: a ``p`` suffix in the file name (``446p.jpg``), or an ``age``
        below ``adult_age`` (``None``: the suffix alone). A blank age is not
        taken for a child.
    ``normal_looking`` (``drop_normal_looking=True``)
        Images the collection marks "COVID-19 but normal-looking": a ``-``
        suffix (``280-.jpg``).

    The counts are logged (``logging.INFO``) and returned.

    Parameters
    ----------
    rows : iterable of dict
        Rows of :func:`read_cxnet_metadata`.
    labels : iterable of str, default ("COVID-19",)
        ``label`` values kept.
    drop_blank_label, drop_pcr_negative, drop_pcr_unknown, drop_pediatric, drop_normal_looking : bool
        Turn each rule on or off (defaults as above).
    adult_age : float or None, default 18
        Youngest age kept when ``drop_pediatric``.

    Returns
    -------
    CxnetSelection
        The rows kept, the counts dropped and matched per rule, and the rows read.

    Examples
    --------
    >>> from cxrclassify.datasets.cxnet import select_cxnet_rows
    >>> rows = [{"filename": "1.jpg", "label": "COVID-19", "pcr_test": "positive", "age": "60"},
    ...         {"filename": "2.jpg", "label": "COVID-19", "pcr_test": "negative", "age": "60"},
    ...         {"filename": "3.jpg", "label": "COVID-19", "pcr_test": "", "age": "60"},
    ...         {"filename": "4p.jpg", "label": "COVID-19", "pcr_test": "positive", "age": "5"},
    ...         {"filename": "5-.jpg", "label": "COVID-19", "pcr_test": "positive", "age": "40"},
    ...         {"filename": "6.jpg", "label": "", "pcr_test": "positive", "age": ""}]
    >>> selection = select_cxnet_rows(rows)
    >>> [row["filename"] for row in selection.rows]
    ['1.jpg', '3.jpg']
    >>> selection.summary()
    'kept 2 of 6 rows; dropped: blank_label 1, pcr_negative 1, pediatric 1, normal_looking 1'
    >>> len(select_cxnet_rows(rows, drop_pcr_unknown=True, drop_normal_looking=False))
    2
    """
    if adult_age is not None and (isinstance(adult_age, bool) or not isinstance(adult_age, (int, float))):
        message = f"Expected adult_age to be a number of years or None. Received: adult_age={adult_age!r}"
        raise ArgumentError(message)
    wanted = {str(label).strip().casefold() for label in labels}
    enabled = {
        "duplicate_file": True, "blank_label": drop_blank_label, "other_label": True,
        "pcr_negative": drop_pcr_negative, "pcr_unknown": drop_pcr_unknown, "pediatric": drop_pediatric,
        "normal_looking": drop_normal_looking,
    }
    dropped = dict.fromkeys(CXNET_FILTER_RULES, 0)
    matched = dict.fromkeys(CXNET_FILTER_RULES, 0)
    seen: set[str] = set()
    kept = []
    total = 0
    for row in rows:
        total += 1
        name = (row.get("filename") or "").strip()
        label = (row.get("label") or "").strip()
        pediatric_name, normal_looking = cxnet_name_flags(name)
        age = parse_age(row.get("age", ""))
        hits = {
            "duplicate_file": name in seen,
            "blank_label": not label,
            "other_label": bool(label) and label.casefold() not in wanted,
            "pcr_negative": _pcr(row) == "negative",
            "pcr_unknown": _pcr(row) == "",
            "pediatric": pediatric_name or (adult_age is not None and age is not None and age < adult_age),
            "normal_looking": normal_looking,
        }
        seen.add(name)
        for rule, hit in hits.items():
            matched[rule] += bool(hit)
        rule = next((rule for rule in CXNET_FILTER_RULES if hits[rule] and enabled[rule]), None)
        if rule is None:
            kept.append(dict(row))
        else:
            dropped[rule] += 1
    selection = CxnetSelection(rows=kept, dropped=dropped, matched=matched, total=total)
    logger.info("covid-cxnet: %s", selection.summary())
    return selection


def _sex(value: str | None) -> str | None:
    return _SEXES.get((value or "").strip().lower())


def _fetch_images(
    rows: list[dict[str, str]], commit: str, options: FetchOptions, *, said_unverified: bool
) -> list[Path]:
    home = get_data_home(options.data_home)
    known = options.known_hashes or {}
    per_image = options.replace(progress=False)
    unpinned = 0
    paths = []
    for index, row in enumerate(tqdm(rows, desc="COVID-CXNet images", unit="img", disable=not options.progress)):
        remote = _remote_file(commit, f"{_IMAGE_FOLDER}/{row['filename']}")
        if options.verify and remote.name not in known and not home.joinpath(*remote.name.split("/")).exists():
            unpinned += 1
        with warnings.catch_warnings():
            # Said once below (and verify=False once, for metadata.csv or the first image), not for every image.
            if said_unverified or index:
                warnings.filterwarnings("ignore", message="verify=False", category=UnverifiedDownloadWarning)
            warnings.filterwarnings("ignore", message=".*no checksum is recorded", category=UnverifiedDownloadWarning)
            paths.append(fetch(remote, options=per_image))
    if unpinned:
        where = options.mirror if options.mirror is not None else "GitHub"
        warnings.warn(
            f"{unpinned} COVID-CXNet image(s) were taken from {str(where)!r} without checking a checksum: the "
            "collection publishes none. Their sha256 is recorded in the cache (later uses are checked against "
            f"it); pin them with known_hashes={{'{_MIRROR_FOLDER}/{commit[:12]}/{_IMAGE_FOLDER}/<filename>': sha256}}.",
            UnverifiedDownloadWarning,
            stacklevel=3,
        )
    return paths


def cxnet_records(
    *,
    label: str = "covid19",
    labels: Iterable[str] = ("COVID-19",),
    drop_blank_label: bool = True,
    drop_pcr_negative: bool = True,
    drop_pcr_unknown: bool = False,
    drop_pediatric: bool = True,
    adult_age: float | None = 18,
    drop_normal_looking: bool = True,
    rows: Iterable[Mapping[str, str]] | None = None,
    commit: str = CXNET_COMMIT,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> list[Sample]:
    """Records of COVID-CXNet's COVID-19 X-rays, filtered; only the images kept are fetched.

    Parameters
    ----------
    label : str, default "covid19"
        Class label given to every image kept (the library's COVID-19 class name).
    labels, drop_blank_label, drop_pcr_negative, drop_pcr_unknown, drop_pediatric, adult_age, drop_normal_looking
        The filter: see :func:`select_cxnet_rows`. By default PCR-negative
        rows, children, "normal-looking" images and the row without a label
        are dropped, and rows with a blank PCR test kept.
    rows : iterable of dict, optional
        Metadata rows already selected (a subset of :func:`read_cxnet_metadata`
        or of a :class:`CxnetSelection`); skips fetching ``metadata.csv`` and the
        filter (a file listed twice is still kept once).
    commit : str
        Repository commit; :data:`CXNET_COMMIT` by default.
    fetch_options : FetchOptions, optional
        Cache folder, mirror, verification, pins and progress bars: see
        :class:`~cxrclassify.datasets.FetchOptions`. Files go to
        ``<data_home>/covid-cxnet/<commit[:12]>/<repository path>`` (their
        ``known_hashes`` names, such as
        ``"covid-cxnet/3ade488b3828/chest_xray_images/covid19/260.jpg"``); a
        mirror is laid out
        ``<mirror>/covid-cxnet/{metadata.csv,chest_xray_images/covid19/<file>}``.
        Upstream publishes no checksums: with ``verify=True`` each file is taken
        on its first download and its sha256 recorded (with an
        :class:`~cxrclassify.exceptions.UnverifiedDownloadWarning`), and later
        uses are checked against it.
    **fetch_keywords
        ``data_home``, ``mirror``, ``verify``, ``known_hashes`` and ``progress``
        one by one instead (not with ``fetch_options``).

    Returns
    -------
    list of Sample
        One record per image kept, in file order, with the patient
        (``covid-cxnet:<patient_id>``; ``None``, the image its own group, where
        the row has none) as group, ``"covid-cxnet"`` as source, age, sex
        (``"M"``/``"F"``) and view where recorded, and the ``site`` of its
        ``url`` (:func:`cxrclassify.datasets.sites.site_from_url`:
        ``"twitter-chestimaging"``, ``"radiopaedia"``, ``"journal:<publisher>"``...).

    Raises
    ------
    cxrclassify.exceptions.DataError
        If the metadata file is malformed.
    cxrclassify.exceptions.DownloadError
        If a file cannot be fetched (an HTTP error, a file missing from a
        mirror), or its ``ChecksumError`` when a file does not match its pin or
        the sha256 recorded at its first download.

    Warns
    -----
    UnverifiedDownloadWarning
        Once for ``metadata.csv`` and once for the images taken without a checksum.

    Notes
    -----
    Load the records with :func:`~cxrclassify.load_datasets` (its default
    ``join_duplicates=True``): six pictures are filed under two patient ids
    each, and only the join by image keeps both copies in one split.

    Examples
    --------
    >>> import pathlib, tempfile, warnings
    >>> import numpy as np
    >>> from PIL import Image
    >>> from cxrclassify.datasets import cxnet_records
    >>> mirror = pathlib.Path(tempfile.mkdtemp())
    >>> folder = mirror / "covid-cxnet" / "chest_xray_images" / "covid19"
    >>> folder.mkdir(parents=True)
    >>> for name in ("260.jpg", "446p.jpg"):
    ...     Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / name)
    >>> _ = (mirror / "covid-cxnet" / "metadata.csv").write_text(
    ...     "filename,patient_id,sex,age,view,label,pcr_test,location,url\\n"
    ...     "260.jpg,10,female,68,,COVID-19,positive,Spain,https://twitter.com/ChestImaging/status/1\\n"
    ...     "446p.jpg,90,male,4,AP,COVID-19,positive,Italy,https://radiopaedia.org/cases/x\\n")
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # unverified: upstream publishes no checksums
    ...     records = cxnet_records(mirror=mirror, data_home=tempfile.mkdtemp(), progress=False)
    >>> [(r.label, r.group, r.source, r.age, r.sex, r.site) for r in records]
    [('covid19', 'covid-cxnet:10', 'covid-cxnet', 68.0, 'F', 'twitter-chestimaging')]
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="cxnet_records")
    _check_commit(commit)
    if rows is None:
        metadata = fetch_cxnet_metadata(commit=commit, fetch_options=options)
        selection = select_cxnet_rows(
            read_cxnet_metadata(metadata), labels=labels, drop_blank_label=drop_blank_label,
            drop_pcr_negative=drop_pcr_negative, drop_pcr_unknown=drop_pcr_unknown, drop_pediatric=drop_pediatric,
            adult_age=adult_age, drop_normal_looking=drop_normal_looking,
        )
        chosen = selection.rows
    else:
        chosen = _one_row_per_file(rows)
    paths = _fetch_images(chosen, commit, options, said_unverified=rows is None)
    records = []
    for row, path in zip(chosen, paths):
        patient = (row.get("patient_id") or "").strip()
        records.append(Sample(
            path=str(path), label=label, group=f"{CXNET_SOURCE}:{patient}" if patient else None,
            source=CXNET_SOURCE, age=parse_age(row.get("age", "")), sex=_sex(row.get("sex")),
            view=(row.get("view") or "").strip() or None,
            site=site_from_url(row.get("url"), location=(row.get("location") or "").strip() or None),
        ))
    ungrouped = sum(record.group is None for record in records)
    if ungrouped:
        logger.info("covid-cxnet: %d image(s) have no patient_id; each is its own group", ungrouped)
    sites = Counter(record.site for record in records)
    logger.info("covid-cxnet: %d images of %d patients from %d sites (%s)", len(records),
                len({record.group for record in records if record.group}), len(sites),
                ", ".join(f"{site} {count}" for site, count in sites.most_common(5)))
    return records


def _one_row_per_file(rows: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    kept: dict[str, dict[str, str]] = {}
    for row in rows:
        name = (row.get("filename") or "").strip()
        if name in kept:
            logger.info("covid-cxnet: %s is listed twice; kept once, under patient %s", name,
                        kept[name].get("patient_id"))
            continue
        kept[name] = {**row, "filename": name}
    return list(kept.values())
