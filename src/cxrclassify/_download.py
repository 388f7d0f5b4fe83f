"""The one download machinery of cxrclassify: a verified, resumable, locked file cache.

Every remote file the library needs is described by a :class:`RemoteFile` record
(its path in the cache, its upstream URL, its path under a mirror, and what is
known of its size and hashes) and obtained with :func:`fetch`, which

* returns the cached copy when it is there and verified, without any network;
* otherwise streams the file from its URL, from an HTTP mirror or from a local
  mirror folder into ``<dest>.part``, resuming an interrupted ``.part`` with an
  HTTP ``Range`` request and retrying transient failures with exponential
  backoff;
* verifies the result (sha256, or git's blob SHA-1, and size) before moving it
  into place atomically, so that a file under its final name is always
  complete;
* keeps a sidecar ``<dest>.meta.json`` so that later cache hits need no
  re-hash, and holds a file lock so that two processes fetching the same file
  do not corrupt it.

The cache folder is :func:`get_data_home`. :func:`extract_archive` unpacks zip
and tar archives safely (no path traversal, no links out of the target, no
device files, no zip bombs), and turns a damaged archive (truncated, corrupt,
not an archive at all) into a :class:`~cxrclassify.exceptions.DownloadError`
naming it; a damaged archive that is a cached download is dropped from the
cache, so that the next :func:`fetch` downloads it again.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping
from urllib.parse import quote, urlsplit
from urllib.request import url2pathname

import filelock
import platformdirs
import requests
from tqdm.auto import tqdm

from ._io import write_json
from ._version import __version__
from .exceptions import ChecksumError, CxrError, DataError, DownloadError, UnverifiedDownloadWarning

__all__ = [
    "RemoteFile",
    "get_data_home",
    "cache_info",
    "clear_data_home",
    "file_sha256",
    "git_blob_sha1",
    "fetch",
    "extract_archive",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the cache folder (overridden by an explicit ``data_home``).
DATA_HOME_ENV = "CXRCLASSIFY_HOME"

_CHUNK = 1 << 20
#: Network reads are smaller: bytes of a read cut short by a dropped connection are lost to the resume.
_NET_CHUNK = 1 << 16
_PART_SUFFIX = ".part"
_META_SUFFIX = ".meta.json"
_LOCK_SUFFIX = ".lock"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")
_MD5 = re.compile(r"[0-9a-f]{32}")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: Members of at least this size are also checked one by one against ``max_ratio`` (zip only).
_MEMBER_RATIO_FLOOR = 1 << 20


# --------------------------------------------------------------------------- records


def _check_relative_path(value: str, field: str) -> None:
    """Refuse a path that is empty, absolute, not POSIX or that climbs out with ``..``."""
    parts = value.split("/")
    if (
        not value
        or "\\" in value
        or "\x00" in value
        or value.startswith("/")
        or PureWindowsPath(value).drive
        or any(part in ("", ".", "..") for part in parts)
    ):
        message = (
            f"Expected {field} to be a relative POSIX path without empty, '.' or '..' segments "
            f"(like 'source/images/a.jpg'). Received: {field}={value!r}"
        )
        raise DataError(message)


def _normalise_hash(value: str, pattern: re.Pattern[str], what: str, field: str) -> str:
    text = value.strip().lower()
    if text.startswith(f"{what}:"):
        text = text[len(what) + 1 :]
    if not pattern.fullmatch(text):
        digits = {_SHA256: 64, _SHA1: 40, _MD5: 32}[pattern]
        message = f"Expected {field} to be a {digits}-character hexadecimal {what}. Received: {value!r}"
        raise DataError(message)
    return text


@dataclass(frozen=True)
class RemoteFile:
    """A file the library can fetch: where it goes in the cache, where it comes from, what it must hash to.

    Parameters
    ----------
    name : str
        Path of the file inside the cache folder: relative, POSIX, without
        ``..`` (for example ``"ieee8023/0f7245db6f5a/images/a.jpg"``).
    url : str
        Upstream URL.
    mirror_path : str, optional
        Path of this file under a mirror root (for example
        ``"ieee8023-covid-chestxray/images/a.jpg"``); ``name`` when not given.
    size : int, optional
        Size in bytes, checked when known.
    sha256 : str, optional
        Hexadecimal sha256 of the content.
    git_blob_sha1 : str, optional
        Git's blob hash of the content, ``sha1(b"blob <size>\\0" + content)``
        (what ``git hash-object`` prints); used when ``sha256`` is unknown.
    md5 : str, optional
        MD5 of the content, the hash Keras records for its applications' weights;
        used only when neither of the above is known.

    Raises
    ------
    cxrclassify.exceptions.DataError
        If ``name`` or ``mirror_path`` is not a safe relative path, or a hash is
        not hexadecimal of the right length.

    Examples
    --------
    >>> from cxrclassify._download import RemoteFile
    >>> remote = RemoteFile(name="demo/a.txt", url="https://example.org/a.txt", size=6)
    >>> remote.mirror_path is None, remote.size
    (True, 6)
    """

    name: str
    url: str
    mirror_path: str | None = None
    size: int | None = None
    sha256: str | None = None
    git_blob_sha1: str | None = None
    md5: str | None = None

    def __post_init__(self) -> None:
        _check_relative_path(self.name, "name")
        if self.mirror_path is not None:
            _check_relative_path(self.mirror_path, "mirror_path")
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0):
            message = f"Expected size to be a non-negative int or None. Received: size={self.size!r}"
            raise DataError(message)
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", _normalise_hash(self.sha256, _SHA256, "sha256", "sha256"))
        if self.git_blob_sha1 is not None:
            value = _normalise_hash(self.git_blob_sha1, _SHA1, "sha1", "git_blob_sha1")
            object.__setattr__(self, "git_blob_sha1", value)
        if self.md5 is not None:
            object.__setattr__(self, "md5", _normalise_hash(self.md5, _MD5, "md5", "md5"))


# --------------------------------------------------------------------------- the cache folder


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder of downloaded data, created if missing.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The folder to use. When not given, the environment variable
        ``CXRCLASSIFY_HOME`` names it; when that is unset or empty, the
        platform's user cache folder (``platformdirs.user_cache_dir("cxrclassify")``,
        for example ``~/.cache/cxrclassify`` on Linux). ``~`` is expanded.

    Returns
    -------
    pathlib.Path
        The folder.

    Examples
    --------
    >>> import tempfile
    >>> from cxrclassify._download import get_data_home
    >>> folder = get_data_home(tempfile.mkdtemp() + "/cache")
    >>> folder.is_dir()
    True
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or platformdirs.user_cache_dir("cxrclassify")
    folder = Path(data_home).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _is_bookkeeping(path: Path) -> bool:
    return path.name.endswith((_META_SUFFIX, _LOCK_SUFFIX, _PART_SUFFIX)) or ".meta.json." in path.name


def cache_info(data_home: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Where the cache is and how much it holds.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The cache folder (see :func:`get_data_home`).

    Returns
    -------
    dict
        ``{"path": str, "files": int, "bytes": int}``: the folder, the number of
        cached data files (sidecars ``*.meta.json``, locks ``*.lock`` and partial
        downloads ``*.part`` are not counted) and the bytes of everything under
        the folder, partial downloads included.

    Examples
    --------
    >>> import tempfile
    >>> from cxrclassify._download import cache_info
    >>> cache_info(tempfile.mkdtemp())["files"]
    0
    """
    folder = get_data_home(data_home)
    files = 0
    total = 0
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        total += path.stat().st_size
        if not _is_bookkeeping(path):
            files += 1
    return {"path": str(folder), "files": files, "bytes": total}


