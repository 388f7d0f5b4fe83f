"""The ieee8023 COVID-19 image data collection (Cohen et al., arXiv:2003.11597, 2006.11988).

Files are fetched as raw files of the GitHub repository ``ieee8023/covid-chestxray-dataset``
at a pinned commit: ``metadata.csv`` first, then only the images the selection
needs. At the default commit every file is verified against the sizes and
hashes recorded in the package (``registry/ieee8023_<commit>.csv``: sha256, or
git's blob SHA-1 for files of 4 MiB or more).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from tqdm.auto import tqdm

from .._download import FetchOptions, RemoteFile, _resolve_fetch_options, fetch
from ..exceptions import ArgumentError, DataError, UnverifiedDownloadWarning
from ._records import Sample, parse_age
from .sites import ieee8023_site

__all__ = [
    "IEEE8023_COMMIT",
    "FRONTAL_VIEWS",
    "ieee8023_registry",
    "fetch_ieee8023_metadata",
    "read_ieee8023_metadata",
    "select_ieee8023_rows",
    "ieee8023_records",
]

logger = logging.getLogger(__name__)

#: The commit of 2020-06-05 the library pins by default (the seed paper's era).
IEEE8023_COMMIT = "0f7245db6f5aa4001ea75cf69fe6cfe091928403"
#: Frontal projections kept by default; lateral views (``L``) and CT (``Axial``, ``Coronal``) are dropped.
FRONTAL_VIEWS = ("PA", "AP", "AP Supine")

_RAW_URL = "https://raw.githubusercontent.com/ieee8023/covid-chestxray-dataset/{commit}/{path}"
_MIRROR_FOLDER = "ieee8023-covid-chestxray"
_SOURCE = "ieee8023"


def ieee8023_registry(commit: str = IEEE8023_COMMIT) -> dict[str, RemoteFile]:
    """Remote-file records of the collection at ``commit``, keyed by repository path.

    At the pinned commit each record carries the file's size and sha256 (or git
    blob SHA-1). For any other commit the records carry no hash: fetching them
    warns that they were not verified.

    Examples
    --------
    >>> from cxrclassify.datasets.ieee8023 import ieee8023_registry
    >>> record = ieee8023_registry()["metadata.csv"]
    >>> record.size, record.sha256[:12]
    (435367, '933e38b2c77e')
    """
    packaged = resources.files("cxrclassify.datasets") / "registry" / f"ieee8023_{commit}.csv"
    if not packaged.is_file():
        return {}
    with packaged.open(newline="", encoding="utf-8") as handle:
        return {row["path"]: _remote_file(commit, row["path"], row) for row in csv.DictReader(handle)}


def _remote_file(commit: str, repository_path: str, row: Mapping[str, str] | None = None) -> RemoteFile:
    row = row or {}
    return RemoteFile(
        name=f"ieee8023/{commit[:12]}/{repository_path}",
        url=_RAW_URL.format(commit=commit, path=quote(repository_path)),
        mirror_path=f"{_MIRROR_FOLDER}/{repository_path}",
        size=int(row["size"]) if row.get("size") else None,
        sha256=row.get("sha256") or None,
        git_blob_sha1=row.get("git_blob_sha1") or None,
    )


def _check_commit(commit: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        message = f"Expected a full 40-character git commit hash. Received: commit={commit!r}"
        raise ArgumentError(message)
    if commit != IEEE8023_COMMIT:
        warnings.warn(
            f"ieee8023 commit {commit} is not the pinned {IEEE8023_COMMIT}: the package records no hashes "
            "for it, so its files cannot be verified against known checksums.",
            UnverifiedDownloadWarning,
            stacklevel=3,
        )


def fetch_ieee8023_metadata(
    *,
    commit: str = IEEE8023_COMMIT,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> Path:
    """Fetch (or find in the cache) the collection's ``metadata.csv`` at ``commit``.

    Parameters are those of :func:`ieee8023_records`.

    Examples
    --------
    >>> from cxrclassify.datasets.ieee8023 import fetch_ieee8023_metadata
    >>> path = fetch_ieee8023_metadata(mirror="/data/mirror", verify=False)  # doctest: +SKIP
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="fetch_ieee8023_metadata")
    _check_commit(commit)
    record = ieee8023_registry(commit).get("metadata.csv") or _remote_file(commit, "metadata.csv")
    return fetch(record, options=options)


