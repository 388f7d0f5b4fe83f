"""Image files decoded in worker processes, for :meth:`LazyImages.as_dataset`'s parallel decoding.

Decoding a file with Pillow holds Python's interpreter lock for part of the time
(marker parsing, EXIF, the library's checks: about 40% for a 256-px JPEG), so
decoding threads in one process do not scale with cores. A :class:`DecodePool`
runs ``processes`` Python processes that decode with the same
:func:`~cxrclassify.datasets.read_image` and :func:`~cxrclassify.datasets.resize`
as the eager path, so the pixels are the same; the calling threads only wait on
pipes (which releases the lock) and unpickle the arrays.

The workers are started with ``python -m cxrclassify.datasets._decode_worker``
over pipes, not with :mod:`multiprocessing`: no ``fork`` of a process that runs
TensorFlow's threads, and no re-import of the caller's ``__main__`` (a script
without an ``if __name__ == "__main__"`` guard still works). Each worker imports
NumPy, Pillow and :mod:`cxrclassify.datasets` (about 2 s on a slow CPU), once:
:func:`shared_decode_pool` keeps one pool per size for the life of the process.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence

import numpy as np

from ..exceptions import ArgumentError, DecodeWorkerError, ImageDecodeError, TruncatedFrameError

__all__ = ["DecodePool", "DecodeWorkerError", "available_cores", "shared_decode_pool"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<Q")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system has one).

    Examples
    --------
    >>> from cxrclassify.datasets._decode_pool import available_cores
    >>> available_cores() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def write_frame(stream, payload: object) -> None:
    """Write ``payload`` pickled, after its length, and flush."""
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_frame(stream) -> object:
    """Read one frame written by :func:`write_frame`; a :class:`TruncatedFrameError` at the end of the stream."""
    header = _read_exactly(stream, _HEADER.size)
    return pickle.loads(_read_exactly(stream, _HEADER.unpack(header)[0]))


def _read_exactly(stream, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise TruncatedFrameError(f"the stream ended {remaining} bytes before the end of a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class _Worker:
    """One decoding process and its two pipes."""

    def __init__(self, number: int):
        self.number = number
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cxrclassify.datasets._decode_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment)

    def decode(self, request: dict) -> np.ndarray:
        try:
            write_frame(self.process.stdin, request)
            status, value = read_frame(self.process.stdout)
        except (OSError, pickle.UnpicklingError) as error:
            code = self.process.poll()
            message = (f"Decoding worker process {self.number} (pid {self.process.pid}) stopped answering "
                       f"({'exited with code ' + str(code) if code is not None else 'still running'}): "
                       f"{error}. Expected a decoded batch. Decode in threads instead with "
                       "as_dataset(..., decode_in='threads')")
            raise DecodeWorkerError(message) from error
        if status == "ok":
            return value
        error_type, message = value
        if error_type == "ImageDecodeError":
            raise ImageDecodeError(message)
        raise DecodeWorkerError(f"Decoding worker process {self.number} failed: {error_type}: {message}")

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:  # pragma: no cover - already gone
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck worker
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


class DecodePool:
    """``processes`` worker processes that decode and resize image files.

    Each call to :meth:`decode` takes an idle worker, hands it the paths and gets
    the images back; calls from several threads run in parallel, one per worker.

    Parameters
    ----------
    processes : int
        Number of worker processes (at least 1).

    Examples
    --------
    >>> from cxrclassify.datasets import sample_records
    >>> from cxrclassify.datasets._decode_pool import DecodePool
    >>> paths = [record.path for record in sample_records()[:3]]
    >>> with DecodePool(1) as pool:
    ...     pool.decode(paths, 32).shape
    (3, 32, 32, 3)
    """

    def __init__(self, processes: int):
        if isinstance(processes, bool) or not isinstance(processes, (int, np.integer)) or processes < 1:
            message = f"Expected processes to be a whole number of at least 1. Received: processes={processes!r}"
            raise ArgumentError(message)
        self.processes = int(processes)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers = [_Worker(number) for number in range(self.processes)]
        for worker in self._workers:
            self._idle.put(worker)
        self._closed = False
        logger.info("started %d decoding worker processes", self.processes)

    def decode(self, paths: Sequence[str], image_size: int, *, common_resolution: int | None = None,
               max_pixels: int | None = None) -> np.ndarray:
        """The files at ``paths`` as one ``(n, S, S, 3)`` ``uint8`` array, decoded by one worker.

        ``max_pixels`` is passed to :func:`~cxrclassify.datasets.read_image` (the
        caller's limit: workers do not see :func:`set_max_image_pixels` calls).
        """
        if self._closed:
            raise DecodeWorkerError("Expected an open DecodePool. Received: a pool that was closed")
        request = {"paths": [os.fspath(path) for path in paths], "image_size": int(image_size),
                   "common_resolution": common_resolution, "max_pixels": max_pixels}
        worker = self._idle.get()
        try:
            return worker.decode(request)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop the workers (idle ones at once; this waits for busy ones to finish)."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            worker.close()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_SHARED_POOLS: dict[int, DecodePool] = {}
_SHARED_LOCK = threading.Lock()


def shared_decode_pool(processes: int) -> DecodePool:
    """The process-wide pool of ``processes`` workers, started on first use and stopped at exit.

    Examples
    --------
    >>> from cxrclassify.datasets._decode_pool import shared_decode_pool
    >>> shared_decode_pool(1) is shared_decode_pool(1)
    True
    """
    with _SHARED_LOCK:
        pool = _SHARED_POOLS.get(processes)
        if pool is None or pool._closed:
            pool = _SHARED_POOLS[processes] = DecodePool(processes)
        return pool


@atexit.register
def _close_shared_pools() -> None:
    with _SHARED_LOCK:
        for pool in _SHARED_POOLS.values():
            pool.close()
        _SHARED_POOLS.clear()
