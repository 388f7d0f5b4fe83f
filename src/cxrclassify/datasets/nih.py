"""NIH Clinical Center's ChestX-ray14 (Wang et al., "ChestX-ray8", IEEE CVPR 2017): adult chest X-rays.

The release is 112,120 frontal PNG images (1024 x 1024) of 30,805 patients in
twelve archives ``images_001.tar.gz`` ... ``images_012.tar.gz`` (each unpacking
to ``images/``), and the label file ``Data_Entry_2017_v2020.csv``: one row per
image (``Image Index``, ``Finding Labels`` joined with ``|``, ``Follow-up #``,
``Patient ID``, ``Patient Age``, ``Patient Gender``, ``View Position``, ...).
The labels were text-mined from the radiology reports (about 90% accurate).
Released for unrestricted use; cite Wang et al. 2017.

Only what a selection needs is fetched: from a mirror, the label file and then
the selected images one file each; from the official release, only the
archives that hold selected images, and only the selected images are extracted
from them. NIH publishes no checksums: the first download of each file records
its sha256 and warns; pin files with ``known_hashes``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .._archives import checked_archive_members, extract_archive
from .._cache import get_data_home
from .._download import FetchOptions, RemoteFile, _resolve_fetch_options, fetch
from ..exceptions import DataError, DataWarning, UnverifiedDownloadWarning
from ._records import Sample

__all__ = [
    "NIH_ARCHIVE_SIZES",
    "NIH_ARCHIVE_URLS",
    "NIH_BOX_FOLDER",
    "NIH_FINDINGS",
    "NIH_SOURCE",
    "NO_FINDING",
    "NihImage",
    "fetch_nih_images",
    "fetch_nih_labels",
    "nih_archive_plan",
    "nih_records",
    "read_nih_labels",
    "select_nih_images",
]

logger = logging.getLogger(__name__)

#: The ``source`` of every NIH record (as in the bundled sample's manifest).
NIH_SOURCE = "nih"
#: The ``site`` of every NIH record: the NIH Clinical Center, Bethesda, where every image was made.
_SITE = "nih-cc"
#: The fourteen findings of the label file's ``Finding Labels``, spelt as there.
NIH_FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Hernia",
    "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax",
)
#: The label of an image with none of the fourteen findings.
NO_FINDING = "No Finding"
#: The NIH Clinical Center's Box folder of the release (where the label file is downloaded by hand).
NIH_BOX_FOLDER = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
#: Download links of ``images_001.tar.gz`` ... ``images_012.tar.gz``, as published in NIH's
#: ``batch_download_zips.py`` of the release.
NIH_ARCHIVE_URLS = tuple(
    f"https://nihcc.box.com/shared/static/{key}.gz"
    for key in (
        "vfk49d74nhbxq3nqjg0900w5nvkorp5c", "i28rlmbvmfjbl8p2n3ril0pptcmcu9d1", "f1t00wrtdk94satdfb9olcolqx20z2jp",
        "0aowwzs5lhjrceb3qp67ahp0rd1l1etg", "v5e3goj22zr6h8tzualxfsqlqaygfbsn", "asi7ikud9jwnkrnkj99jnpfkjdes7l6l",
        "jn1b4mw4n6lnh74ovmcjb8y48h8xj07n", "tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j", "upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj",
        "l6nilvfa9cg3s28tqv1qc1olm3gnz54p", "hhq8fkdgvcari67vfhs7ppg2w6ni4jze", "ioqwiy20ihqwyr8pf4c24eazhh281pbu",
    )
)
#: Images per archive, in order: consecutive runs of the label file sorted by ``Image Index``.
NIH_ARCHIVE_SIZES = (4999,) + (10000,) * 10 + (7121,)

_LABEL_FILE = "Data_Entry_2017_v2020.csv"
_FOLDER = "nih-chestxray14"
_LABEL_NAME = f"{_FOLDER}/{_LABEL_FILE}"
_REQUIRED = ("Image Index", "Finding Labels", "Patient ID", "Patient Age", "Patient Gender", "View Position")
_AGE = re.compile(r"(\d+)\s*[Yy]?")
_MAX_AGE = 120
_KNOWN = frozenset(NIH_FINDINGS) | {NO_FINDING}
_DEFAULT_LABEL_MAP = {"normal": NO_FINDING, "pneumonia": "Pneumonia"}


@dataclass(frozen=True)
class NihImage:
    """One row of the label file: the image, its findings and its patient.

    Attributes
    ----------
    index : str
        ``Image Index``, the PNG's file name (``"00000061_012.png"``).
    findings : frozenset of str
        ``Finding Labels`` split on ``|``: names of :data:`NIH_FINDINGS`, or ``{"No Finding"}``.
    patient : str
        ``Patient ID`` (leading zeros dropped).
    age : int or None
        ``Patient Age`` in years; ``None`` when blank or above 120 (the release's known bad ages).
    sex : str or None
        ``"M"`` or ``"F"``.
    view : str or None
        ``View Position``: ``"PA"`` or ``"AP"``.
    follow_up : int or None
        ``Follow-up #``.
    line : int
        Line of the row in the label file (the header is line 1).

    Examples
    --------
    >>> from cxrclassify.datasets.nih import NihImage
    >>> image = NihImage("00000061_012.png", frozenset({"Edema", "Pneumonia"}), "61", 77, "M", "AP", 12, 2)
    >>> "Pneumonia" in image.findings, image.findings == {"Pneumonia"}
    (True, False)
    """

    index: str
    findings: frozenset[str]
    patient: str
    age: int | None
    sex: str | None
    view: str | None
    follow_up: int | None
    line: int


def _row_error(path: Path, line: int, expected: str, received: str) -> DataError:
    message = f"{str(path)!r}, line {line}: expected {expected}. Received: {received}"
    return DataError(message)


def _parse_findings(path: Path, line: int, value: str) -> frozenset[str]:
    names = [part.strip() for part in value.split("|")]
    unknown = [name for name in names if name not in _KNOWN]
    if unknown or not names:
        raise _row_error(path, line, f"Finding Labels made of {list(NIH_FINDINGS)} joined with '|', or "
                         f"{NO_FINDING!r}", f"Finding Labels={value!r}, with the unknown name(s) {unknown}")
    findings = frozenset(names)
    if NO_FINDING in findings and len(findings) > 1:
        raise _row_error(path, line, f"{NO_FINDING!r} alone", f"Finding Labels={value!r}")
    return findings


def _parse_age(path: Path, line: int, value: str) -> int | None:
    text = value.strip()
    if not text:
        return None
    match = _AGE.fullmatch(text)
    if match is None:
        raise _row_error(path, line, "Patient Age in whole years (like '58' or '058Y')", f"Patient Age={value!r}")
    age = int(match.group(1))
    return age if age <= _MAX_AGE else None


def _parse_sex(path: Path, line: int, value: str) -> str | None:
    text = value.strip().upper()
    if text not in ("", "M", "F"):
        raise _row_error(path, line, "Patient Gender 'M' or 'F'", f"Patient Gender={value!r}")
    return text or None


def _parse_row(path: Path, line: int, row: Mapping[str, str]) -> NihImage:
    index = (row.get("Image Index") or "").strip()
    if not index or "/" in index or "\\" in index or index in (".", ".."):
        raise _row_error(path, line, "an Image Index that is a file name (like '00000061_012.png')",
                         f"Image Index={index!r}")
    patient = (row.get("Patient ID") or "").strip()
    if not patient:
        raise _row_error(path, line, "a Patient ID", "an empty Patient ID")
    follow_up = (row.get("Follow-up #") or "").strip()
    return NihImage(
        index=index,
        findings=_parse_findings(path, line, row.get("Finding Labels") or ""),
        patient=str(int(patient)) if patient.isdigit() else patient,
        age=_parse_age(path, line, row.get("Patient Age") or ""),
        sex=_parse_sex(path, line, row.get("Patient Gender") or ""),
        view=(row.get("View Position") or "").strip() or None,
        follow_up=int(follow_up) if follow_up.isdigit() else None,
        line=line,
    )


def read_nih_labels(path: str | os.PathLike[str]) -> list[NihImage]:
    """Read and validate the label file ``Data_Entry_2017_v2020.csv``, one :class:`NihImage` per row.

    ``Finding Labels`` is split on ``|`` into exact names, each one of
    :data:`NIH_FINDINGS` or ``"No Finding"`` (alone); ages above 120 (the
    release's known bad ages) become ``None``.

    Raises
    ------
    cxrclassify.exceptions.DataError
        If a column is missing, or a row has an unknown finding, an Image Index
        that is not a file name, an unreadable age or sex; the message names the
        file and the line.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify.datasets.nih import read_nih_labels
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "Data_Entry_2017_v2020.csv"
    >>> _ = path.write_text(
    ...     "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\\n"
    ...     "00000061_012.png,Edema|Pneumonia,12,61,77,M,AP\\n"
    ...     "00000062_000.png,No Finding,0,62,412,F,PA\\n")
    >>> first, second = read_nih_labels(path)
    >>> sorted(first.findings), first.patient, first.age, second.age
    (['Edema', 'Pneumonia'], '61', 77, None)
    """
    path = Path(path)
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [column for column in _REQUIRED if column not in (reader.fieldnames or ())]
    if missing:
        message = (
            f"{str(path)!r} is not an NIH ChestX-ray14 label file: expected the columns {list(_REQUIRED)}. "
            f"Received: a file missing {missing}"
        )
        raise DataError(message)
    return [_parse_row(path, reader.line_num, row) for row in reader]


def _label_findings(label_map: Mapping[str, str | Iterable[str]]) -> dict[str, frozenset[str]]:
    if not label_map:
        message = f"Expected label_map to map at least one class label to findings. Received: label_map={label_map!r}"
        raise DataError(message)
    resolved = {}
    for label, findings in label_map.items():
        names = frozenset([findings] if isinstance(findings, str) else findings)
        unknown = sorted(names - _KNOWN)
        if unknown or not names:
            message = (
                f"Expected label_map values among {list(NIH_FINDINGS)} or {NO_FINDING!r}. "
                f"Received: label_map[{label!r}]={findings!r}, unknown {unknown}"
            )
            raise DataError(message)
        resolved[str(label)] = names
    return resolved


def select_nih_images(
    images: Iterable[NihImage],
    *,
    label_map: Mapping[str, str | Iterable[str]] = _DEFAULT_LABEL_MAP,
    views: Iterable[str] | None = ("PA", "AP"),
    min_age: float | None = 18,
    max_age: float | None = None,
    sexes: Iterable[str] | None = None,
    only_findings: bool = False,
) -> dict[str, list[NihImage]]:
    """Sort label-file rows into classes by finding, keeping the views, ages and sexes asked for.

    Parameters
    ----------
    images : iterable of NihImage
        Rows of :func:`read_nih_labels`.
    label_map : mapping, default {"normal": "No Finding", "pneumonia": "Pneumonia"}
        Class label to a finding name (or several: any of them). An image whose
        findings match several classes goes to the first in ``label_map`` order.
    views : iterable of str or None, default ("PA", "AP")
        Projections kept; ``None`` keeps every row.
    min_age, max_age : float or None, default 18 and None
        Ages kept, bounds included. When a bound is given, rows without a
        usable age are dropped.
    sexes : iterable of str or None, default None
        ``"M"`` and/or ``"F"``; ``None`` keeps both (and unrecorded).
    only_findings : bool, default False
        Keep an image for a class only when all its findings are the class's
        (``"Pneumonia"`` alone, not ``"Edema|Pneumonia"``).

    Returns
    -------
    dict of str to list of NihImage
        Each class label of ``label_map`` (in its order) to its images, in file order.

    Examples
    --------
    >>> from cxrclassify.datasets.nih import NihImage, select_nih_images
    >>> rows = [NihImage("a.png", frozenset({"No Finding"}), "1", 40, "F", "PA", 0, 2),
    ...         NihImage("b.png", frozenset({"Edema", "Pneumonia"}), "2", 70, "M", "AP", 0, 3),
    ...         NihImage("c.png", frozenset({"Pneumonia"}), "3", 9, "M", "AP", 0, 4)]
    >>> {label: [i.index for i in chosen] for label, chosen in select_nih_images(rows).items()}
    {'normal': ['a.png'], 'pneumonia': ['b.png']}
    >>> [i.index for i in select_nih_images(rows, min_age=None, only_findings=True)["pneumonia"]]
    ['c.png']
    """
    classes = _label_findings(label_map)
    view_set = None if views is None else {str(view) for view in views}
    sex_set = None if sexes is None else {str(sex).upper() for sex in sexes}
    chosen: dict[str, list[NihImage]] = {label: [] for label in classes}
    for image in images:
        if view_set is not None and image.view not in view_set:
            continue
        if sex_set is not None and image.sex not in sex_set:
            continue
        if (min_age is not None or max_age is not None) and image.age is None:
            continue
        if (min_age is not None and image.age < min_age) or (max_age is not None and image.age > max_age):
            continue
        for label, wanted in classes.items():
            if image.findings & wanted and (not only_findings or image.findings <= wanted):
                chosen[label].append(image)
                break
    return chosen


def fetch_nih_labels(
    *,
    label_path: str | os.PathLike[str] | None = None,
    label_url: str | None = None,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> Path:
    """The label file ``Data_Entry_2017_v2020.csv``: the user's own copy, or fetched.

    NIH publishes the label file in its Box folder (:data:`NIH_BOX_FOLDER`)
    without a direct download link. It is taken, in order, from ``label_path``
    (a copy you downloaded), from ``mirror``
    (``<mirror>/nih-chestxray14/Data_Entry_2017_v2020.csv``), from
    ``label_url`` (a direct link you have), or from the cache
    (``<data_home>/nih-chestxray14/Data_Entry_2017_v2020.csv``). No checksum is
    published: the first download records its sha256 and warns; pin it with
    ``known_hashes={"nih-chestxray14/Data_Entry_2017_v2020.csv": sha256}``.
    ``fetch_options`` (or the five fetch keywords one by one, ``**fetch_keywords``)
    are those of :class:`~cxrclassify.datasets.FetchOptions`.

    Raises
    ------
    cxrclassify.exceptions.DataError
        If ``label_path`` is not a file, or there is neither a mirror, a URL nor a cached copy.

    Examples
    --------
    >>> from cxrclassify.datasets.nih import fetch_nih_labels
    >>> path = fetch_nih_labels(mirror="../shared/data", verify=False)  # doctest: +SKIP
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="fetch_nih_labels")
    if label_path is not None:
        path = Path(label_path).expanduser()
        if not path.is_file():
            message = f"Expected label_path to be the file {_LABEL_FILE}. Received: {str(path)!r}, not a file"
            raise DataError(message)
        return path
    cached = get_data_home(options.data_home).joinpath(*_LABEL_NAME.split("/"))
    if options.mirror is None and label_url is None and not cached.is_file():
        message = (
            f"NIH publishes {_LABEL_FILE} without a direct download link. Expected one of: label_path= (a copy "
            f"downloaded from {NIH_BOX_FOLDER}), mirror= (holding {_LABEL_NAME}) or label_url= (a direct link). "
            "Received: none of them, and no copy in the cache"
        )
        raise DataError(message)
    remote = RemoteFile(name=_LABEL_NAME, url=label_url or NIH_BOX_FOLDER, mirror_path=_LABEL_NAME)
    return fetch(remote, options=options)


def nih_archive_plan(
    all_indices: Sequence[str], wanted: Iterable[str], archive_sizes: Sequence[int] = NIH_ARCHIVE_SIZES
) -> dict[int, list[str]] | None:
    """Which archive (numbered from 1) holds each wanted image, from its position in the full label file.

    The release's archives hold consecutive runs of the images sorted by
    ``Image Index``: 4999, then 10000 ten times, then 7121
    (:data:`NIH_ARCHIVE_SIZES`). The rule holds only for the full label file,
    so ``None`` is returned, rather than a guess, when ``all_indices`` does not
    have ``sum(archive_sizes)`` distinct images.

    Examples
    --------
    >>> from cxrclassify.datasets.nih import nih_archive_plan
    >>> indices = [f"{i:08d}_000.png" for i in range(10)]
    >>> nih_archive_plan(indices, ["00000009_000.png", "00000001_000.png"], archive_sizes=(4, 4, 2))
    {1: ['00000001_000.png'], 3: ['00000009_000.png']}
    >>> nih_archive_plan(indices[:9], ["00000001_000.png"], archive_sizes=(4, 4, 2)) is None
    True
    """
    ordered = sorted(set(all_indices))
    if len(ordered) != len(all_indices) or len(ordered) != sum(archive_sizes):
        return None
    boundaries = np.cumsum(archive_sizes)
    position = {index: row for row, index in enumerate(ordered)}
    plan: dict[int, list[str]] = {}
    for index in sorted(set(wanted)):
        if index not in position:
            message = f"Expected images listed in the label file. Received: {index!r}, which it does not list"
            raise DataError(message)
        number = int(np.searchsorted(boundaries, position[index], side="right")) + 1
        plan.setdefault(number, []).append(index)
    return dict(sorted(plan.items()))


def _archive_remote(number: int, url: str) -> RemoteFile:
    name = f"{_FOLDER}/images_{number:03d}.tar.gz"
    return RemoteFile(name=name, url=url, mirror_path=name)


def _image_members(archive: Path, root: Path) -> dict[str, str]:
    """``{file name: member}`` of the PNGs under ``images/``, after checking every member is safe.

    The whole archive is checked, not only the members to extract: an archive
    with a member escaping the target folder has been tampered with and is
    refused before anything is written.
    """
    members = checked_archive_members(archive, root)
    found = {}
    for name, kind in members.items():
        parts = os.path.normpath(name).replace(os.sep, "/").split("/")
        if kind == "file" and len(parts) >= 2 and parts[-2] == "images":
            found[parts[-1]] = name
    return found


def _fetch_from_mirror(names: Sequence[str], options: FetchOptions) -> dict[str, Path]:
    home = get_data_home(options.data_home)
    known = options.known_hashes or {}
    per_image = options.replace(progress=False)
    unpinned = 0
    paths = {}
    for name in tqdm(names, desc="NIH images", unit="img", disable=not options.progress):
        cache_name = f"{_FOLDER}/images/{name}"
        remote = RemoteFile(name=cache_name, url=NIH_BOX_FOLDER, mirror_path=cache_name)
        if options.verify and cache_name not in known and not home.joinpath(*cache_name.split("/")).exists():
            unpinned += 1
        with warnings.catch_warnings():
            # Said once below (or once by the caller), not for every image.
            warnings.filterwarnings("ignore", message="verify=False", category=UnverifiedDownloadWarning)
            warnings.filterwarnings("ignore", message=".*no checksum is recorded", category=UnverifiedDownloadWarning)
            paths[name] = fetch(remote, options=per_image)
    if unpinned:
        warnings.warn(
            f"{unpinned} NIH ChestX-ray14 image(s) were taken from {options.mirror!r} without checking a "
            "checksum: NIH publishes none. Their sha256 is recorded in the cache (later uses are checked "
            "against it); pin them with known_hashes={'nih-chestxray14/images/<Image Index>': sha256}.",
            UnverifiedDownloadWarning,
            stacklevel=3,
        )
    return paths


def _fetch_from_archives(
    names: Sequence[str],
    all_indices: Sequence[str] | None,
    archive_urls: Sequence[str],
    archive_sizes: Sequence[int],
    options: FetchOptions,
) -> dict[str, Path]:
    if len(archive_urls) != len(archive_sizes):
        message = (
            "Expected one archive URL per archive size. "
            f"Received: {len(archive_urls)} archive_urls and {len(archive_sizes)} archive_sizes"
        )
        raise DataError(message)
    root = get_data_home(options.data_home) / _FOLDER / "extracted"
    paths = {name: root / "images" / name for name in names if (root / "images" / name).is_file()}
    missing = [name for name in names if name not in paths]
    if not missing:
        return paths
    plan = nih_archive_plan(all_indices, missing, archive_sizes) if all_indices is not None else None
    if plan is None:
        warnings.warn(
            f"The label file lists {len(set(all_indices or ()))} distinct images, not the {sum(archive_sizes)} "
            "of the full release, so the archive holding each image cannot be derived from its row: the archives are "
            "downloaded one after the other until every selected image is found (a mirror of single images, "
            "mirror=..., fetches only the images selected).",
            DataWarning,
            stacklevel=3,
        )
        plan = {}
    order = list(plan) + [number for number in range(1, len(archive_urls) + 1) if number not in plan]
    left = set(missing)
    for number in order:
        if not left:
            break
        if number not in plan and plan:
            logger.warning("nih: %d image(s) not found in the archives their rows point to (%s...); scanning "
                           "images_%03d.tar.gz", len(left), sorted(left)[:3], number)
        archive = fetch(_archive_remote(number, archive_urls[number - 1]), options=options)
        members = _image_members(archive, root)
        found = [members[name] for name in sorted(left) if name in members]
        order_in_archive = {member: position for position, member in enumerate(members.values())}
        found.sort(key=order_in_archive.__getitem__)  # gzip reads forward only: extract in archive order
        if found:
            extract_archive(archive, root, members=found)
        for member in found:
            name = member.rsplit("/", 1)[-1]
            paths[name] = Path(os.path.normpath(root / member))
            left.discard(name)
    if left:
        message = (
            f"Expected every selected image in the release's archives. Received: {len(left)} image(s) in none "
            f"of the {len(archive_urls)} archives, such as {sorted(left)[:5]}"
        )
        raise DataError(message)
    return paths


def fetch_nih_images(
    names: Iterable[str],
    *,
    all_indices: Sequence[str] | None = None,
    from_archives: bool | None = None,
    archive_urls: Sequence[str] = NIH_ARCHIVE_URLS,
    archive_sizes: Sequence[int] = NIH_ARCHIVE_SIZES,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> dict[str, Path]:
    """Fetch the images named (``Image Index``) and return ``{name: path}``.

    From a mirror of single images (the default with ``mirror``), each image
    is fetched alone, ``<mirror>/nih-chestxray14/images/<name>``, into
    ``<data_home>/nih-chestxray14/images/``. From the release's archives (the
    default without ``mirror``, or ``from_archives=True`` with a mirror holding
    ``nih-chestxray14/images_00N.tar.gz``), only the archives holding selected
    images are downloaded (:func:`nih_archive_plan`, which needs the full
    label file's ``all_indices``; without it every archive is scanned in
    turn), each is checked whole for unsafe members, and only the selected
    images are extracted, into ``<data_home>/nih-chestxray14/extracted/images/``;
    images already extracted are not fetched again.

    Parameters
    ----------
    names : iterable of str
        ``Image Index`` values.
    all_indices : sequence of str, optional
        Every ``Image Index`` of the full label file (for the archive plan).
    from_archives : bool, optional
        Fetch the archives instead of single images; by default ``mirror is None``.
    archive_urls : sequence of str, default NIH_ARCHIVE_URLS
        Download link of each archive (NIH's Box links).
    archive_sizes : sequence of int, default NIH_ARCHIVE_SIZES
        Images per archive, in order.
    fetch_options : FetchOptions, optional
        Cache folder, mirror, verification, pins and progress bars: see
        :class:`~cxrclassify.datasets.FetchOptions`. Cache names are
        ``nih-chestxray14/images/<name>`` and ``nih-chestxray14/images_00N.tar.gz``.
    **fetch_keywords
        ``data_home``, ``mirror``, ``verify``, ``known_hashes`` and ``progress``
        one by one instead (not with ``fetch_options``).

    Examples
    --------
    >>> from cxrclassify.datasets.nih import fetch_nih_images
    >>> paths = fetch_nih_images(["00000061_012.png"], mirror="../shared/data", verify=False)  # doctest: +SKIP
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="fetch_nih_images")
    names = list(dict.fromkeys(names))
    if from_archives is None:
        from_archives = options.mirror is None
    if not from_archives:
        if options.mirror is None:
            message = (
                "Expected a mirror of single images (mirror=...) with from_archives=False: the release has no "
                "download link per image. Received: mirror=None"
            )
            raise DataError(message)
        return _fetch_from_mirror(names, options)
    return _fetch_from_archives(names, all_indices, archive_urls, archive_sizes, options)


def _draw(chosen: dict[str, list[NihImage]], n_per_label: int | Mapping[str, int | None] | None,
          seed: int) -> dict[str, list[NihImage]]:
    if n_per_label is None:
        return chosen
    rng = np.random.default_rng(seed)
    drawn = {}
    for label, images in chosen.items():
        wanted = n_per_label.get(label) if isinstance(n_per_label, Mapping) else n_per_label
        if wanted is None:
            drawn[label] = images
            continue
        if wanted > len(images):
            message = (
                f"Asked for {wanted} NIH ChestX-ray14 {label!r} images but only {len(images)} match the "
                f"selection. Received: n_per_label={n_per_label!r}"
            )
            raise DataError(message)
        drawn[label] = [images[i] for i in sorted(rng.choice(len(images), size=wanted, replace=False))]
    return drawn


def nih_records(
    *,
    label_map: Mapping[str, str | Iterable[str]] = _DEFAULT_LABEL_MAP,
    views: Iterable[str] | None = ("PA", "AP"),
    min_age: float | None = 18,
    max_age: float | None = None,
    sexes: Iterable[str] | None = None,
    only_findings: bool = False,
    n_per_label: int | Mapping[str, int | None] | None = None,
    seed: int = 0,
    label_path: str | os.PathLike[str] | None = None,
    label_url: str | None = None,
    from_archives: bool | None = None,
    archive_urls: Sequence[str] = NIH_ARCHIVE_URLS,
    archive_sizes: Sequence[int] = NIH_ARCHIVE_SIZES,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> list[Sample]:
    """Records of NIH ChestX-ray14 images selected by finding, view, age and sex; only those are fetched.

    Parameters
    ----------
    label_map : mapping, default {"normal": "No Finding", "pneumonia": "Pneumonia"}
        Class label to a finding (or several): see :func:`select_nih_images`.
        An image matching two classes goes to the first in ``label_map`` order.
    views, min_age, max_age, sexes, only_findings
        The selection, as in :func:`select_nih_images` (adults, PA and AP, by default).
    n_per_label : int or mapping, optional
        Images drawn per class (a mapping: per label, ``None`` for all); all by default.
    seed : int, default 0
        Seed of the draw.
    label_path, label_url
        Where the label file comes from: see :func:`fetch_nih_labels`.
    from_archives, archive_urls, archive_sizes
        How images are fetched: see :func:`fetch_nih_images`.
    fetch_options : FetchOptions, optional
        Cache folder, mirror, verification, pins and progress bars: see
        :class:`~cxrclassify.datasets.FetchOptions`. A mirror holds
        ``<mirror>/nih-chestxray14/{Data_Entry_2017_v2020.csv, images/<Image Index>}``.
    **fetch_keywords
        ``data_home``, ``mirror``, ``verify``, ``known_hashes`` and ``progress``
        one by one instead (not with ``fetch_options``).

    Returns
    -------
    list of Sample
        One record per image, class by class in ``label_map`` order, with the
        patient (``nih:<Patient ID>``) as group, ``"nih"`` as source,
        ``"nih-cc"`` (the NIH Clinical Center) as site, and age, sex and view.

    Raises
    ------
    cxrclassify.exceptions.DataError
        If the label file is malformed (naming the file and line), a
        ``label_map`` finding is unknown, or more images are asked for than match.

    Examples
    --------
    >>> from cxrclassify.datasets import nih_records
    >>> records = nih_records(mirror="../shared/data", verify=False)  # doctest: +SKIP
    >>> records = nih_records(label_path="Data_Entry_2017_v2020.csv", n_per_label=100)  # doctest: +SKIP
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="nih_records")
    labels = read_nih_labels(fetch_nih_labels(label_path=label_path, label_url=label_url, fetch_options=options))
    chosen = select_nih_images(labels, label_map=label_map, views=views, min_age=min_age, max_age=max_age,
                               sexes=sexes, only_findings=only_findings)
    chosen = _draw(chosen, n_per_label, seed)
    names = [image.index for images in chosen.values() for image in images]
    paths = fetch_nih_images(names, all_indices=[image.index for image in labels], from_archives=from_archives,
                             archive_urls=archive_urls, archive_sizes=archive_sizes, fetch_options=options)
    records = [
        Sample(path=str(paths[image.index]), label=label, group=f"{NIH_SOURCE}:{image.patient}", source=NIH_SOURCE,
               age=None if image.age is None else float(image.age), sex=image.sex, view=image.view, site=_SITE)
        for label, images in chosen.items()
        for image in images
    ]
    logger.info("nih: %d images of %d patients", len(records), len({record.group for record in records}))
    return records
