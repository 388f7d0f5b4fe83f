"""How bytes arrive: HTTP with resumption (``Range``) and retries, or a copy from a local mirror folder.

No cache logic here: :func:`~cxrclassify._download.fetch` decides what to fetch and where,
and verifies what arrived.
"""

from __future__ import annotations
import logging
import re
import time
from pathlib import Path
import requests
from tqdm.auto import tqdm
from ._version import __version__
from .exceptions import DownloadError

from ._cache import _CHUNK

__all__: list[str] = []  # internal: used by cxrclassify._download.fetch

logger = logging.getLogger(__name__)


#: Network reads are smaller: bytes of a read cut short by a dropped connection are lost to the resume.
_NET_CHUNK = 1 << 16


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