def clear_data_home(data_home: str | os.PathLike[str] | None = None) -> None:
    """Delete everything in the cache folder (the folder itself stays).

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The cache folder (see :func:`get_data_home`).

    Raises
    ------
    cxrclassify.exceptions.DataError
        If the folder is the file-system root or the home folder (a guard
        against wiping them by mistake).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify._download import cache_info, clear_data_home
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.bin").write_bytes(b"x")
    >>> clear_data_home(folder)
    >>> cache_info(folder)["files"]
    0
    """
    folder = get_data_home(data_home)
    resolved = folder.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        message = (
            "Expected a dedicated cache folder to clear. "
            f"Received: data_home={str(folder)!r}, which is the root or the home folder"
        )
        raise DataError(message)
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    logger.info("Cleared the cache folder %s", folder)


# --------------------------------------------------------------------------- hashes


def _digests(path: Path, *, extra: str | None = None) -> dict[str, str]:
    """sha256 of a file, and the ``extra`` hash (``"git_blob_sha1"`` or ``"md5"``) in the same pass."""
    hashers = {"sha256": hashlib.sha256()}
    if extra == "git_blob_sha1":
        hashers[extra] = hashlib.sha1(usedforsecurity=False)
        hashers[extra].update(b"blob %d\0" % path.stat().st_size)
    elif extra == "md5":
        hashers[extra] = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {kind: hasher.hexdigest() for kind, hasher in hashers.items()}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hexadecimal sha256 of a file's content.

    Parameters
    ----------
    path : str or os.PathLike
        The file, read in chunks.

    Returns
    -------
    str
        64 lowercase hexadecimal digits.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify._download import file_sha256
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "empty"
    >>> _ = path.write_bytes(b"")
    >>> file_sha256(path)
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    return _digests(Path(path))["sha256"]


def git_blob_sha1(path: str | os.PathLike[str]) -> str:
    """Git's blob hash of a file, ``sha1(b"blob <size>\\0" + content)``, as ``git hash-object`` prints it.

    Parameters
    ----------
    path : str or os.PathLike
        The file, read in chunks.

    Returns
    -------
    str
        40 lowercase hexadecimal digits.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify._download import git_blob_sha1
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
    >>> _ = path.write_bytes(b"hello\\n")
    >>> git_blob_sha1(path)
    'ce013625030ba8dba906f756967f9e9ca394464a'
    """
    return _digests(Path(path), extra="git_blob_sha1")["git_blob_sha1"]


# --------------------------------------------------------------------------- fetch: helpers


@dataclass(frozen=True)
class _Expected:
    """What a file must match: a hash (``kind``: ``"sha256"``, ``"git_blob_sha1"`` or ``"md5"``) and/or a size."""

    kind: str | None
    value: str | None
    size: int | None
    source: str  # "known_hashes", "record" or "none"

    @property
    def tag(self) -> str | None:
        return f"{self.kind}:{self.value}" if self.kind else None


def _expectation(remote: RemoteFile, known_hashes: Mapping[str, str] | None) -> _Expected:
    if known_hashes is not None and remote.name in known_hashes:
        value = _normalise_hash(known_hashes[remote.name], _SHA256, "sha256", f"known_hashes[{remote.name!r}]")
        return _Expected("sha256", value, None, "known_hashes")
    if remote.sha256:
        return _Expected("sha256", remote.sha256, remote.size, "record")
    if remote.git_blob_sha1:
        return _Expected("git_blob_sha1", remote.git_blob_sha1, remote.size, "record")
    if remote.md5:
        return _Expected("md5", remote.md5, remote.size, "record")
    return _Expected(None, None, remote.size, "none")


@dataclass(frozen=True)
class _Source:
    kind: str  # "http" or "local"
    location: str  # a URL, or a local file path
    mirror: str | None  # the mirror as given, when one is used


def _source(remote: RemoteFile, mirror: str | os.PathLike[str] | None) -> _Source:
    if mirror is None:
        return _Source("http", remote.url, None)
    relative = remote.mirror_path or remote.name
    text = os.fspath(mirror)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if _URL_SCHEME.match(text):
        scheme = text.split("://", 1)[0].lower()
        if scheme in ("http", "https"):
            quoted = "/".join(quote(part, safe="") for part in relative.split("/"))
            return _Source("http", text.rstrip("/") + "/" + quoted, text)
        if scheme == "file":
            parts = urlsplit(text)
            if parts.netloc not in ("", "localhost"):
                message = (
                    "Expected a file:// mirror URL on this machine (file:///path or file://localhost/path). "
                    f"Received: mirror={text!r}"
                )
                raise DataError(message)
            folder = Path(url2pathname(parts.path))
            return _Source("local", str(folder.joinpath(*relative.split("/"))), text)
        message = (
            "Expected mirror to be an http://, https:// or file:// URL or a local folder. "
            f"Received: mirror={text!r}"
        )
        raise DataError(message)
    folder = Path(text).expanduser()
    return _Source("local", str(folder.joinpath(*relative.split("/"))), text)


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _write_meta(dest: Path, *, url: str, sha256: str, verified_against: str) -> None:
    """Write ``<dest>.meta.json`` atomically; a read-only cache only loses the shortcut."""
    meta_path = Path(str(dest) + _META_SUFFIX)
    try:
        info = dest.stat()
        meta = {
            "url": url,
            "size": info.st_size,
            "sha256": sha256,
            "mtime_ns": info.st_mtime_ns,
            "verified_against": verified_against,
        }
        write_json(meta_path, meta, fsync=False)
    except OSError as error:
        logger.debug("Could not write %s: %s", meta_path, error)


def _meta_is_fresh(meta: dict[str, Any] | None, info: os.stat_result) -> bool:
    return bool(meta) and meta.get("size") == info.st_size and meta.get("mtime_ns") == info.st_mtime_ns


