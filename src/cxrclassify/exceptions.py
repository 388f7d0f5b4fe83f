"""The exceptions and warnings cxrclassify raises.

One hierarchy, so that callers can catch everything the library raises on purpose
with ``except CxrError``. Each class also derives from the built-in exception a
caller would expect (``ValueError`` for bad input, ``TypeError`` for an input of the
wrong type, ``OSError`` for failed downloads), so existing ``except ValueError`` code
keeps working.

Warnings have categories too, all under :class:`CxrWarning` (a ``UserWarning``), so
that they can be filtered without matching their text::

    import warnings
    from cxrclassify.exceptions import DuplicateImageWarning
    warnings.simplefilter("ignore", DuplicateImageWarning)

This module imports nothing.
"""

from __future__ import annotations

__all__ = [
    "CxrError",
    "ArgumentError",
    "ArgumentTypeError",
    "IndexOutOfRangeError",
    "MissingFileError",
    "OutputExistsError",
    "UnknownNameError",
    "DataError",
    "ImageDecodeError",
    "ModelError",
    "DownloadError",
    "ChecksumError",
    "WeightsUnavailableError",
    "DecodeWorkerError",
    "TruncatedFrameError",
    "CxrWarning",
    "ConfoundingWarning",
    "DuplicateImageWarning",
    "SplitWarning",
    "UnverifiedDownloadWarning",
    "DataWarning",
    "TrainingWarning",
    "EvaluationWarning",
    "CxrDeprecationWarning",
]


class CxrError(Exception):
    """Base class of every error cxrclassify raises on purpose."""


class ArgumentError(CxrError, ValueError):
    """An argument's value is not one the function accepts; the message names the argument."""


class ArgumentTypeError(CxrError, TypeError):
    """An argument is of a type the function does not accept; the message names the argument."""


class IndexOutOfRangeError(CxrError, IndexError):
    """An index past the end of a sequence of images (images decoded on demand); the message gives the range."""


class MissingFileError(CxrError, FileNotFoundError):
    """A file or folder the call reads does not exist; the message names it."""


class OutputExistsError(CxrError, FileExistsError):
    """A call that writes a new file or folder found something already in its place."""


class UnknownNameError(CxrError, KeyError):
    """A name looked up (a fold, a source, a record) is not there; the message lists what is."""

    def __str__(self) -> str:  # KeyError quotes its message; say it plainly
        return str(self.args[0]) if self.args else ""


class DataError(CxrError, ValueError):
    """A dataset, a folder, a record list or a manifest is not what was expected."""


class ImageDecodeError(DataError):
    """An image file or array could not be decoded; the message names the input."""


class ModelError(CxrError, ValueError):
    """A model, an architecture or a weights file does not fit what was asked of it."""


class DownloadError(CxrError, OSError):
    """A file could not be downloaded, or a downloaded archive could not be read."""


class ChecksumError(DownloadError):
    """A downloaded or cached file does not have the expected checksum."""


class WeightsUnavailableError(DownloadError):
    """Pretrained base weights could not be obtained (offline, or the host is unreachable)."""


class DecodeWorkerError(CxrError, OSError):
    """A decoding worker process could not start, exited, or broke the protocol."""


class TruncatedFrameError(DecodeWorkerError):
    """A pipe to or from a decoding worker ended inside a message (the other process is gone)."""


class CxrWarning(UserWarning):
    """Base class of every warning cxrclassify issues."""


class ConfoundingWarning(CxrWarning):
    """Classes differ by source or age group, so a model can tell them apart without the disease."""


class DuplicateImageWarning(CxrWarning):
    """Identical or near-identical images stand in two splits (or were joined into one patient)."""


class SplitWarning(CxrWarning):
    """A split is weaker than asked: by image rather than by patient, or missing a class."""


class UnverifiedDownloadWarning(CxrWarning):
    """A file was used without being checked against a recorded checksum."""


class DataWarning(CxrWarning):
    """Input data was read, but something about it deserves a look (a DICOM oddity, a cache file)."""


class TrainingWarning(CxrWarning):
    """A training option cannot be honoured as given (no validation split, a changed checkpoint)."""


class EvaluationWarning(CxrWarning):
    """A metric or a calibration rests on too little data to mean much."""


class CxrDeprecationWarning(CxrWarning, FutureWarning):
    """A name or option was renamed; the old one still works and will be removed in a later release."""
