"""Unpacking zip and tar archives safely, and telling a damaged archive from a good one.

No path traversal, no links out of the target, no device files, no zip bombs; a truncated,
corrupt or mislabelled archive becomes a :class:`~cxrclassify.exceptions.DownloadError` naming
it, and a damaged archive that is a cached download is dropped from the cache so that the next
fetch downloads it again.
"""

from __future__ import annotations
import contextlib
import gzip
import logging
import lzma
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, BinaryIO, Callable, Iterable, Iterator
import filelock
from .exceptions import CxrError, DownloadError

from ._cache import _CHUNK, _LOCK_SUFFIX, _META_SUFFIX, _read_meta

__all__ = ["extract_archive", "checked_archive_members"]

logger = logging.getLogger(__name__)

#: Members of at least this size are also checked one by one against ``max_ratio`` (zip only).
_MEMBER_RATIO_FLOOR = 1 << 20


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