def _cached_without_hashing(dest: Path, expected: _Expected) -> bool:
    """Whether the cached file is verified by its sidecar alone (same size and mtime, same hash)."""
    try:
        info = dest.stat()
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or (expected.size is not None and info.st_size != expected.size):
        return False
    meta = _read_meta(Path(str(dest) + _META_SUFFIX))
    if not _meta_is_fresh(meta, info):
        return False
    if expected.kind is None:
        return bool(meta.get("sha256"))
    if meta.get("verified_against") == expected.tag:
        return True
    return expected.kind == "sha256" and meta.get("sha256") == expected.value


@dataclass
class _Verdict:
    ok: bool
    sha256: str | None = None
    detail: str = ""
    unpinned: bool = False


def _verify_cached(dest: Path, expected: _Expected) -> _Verdict:
    """Check a cached file, hashing it when the sidecar cannot vouch for it; rewrite the sidecar."""
    if _cached_without_hashing(dest, expected):
        return _Verdict(True)
    info = dest.stat()
    if expected.size is not None and info.st_size != expected.size:
        return _Verdict(False, detail=f"size {info.st_size} bytes, expected {expected.size}")
    meta = _read_meta(Path(str(dest) + _META_SUFFIX)) or {}
    url = str(meta.get("url", ""))
    found = _digests(dest, extra=expected.kind)
    if expected.kind is not None:
        if found[expected.kind] != expected.value:
            return _Verdict(False, detail=f"{expected.kind} {found[expected.kind]}, expected {expected.value}")
        _write_meta(dest, url=url, sha256=found["sha256"], verified_against=expected.tag or "")
        return _Verdict(True, sha256=found["sha256"])
    recorded = meta.get("sha256")
    if recorded:
        if found["sha256"] != recorded:
            return _Verdict(False, detail=f"sha256 {found['sha256']}, recorded at download {recorded}")
        against = str(meta.get("verified_against") or "unpinned")
        _write_meta(dest, url=url, sha256=found["sha256"], verified_against=against)
        return _Verdict(True, sha256=found["sha256"])
    # A file in the cache with no sidecar and no known hash: take it, record what it is, and say so.
    _write_meta(dest, url=url, sha256=found["sha256"], verified_against="unpinned")
    return _Verdict(True, sha256=found["sha256"], unpinned=True)


class _Retryable(Exception):
    """A transient failure worth another attempt (HTTP 5xx or 429, a body cut short)."""


_RETRYABLE_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
)


def _user_agent() -> str:
    return f"cxrclassify/{__version__} (+python-requests/{requests.__version__})"


def _progress_bar(total: int | None, initial: int, label: str, progress: bool) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        disable=not progress,
        leave=False,
    )


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None


