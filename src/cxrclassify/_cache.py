"""The cache folder of cxrclassify's downloads: where it is, what it holds, how a cached file is trusted.

:func:`get_data_home` (``CXRCLASSIFY_HOME`` or the user cache folder), :func:`cache_info`,
:func:`clear_data_home`, the hashes (:func:`file_sha256`, :func:`git_blob_sha1`) and the sidecar
``<file>.meta.json`` that lets a verified file be served again without re-hashing it.
:mod:`cxrclassify._download` (``fetch``) builds on it.
"""

from __future__ import annotations
import hashlib
import json
import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
import platformdirs
from ._io import write_json
from .exceptions import DataError


__all__ = ["DATA_HOME_ENV", "get_data_home", "cache_info", "clear_data_home", "file_sha256", "git_blob_sha1"]

logger = logging.getLogger(__name__)


#: Environment variable naming the cache folder (overridden by an explicit ``data_home``).
DATA_HOME_ENV = "CXRCLASSIFY_HOME"

_CHUNK = 1 << 20


_PART_SUFFIX = ".part"

_META_SUFFIX = ".meta.json"


_LOCK_SUFFIX = ".lock"


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
