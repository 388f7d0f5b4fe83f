"""Files written whole or not at all, and values made JSON-serialisable: the one place for both.

Every file the library writes that a reader could find half-written (a cache entry, a
checkpoint, a record, a report's JSON) goes through :func:`atomic_write`: the content is
written to a temporary file in the same folder, flushed to disk, and renamed into place
with :func:`os.replace`, so a reader sees the old file or the new one, never a part.
Every value put into JSON goes through :func:`to_jsonable`. This module imports nothing
from the rest of the package.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "to_jsonable", "write_json"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], *, fsync: bool = True) -> Path:
    """Write a file through ``write(handle)`` into a temporary file beside it, then rename it into place.

    Parameters
    ----------
    path : path
        The file to write; its folder must exist.
    write : callable
        Called once with a binary file handle open for writing.
    fsync : bool, default True
        Flush the content to disk before the rename (a crash then leaves the old or the new file).

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify._io import atomic_write
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> atomic_write(target, lambda handle: handle.write(b"done")).read_bytes()
    b'done'
    """
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        try:
            os.replace(handle.name, path)
        except PermissionError:
            # Windows: another process holds the target open (memory-mapped); it wrote the same content.
            if not path.exists():
                raise
            Path(handle.name).unlink(missing_ok=True)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], content: bytes, *, fsync: bool = True) -> Path:
    """:func:`atomic_write` of ``content``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify._io import atomic_write_bytes
    >>> atomic_write_bytes(pathlib.Path(tempfile.mkdtemp()) / "b.bin", b"x").stat().st_size
    1
    """
    return atomic_write(path, lambda handle: handle.write(content), fsync=fsync)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """:func:`atomic_write` of ``text``, encoded.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify._io import atomic_write_text
    >>> atomic_write_text(pathlib.Path(tempfile.mkdtemp()) / "c.txt", "hé").read_text(encoding="utf-8")
    'hé'
    """
    return atomic_write(path, lambda handle: handle.write(text.encode(encoding)), fsync=fsync)


def write_json(path: str | os.PathLike[str], value: Any, *, indent: int | None = 1, keep_infinity: bool = False,
               fsync: bool = True) -> Path:
    """Write ``to_jsonable(value)`` as JSON (with a final newline), atomically.

    Examples
    --------
    >>> import json, pathlib, tempfile
    >>> import numpy as np
    >>> from cxrclassify._io import write_json
    >>> path = write_json(pathlib.Path(tempfile.mkdtemp()) / "d.json", {"x": np.float32(0.5), "y": float("nan")})
    >>> json.loads(path.read_text())
    {'x': 0.5, 'y': None}
    """
    text = json.dumps(to_jsonable(value, keep_infinity=keep_infinity), indent=indent,
                      allow_nan=keep_infinity) + "\n"
    return atomic_write_text(path, text, fsync=fsync)


def to_jsonable(value: Any, *, keep_infinity: bool = False) -> Any:
    """``value`` with NumPy types made Python ones, tuples lists, paths strings and nan ``None``.

    Parameters
    ----------
    value : object
        Nested dicts, lists and tuples of numbers, strings, booleans, ``None``,
        NumPy scalars and arrays and paths.
    keep_infinity : bool, default False
        Keep ``inf`` and ``-inf`` (Python's ``json`` writes them as ``Infinity``,
        which it reads back but strict JSON does not allow), for state read back
        by this library only; otherwise they become ``None``, like ``nan``.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify._io import to_jsonable
    >>> to_jsonable({"a": np.arange(2), "b": (np.float64("nan"), np.bool_(True)), 3: float("inf")})
    {'a': [0, 1], 'b': [None, True], '3': None}
    >>> to_jsonable(float("-inf"), keep_infinity=True)
    -inf
    """
    if isinstance(value, dict):
        return {str(key): to_jsonable(item, keep_infinity=keep_infinity) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, keep_infinity=keep_infinity) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), keep_infinity=keep_infinity)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number) or (math.isinf(number) and not keep_infinity):
            return None
        return number
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
