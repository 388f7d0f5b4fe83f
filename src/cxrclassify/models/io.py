"""Loading classifiers saved with ``model.save(path)``."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from ..exceptions import ModelError
from .classifier import CxrClassifier

__all__ = ["load_model"]


def load_model(path: str | os.PathLike[str]) -> CxrClassifier:
    """Load a classifier saved with ``model.save("name.keras")``, without unsafe deserialisation.

    The reloaded model has the same architecture, class names, input size,
    preprocessing and metadata, and predicts identically.

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
    FileNotFoundError
        If ``path`` does not exist.
    cxrclassify.exceptions.ModelError
        If the file is not a saved cxrclassify classifier.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import cxrclassify
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32, class_names=["a", "b", "c"])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.keras"
    >>> model.save(path)
    >>> cxrclassify.load_model(path).class_names
    ['a', 'b', 'c']
    """
    path = Path(path)
    if not path.is_file():
        message = f"Expected the path of a saved .keras model. Received: {str(path)!r}, which is not a file"
        raise FileNotFoundError(message)
    try:
        model = keras.models.load_model(path, safe_mode=True)
    except (ValueError, OSError, TypeError, KeyError) as error:
        message = f"Could not load {str(path)!r} as a saved cxrclassify model: {error}"
        raise ModelError(message) from error
    if not isinstance(model, CxrClassifier):
        message = (
            f"Expected {str(path)!r} to hold a CxrClassifier saved by cxrclassify. "
            f"Received: a {type(model).__name__}"
        )
        raise ModelError(message)
    return model