def _http_attempt(
    url: str, part: Path, *, session: requests.Session, timeout: float, progress: bool, label: str
) -> None:
    """One GET into ``part``, resuming it with ``Range`` when it holds bytes already."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        status = response.status_code
        if offset and (
            status == 416 or (status == 206 and _content_range_start(response.headers.get("Content-Range")) != offset)
        ):
            logger.info("%s: cannot resume %s from byte %d (HTTP %d); starting again", label, url, offset, status)
            response.close()
            part.unlink()
            return _http_attempt(url, part, session=session, timeout=timeout, progress=progress, label=label)
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status} {response.reason}")
        if status not in (200, 206):
            part.unlink(missing_ok=True)
            message = f"Expected HTTP 200 for {url}. Received: HTTP {status} {response.reason}"
            raise DownloadError(message)
        if status == 200 and offset:
            logger.info("%s: the server ignored Range; downloading %s from the start", label, url)
        start = offset if status == 206 else 0
        declared = response.headers.get("Content-Length")
        length = int(declared) if declared and declared.isdigit() else None
        received = 0
        with open(part, "ab" if status == 206 else "wb") as handle, _progress_bar(
            None if length is None else start + length, start, label, progress
        ) as bar:
            for chunk in response.iter_content(chunk_size=_NET_CHUNK):
                handle.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if length is not None and received < length:
            raise _Retryable(f"the connection closed after {received} of {length} bytes")
    return None


def _download_http(
    url: str,
    part: Path,
    *,
    session: requests.Session,
    retries: int,
    backoff: float,
    timeout: float,
    progress: bool,
    label: str,
) -> None:
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            pause = backoff * 2 ** (attempt - 1)
            logger.info("%s: retry %d of %d in %.2f s after: %s", label, attempt, retries, pause, last_error)
            time.sleep(pause)
        try:
            _http_attempt(url, part, session=session, timeout=timeout, progress=progress, label=label)
            return
        except _Retryable as error:
            last_error = str(error)
        except _RETRYABLE_ERRORS as error:
            last_error = f"{type(error).__name__}: {error}"
        except requests.exceptions.RequestException as error:
            part.unlink(missing_ok=True)
            message = f"Expected a downloadable URL. Received: {url} failed with {type(error).__name__}: {error}"
            raise DownloadError(message) from error
    message = (
        f"Could not download {url} after {retries + 1} attempt(s) "
        f"(retries={retries}); a later call resumes it. Received: {last_error}"
    )
    raise DownloadError(message)


def _copy_local(source: str, part: Path, *, mirror: str | None, progress: bool, label: str) -> None:
    path = Path(source)
    if not path.is_file():
        where = f" in the local mirror {mirror!r}" if mirror is not None else ""
        message = f"Expected the file {str(path)!r}{where}. Received: no such file"
        raise DownloadError(message)
    try:
        with open(path, "rb") as reader, open(part, "wb") as writer, _progress_bar(
            path.stat().st_size, 0, label, progress
        ) as bar:
            while chunk := reader.read(_CHUNK):
                writer.write(chunk)
                bar.update(len(chunk))
    except OSError as error:
        part.unlink(missing_ok=True)
        message = f"Expected to copy {str(path)!r} from the local mirror. Received: {error}"
        raise DownloadError(message) from error


# --------------------------------------------------------------------------- fetch


def fetch(
    remote: RemoteFile,
    *,
    data_home: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    verify: bool = True,
    known_hashes: Mapping[str, str] | None = None,
    progress: bool = True,
    retries: int = 3,
    backoff: float = 0.5,
    timeout: float = 30.0,
    session: requests.Session | None = None,
) -> Path:
    """Return the cached, verified copy of a remote file, downloading it first when needed.

    The file goes to ``get_data_home(data_home) / remote.name``. A cached copy is
    returned without network when it verifies: its sidecar ``<file>.meta.json``
    (size, mtime, sha256 and what it was verified against) spares a re-hash
    while the file's size and mtime are unchanged; otherwise it is hashed again,
    and a copy that fails is deleted (with a logged warning) and fetched again.

    Downloads stream into ``<file>.part`` next to the file, under the lock
    ``<file>.lock`` (a second process fetching the same file waits, then finds
    it cached). An existing ``.part`` (an interrupted earlier run, or a
    connection dropped during this one) is resumed with an HTTP ``Range``
    request; a server answering 200 instead is read from the start.
    Connection errors, timeouts, bodies cut short, HTTP 5xx and 429 are retried
    ``retries`` times, the k-th retry after ``backoff * 2**(k - 1)`` seconds;
    other HTTP errors (such as 404) fail at once. The verified file is moved
    into place atomically, so nothing half-written is ever under its final name.

    Parameters
    ----------
    remote : RemoteFile
        The file.
    data_home : str or os.PathLike, optional
        The cache folder (see :func:`get_data_home`).
    mirror : str or os.PathLike, optional
        Replace ``remote.url`` by a mirror: an ``http(s)://`` base URL, giving
        ``mirror.rstrip("/") + "/" + mirror_path`` (its segments URL-quoted), a
        ``file://`` URL or a local folder, whose file ``<folder>/<mirror_path>``
        is copied; ``mirror_path`` is ``remote.mirror_path`` or else
        ``remote.name``. The copy is verified as a download is.
    verify : bool, default True
        Check the file against, in order, ``known_hashes[remote.name]``,
        ``remote.sha256``, ``remote.git_blob_sha1``, and ``remote.size`` unless
        ``known_hashes`` overrides the record. When the record has no hash, the
        file is taken, a warning gives its size and sha256 (to pin it with
        ``known_hashes``) and later cache hits are checked against that sha256.
        ``verify=False`` checks nothing and warns so (for a mirror of modified
        files); the sha256 is still recorded in the sidecar.
    known_hashes : mapping of str to str, optional
        ``{remote.name: sha256}`` of the user's own, overriding the record (for
        example the manifest of a mirror whose files were modified).
    progress : bool, default True
        Show a tqdm progress bar (its total from ``Content-Length``).
    retries : int, default 3
        Further attempts after the first one on transient failures.
    backoff : float, default 0.5
        Base of the exponential backoff between attempts, in seconds.
    timeout : float, default 30.0
        Seconds to wait for the server to connect or send data (per read, not
        for the whole file).
    session : requests.Session, optional
        Session to use (for its proxies, headers or authentication); a new one
        by default.

    Returns
    -------
    pathlib.Path
        The cached file.

    Raises
    ------
    cxrclassify.exceptions.DownloadError
        If the file cannot be obtained: an HTTP error such as 404 (at once),
        transient failures beyond ``retries`` (the ``.part`` stays, for a later
        call to resume), or a file missing from a local mirror.
    cxrclassify.exceptions.ChecksumError
        If the file does not match its expected hash or size; the download is
        deleted and nothing is left in the cache.
    cxrclassify.exceptions.DataError
        If ``mirror``, ``known_hashes`` or ``retries`` is malformed.

    Examples
    --------
    A local mirror folder stands in for the network here:

    >>> import hashlib, pathlib, tempfile
    >>> from cxrclassify._download import RemoteFile, fetch
    >>> mirror = pathlib.Path(tempfile.mkdtemp())
    >>> content = b"PatientID,Finding\\n1,COVID-19\\n"
    >>> (mirror / "demo").mkdir()
    >>> _ = (mirror / "demo" / "metadata.csv").write_bytes(content)
    >>> remote = RemoteFile(
    ...     name="demo/v1/metadata.csv",
    ...     url="https://example.org/demo/metadata.csv",
    ...     mirror_path="demo/metadata.csv",
    ...     size=len(content),
    ...     sha256=hashlib.sha256(content).hexdigest(),
    ... )
    >>> path = fetch(remote, data_home=tempfile.mkdtemp(), mirror=mirror, progress=False)
    >>> path.read_bytes() == content, path.as_posix().endswith("demo/v1/metadata.csv")
    (True, True)
    """
    if not isinstance(remote, RemoteFile):
        message = f"Expected a RemoteFile. Received: {type(remote).__name__} {remote!r}"
        raise DataError(message)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        message = f"Expected retries to be a non-negative int. Received: retries={retries!r}"
        raise DataError(message)
    source = _source(remote, mirror)
    expected = _expectation(remote, known_hashes) if verify else _Expected(None, None, None, "none")
    dest = get_data_home(data_home).joinpath(*remote.name.split("/"))
    label = remote.name

    if not verify:
        logger.info("%s: verify=False, not checking it against any checksum", remote.name)
        warnings.warn(
            "verify=False: files are fetched and cached without checking their checksums. Use it only for a "
            "mirror you trust (for example one of modified files); known_hashes={name: sha256} pins such files "
            "instead.",
            UnverifiedDownloadWarning,
            stacklevel=2,
        )
        if dest.is_file():
            logger.debug("%s: cache hit (not verified) at %s", remote.name, dest)
            return dest
    elif _cached_without_hashing(dest, expected):
        logger.debug("%s: cache hit at %s", remote.name, dest)
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = Path(str(dest) + _PART_SUFFIX)
    unpinned: tuple[int, str] | None = None
    with filelock.FileLock(str(dest) + _LOCK_SUFFIX):
        if dest.exists():
            if not verify:
                return dest
            verdict = _verify_cached(dest, expected)
            if verdict.ok:
                if verdict.unpinned and verdict.sha256:
                    unpinned = (dest.stat().st_size, verdict.sha256)
                else:
                    logger.debug("%s: cache hit at %s", remote.name, dest)
            else:
                logger.warning(
                    "%s: the cached file %s fails verification (%s); deleting it and fetching it again",
                    remote.name, dest, verdict.detail,
                )
                dest.unlink()
                Path(str(dest) + _META_SUFFIX).unlink(missing_ok=True)
        if not dest.exists():
            unpinned = _fetch_locked(remote, source, expected, dest, part, verify=verify, progress=progress,
                                     retries=retries, backoff=backoff, timeout=timeout, session=session, label=label)
    if unpinned is not None:
        size, digest = unpinned
        warnings.warn(
            f"{remote.name!r} ({size} bytes, sha256 {digest}, from {source.location}) was not verified: no "
            "checksum is recorded for it. "
            f"To pin it, pass known_hashes={{{remote.name!r}: {digest!r}}}.",
            UnverifiedDownloadWarning,
            stacklevel=2,
        )
    return dest


def _fetch_locked(
    remote: RemoteFile,
    source: _Source,
    expected: _Expected,
    dest: Path,
    part: Path,
    *,
    verify: bool,
    progress: bool,
    retries: int,
    backoff: float,
    timeout: float,
    session: requests.Session | None,
    label: str,
) -> tuple[int, str] | None:
    """Download (or copy) into ``part``, verify, move into place; return ``(size, sha256)`` when unpinned."""
    own_session = session is None
    if own_session:
        session = requests.Session()
        session.headers["User-Agent"] = _user_agent()

    def obtain() -> None:
        if source.kind == "local":
            logger.info("%s: copying %s", remote.name, source.location)
            _copy_local(source.location, part, mirror=source.mirror, progress=progress, label=label)
        else:
            logger.info("%s: downloading %s", remote.name, source.location)
            _download_http(source.location, part, session=session, retries=retries, backoff=backoff,
                           timeout=timeout, progress=progress, label=label)

    try:
        resumed = source.kind == "http" and part.exists() and part.stat().st_size > 0
        obtain()
        problem, found = _check_part(part, expected)
        if problem and resumed:
            logger.warning("%s: the resumed download fails verification (%s); downloading it again from the start",
                           remote.name, problem)
            part.unlink(missing_ok=True)
            obtain()
            problem, found = _check_part(part, expected)
        if problem:
            part.unlink(missing_ok=True)
            message = (
                f"The file {remote.name!r} fetched from {source.location} does not match its "
                f"{'known_hashes entry' if expected.source == 'known_hashes' else 'record'}. {problem}"
            )
            if source.mirror is not None:
                message += (
                    f" It came from the mirror {source.mirror!r}: a mirror of modified files needs verify=False "
                    f"or known_hashes={{{remote.name!r}: <its sha256>}}."
                )
            raise ChecksumError(message)
        os.replace(part, dest)
    finally:
        if own_session:
            session.close()
    if not verify:
        verified_against = "unverified"
    elif expected.kind is None:
        verified_against = "unpinned"
    else:
        verified_against = expected.tag or ""
    _write_meta(dest, url=source.location, sha256=found["sha256"], verified_against=verified_against)
    logger.info("%s: saved to %s (%s)", remote.name, dest, verified_against.split(":")[0])
    if verify and expected.kind is None:
        return dest.stat().st_size, found["sha256"]
    return None


def _check_part(part: Path, expected: _Expected) -> tuple[str, dict[str, str]]:
    """Hash the download; return a description of what does not match (empty when all does) and the digests."""
    found = _digests(part, extra=expected.kind)
    size = part.stat().st_size
    problems = []
    if expected.kind is not None and found[expected.kind] != expected.value:
        problems.append(f"Expected {expected.kind} {expected.value}. Received: {expected.kind} {found[expected.kind]}")
    if expected.size is not None and size != expected.size:
        problems.append(f"Expected {expected.size} bytes. Received: {size} bytes (sha256 {found['sha256']})")
    return "; ".join(problems), found


# --------------------------------------------------------------------------- archives


@dataclass
class _Member:
    name: str
    kind: str  # "file", "dir", "symlink" or "hardlink"
    size: int
    compressed: int | None
    linkname: str = ""
    opener: Callable[[], BinaryIO] | None = None
    tarinfo: tarfile.TarInfo | None = None


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _refuse(archive: Path, name: str, why: str, *, before: bool = True) -> DownloadError:
    outcome = "nothing was extracted" if before else "extraction stopped there"
    message = (
        f"Expected archive members that stay inside the target folder and are regular files, folders or "
        f"links within it. Received: member {name!r} of {str(archive)!r} {why}; {outcome}."
    )
    return DownloadError(message)


# --------------------------------------------------------------------------- archives: damaged ones

#: Formats told by a file's first bytes.
_MAGIC = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty zip
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
#: Formats told by a file's name (longest suffix first).
_SUFFIXES = (
    (".tar.gz", "gzip"),
    (".tgz", "gzip"),
    (".tar.bz2", "bzip2"),
    (".tbz2", "bzip2"),
    (".tbz", "bzip2"),
    (".tar.xz", "xz"),
    (".txz", "xz"),
    (".tar", "tar"),
    (".zip", "zip"),
)
_FORMAT_NAMES = {
    "zip": "zip archive",
    "gzip": "gzip-compressed tar archive (.tar.gz)",
    "bzip2": "bzip2-compressed tar archive (.tar.bz2)",
    "xz": "xz-compressed tar archive (.tar.xz)",
    "tar": "tar archive",
    None: "zip or tar (.gz, .bz2, .xz) archive",
}
#: tarfile's mode for a tar told by its first bytes; anything else is opened with "r:*".
_TAR_MODES = {"gzip": "r:gz", "bzip2": "r:bz2", "xz": "r:xz", "tar": "r:"}


class _Unreadable(Exception):
    """Internal: an archive that cannot be read; turned into a DownloadError naming it by :func:`_unreadable_error`.

    ``found`` says what was found, ``damaged`` whether the bytes are bad or not
    an archive at all (as opposed to a feature Python cannot read, such as an
    encrypted zip member), ``extracted`` how many members were written before,
    once extraction began.
    """

    def __init__(self, found: str, *, damaged: bool = True) -> None:
        super().__init__(found)
        self.found = found
        self.damaged = damaged
        self.extracted: int | None = None


def _damage_kind(error: BaseException) -> str | None:
    """``"damaged"`` for what a damaged archive raises, ``"unsupported"`` for what Python cannot read, else None.

    An ``OSError`` counts as damage only without an ``errno`` (gzip's
    ``BadGzipFile``, bz2's "Invalid data stream"): one with an ``errno`` is the
    file system's (a full disk, a permission), not the archive's.
    """
    if isinstance(error, (CxrError, _Unreadable)):
        return None
    if isinstance(error, (zlib.error, EOFError, zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError)):
        return "damaged"
    if isinstance(error, OSError):
        return "damaged" if error.errno is None else None
    if isinstance(error, (NotImplementedError, RuntimeError)):  # zipfile: an unknown compression, encryption
        return "unsupported"
    return None


def _describe(error: BaseException) -> str:
    """``"Type: text"`` of an error on one line, with the error it was raised from when that says more."""
    text = f"{type(error).__name__}: {error}"
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f", from {type(cause).__name__}: {cause}"
    return " ".join(text.split())


def _is_truncation(error: BaseException) -> bool:
    chain = [error, error.__cause__, error.__context__]
    return any(
        isinstance(item, EOFError) or "unexpected end of data" in str(item) or "truncated" in str(item).lower()
        for item in chain
        if item is not None
    )


def _sniff(archive: Path) -> tuple[str | None, str | None, bytes]:
    """The format told by the first bytes, the format told by the name, and the first bytes."""
    with open(archive, "rb") as handle:
        head = handle.read(512)
    by_content = next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)
    if by_content is None and head[257:262] == b"ustar":
        by_content = "tar"
    name = archive.name.lower()
    by_name = next((kind for suffix, kind in _SUFFIXES if name.endswith(suffix)), None)
    return by_content, by_name, head


def _not_an_archive(archive: Path, by_content: str | None, by_name: str | None, head: bytes) -> _Unreadable:
    size = archive.stat().st_size
    if size == 0:
        return _Unreadable("an empty file (0 bytes): an interrupted download or copy?")
    if by_content == "zip":
        found = (
            f"a file of {size} bytes that starts like a zip archive but has no end-of-central-directory record "
            f"(zip keeps its table of contents at the end): it is truncated at byte {size}, or damaged"
        )
        return _Unreadable(found)
    found = f"a file of {size} bytes that is not a {_FORMAT_NAMES[by_name]}: it starts with {head[:16]!r}"
    if head.lstrip()[:1] == b"<":
        found += " (a web page? a server's error page saved in place of the archive)"
    return _Unreadable(found)


def _tar_damage(archive: Path, tarred: tarfile.TarFile, error: BaseException) -> str:
    """What was found in a tar archive that failed while being listed."""
    size = archive.stat().st_size
    read = list(getattr(tarred, "members", []))
    where = f"after {len(read)} member(s), the last {read[-1].name!r}" if read else "before its first member"
    if _is_truncation(error):
        return f"a file of {size} bytes that is truncated: its data stops at byte {size} {where} ({_describe(error)})"
    return f"a file of {size} bytes whose data is corrupt {where} ({_describe(error)})"


def _check_tar_end(archive: Path, tarred: tarfile.TarFile) -> None:
    """Refuse a tar cut off between two members, which tarfile takes for a shorter complete archive.

    The compressed stream is read to its end too, which checks its integrity
    (gzip's CRC and length, the end-of-stream markers of gzip, bzip2 and xz);
    what is left after the last member is only padding, so this is cheap.
    """
    end = tarred.offset  # where tarfile found no further member header
    stream = tarred.fileobj
    try:
        while stream.read(_CHUNK):
            pass
    except gzip.BadGzipFile as error:
        if not str(error).startswith("Not a gzipped file"):
            raise
        # A complete gzip stream (its CRC checked) followed by bytes that are not gzip: gzip(1) ignores them too.
        logger.warning("%s: ignoring bytes after the end of its gzip stream (%s)", archive, error)
        return
    total = stream.tell()
    if total < end + tarfile.BLOCKSIZE:
        read = tarred.members
        last = f", the last {read[-1].name!r}" if read else ""
        found = (
            f"a tar archive truncated after {len(read)} complete member(s){last}: its tar data stops at byte "
            f"{total} without the end-of-archive marker (later members, if any, are missing)"
        )
        raise _Unreadable(found)


@contextlib.contextmanager
def _opened_members(archive: Path) -> Iterator[list[_Member]]:
    """The members of a zip or tar archive, held open meanwhile; :class:`_Unreadable` when it cannot be listed."""
    by_content, by_name, head = _sniff(archive)
    with contextlib.ExitStack() as stack:
        try:
            if zipfile.is_zipfile(archive):
                zipped = stack.enter_context(zipfile.ZipFile(archive))
                members = _zip_members(zipped)
            elif by_content in _TAR_MODES or (by_content is None and tarfile.is_tarfile(archive)):
                tarred = stack.enter_context(tarfile.open(archive, _TAR_MODES.get(by_content, "r:*")))
                members = _tar_members(archive, tarred)
            else:
                raise _not_an_archive(archive, by_content, by_name, head)
        except Exception as error:
            kind = _damage_kind(error)
            if kind is None:
                raise
            size = archive.stat().st_size
            if _is_truncation(error):
                found = f"a file of {size} bytes that is truncated at byte {size} ({_describe(error)})"
            else:
                found = f"a file of {size} bytes that cannot be read ({_describe(error)})"
            raise _Unreadable(found, damaged=kind == "damaged") from error
        yield members


def _drop_from_cache(archive: Path, meta_path: Path, meta: dict[str, Any]) -> str:
    """Delete a damaged cached download and its sidecar; say so, and how the cache recovers."""
    url = meta.get("url") or "its URL"
    try:
        with filelock.FileLock(str(archive) + _LOCK_SUFFIX, timeout=30):
            archive.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
    except (OSError, filelock.Timeout) as error:
        return (
            f"It is a cached download of {url} that could not be removed from the cache ({error}): delete it "
            f"and {meta_path.name}, then fetch it again."
        )
    logger.warning("%s is damaged: deleted it from the cache, so that the next fetch downloads it again", archive)
    text = (
        f"It was a cached download of {url}: it has been deleted from the cache, so that fetching it again "
        "(calling the same loader again) downloads a fresh copy."
    )
    if str(meta.get("verified_against", "")).startswith(("sha256:", "git_blob_sha1:", "md5:")):
        text += (
            " It had matched its pinned checksum, so if the fresh copy fails the same way, the source itself "
            "holds a damaged archive."
        )
    return text


def _unreadable_error(archive: Path, problem: _Unreadable) -> DownloadError:
    """The DownloadError for an archive that cannot be read, dropping a damaged cached download from the cache."""
    by_content, by_name, _ = _sniff(archive)
    kind = by_content or by_name
    meta_path = Path(str(archive) + _META_SUFFIX)
    meta = _read_meta(meta_path)
    if meta is not None and problem.damaged and kind is not None:
        recovery = _drop_from_cache(archive, meta_path, meta)
    elif meta is not None:
        recovery = (
            f"It is a cached download of {meta.get('url') or 'a URL'}: delete it and {meta_path.name} to "
            "fetch it again."
        )
    elif problem.damaged:
        recovery = "If it is a download, it is incomplete or damaged: delete it and download it again."
    else:
        recovery = "Python's zipfile and tarfile cannot read it: extract it with another tool."
    found = problem.found
    if problem.extracted is not None:
        found += (
            f"; {problem.extracted} member(s) were extracted before it, each complete, and nothing of this member "
            "was left under its name"
        )
    message = (
        f"Expected {str(archive)!r} to be a complete, readable {_FORMAT_NAMES[kind]}. {recovery} Received: {found}"
    )
    return DownloadError(message)


def _check_archive_file(archive: Path) -> None:
    if archive.is_file():
        return
    why = "a folder" if archive.is_dir() else "not found" if not archive.exists() else "not a regular file"
    message = f"Expected an archive file (zip or tar). Received: {str(archive)!r}, which is {why}"
    raise DownloadError(message)


def _zip_members(zipped: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in zipped.infolist():
        kind = "dir" if info.is_dir() else "file"
        members.append(_Member(info.filename, kind, info.file_size, info.compress_size,
                               opener=(lambda info=info: zipped.open(info))))
    return members


def _tar_members(archive: Path, tarred: tarfile.TarFile) -> list[_Member]:
    try:
        infos = tarred.getmembers()  # reads the whole archive: a truncated or corrupt one fails here
        _check_tar_end(archive, tarred)
    except Exception as error:
        if _damage_kind(error) is None:
            raise
        raise _Unreadable(_tar_damage(archive, tarred, error), damaged=_damage_kind(error) == "damaged") from error
    members = []
    files: dict[str, tarfile.TarInfo] = {}
    for info in infos:
        if info.isdir():
            kind = "dir"
        elif info.isreg():
            kind = "file"
            files[os.path.normpath(info.name)] = info
        elif info.issym():
            kind = "symlink"
        elif info.islnk():
            kind = "hardlink"
        else:
            raise _refuse(archive, info.name, "is a device file or FIFO")
        size = info.size
        if kind == "hardlink":
            linked = files.get(os.path.normpath(info.linkname))
            if linked is None:
                raise _refuse(archive, info.name, f"is a hard link to {info.linkname!r}, not an earlier file")
            size = linked.size
        members.append(_Member(info.name, kind, size, None, linkname=info.linkname, tarinfo=info,
                               opener=(lambda info=info: tarred.extractfile(info))))
    return members


def _select(archive: Path, members: list[_Member], wanted: Iterable[str] | None) -> list[_Member]:
    if wanted is None:
        return members
    by_name: dict[str, _Member] = {}
    for member in members:
        by_name[member.name] = member
        by_name.setdefault(member.name.rstrip("/"), member)
    wanted = list(wanted)
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        valid = [m.name for m in members if m.kind != "dir"][:5]
        message = (
            f"Expected names of members of {str(archive)!r} (such as {valid}). "
            f"Received: {len(unknown)} unknown name(s), such as {unknown[:5]}"
        )
        raise DownloadError(message)
    selected: dict[int, _Member] = {}
    for name in wanted:
        selected[id(by_name[name])] = by_name[name]
    return list(selected.values())


def _check_members(archive: Path, root: str, members: list[_Member]) -> dict[int, str]:
    """Refuse unsafe members before anything is written; return each member's final path."""
    finals: dict[int, str] = {}
    for member in members:
        name = member.name
        if not name or "\x00" in name or os.path.isabs(name) or PureWindowsPath(name).drive or name.startswith("/"):
            raise _refuse(archive, name, "is an absolute path")
        final = os.path.normpath(os.path.join(root, name))
        if not _inside(root, final) or (final == root and member.kind != "dir"):
            raise _refuse(archive, name, "resolves outside the target folder")
        if member.kind == "symlink":
            if os.path.isabs(member.linkname) or PureWindowsPath(member.linkname).drive:
                raise _refuse(archive, name, f"is a symbolic link to the absolute path {member.linkname!r}")
            pointed = os.path.normpath(os.path.join(os.path.dirname(final), member.linkname))
            if not _inside(root, pointed):
                raise _refuse(archive, name, f"is a symbolic link to {member.linkname!r}, outside the target")
        if member.kind == "hardlink":
            pointed = os.path.normpath(os.path.join(root, member.linkname))
            if os.path.isabs(member.linkname) or not _inside(root, pointed):
                raise _refuse(archive, name, f"is a hard link to {member.linkname!r}, outside the target")
        if member.tarinfo is not None and hasattr(tarfile, "data_filter"):
            try:
                tarfile.data_filter(member.tarinfo, root)
            except tarfile.FilterError as error:
                raise _refuse(archive, name, f"is refused by tarfile's 'data' filter ({error})") from error
        finals[id(member)] = final
    return finals


def _check_sizes(
    archive: Path, everything: list[_Member], selected: list[_Member], max_total_bytes: int, max_ratio: float
) -> None:
    """Refuse zip bombs from the declared sizes, before anything is written."""
    archive_bytes = max(archive.stat().st_size, 1)
    declared = sum(m.size for m in everything if m.kind == "file")
    ratio = declared / archive_bytes
    if ratio > max_ratio:
        message = (
            f"Expected an archive expanding at most max_ratio={max_ratio:g} times (a larger ratio is the mark "
            f"of a zip bomb; pass a larger max_ratio for an archive you trust). Received: {str(archive)!r} "
            f"declares {declared} bytes uncompressed from {archive_bytes} bytes, a ratio of {ratio:.0f}; "
            "nothing was extracted."
        )
        raise DownloadError(message)
    for member in selected:
        if member.compressed is not None and member.size >= _MEMBER_RATIO_FLOOR:
            member_ratio = member.size / max(member.compressed, 1)
            if member_ratio > max_ratio:
                message = (
                    f"Expected archive members expanding at most max_ratio={max_ratio:g} times. Received: member "
                    f"{member.name!r} of {str(archive)!r} expands {member.compressed} bytes to {member.size} "
                    f"bytes, a ratio of {member_ratio:.0f} (a zip bomb?); nothing was extracted."
                )
                raise DownloadError(message)
    total = sum(m.size for m in selected if m.kind in ("file", "hardlink"))
    if total > max_total_bytes:
        message = (
            f"Expected at most max_total_bytes={max_total_bytes} bytes to extract. Received: the members of "
            f"{str(archive)!r} to extract declare {total} bytes; nothing was extracted."
        )
        raise DownloadError(message)


def _copy_member(archive: Path, member: _Member, temp: str) -> None:
    """Copy one member into ``temp``; a member that cannot be read in full raises :class:`_Unreadable`."""
    written = 0
    try:
        reader = member.opener()
    except Exception as error:
        if _damage_kind(error) is None:
            raise
        found = f"member {member.name!r} cannot be opened ({_describe(error)})"
        raise _Unreadable(found, damaged=_damage_kind(error) == "damaged") from error
    with reader, open(temp, "wb") as writer:
        while True:
            try:
                chunk = reader.read(_CHUNK)
            except Exception as error:  # the bytes read so far stay in the staging folder, removed on the way out
                if _damage_kind(error) is None:
                    raise
                after = f" after {written} of its {member.size} bytes" if written else ""
                found = f"member {member.name!r} is corrupt{after} ({_describe(error)})"
                raise _Unreadable(found, damaged=_damage_kind(error) == "damaged") from error
            if not chunk:
                break
            written += len(chunk)
            if written > member.size:
                found = (
                    f"member {member.name!r} yields more bytes than the {member.size} it declares "
                    "(a damaged archive, or a zip bomb)"
                )
                raise _Unreadable(found)
            writer.write(chunk)
    if written != member.size:
        found = f"member {member.name!r} holds {written} bytes, not the {member.size} it declares"
        raise _Unreadable(found)


def _extract(archive: Path, root: str, selected: list[_Member], finals: dict[int, str]) -> None:
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".extracting-", dir=root)
    extracted = skipped = 0
    try:
        for index, member in enumerate(selected):
            final = finals[id(member)]
            if member.kind == "dir":
                os.makedirs(final, exist_ok=True)
                continue
            if member.kind == "symlink":
                if os.path.islink(final) and os.readlink(final) == member.linkname:
                    skipped += 1
                    continue
            elif os.path.isfile(final) and not os.path.islink(final) and os.path.getsize(final) == member.size:
                skipped += 1
                continue
            parent = os.path.dirname(final)
            os.makedirs(parent, exist_ok=True)
            if not _inside(root, os.path.realpath(parent)):
                raise _refuse(archive, member.name, "goes through a link to outside the target folder", before=False)
            temp = os.path.join(staging, str(index))
            if member.kind == "symlink":
                pointed = os.path.realpath(os.path.join(parent, member.linkname))
                if not _inside(root, pointed):
                    raise _refuse(archive, member.name, f"is a symbolic link resolving to {pointed!r}", before=False)
                os.symlink(member.linkname, temp)
            else:
                _copy_member(archive, member, temp)
            os.replace(temp, final)
            extracted += 1
    except _Unreadable as problem:
        problem.extracted = extracted
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Extracted %d member(s) of %s into %s (%d already there)", extracted, archive, root, skipped)


def extract_archive(
    archive: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    members: Iterable[str] | None = None,
    max_total_bytes: int = 16 * 2**30,
    max_ratio: float = 200.0,
) -> Path:
    """Extract a zip or tar archive (plain, gzip, bzip2 or xz) safely into a folder.

    The format is told by content. Before anything is written, the whole
    archive is checked and refused when a member to extract would land outside
    ``target`` (an absolute path, ``..``), when a tar link points outside it
    (or is absolute), when a tar member is a device file or FIFO (tarfile's
    ``"data"`` filter is applied too where Python has it), or when the archive
    looks like a zip bomb: its declared uncompressed size over its size on disk
    above ``max_ratio`` (and, for zip members of 1 MiB or more, a member's own
    ratio), or the members to extract declaring more than ``max_total_bytes``.

    A damaged archive is refused too: an empty or truncated file, a zip whose
    central directory is cut off, corrupt compressed data, a tar cut off
    between two members (tarfile alone takes it for a shorter, complete
    archive). A tar archive is read to its end before anything is written, so
    a truncated or corrupt tar (and, for ``.tar.gz``, a wrong gzip CRC) writes
    nothing; a zip member whose data is corrupt (a wrong CRC, say) is found
    when it is extracted, after the members before it.

    Each member is written to a temporary name in a staging folder inside
    ``target``, then moved to its final name with ``os.replace``: a file under
    its final name is always complete, even when extraction fails part-way
    (the staging folder is removed). Members already extracted with the right
    size are skipped, so calling it again is cheap.

    When a damaged archive is a cached download (it has the
    ``<archive>.meta.json`` sidecar :func:`fetch` writes, and its name or first
    bytes say it is an archive), it is deleted from the cache, with its
    sidecar, so that the next :func:`fetch` downloads a fresh copy; the error
    says so.

    Parameters
    ----------
    archive : str or os.PathLike
        The zip or tar file.
    target : str or os.PathLike
        The folder to extract into (created if missing). Other files in it are
        left alone.
    members : iterable of str, optional
        Member names, exactly as the archive lists them, to extract instead of
        all members.
    max_total_bytes : int, default 16 GiB
        Most bytes the members to extract may declare.
    max_ratio : float, default 200.0
        Most the archive may expand (declared uncompressed size over compressed size).

    Returns
    -------
    pathlib.Path
        ``target``.

    Raises
    ------
    cxrclassify.exceptions.DownloadError
        If the archive is missing, neither zip nor tar, a name in ``members``
        is not in it, or it is refused as unsafe (the message names the archive
        and the member); nothing is extracted then. If the archive is damaged
        (truncated, corrupt, empty, not an archive despite its name): the
        message names it, says what was found and how to recover; members
        extracted before a corrupt zip member stay, each complete.

    Examples
    --------
    >>> import pathlib, tempfile, zipfile
    >>> from cxrclassify._download import extract_archive
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with zipfile.ZipFile(folder / "data.zip", "w") as zipped:
    ...     zipped.writestr("data/NORMAL/a.jpeg", b"a")
    ...     zipped.writestr("data/PNEUMONIA/b.jpeg", b"bb")
    >>> target = extract_archive(folder / "data.zip", folder / "out", members=["data/PNEUMONIA/b.jpeg"])
    >>> sorted(p.relative_to(target).as_posix() for p in target.rglob("*.jpeg"))
    ['data/PNEUMONIA/b.jpeg']
    """
    archive = Path(archive)
    target = Path(target)
    _check_archive_file(archive)
    target.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(target)
    try:
        with _opened_members(archive) as everything:
            _extract_from(archive, root, everything, members, max_total_bytes, max_ratio)
    except _Unreadable as problem:
        raise _unreadable_error(archive, problem) from problem.__cause__
    return target


def checked_archive_members(archive: str | os.PathLike[str], target: str | os.PathLike[str]) -> dict[str, str]:
    """Every member of a zip or tar archive: its kind (``"file"``, ``"dir"``, ``"symlink"``, ``"hardlink"``) by name.

    Each member is checked as :func:`extract_archive` checks what it extracts
    (no absolute path, nothing that would land outside ``target``, no link
    pointing out, no device): an archive with one bad member is refused whole.
    Nothing is written. A tar archive is read to its end, so a truncated or
    corrupt one is refused here (a zip member's data is only read by
    :func:`extract_archive`).

    Parameters
    ----------
    archive : str or os.PathLike
        The zip or tar file.
    target : str or os.PathLike
        The folder the members would be extracted into.

    Returns
    -------
    dict of str to str
        ``{member name: kind}``, in archive order.

    Raises
    ------
    cxrclassify.exceptions.DownloadError
        If the file is missing, not a zip or tar archive, damaged (truncated,
        corrupt, empty; a damaged cached download is deleted from the cache, as
        :func:`extract_archive` does), or a member is unsafe (the message names
        the archive and the member).

    Examples
    --------
    >>> import pathlib, tempfile, zipfile
    >>> from cxrclassify._download import checked_archive_members
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with zipfile.ZipFile(folder / "data.zip", "w") as zipped:
    ...     zipped.writestr("images/a.png", b"a")
    >>> checked_archive_members(folder / "data.zip", folder / "out")
    {'images/a.png': 'file'}
    """
    archive = Path(archive)
    _check_archive_file(archive)
    root = os.path.realpath(target)
    try:
        with _opened_members(archive) as members:
            pass
    except _Unreadable as problem:
        raise _unreadable_error(archive, problem) from problem.__cause__
    _check_members(archive, root, members)
    return {member.name: member.kind for member in members}


def _extract_from(
    archive: Path,
    root: str,
    everything: list[_Member],
    wanted: Iterable[str] | None,
    max_total_bytes: int,
    max_ratio: float,
) -> None:
    _check_members(archive, root, everything)  # one bad member condemns the whole archive
    selected = _select(archive, everything, wanted)
    finals = _check_members(archive, root, selected)
    _check_sizes(archive, everything, selected, max_total_bytes, max_ratio)
    _extract(archive, root, selected, finals)
