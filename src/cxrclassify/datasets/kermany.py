"""Kermany, Zhang & Goldbaum's pediatric chest X-rays (Mendeley Data, doi:10.17632/rscbjbr9sj.2).

The archive ``ChestXRay2017.zip`` (about 1.2 GB, CC BY 4.0) holds
``chest_xray/{train,test}/{NORMAL,PNEUMONIA}/``: children aged 1 to 5 from one
hospital in Guangzhou. Pneumonia images are named ``personN_bacteria_M.jpeg`` or
``personN_virus_M.jpeg``: the subtype is in the name and ``personN`` is the
patient. Normal images are named ``IM-XXXX-YYYY.jpeg`` or
``NORMAL2-IM-XXXX-YYYY.jpeg`` (some ``IM-XXXX-YYYY-ZZZZ.jpeg``); the study
number ``[NORMAL2-]IM-XXXX`` is taken as the patient, whatever follows it. The archive's checksum is not published: the first download records
its size and sha256 and warns; pin a known hash with ``sha256=``.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from .._archives import checked_archive_members, extract_archive
from .._cache import file_sha256, get_data_home
from .._download import FetchOptions, RemoteFile, _resolve_fetch_options, fetch
from ..exceptions import ChecksumError, DataError
from ._records import Sample

__all__ = ["KERMANY_URL", "KermanyImage", "parse_kermany_name", "kermany_archive", "kermany_index",
           "kermany_records"]

logger = logging.getLogger(__name__)

#: Mendeley Data's download address of ``ChestXRay2017.zip`` (dataset rscbjbr9sj, version 2).
KERMANY_URL = (
    "https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
    "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded"
)
_ARCHIVE_NAME = "kermany/ChestXRay2017.zip"
_MIRROR_PATH = "kermany-pediatric-cxr/ChestXRay2017.zip"
_MEMBER = re.compile(r"^(?:.*/)?chest_xray/(train|test)/(NORMAL|PNEUMONIA)/([^/]+\.jpe?g)$", re.IGNORECASE)
_PNEUMONIA_NAME = re.compile(r"^(person\d+)_(bacteria|virus)_\d+", re.IGNORECASE)
#: Normal images: ``[NORMAL2-]IM-<study>-<image>[-<image>...]``; the study number is the patient.
_NORMAL_NAME = re.compile(r"^((?:NORMAL2-)?IM-\d+)(?:-\d+)+$", re.IGNORECASE)
_SOURCE = "kermany"
#: The ``site`` of every record: Guangzhou Women and Children's Medical Center, where every image was made.
_SITE = "guangzhou-wcmc"


@dataclass(frozen=True)
class KermanyImage:
    """One image of the archive: its member path, split, class, pneumonia subtype and patient."""

    member: str
    split: str
    label: str
    subtype: str | None
    patient: str


def parse_kermany_name(member: str) -> KermanyImage | None:
    """Parse an archive member path; ``None`` for anything that is not one of the X-rays.

    Examples
    --------
    >>> from cxrclassify.datasets.kermany import parse_kermany_name
    >>> parse_kermany_name("chest_xray/train/PNEUMONIA/person12_virus_44.jpeg")
    KermanyImage(member='chest_xray/train/PNEUMONIA/person12_virus_44.jpeg', split='train', label='pneumonia', subtype='viral', patient='kermany:person12')
    >>> parse_kermany_name("chest_xray/test/NORMAL/NORMAL2-IM-0030-0001.jpeg").patient
    'kermany:NORMAL2-IM-0030'
    >>> parse_kermany_name("chest_xray/train/NORMAL/IM-0439-0001-0001.jpeg").patient  # one study, one patient
    'kermany:IM-0439'
    >>> parse_kermany_name("__MACOSX/chest_xray/._x.jpeg") is None
    True
    """
    match = _MEMBER.match(member)
    if not match or PurePosixPath(member).name.startswith("._") or member.startswith("__MACOSX"):
        return None
    split, folder, filename = match.groups()
    stem = PurePosixPath(filename).stem
    if folder.upper() == "PNEUMONIA":
        name = _PNEUMONIA_NAME.match(stem)
        if name is None:
            return KermanyImage(member, split.lower(), "pneumonia", None, f"{_SOURCE}:{stem}")
        subtype = "bacterial" if name.group(2).lower() == "bacteria" else "viral"
        return KermanyImage(member, split.lower(), "pneumonia", subtype, f"{_SOURCE}:{name.group(1)}")
    name = _NORMAL_NAME.match(stem)
    patient = name.group(1) if name is not None else stem
    return KermanyImage(member, split.lower(), "normal", None, f"{_SOURCE}:{patient}")


def kermany_archive(
    *,
    path: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> Path:
    """The archive (or an extracted folder) holding ``chest_xray/``: the user's own, or fetched.

    Parameters
    ----------
    path : path, optional
        An archive ``ChestXRay2017.zip`` or an extracted folder (holding ``chest_xray/``,
        or being it) that the user already has. Nothing is downloaded then.
    sha256 : str, optional
        The archive's known sha256, checked on download (and on ``path`` when it is a file).
    fetch_options : FetchOptions, optional
        Cache folder, mirror, verification, pins and progress bars: see
        :class:`~cxrclassify.datasets.FetchOptions`. A mirror holds
        ``<mirror>/kermany-pediatric-cxr/ChestXRay2017.zip``.
    **fetch_keywords
        ``data_home``, ``mirror``, ``verify``, ``known_hashes`` and ``progress``
        one by one instead (not with ``fetch_options``).

    Returns
    -------
    pathlib.Path
        The archive, or the folder.

    Examples
    --------
    >>> from cxrclassify.datasets.kermany import kermany_archive
    >>> archive = kermany_archive(path="~/Downloads/ChestXRay2017.zip")  # doctest: +SKIP
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="kermany_archive")
    if path is not None:
        return _user_archive(Path(path).expanduser(), sha256)
    remote = RemoteFile(name=_ARCHIVE_NAME, url=KERMANY_URL, mirror_path=_MIRROR_PATH, sha256=sha256)
    return fetch(remote, options=options)


