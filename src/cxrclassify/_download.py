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

It is the top of three layers, each its own module: :mod:`cxrclassify._cache` (the
cache folder, hashes, the sidecar records of verified files), :mod:`cxrclassify._transport`
(HTTP with resumption and retries, copies from a mirror folder) and
:mod:`cxrclassify._archives` (safe extraction); this module holds the records and
:func:`fetch`, and re-exports the public names of the other three.

The cache folder is :func:`get_data_home`. :func:`extract_archive` unpacks zip
and tar archives safely (no path traversal, no links out of the target, no
device files, no zip bombs), and turns a damaged archive (truncated, corrupt,
not an archive at all) into a :class:`~cxrclassify.exceptions.DownloadError`
naming it; a damaged archive that is a cached download is dropped from the
cache, so that the next :func:`fetch` downloads it again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import types
import warnings
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, Mapping
from urllib.parse import quote, urlsplit
from urllib.request import url2pathname

import filelock
import requests

from .exceptions import ArgumentTypeError, ChecksumError, DataError, UnverifiedDownloadWarning

from ._archives import checked_archive_members, extract_archive
from ._cache import (
    _Expected,
    _LOCK_SUFFIX,
    _META_SUFFIX,
    _PART_SUFFIX,
    _cached_without_hashing,
    _digests,
    _verify_cached,
    _write_meta,
    cache_info,
    clear_data_home,
    file_sha256,
    get_data_home,
    git_blob_sha1,
)
from ._transport import _copy_local, _download_http, _user_agent

__all__ = [
    "FetchOptions",
    "RemoteFile",
    "resolve_fetch_options",
    "get_data_home",
    "cache_info",
    "clear_data_home",
    "file_sha256",
    "git_blob_sha1",
    "fetch",
    "extract_archive",
    "checked_archive_members",
]

logger = logging.getLogger(__name__)


_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")
_MD5 = re.compile(r"[0-9a-f]{32}")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")




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


#: The fetch parameters, in the order of :class:`FetchOptions`.
FETCH_FIELDS = ("data_home", "mirror", "verify", "known_hashes", "progress")


