"""Loading classifiers saved with ``model.save(path)``, and exporting them for serving.

A classifier exports as a TensorFlow SavedModel (:func:`export_savedmodel`, for
TensorFlow Serving and ``tf.saved_model.load``) or a TensorFlow Lite file
(:func:`export_tflite`, for phones and edge devices). Both take ``images``:
float32 ``(N, S, S, 3)`` RGB in ``[0, 255]``, the preprocessing being inside
the model, and return ``probabilities``: ``(N, num_classes)``. A SavedModel
carries the classifier's facts (class names, input size, ...) as
``assets/cxrclassify.json`` (:func:`read_export_metadata`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .._io import atomic_write_bytes
from ..exceptions import ArgumentError, ArgumentTypeError, MissingFileError, ModelError, OutputExistsError
from .classifier import CxrClassifier

__all__ = [
    "EXPORT_METADATA_FILE",
    "SERVING_INPUT",
    "SERVING_OUTPUT",
    "SERVING_SIGNATURE",
    "export_savedmodel",
    "export_tflite",
    "load_model",
    "read_export_metadata",
    "savedmodel_predict",
    "tflite_predict",
]

logger = logging.getLogger(__name__)

#: Name of the JSON file, in a SavedModel's ``assets`` folder, holding the classifier's facts.
EXPORT_METADATA_FILE = "cxrclassify.json"
#: Signature (SavedModel) and signature key (TFLite) of the exported prediction function.
SERVING_SIGNATURE = "serving_default"
#: Name of the exported function's input: float32 ``(N, S, S, 3)`` RGB in ``[0, 255]``.
SERVING_INPUT = "images"
#: Name of the exported function's output: float32 ``(N, num_classes)`` probabilities.
SERVING_OUTPUT = "probabilities"

_EXPORT_FORMAT = "cxrclassify-savedmodel"
_EXPORT_FORMAT_VERSION = 1
_DEFAULT_BATCH_SIZE = 32


def load_model(path: str | os.PathLike[str]) -> CxrClassifier:
    """Load a classifier saved with ``model.save("name.keras")``, without unsafe deserialisation.

    The reloaded model has the same architecture, class names, input size,
    preprocessing and metadata, and predicts identically. Keras loads it with
    ``safe_mode=True``: a file asking to run arbitrary code (a ``lambda``
    pickled into a layer) is refused.

    A ``.keras`` file is a zip archive holding ``config.json`` (the
    architecture), ``metadata.json`` and the weights. The file is checked
    before Keras reads it, so that each way it can be wrong gets its own
    message: missing, a folder, empty, truncated (an interrupted download or
    copy: the zip's table of contents, at its end, is missing), another kind
    of file, a zip that is not a Keras model, damaged content.

    Parameters
    ----------
    path : path
        A ``.keras`` file written by :meth:`keras.Model.save` from a
        :class:`~cxrclassify.models.CxrClassifier`.

    Returns
    -------
    CxrClassifier
        The classifier.

    Raises
    ------
    cxrclassify.exceptions.MissingFileError
        If ``path`` does not exist (the message says "not found"); a ``FileNotFoundError``.
    cxrclassify.exceptions.ModelError
        If ``path`` is a folder, or a file that is not a complete, valid
        ``.keras`` archive (empty, truncated, not a zip, a zip without
        ``config.json``, damaged), or a model Keras refuses to load (with
        ``safe_mode``) or that is not a saved cxrclassify classifier. The
        message names the file and gives the underlying error.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import cxrclassify
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32, class_names=["a", "b", "c"])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.keras"
    >>> model.save(path)
    >>> cxrclassify.load_model(path).class_names
    ['a', 'b', 'c']

    A file cut short, as by an interrupted download, is told apart from a missing one:

    >>> _ = path.write_bytes(path.read_bytes()[:1000])
    >>> cxrclassify.load_model(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cxrclassify.exceptions.ModelError: Expected '...model.keras' to be a complete .keras model archive...
    """
    path = Path(path)
    if str(path).endswith((".h5", ".hdf5")) and path.is_file():
        model = _keras_load(path)  # a legacy HDF5 model: Keras reads it, not being a zip
    else:
        _check_keras_file(path)
        model = _keras_load(path)
    if not isinstance(model, CxrClassifier):
        message = (
            f"Expected {str(path)!r} to hold a CxrClassifier saved by cxrclassify. "
            f"Received: a {type(model).__name__}"
        )
        raise ModelError(message)
    return model


#: The first bytes of an HDF5 file (a legacy ``.h5`` model, or a ``.weights.h5`` file).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: What a damaged zip makes Keras (through zipfile, zlib and h5py) raise.
_DAMAGED_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)


def _check_keras_file(path: Path) -> None:
    """Refuse, with a message of its own, each way ``path`` can fail to be a complete ``.keras`` archive."""
    expected = f"Expected {str(path)!r} to be a complete .keras model archive, as model.save(path) writes it"
    if not path.exists():
        message = (
            f"Expected the path of a saved .keras model. Received: {str(path)!r}, which was not found "
            "(no such file)"
        )
        raise MissingFileError(message)
    if path.is_dir():
        hint = ""
        if (path / "saved_model.pb").is_file():
            hint = (
                ": a TensorFlow SavedModel, as export_savedmodel writes it, which load_model does not read "
                "(use savedmodel_predict or tf.saved_model.load)"
            )
        message = f"{expected}. Received: {str(path)!r}, which is a folder{hint}"
        raise ModelError(message)
    if not path.is_file():
        message = f"{expected}. Received: {str(path)!r}, which is not a regular file"
        raise ModelError(message)
    size = path.stat().st_size
    if size == 0:
        message = (
            f"{expected}. Received: an empty file (0 bytes): it exists but holds nothing (an interrupted save, "
            "download or copy?)"
        )
        raise ModelError(message)
    with open(path, "rb") as handle:
        head = handle.read(8)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        detail = f"zipfile: {type(error).__name__}: {error}"
        if head.startswith(b"PK\x03\x04") and "not a zip file" in str(error):
            found = (
                f"a file that exists ({size} bytes) and starts like a .keras (zip) archive, but lacks the table "
                f"of contents zip keeps at its end: it is truncated at byte {size} (an interrupted download or "
                f"copy?); save or download it again ({detail})"
            )
        elif head.startswith(_HDF5_SIGNATURE):
            found = (
                f"an HDF5 file ({size} bytes): a legacy .h5 model, or a .weights.h5 file (load that one with "
                "build_model(..., weights=path)), not a .keras archive"
            )
        elif head.startswith(b"PK"):
            found = f"a file that exists ({size} bytes) but is a damaged zip archive ({detail})"
        else:
            found = (
                f"a file that exists ({size} bytes) but is not a .keras (zip) archive, nor a Keras file at all: "
                f"it starts with {head!r} ({detail})"
            )
        message = f"{expected}. Received: {found}"
        raise ModelError(message) from error
    if "config.json" not in names:
        message = (
            f"{expected}. Received: a zip archive that exists but is not a Keras model: it has no config.json "
            f"(its members: {names[:5]}{' ...' if len(names) > 5 else ''})"
        )
        raise ModelError(message)
    if not path.name.endswith(".keras"):
        message = (
            f"{expected}, named *.keras (Keras tells the format by the name). Received: {path.name!r}; rename "
            "it to end with .keras"
        )
        raise ModelError(message)


def _keras_load(path: Path) -> Any:
    """``keras.models.load_model`` with ``safe_mode=True``, its failures as ModelError naming the file."""
    try:
        return keras.models.load_model(path, safe_mode=True)
    except _DAMAGED_ARCHIVE_ERRORS as error:
        message = (
            f"Expected {str(path)!r} to be a complete .keras model archive. Received: a file that exists but "
            f"whose content is damaged, as by a truncated or corrupted download ({type(error).__name__}: {error})"
        )
        raise ModelError(message) from error
    except OSError as error:
        if "truncated" not in str(error).lower():
            raise _not_loadable(path, error) from error
        message = (
            f"Expected {str(path)!r} to be a complete .keras model archive. Received: a file that exists but "
            f"whose weights are cut short, as by a truncated download or copy ({type(error).__name__}: {error})"
        )
        raise ModelError(message) from error
    except (ValueError, TypeError, KeyError) as error:
        raise _not_loadable(path, error) from error


def _not_loadable(path: Path, error: BaseException) -> ModelError:
    """The ModelError for a ``.keras`` file Keras refuses (safe_mode, an unknown layer, a bad config)."""
    detail = " ".join(f"{type(error).__name__}: {error}".split())
    message = (
        f"Expected {str(path)!r} to be a cxrclassify classifier that Keras can load with safe_mode=True. "
        f"Received: a file Keras could not load ({detail})"
    )
    return ModelError(message)


def export_savedmodel(model: CxrClassifier, path: str | os.PathLike[str]) -> Path:
    """Export a classifier as a TensorFlow SavedModel folder, for serving.

    The SavedModel's ``serving_default`` signature (also named ``serve``) takes
    ``images``, float32 ``(None, S, S, 3)`` RGB in ``[0, 255]`` with ``S`` the
    classifier's ``image_size``, and returns ``probabilities``, float32
    ``(None, num_classes)``; the preprocessing is inside. It runs the same graph
    as ``model.predict`` (probabilities equal to within 1e-5; identical in the
    tests). The folder also holds ``assets/cxrclassify.json``: architecture,
    class names, input size, preprocessing, head, the model's metadata and the
    versions of cxrclassify, Keras and TensorFlow (see
    :func:`read_export_metadata`). It needs neither cxrclassify nor Keras to run.

    Parameters
    ----------
    model : CxrClassifier
        The classifier, as built by :func:`~cxrclassify.build_model`.
    path : path
        Folder to create. It must not exist or be empty; its parent folders are
        created. For TensorFlow Serving, use a numbered version folder
        (``models/cxr/1``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`~cxrclassify.models.CxrClassifier`.
    cxrclassify.exceptions.OutputExistsError
        If ``path`` is a file or a folder that is not empty.

    See Also
    --------
    savedmodel_predict : Predict with the exported folder.
    export_tflite : Export as a TensorFlow Lite file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import cxrclassify
    >>> from cxrclassify.models.io import export_savedmodel, read_export_metadata
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32, class_names=["a", "b", "c"])
    >>> path = export_savedmodel(model, pathlib.Path(tempfile.mkdtemp()) / "cxr" / "1")
    >>> sorted(item.name for item in path.iterdir())
    ['assets', 'fingerprint.pb', 'saved_model.pb', 'variables']
    >>> read_export_metadata(path)["class_names"]
    ['a', 'b', 'c']
    """
    _check_classifier(model, "export_savedmodel")
    path = Path(path)
    _check_free_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        _write_savedmodel(model, staging)
        if path.is_dir():  # an empty folder: replace it
            path.rmdir()
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "Exported %s classifier (%d classes, %d px) as a SavedModel to %s",
        model.arch, model.num_classes, model.image_size, path,
    )
    return path


def export_tflite(
    model: CxrClassifier | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    quantize: bool = False,
) -> Path:
    """Export a classifier as a TensorFlow Lite file.

    The file's ``serving_default`` signature takes ``images`` (float32
    ``(N, S, S, 3)`` RGB in ``[0, 255]``; any ``N``) and returns
    ``probabilities``, like :func:`export_savedmodel`'s. Float files give the
    Keras model's probabilities to within 1e-4. ``quantize=True`` stores the
    weights as 8-bit integers (dynamic-range quantisation): about 4 times
    smaller, with probabilities that move by up to about 0.1 (measured: 0.0014
    to 0.11 for VGG16 and MobileNetV2 at 32 to 64 px, with random and with
    ImageNet-trained weights), so the
    predicted class can change for images whose two highest probabilities are
    close. Check a quantised file on your own validation data before using it.
    The file holds no class names: keep them from ``model.class_names`` or
    from a SavedModel's :func:`read_export_metadata`.
    The size of the written file is logged (INFO).

    Parameters
    ----------
    model : CxrClassifier or path
        The classifier, or a SavedModel folder written by :func:`export_savedmodel`.
    path : path
        File to write (conventionally ``*.tflite``); replaced if it exists. Its
        parent folders are created.
    quantize : bool, default False
        Apply dynamic-range quantisation (``tf.lite.Optimize.DEFAULT``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        If ``model`` is neither a :class:`~cxrclassify.models.CxrClassifier` nor a path.
    cxrclassify.exceptions.MissingFileError
        If ``model`` is a path that is not a SavedModel folder.
    cxrclassify.exceptions.ModelError
        If the SavedModel has no ``serving_default`` signature.
    cxrclassify.exceptions.OutputExistsError
        If ``path`` is a folder (a ``FileExistsError``).

    See Also
    --------
    tflite_predict : Predict with the file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.models.io import export_tflite, tflite_predict
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> path = export_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "cxr.tflite", quantize=True)
    >>> images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    >>> probabilities = tflite_predict(path, images)
    >>> probabilities.shape
    (2, 3)
    >>> bool(np.abs(probabilities - model.predict(images, verbose=0)).max() < 0.1)
    True
    """
    path = Path(path)
    if path.is_dir():
        message = f"Expected the path of a .tflite file to write. Received: {str(path)!r}, which is a folder"
        raise OutputExistsError(message)
    if isinstance(model, CxrClassifier):
        with tempfile.TemporaryDirectory(prefix="cxrclassify-export-") as folder:
            savedmodel = Path(folder) / "savedmodel"
            _write_savedmodel(model, savedmodel)
            content = _convert_to_tflite(savedmodel, quantize)
        source = f"{model.arch} classifier"
    elif isinstance(model, (str, os.PathLike)):
        savedmodel = Path(model)
        _check_savedmodel_folder(savedmodel)
        content = _convert_to_tflite(savedmodel, quantize)
        source = f"SavedModel {str(savedmodel)!r}"
    else:
        message = (
            "Expected model to be a cxrclassify CxrClassifier (see cxrclassify.build_model) or the path of "
            f"a SavedModel folder written by export_savedmodel. Received: a {type(model).__name__}"
        )
        raise ArgumentTypeError(message)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, content)
    logger.info(
        "Exported %s as a %s TensorFlow Lite file to %s (%.1f MB)",
        source, "dynamic-range quantised" if quantize else "float32", path, len(content) / 1e6,
    )
    return path


def read_export_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the facts :func:`export_savedmodel` stored with a SavedModel.

    Parameters
    ----------
    path : path
        A SavedModel folder written by :func:`export_savedmodel`.

    Returns
    -------
    dict
        ``arch``, ``num_classes``, ``class_names`` (``None`` if the classifier had
        none), ``image_size``, ``preprocessing``, ``head``, ``metadata`` (the
        classifier's), ``cxrclassify_version``, ``keras_version``,
        ``tensorflow_version``, ``signature``, ``input`` and ``output`` (name,
        dtype and shape, ``None`` for the batch dimension), ``format`` and
        ``format_version``.

    Raises
    ------
    cxrclassify.exceptions.MissingFileError
        If ``path`` is not a SavedModel folder.
    cxrclassify.exceptions.ModelError
        If the SavedModel was not exported by cxrclassify, or its
        ``cxrclassify.json`` cannot be read.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import cxrclassify
    >>> from cxrclassify.models.io import export_savedmodel, read_export_metadata
    >>> names = ["covid19", "normal", "pneumonia"]
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32, class_names=names)
    >>> facts = read_export_metadata(export_savedmodel(model, pathlib.Path(tempfile.mkdtemp()) / "cxr"))
    >>> facts["arch"], facts["image_size"], facts["class_names"]
    ('vgg16', 32, ['covid19', 'normal', 'pneumonia'])
    >>> facts["input"]
    {'name': 'images', 'dtype': 'float32', 'shape': [None, 32, 32, 3], 'value_range': [0, 255], 'channels': 'RGB'}
    """
    path = Path(path)
    _check_savedmodel_folder(path)
    metadata_path = path / "assets" / EXPORT_METADATA_FILE
    if not metadata_path.is_file():
        message = (
            "Expected a SavedModel exported by cxrclassify's export_savedmodel, with "
            f"assets/{EXPORT_METADATA_FILE}. Received: {str(path)!r}, which has no such file"
        )
        raise ModelError(message)
    try:
        facts = json.loads(metadata_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        message = f"Could not read {str(metadata_path)!r} as cxrclassify export metadata: {error}"
        raise ModelError(message) from error
    if not isinstance(facts, dict) or facts.get("format") != _EXPORT_FORMAT:
        message = (
            f"Expected {str(metadata_path)!r} to hold cxrclassify export metadata (format {_EXPORT_FORMAT!r}). "
            f"Received: {str(facts)[:200]}"
        )
        raise ModelError(message)
    return facts


def savedmodel_predict(
    path: str | os.PathLike[str],
    images: Any,
    *,
    batch_size: int = _DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Predict class probabilities with a SavedModel written by :func:`export_savedmodel`.

    Loads the folder with ``tf.saved_model.load`` and calls its
    ``serving_default`` signature, ``batch_size`` images at a time. It loads
    the model on every call: to predict repeatedly, keep
    ``tf.saved_model.load(path).signatures["serving_default"]`` instead.

    Parameters
    ----------
    path : path
        The SavedModel folder.
    images : array-like
        ``(N, S, S, 3)`` RGB images with values in ``[0, 255]``, or one
        ``(S, S, 3)`` image, ``S`` being the size the model was exported with.
    batch_size : int, default 32
        Images per call of the model.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, num_classes)`` probabilities, or ``(num_classes,)`` for
        one image; columns in the order of the metadata's ``class_names``.

    Raises
    ------
    cxrclassify.exceptions.MissingFileError
        If ``path`` is not a SavedModel folder.
    cxrclassify.exceptions.ModelError
        If the SavedModel has no ``serving_default`` signature taking ``images``.
    ValueError
        If ``images`` does not have the exported shape (the message names it).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.models.io import export_savedmodel, savedmodel_predict
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> path = export_savedmodel(model, pathlib.Path(tempfile.mkdtemp()) / "cxr")
    >>> images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    >>> probabilities = savedmodel_predict(path, images)
    >>> probabilities.shape, probabilities.dtype
    ((2, 3), dtype('float32'))
    >>> bool(np.allclose(probabilities, model.predict(images, verbose=0), atol=1e-5))
    True
    """
    path = Path(path)
    _check_savedmodel_folder(path)
    batch_size = _check_batch_size(batch_size)
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures.get(SERVING_SIGNATURE)
    input_spec = None if signature is None else signature.structured_input_signature[1].get(SERVING_INPUT)
    if input_spec is None:
        message = (
            f"Expected a SavedModel with a {SERVING_SIGNATURE!r} signature taking {SERVING_INPUT!r}, as "
            f"export_savedmodel writes. Received: {str(path)!r}, with signatures {sorted(loaded.signatures)}"
        )
        raise ModelError(message)
    batch, single = _as_image_batch(images, tuple(input_spec.shape[1:]), str(path))
    outputs = [
        signature(**{SERVING_INPUT: tf.constant(batch[start:start + batch_size])})[SERVING_OUTPUT].numpy()
        for start in range(0, len(batch), batch_size)
    ]
    probabilities = np.concatenate(outputs, axis=0)
    return probabilities[0] if single else probabilities


def tflite_predict(
    path: str | os.PathLike[str],
    images: Any,
    *,
    batch_size: int = _DEFAULT_BATCH_SIZE,
    num_threads: int | None = None,
) -> np.ndarray:
    """Predict class probabilities with a TensorFlow Lite file written by :func:`export_tflite`.

    Runs the file's ``serving_default`` signature, ``batch_size`` images at a
    time, with the LiteRT interpreter (``ai_edge_litert``) when it is
    installed, else TensorFlow's ``tf.lite.Interpreter`` (its deprecation
    warning silenced). The input tensor is resized to each batch.

    Parameters
    ----------
    path : path
        The ``.tflite`` file.
    images : array-like
        ``(N, S, S, 3)`` RGB images with values in ``[0, 255]``, or one
        ``(S, S, 3)`` image, ``S`` being the size the model was exported with.
    batch_size : int, default 32
        Images per call of the interpreter.
    num_threads : int, optional
        CPU threads of the interpreter; its default when omitted.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, num_classes)`` probabilities, or ``(num_classes,)`` for one image.

    Raises
    ------
    cxrclassify.exceptions.MissingFileError
        If ``path`` is not a file.
    cxrclassify.exceptions.ModelError
        If the file is not a TensorFlow Lite model with a ``serving_default``
        signature taking ``images``.
    ValueError
        If ``images`` does not have the exported shape (the message names it).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.models.io import export_tflite, tflite_predict
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> path = export_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "cxr.tflite")
    >>> images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3))
    >>> probabilities = tflite_predict(path, images)
    >>> probabilities.shape
    (3, 3)
    >>> bool(np.allclose(probabilities, model.predict(images, verbose=0), atol=1e-4))
    True
    >>> tflite_predict(path, images[0]).shape  # one image
    (3,)
    """
    path = Path(path)
    if not path.is_file():
        message = f"Expected the path of a .tflite file. Received: {str(path)!r}, which is not a file"
        raise MissingFileError(message)
    batch_size = _check_batch_size(batch_size)
    interpreter_class = _tflite_interpreter_class()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
            interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
    except ValueError as error:
        message = f"Could not read {str(path)!r} as a TensorFlow Lite model: {error}"
        raise ModelError(message) from error
    signatures = interpreter.get_signature_list()
    if SERVING_INPUT not in signatures.get(SERVING_SIGNATURE, {}).get("inputs", []):
        message = (
            f"Expected a TensorFlow Lite file with a {SERVING_SIGNATURE!r} signature taking {SERVING_INPUT!r}, "
            f"as export_tflite writes. Received: {str(path)!r}, with signatures {signatures}"
        )
        raise ModelError(message)
    runner = interpreter.get_signature_runner(SERVING_SIGNATURE)
    expected_shape = tuple(int(side) for side in runner.get_input_details()[SERVING_INPUT]["shape_signature"][1:])
    batch, single = _as_image_batch(images, expected_shape, str(path))
    outputs = [
        np.array(runner(**{SERVING_INPUT: batch[start:start + batch_size]})[SERVING_OUTPUT])
        for start in range(0, len(batch), batch_size)
    ]
    probabilities = np.concatenate(outputs, axis=0)
    return probabilities[0] if single else probabilities


def _check_classifier(model: Any, function: str) -> None:
    if not isinstance(model, CxrClassifier):
        message = (
            f"{function} exports cxrclassify classifiers. Expected a CxrClassifier (see "
            f"cxrclassify.build_model or cxrclassify.load_model). Received: a {type(model).__name__}"
        )
        raise ArgumentTypeError(message)


def _check_free_folder(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        message = (
            "Expected a SavedModel folder to create: a path that does not exist or an empty folder. "
            f"Received: {str(path)!r}, which is {'a non-empty folder' if path.is_dir() else 'a file'}"
        )
        raise OutputExistsError(message)


def _check_savedmodel_folder(path: Path) -> None:
    if not (path / "saved_model.pb").is_file():
        message = (
            "Expected a SavedModel folder (holding saved_model.pb), as export_savedmodel writes. "
            f"Received: {str(path)!r}"
        )
        raise MissingFileError(message)


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        message = f"Expected batch_size to be a positive integer. Received: batch_size={batch_size!r}"
        raise ArgumentError(message)
    return batch_size


def _write_savedmodel(model: CxrClassifier, path: Path) -> None:
    """Write the SavedModel and its metadata to ``path`` (which may exist, empty)."""
    size = model.image_size
    input_spec = tf.TensorSpec((None, size, size, 3), tf.float32, name=SERVING_INPUT)

    def serve(images):
        return {SERVING_OUTPUT: model(images, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=[input_spec])  # also becomes "serving_default"
    archive.write_out(str(path), verbose=False)
    assets = path / "assets"
    assets.mkdir(exist_ok=True)
    metadata = json.dumps(_export_metadata(model), indent=2, default=str)
    (assets / EXPORT_METADATA_FILE).write_text(metadata + "\n", encoding="utf-8")


def _export_metadata(model: CxrClassifier) -> dict[str, Any]:
    import cxrclassify  # here: the package imports this module while it initialises

    if model.class_names is None:
        logger.warning(
            "Exporting a %s classifier without class names: servers will only see output indices. "
            "Pass class_names to build_model (train sets them from the data).",
            model.arch,
        )
    size = model.image_size
    return {
        "format": _EXPORT_FORMAT,
        "format_version": _EXPORT_FORMAT_VERSION,
        "arch": model.arch,
        "num_classes": model.num_classes,
        "class_names": None if model.class_names is None else list(model.class_names),
        "image_size": size,
        "preprocessing": model.preprocessing,
        "head": model.head_kind,
        "metadata": dict(model.metadata),
        "signature": SERVING_SIGNATURE,
        "input": {
            "name": SERVING_INPUT,
            "dtype": "float32",
            "shape": [None, size, size, 3],
            "value_range": [0, 255],
            "channels": "RGB",
        },
        "output": {"name": SERVING_OUTPUT, "dtype": "float32", "shape": [None, model.num_classes]},
        "cxrclassify_version": cxrclassify.__version__,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }


def _convert_to_tflite(savedmodel: Path, quantize: bool) -> bytes:
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel), signature_keys=[SERVING_SIGNATURE])
    except ValueError as error:  # raised for a missing signature key
        message = (
            f"Expected a SavedModel with a {SERVING_SIGNATURE!r} signature, as export_savedmodel writes. "
            f"Received: {str(savedmodel)!r} ({error})"
        )
        raise ModelError(message) from error
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _tflite_interpreter_class() -> type:
    try:
        from ai_edge_litert.interpreter import Interpreter  # the successor of tf.lite.Interpreter
    except ImportError:
        return tf.lite.Interpreter
    return Interpreter


def _as_image_batch(images: Any, expected: tuple[int | None, ...], source: str) -> tuple[np.ndarray, bool]:
    """``images`` as a float32 ``(N, *expected)`` batch, and whether it was a single image."""
    batch = np.asarray(images, dtype=np.float32)
    single = batch.ndim == len(expected)
    if single:
        batch = batch[np.newaxis]
    if batch.ndim != len(expected) + 1 or tuple(batch.shape[1:]) != tuple(expected) or len(batch) == 0:
        dims = ", ".join(str(side) for side in expected)
        message = (
            f"Expected images of shape (N, {dims}) with N >= 1, or one image of shape ({dims}): RGB with "
            f"values in [0, 255] at the {expected[0]} x {expected[1]} size {source!r} was exported with "
            f"(resize them first). Received: images of shape {np.shape(images)}"
        )
        raise ArgumentError(message)
    return batch, single