def read_ieee8023_metadata(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read ``metadata.csv`` into one dict per row (UTF-8, falling back to cp1252 for old revisions).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify.datasets.ieee8023 import read_ieee8023_metadata
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metadata.csv"
    >>> _ = path.write_text("patientid,finding,view,modality,filename\\n1,COVID-19,PA,X-ray,a.jpg\\n")
    >>> read_ieee8023_metadata(path)[0]["finding"]
    'COVID-19'
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    required = {"patientid", "finding", "view", "modality", "filename"}
    missing = required - set(rows[0] if rows else ())
    if missing:
        message = (
            f"{str(path)!r} is not an ieee8023 metadata.csv: expected the columns {sorted(required)}. "
            f"Received: a file missing {sorted(missing)}"
        )
        raise DataError(message)
    return rows


def finding_terms(finding: str) -> set[str]:
    """The terms of an ieee8023 ``finding`` value (``"COVID-19, ARDS"``, ``"Pneumonia/Viral/COVID-19"``).

    Examples
    --------
    >>> sorted(finding_terms("Pneumonia/Viral/COVID-19"))
    ['COVID-19', 'Pneumonia', 'Viral']
    """
    return {term.strip() for term in re.split(r"[,/]", finding) if term.strip()}


def select_ieee8023_rows(
    rows: Iterable[Mapping[str, str]],
    *,
    findings: Iterable[str] = ("COVID-19",),
    views: Iterable[str] = FRONTAL_VIEWS,
    modalities: Iterable[str] = ("X-ray",),
) -> list[Mapping[str, str]]:
    """Keep the rows whose finding contains one of ``findings``, in the given views and modalities.

    A file listed in two rows (ieee8023 files ``000001-27.jpg`` under patients 287
    and 340) is kept once, in its first row: one image is one sample.

    Examples
    --------
    >>> from cxrclassify.datasets.ieee8023 import select_ieee8023_rows
    >>> rows = [{"finding": "COVID-19, ARDS", "view": "PA", "modality": "X-ray"},
    ...         {"finding": "COVID-19", "view": "L", "modality": "X-ray"},
    ...         {"finding": "SARS", "view": "AP", "modality": "X-ray"}]
    >>> len(select_ieee8023_rows(rows))
    1
    """
    wanted, view_set, modality_set = set(findings), set(views), set(modalities)
    return one_row_per_file([
        row for row in rows
        if finding_terms(row.get("finding", "")) & wanted
        and row.get("view", "").strip() in view_set
        and row.get("modality", "").strip() in modality_set
    ])


def one_row_per_file(rows: Iterable[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """The rows, each file (``folder``/``filename``) kept once, in its first row.

    Examples
    --------
    >>> from cxrclassify.datasets.ieee8023 import one_row_per_file
    >>> rows = [{"patientid": "287", "filename": "000001-27.jpg"}, {"patientid": "340", "filename": "000001-27.jpg"}]
    >>> [row["patientid"] for row in one_row_per_file(rows)]
    ['287']
    """
    kept: dict[str, Mapping[str, str]] = {}
    for row in rows:
        key = f"{row.get('folder') or 'images'}/{row.get('filename', '')}"
        if key in kept:
            logger.info("ieee8023: %s is listed under patients %s and %s; kept once, under %s", key,
                        kept[key].get("patientid"), row.get("patientid"), kept[key].get("patientid"))
            continue
        kept[key] = row
    return list(kept.values())


def ieee8023_records(
    *,
    findings: Iterable[str] = ("COVID-19",),
    label: str = "covid19",
    views: Iterable[str] = FRONTAL_VIEWS,
    modalities: Iterable[str] = ("X-ray",),
    rows: Iterable[Mapping[str, str]] | None = None,
    commit: str = IEEE8023_COMMIT,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> list[Sample]:
    """Records of ieee8023 images, fetched (only those selected) and verified.

    Parameters
    ----------
    findings : iterable of str, default ("COVID-19",)
        Keep rows whose ``finding`` contains one of these terms (``"COVID-19, ARDS"`` counts
        as COVID-19).
    label : str, default "covid19"
        Class label given to every selected image.
    views : iterable of str, default ("PA", "AP", "AP Supine")
        Projections kept; lateral views and CT slices are dropped by default.
    modalities : iterable of str, default ("X-ray",)
        Modalities kept.
    rows : iterable of dict, optional
        Metadata rows already selected (for instance a seeded subset); skips the selection.
    commit : str
        Repository commit; the pinned one by default. Another one is fetched unverified, with a warning.
    fetch_options : FetchOptions, optional
        Cache folder, mirror, verification, pins and progress bars: see
        :class:`~cxrclassify.datasets.FetchOptions`. A mirror is laid out
        ``<mirror>/ieee8023-covid-chestxray/{metadata.csv,images/<file>}``; one
        of modified (for instance downscaled) files needs ``verify=False`` or
        ``known_hashes``.
    **fetch_keywords
        ``data_home``, ``mirror``, ``verify``, ``known_hashes`` and ``progress``
        one by one instead (not with ``fetch_options``).

    Returns
    -------
    list of Sample
        One record per image, with the patient (``ieee8023:<patientid>``) as group,
        ``"ieee8023"`` as source, the site from the row's url, doi and location
        (see :func:`cxrclassify.datasets.sites.ieee8023_site`), and age, sex and
        view where recorded.

    Examples
    --------
    >>> from cxrclassify.datasets import ieee8023_records
    >>> records = ieee8023_records(mirror="../shared/data", verify=False)  # doctest: +SKIP
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="ieee8023_records")
    if rows is None:
        metadata = fetch_ieee8023_metadata(commit=commit, fetch_options=options)
        rows = select_ieee8023_rows(read_ieee8023_metadata(metadata), findings=findings, views=views,
                                    modalities=modalities)
    else:
        _check_commit(commit)
        rows = one_row_per_file(rows)
    registry = ieee8023_registry(commit)
    records = []
    per_image = options.replace(progress=False)
    for row in tqdm(list(rows), desc="ieee8023 images", unit="img", disable=not options.progress):
        repository_path = f"{row.get('folder') or 'images'}/{row['filename']}"
        remote = registry.get(repository_path) or _remote_file(commit, repository_path)
        with warnings.catch_warnings():
            # Said once for metadata.csv (or by the caller); not again for every image.
            warnings.filterwarnings("ignore", message="verify=False", category=UnverifiedDownloadWarning)
            path = fetch(remote, options=per_image)
        records.append(Sample(
            path=str(path), label=label, group=f"{_SOURCE}:{row['patientid']}", source=_SOURCE,
            age=parse_age(row.get("age", "")), sex=(row.get("sex") or "").strip() or None,
            view=(row.get("view") or "").strip() or None, site=ieee8023_site(row),
        ))
    logger.info("ieee8023: %d images of %d patients", len(records), len({r.group for r in records}))
    return records

