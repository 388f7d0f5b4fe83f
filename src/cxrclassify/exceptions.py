"""The exceptions cxrclassify raises.

One hierarchy, so that callers can catch everything the library raises on purpose
with ``except CxrError``. Each class also derives from the built-in exception a
caller would expect (``ValueError`` for bad input, ``OSError`` for failed
downloads), so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "CxrError",
    "DataError",
    "ImageDecodeError",
    "ModelError",
    "DownloadError",
    "ChecksumError",
    "WeightsUnavailableError",
]


class CxrError(Exception):
    """Base class of every error cxrclassify raises on purpose."""


class DataError(CxrError, ValueError):
    """A dataset, a folder or a record list is not what was expected."""


class ImageDecodeError(DataError):
    """An image file or array could not be decoded; the message names the input."""


class ModelError(CxrError, ValueError):
    """A model, an architecture or a weights file does not fit what was asked of it."""


class DownloadError(CxrError, OSError):
    """A file could not be downloaded."""


class ChecksumError(DownloadError):
    """A downloaded or cached file does not have the expected checksum."""


class WeightsUnavailableError(DownloadError):
    """Pretrained base weights could not be obtained (offline, or the host is unreachable)."""