@dataclass(frozen=True)
class FetchOptions:
    """Where and how files are fetched: the cache folder, a mirror, verification, pins and progress bars.

    One value object for the fetch parameters that every source, recipe and
    :func:`~cxrclassify.datasets.load_datasets` takes: build it once and pass it
    as ``fetch_options=``. Each function still takes the five keywords one by
    one, as before (``mirror=...``), but not together with ``fetch_options``.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The cache folder (see :func:`~cxrclassify.datasets.get_data_home`).
    mirror : str or os.PathLike, optional
        An ``http(s)://`` base URL, a ``file://`` URL or a local folder replacing
        the upstream hosts for every file, which it holds under the file's
        ``mirror_path`` (see :func:`~cxrclassify.datasets.fetch`; each source
        documents its layout).
    verify : bool, default True
        Check every file against its recorded hash (or ``known_hashes``).
        ``False`` checks nothing and warns so, for a mirror of modified files you
        trust.
    known_hashes : mapping of str to str, optional
        ``{cache name: sha256}`` pins overriding the recorded hashes (a mirror's
        own manifest). Copied into a read-only mapping.
    progress : bool, default True
        Show progress bars.

    Raises
    ------
    cxrclassify.exceptions.ArgumentTypeError
        If ``data_home`` or ``mirror`` is not a path, or ``known_hashes`` not a mapping.

    See Also
    --------
    resolve_fetch_options : Merge ``fetch_options`` and the one-by-one keywords.

    Examples
    --------
    >>> from cxrclassify.datasets import FetchOptions
    >>> options = FetchOptions(mirror="/data/cxr-mirror", verify=False)
    >>> options
    FetchOptions(mirror='/data/cxr-mirror', verify=False)
    >>> options.replace(progress=False).as_kwargs()
    {'data_home': None, 'mirror': '/data/cxr-mirror', 'verify': False, 'known_hashes': None, 'progress': False}
    >>> FetchOptions() == FetchOptions(data_home=None, mirror=None, verify=True, known_hashes=None, progress=True)
    True

    It goes wherever the keywords went:

    >>> data = cxrclassify.load_datasets("soares2020", fetch_options=options)  # doctest: +SKIP
    >>> records = cxrclassify.datasets.ieee8023_records(fetch_options=options)  # doctest: +SKIP
    """

    data_home: str | os.PathLike[str] | None = None
    mirror: str | os.PathLike[str] | None = None
    verify: bool = True
    known_hashes: Mapping[str, str] | None = dataclasses.field(default=None, hash=False)
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("data_home", "mirror"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                message = (f"Expected {name} to be a str or os.PathLike path, or None. "
                           f"Received: {name}={value!r} of type {type(value).__name__}")
                raise ArgumentTypeError(message)
        if self.known_hashes is not None:
            if not isinstance(self.known_hashes, Mapping):
                message = ("Expected known_hashes to be a mapping {cache name: sha256}, or None. "
                           f"Received: known_hashes of type {type(self.known_hashes).__name__}")
                raise ArgumentTypeError(message)
            object.__setattr__(self, "known_hashes", types.MappingProxyType(dict(self.known_hashes)))

    def __repr__(self) -> str:
        shown = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value == field.default:
                continue
            if field.name == "known_hashes":
                shown.append(f"known_hashes=<{len(value)} pin{'' if len(value) == 1 else 's'}>")
            else:
                shown.append(f"{field.name}={value!r}")
        return f"FetchOptions({', '.join(shown)})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A read-only mapping does not pickle: rebuild from a plain dict.
        known = dict(self.known_hashes) if self.known_hashes is not None else None
        return (type(self), (self.data_home, self.mirror, self.verify, known, self.progress))

    def replace(self, **changes: Any) -> FetchOptions:
        """A copy with some fields changed.

        Raises
        ------
        cxrclassify.exceptions.ArgumentTypeError
            If a keyword is not one of the fields.

        Examples
        --------
        >>> from cxrclassify.datasets import FetchOptions
        >>> FetchOptions(mirror="/data/cxr-mirror").replace(progress=False)
        FetchOptions(mirror='/data/cxr-mirror', progress=False)
        """
        unknown = sorted(set(changes) - set(FETCH_FIELDS))
        if unknown:
            message = (f"FetchOptions has no field {unknown}. Expected some of {list(FETCH_FIELDS)}. "
                       f"Received: {_shown(changes)}")
            raise ArgumentTypeError(message)
        return dataclasses.replace(self, **changes)

    def as_kwargs(self) -> dict[str, Any]:
        """The five fields as keyword arguments (for :func:`fetch` or a function taking them one by one).

        Examples
        --------
        >>> from cxrclassify.datasets import FetchOptions
        >>> sorted(FetchOptions().as_kwargs())
        ['data_home', 'known_hashes', 'mirror', 'progress', 'verify']
        """
        return {name: getattr(self, name) for name in FETCH_FIELDS}


def _shown(keywords: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in keywords.items()) or "nothing"


def resolve_fetch_options(fetch_options: FetchOptions | None = None, /, **fetch_keywords: Any) -> FetchOptions:
    """One :class:`FetchOptions` from a ``fetch_options`` argument or the one-by-one fetch keywords.

    The helper behind every function taking ``fetch_options=None,
    **fetch_keywords``: ``fetch_keywords`` may only be ``data_home``,
    ``mirror``, ``verify``, ``known_hashes`` and ``progress``, and not together
    with ``fetch_options`` (use :meth:`FetchOptions.replace` to change a field).

    Parameters
    ----------
    fetch_options : FetchOptions, optional
        The options; by default built from ``fetch_keywords``.
    **fetch_keywords
        The fields of :class:`FetchOptions`, one by one.

    Returns
    -------
    FetchOptions

    Raises
    ------
    cxrclassify.exceptions.ArgumentTypeError
        If a keyword is not one of the five, if one is given with ``fetch_options``,
        or if ``fetch_options`` is not a :class:`FetchOptions`.

    Examples
    --------
    >>> from cxrclassify.datasets import FetchOptions, resolve_fetch_options
    >>> resolve_fetch_options(mirror="/data/cxr-mirror", verify=False)
    FetchOptions(mirror='/data/cxr-mirror', verify=False)
    >>> resolve_fetch_options(FetchOptions(verify=False), verify=True)
    Traceback (most recent call last):
    ...
    cxrclassify.exceptions.ArgumentTypeError: Got both fetch_options and the fetch keyword ['verify']. ...
    """
    return _resolve_fetch_options(fetch_options, fetch_keywords)


def _resolve_fetch_options(
    fetch_options: FetchOptions | None,
    fetch_keywords: Mapping[str, Any],
    *,
    caller: str | None = None,
    argument: str = "fetch_options",
) -> FetchOptions:
    """:func:`resolve_fetch_options`, naming ``caller`` (``"ieee8023_records"``) and its ``argument`` in errors."""
    who = f"{caller}() got" if caller else "Got"
    unknown = [key for key in fetch_keywords if key not in FETCH_FIELDS]
    if unknown:
        message = (
            f"{who} an unexpected keyword argument {unknown}. Expected {'its own parameters, ' if caller else ''}"
            f"{argument}=FetchOptions(...) or some of the fetch keywords {list(FETCH_FIELDS)}. "
            f"Received: {_shown({key: fetch_keywords[key] for key in unknown})}"
        )
        raise ArgumentTypeError(message)
    if fetch_options is None:
        return FetchOptions(**fetch_keywords)
    if not isinstance(fetch_options, FetchOptions):
        message = (
            f"Expected {argument} to be a FetchOptions (FetchOptions(**mapping) builds one from a dict) or None. "
            f"Received: {argument}={fetch_options!r} of type {type(fetch_options).__name__}"
        )
        raise ArgumentTypeError(message)
    if fetch_keywords:
        message = (
            f"{who} both {argument} and the fetch keyword {list(fetch_keywords)}. Expected one or the other "
            f"({argument}.replace({', '.join(f'{key}=...' for key in fetch_keywords)}) changes a field). "
            f"Received: {argument}={fetch_options!r}, {_shown(fetch_keywords)}"
        )
        raise ArgumentTypeError(message)
    return fetch_options


def _given(**keywords: Any) -> dict[str, Any]:
    """The fetch keywords of an explicit signature that differ from their defaults (so were given)."""
    defaults = {field.name: field.default for field in dataclasses.fields(FetchOptions)}
    return {key: value for key, value in keywords.items()
            if not (value is defaults[key] or (type(value) is type(defaults[key]) and value == defaults[key]))}


def fetch(
    remote: RemoteFile,
    *,
    options: FetchOptions | None = None,
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
    options : FetchOptions, optional
        ``data_home``, ``mirror``, ``verify``, ``known_hashes`` and ``progress``
        in one object (see :class:`FetchOptions`), instead of the five
        keywords below, which must then keep their defaults.
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
    cxrclassify.exceptions.ArgumentTypeError
        If ``options`` is given with one of the five keywords it holds.

    Examples
    --------
    A local mirror folder stands in for the network here:

    >>> import hashlib, pathlib, tempfile
    >>> from cxrclassify._download import FetchOptions, RemoteFile, fetch
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
    >>> fetch(remote, options=FetchOptions(data_home=path.parents[2], mirror=mirror)) == path
    True
    """
    if options is not None:
        given = _given(data_home=data_home, mirror=mirror, verify=verify, known_hashes=known_hashes,
                       progress=progress)
        options = _resolve_fetch_options(options, given, caller="fetch", argument="options")
        data_home, mirror, verify = options.data_home, options.mirror, options.verify
        known_hashes, progress = options.known_hashes, options.progress
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
