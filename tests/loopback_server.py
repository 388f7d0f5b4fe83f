"""A small HTTP server on 127.0.0.1 serving a folder, with ``Range`` and fault injection, for tests.

Standard library only. Use it as a context manager::

    with LoopbackServer(folder) as server:
        url = server.url + "/images/a.jpg"      # http://127.0.0.1:<port>/images/a.jpg
        server.fail_next("/images/a.jpg", status=500)   # the next request gets a 500
        server.drop_after("/images/a.jpg", 100)         # the next one is cut after 100 bytes
        server.delay("/images/a.jpg", 2.0)              # every request waits 2 s first
        server.disable_range()                          # ignore Range, always answer 200
        server.requests                                 # [(path, range header or None), ...]

Paths in the fault methods and in ``requests`` are URL paths, unquoted, with a
leading ``/`` (one given without it is accepted). Files are streamed in chunks
(``shutil.copyfileobj``), so a whole real folder can serve as a mirror. The
server logs nothing; it runs each request in its own thread and stops cleanly
on exit (pending delays are cut short).
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["LoopbackServer"]

_CHUNK = 64 * 1024


@dataclass
class _Faults:
    """Pending faults of one path: status codes to answer, byte counts to cut after, a delay."""

    statuses: list[int] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)
    delay: float = 0.0
    delay_times: int | None = None  # None: every request


def _normalise(path: str) -> str:
    return "/" + path.lstrip("/")


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False  # __exit__ closes open connections itself
    owner: LoopbackServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (socket.getfqdn), slow without a network.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):  # noqa: D102 - quiet: clients hanging up is expected
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002, D102 - quiet
        pass

    def setup(self) -> None:  # noqa: D102
        super().setup()
        with self.server.owner._lock:
            self.server.owner._connections.add(self.connection)

    def finish(self) -> None:  # noqa: D102
        with self.server.owner._lock:
            self.server.owner._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self):  # noqa: N802, D102
        self._serve(body=True)

    def do_HEAD(self):  # noqa: N802, D102
        self._serve(body=False)

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, body: bool) -> None:
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        range_header = self.headers.get("Range")
        status, drop, delay = owner._take(path, range_header)
        if delay and owner._stopping.wait(delay):
            self.close_connection = True
            return
        if status is not None:
            self._empty(status)
            return
        file = owner._resolve(path)
        if file is None:
            self._empty(404)
            return
        size = file.stat().st_size
        start, end, code = 0, size - 1, 200
        headers = {"Content-Type": "application/octet-stream"}
        if owner.range_enabled:
            headers["Accept-Ranges"] = "bytes"
            if range_header:
                parsed = _parse_range(range_header, size)
                if parsed is None:
                    self._empty(416, {"Content-Range": f"bytes */{size}"})
                    return
                start, end = parsed
                code = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(end - start + 1, 0)
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if not body:
            return
        try:
            with open(file, "rb") as handle:
                handle.seek(start)
                if drop is None and start == 0 and length == size:
                    shutil.copyfileobj(handle, self.wfile, _CHUNK)
                else:
                    _copy_bounded(handle, self.wfile, length if drop is None else min(drop, length))
            if drop is not None:
                self.wfile.flush()
                self.close_connection = True  # the socket closes with Content-Length unmet
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _copy_bounded(reader, writer, count: int) -> None:
    while count > 0:
        chunk = reader.read(min(_CHUNK, count))
        if not chunk:
            return
        writer.write(chunk)
        count -= len(chunk)


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` of a single ``bytes=`` range, or None when not satisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        count = int(last)
        return (max(size - count, 0), size - 1) if count and size else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start < size and start <= end else None


class LoopbackServer:
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port), with ``Range`` support and injected faults.

    Parameters
    ----------
    root : str or os.PathLike
        The folder served: ``GET /a/b.bin`` answers ``root/a/b.bin``; a missing
        file (or a path climbing out of ``root``) answers 404.
    range_support : bool, default True
        Answer ``Range`` requests with 206 and ``Content-Range``; when False the
        ``Range`` header is ignored (always 200 with the whole file).

    Attributes
    ----------
    url : str
        ``"http://127.0.0.1:<port>"``, without a trailing slash (set on entry).
    requests : list of tuple
        ``(path, range header or None)`` of every request received, in order.
    """

    def __init__(self, root: str | os.PathLike[str], *, range_support: bool = True) -> None:
        self.root = Path(root).resolve()
        self.range_enabled = range_support
        self.requests: list[tuple[str, str | None]] = []
        self.url = ""
        self._faults: dict[str, _Faults] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def __enter__(self) -> LoopbackServer:
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-server", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # wake handlers waiting on kept-alive connections
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    # -- faults

    def fail_next(self, path: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests of ``path`` with ``status`` and an empty body."""
        with self._lock:
            self._faults.setdefault(_normalise(path), _Faults()).statuses.extend([status] * times)

    def drop_after(self, path: str, nbytes: int, times: int = 1) -> None:
        """Cut the next ``times`` responses of ``path`` after ``nbytes`` body bytes (full Content-Length sent)."""
        with self._lock:
            self._faults.setdefault(_normalise(path), _Faults()).drops.extend([nbytes] * times)

    def delay(self, path: str, seconds: float, times: int | None = None) -> None:
        """Wait ``seconds`` before answering requests of ``path`` (every one, or the next ``times``)."""
        with self._lock:
            faults = self._faults.setdefault(_normalise(path), _Faults())
            faults.delay, faults.delay_times = seconds, times

    def disable_range(self) -> None:
        """Ignore ``Range`` headers from now on: answer 200 with the whole file."""
        self.range_enabled = False

    def enable_range(self) -> None:
        """Answer ``Range`` headers with 206 again."""
        self.range_enabled = True

    def clear_faults(self) -> None:
        """Forget every pending fault and delay."""
        with self._lock:
            self._faults.clear()

    def requests_for(self, path: str) -> list[str | None]:
        """The ``Range`` headers (None when absent) of the requests received for ``path``."""
        wanted = _normalise(path)
        with self._lock:
            return [range_header for received, range_header in self.requests if received == wanted]

    # -- used by the handler

    def _take(self, path: str, range_header: str | None) -> tuple[int | None, int | None, float]:
        with self._lock:
            self.requests.append((path, range_header))
            faults = self._faults.get(path)
            if faults is None:
                return None, None, 0.0
            status = faults.statuses.pop(0) if faults.statuses else None
            drop = faults.drops.pop(0) if faults.drops and status is None else None
            delay = faults.delay
            if delay and faults.delay_times is not None:
                faults.delay_times -= 1
                if faults.delay_times <= 0:
                    faults.delay, faults.delay_times = 0.0, None
            return status, drop, delay

    def _resolve(self, path: str) -> Path | None:
        relative = path.lstrip("/")
        candidate = (self.root / relative).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            return None
        return candidate if candidate.is_file() else None
