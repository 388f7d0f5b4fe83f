"""The shipped lung segmenter's weights: where they are, what they are, and loading them verified.

The package ships one trained :func:`~cxrclassify.segmentation.build_lung_unet`
as two files in ``segmentation/weights/``: ``lung_unet.weights.h5`` (the
weights) and ``lung_unet.json`` (its metadata: the architecture's arguments,
the weights file's sha256, the training data, the split and the Dice measured
on each split). :func:`load_lung_unet` reads the metadata, checks the weights
file against the sha256 recorded there and only then loads it, once per
process (later calls return the same model, until the file changes).
The model card is ``segmentation/MODEL_CARD.md``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import keras

from .._cache import file_sha256
from ..exceptions import ArgumentTypeError, ChecksumError, MissingFileError, ModelError
from .unet import build_lung_unet

__all__ = ["METADATA_FORMAT", "SHIPPED_METADATA", "load_lung_unet", "read_lung_unet_metadata"]

logger = logging.getLogger(__name__)

#: The metadata file of the shipped lung segmenter.
SHIPPED_METADATA = Path(__file__).resolve().parent / "weights" / "lung_unet.json"
#: The ``format`` field every lung segmenter metadata file carries.
METADATA_FORMAT = "cxrclassify-lung-unet"

_REQUIRED = ("format", "weights_file", "sha256", "input_size", "base_filters", "depth")
_cache: dict[tuple[str, int, int], keras.Model] = {}
_cache_lock = threading.Lock()


def _as_path(metadata: str | os.PathLike[str] | None) -> Path:
    if metadata is None:
        return SHIPPED_METADATA
    if not isinstance(metadata, (str, os.PathLike)):
        message = (
            "Expected metadata to be the path of a lung segmenter's JSON metadata file, or None for the shipped "
            f"one. Received: metadata of type {type(metadata).__name__}"
        )
        raise ArgumentTypeError(message)
    return Path(metadata)


def read_lung_unet_metadata(metadata: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read a lung segmenter's metadata (by default the shipped one's), checking its fields.

    Parameters
    ----------
    metadata : path, optional
        A JSON file as ``benchmarks/train_lung_segmenter.py`` writes it; ``None``
        for :data:`SHIPPED_METADATA`.

    Returns
    -------
    dict
        The metadata: ``format``, ``weights_file`` (relative to the JSON's
        folder), ``sha256``, ``input_size``, ``base_filters``, ``depth``, and
        what the training recorded (``dice``, ``training_data``, ``split``,
        ``license``, ...).

    Raises
    ------
    cxrclassify.exceptions.MissingFileError
        If the file does not exist.
    cxrclassify.exceptions.ModelError
        If it is not JSON, or lacks one of the fields above.

    Examples
    --------
    >>> from cxrclassify.segmentation import read_lung_unet_metadata
    >>> facts = read_lung_unet_metadata()
    >>> facts["format"], facts["input_size"]
    ('cxrclassify-lung-unet', 128)
    """
    path = _as_path(metadata)
    if not path.is_file():
        message = f"Expected the JSON metadata file of a lung segmenter. Received: {str(path)!r}, which was not found"
        raise MissingFileError(message)
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        message = f"Expected {str(path)!r} to be a JSON metadata file. Received: a file that is not JSON ({error})"
        raise ModelError(message) from error
    missing = [name for name in _REQUIRED if not isinstance(facts, dict) or name not in facts]
    if missing or facts.get("format") != METADATA_FORMAT:
        message = (
            f"Expected {str(path)!r} to be lung segmenter metadata (format {METADATA_FORMAT!r}, with the fields "
            f"{', '.join(_REQUIRED)}). Received: a JSON file "
            + (f"without {', '.join(missing)}" if missing else f"of format {facts.get('format')!r}")
        )
        raise ModelError(message)
    return facts


def load_lung_unet(metadata: str | os.PathLike[str] | None = None) -> keras.Model:
    """Load a trained lung segmenter (by default the shipped one), verifying its weights file first.

    The weights file named in the metadata must have the sha256 recorded
    there; only then are the weights loaded into
    ``build_lung_unet(input_size, base_filters=..., depth=...)``. The model is
    kept for the rest of the process: the next call with the same file (same
    path, size and modification time) returns the same object without reading
    the file again.

    Parameters
    ----------
    metadata : path, optional
        The JSON metadata file; ``None`` for :data:`SHIPPED_METADATA`.

    Returns
    -------
    keras.Model
        The network, as :func:`~cxrclassify.segmentation.build_lung_unet` builds it.

    Raises
    ------
    cxrclassify.exceptions.MissingFileError
        If the metadata or the weights file does not exist.
    cxrclassify.exceptions.ChecksumError
        If the weights file's sha256 is not the one recorded (a damaged or
        replaced file); the message names the file.
    cxrclassify.exceptions.ModelError
        If the metadata is not valid, or Keras cannot load the weights into
        the network it describes.

    Examples
    --------
    >>> from cxrclassify.segmentation import load_lung_unet
    >>> model = load_lung_unet()
    >>> model.input_shape
    (None, 128, 128, 1)
    >>> load_lung_unet() is model
    True
    """
    path = _as_path(metadata)
    facts = read_lung_unet_metadata(path)
    weights = path.parent / str(facts["weights_file"])
    if not weights.is_file():
        message = (
            f"Expected the lung segmenter's weights file named in {str(path)!r}. "
            f"Received: {str(weights)!r}, which was not found"
        )
        raise MissingFileError(message)
    info = weights.stat()
    key = (str(weights.resolve()), info.st_size, info.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        found = file_sha256(weights)
        expected = str(facts["sha256"]).lower()
        if found != expected:
            message = (
                f"Expected the lung segmenter's weights file {str(weights)!r} to have the sha256 recorded in "
                f"{path.name} ({expected}): it is damaged or was replaced. Reinstall cxrclassify, or retrain "
                f"with benchmarks/train_lung_segmenter.py. Received: a file of {info.st_size} bytes with sha256 {found}"
            )
            raise ChecksumError(message)
        model = build_lung_unet(int(facts["input_size"]), base_filters=int(facts["base_filters"]),
                                depth=int(facts["depth"]))
        try:
            model.load_weights(weights)
        except (ValueError, OSError, KeyError) as error:
            message = (
                f"Expected {str(weights)!r} to hold the weights of the network {path.name} describes. "
                f"Received: a file Keras could not load ({type(error).__name__}: {error})"
            )
            raise ModelError(message) from error
        _cache[key] = model
        logger.info("Loaded the lung segmenter %s (sha256 %s)", weights, found)
        return model