def _user_archive(path: Path, sha256: str | None) -> Path:
    if path.is_dir():
        return path.parent if path.name == "chest_xray" else path
    if not path.is_file():
        message = (
            f"Expected the Kermany archive ChestXRay2017.zip or its extracted folder. "
            f"Received: path={str(path)!r}, which does not exist"
        )
        raise DataError(message)
    if not zipfile.is_zipfile(path):
        message = (
            f"Expected the Kermany archive ChestXRay2017.zip (a complete zip file) or its extracted folder. "
            f"Received: path={str(path)!r} ({path.stat().st_size} bytes), which is not a readable zip archive: "
            "a truncated download, or a file of another format"
        )
        raise DataError(message)
    if sha256 is not None:
        found = file_sha256(path)
        if found != sha256.lower():
            message = f"{str(path)!r} has sha256 {found}, expected {sha256}: not the archive that was pinned."
            raise ChecksumError(message)
    return path


def kermany_index(archive: str | os.PathLike[str]) -> list[KermanyImage]:
    """List the X-rays in the archive or extracted folder, sorted by member path.

    Examples
    --------
    >>> import pathlib, tempfile, zipfile
    >>> from cxrclassify.datasets.kermany import kermany_index
    >>> zipped = pathlib.Path(tempfile.mkdtemp()) / "ChestXRay2017.zip"
    >>> with zipfile.ZipFile(zipped, "w") as archive:
    ...     archive.writestr("chest_xray/train/NORMAL/IM-0001-0001.jpeg", b"")
    ...     archive.writestr("chest_xray/train/PNEUMONIA/person3_bacteria_10.jpeg", b"")
    >>> [image.label for image in kermany_index(zipped)]
    ['normal', 'pneumonia']
    """
    archive = Path(archive)
    if archive.is_dir():
        members = [path.relative_to(archive).as_posix() for path in archive.rglob("*") if path.is_file()]
    else:
        # Every member checked (a truncated or damaged archive is a DownloadError naming it,
        # and a damaged cached download is dropped so that the next fetch gets a fresh copy).
        members = [name for name, kind in checked_archive_members(archive, archive.parent).items() if kind == "file"]
    images = sorted((image for image in map(parse_kermany_name, members) if image), key=lambda i: i.member)
    if not images:
        message = (
            f"Found no chest_xray/{{train,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg image in {str(archive)!r}. "
            "Received: an archive or folder of another layout"
        )
        raise DataError(message)
    return images


def kermany_records(
    images: Iterable[KermanyImage] | None = None,
    *,
    splits: Iterable[str] = ("train", "test"),
    pneumonia_subtypes: bool = False,
    path: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> list[Sample]:
    """Records of Kermany's pediatric X-rays, extracting only the images selected.

    Parameters
    ----------
    images : iterable of KermanyImage, optional
        A selection from :func:`kermany_index` (for instance a seeded subset);
        by default every image of ``splits``.
    splits : iterable of str, default ("train", "test")
        The archive's own splits to take images from (ignored when ``images`` is given).
    pneumonia_subtypes : bool, default False
        Label pneumonia images ``"bacterial_pneumonia"`` / ``"viral_pneumonia"`` instead of ``"pneumonia"``.
    path, sha256
        As in :func:`kermany_archive`.
    fetch_options : FetchOptions, optional
        Cache folder, mirror, verification, pins and progress bars: see
        :class:`~cxrclassify.datasets.FetchOptions` (a mirror as in :func:`kermany_archive`).
    **fetch_keywords
        ``data_home``, ``mirror``, ``verify``, ``known_hashes`` and ``progress``
        one by one instead (not with ``fetch_options``).

    Returns
    -------
    list of Sample
        Records with the patient as group, ``"kermany"`` as source and
        ``"guangzhou-wcmc"`` (Guangzhou Women and Children's Medical Center) as site.

    Examples
    --------
    >>> from cxrclassify.datasets import kermany_records
    >>> records = kermany_records(mirror="../shared/data", verify=False)  # doctest: +SKIP
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="kermany_records")
    archive = kermany_archive(path=path, sha256=sha256, fetch_options=options)
    wanted = set(splits)
    selected = list(images) if images is not None else [i for i in kermany_index(archive) if i.split in wanted]
    if archive.is_dir():
        root = archive
    else:
        root = get_data_home(options.data_home) / "kermany" / "extracted"
        extract_archive(archive, root, members=[image.member for image in selected])
    records = [
        Sample(
            path=str(root / image.member),
            label=f"{image.subtype}_pneumonia" if pneumonia_subtypes and image.subtype else image.label,
            group=image.patient,
            source=_SOURCE,
            site=_SITE,
        )
        for image in selected
    ]
    logger.info("kermany: %d images of %d patients", len(records), len({r.group for r in records}))
    return records
