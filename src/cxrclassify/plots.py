"""Figures: training curves and confusion matrices, written as PNG files.

Figures are made with :class:`matplotlib.figure.Figure` directly, not through
``pyplot``, so the library never touches a user's global plotting state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_history", "plot_confusion_matrix"]


def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike[str]) -> Path:
    """Plot loss and accuracy per epoch, training and validation, side by side.

    Parameters
    ----------
    history : mapping
        What :func:`~cxrclassify.train` returned (``loss``, ``accuracy`` and
        optionally ``val_loss``, ``val_accuracy``).
    path : path
        Output file; its suffix chooses the format (``.png``, ``.svg``, ...).

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from cxrclassify.plots import plot_history
    >>> history = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.7], "val_accuracy": [0.4, 0.7]}
    >>> plot_history(history, pathlib.Path(tempfile.mkdtemp()) / "curves.png").is_file()
    True
    """
    if not history.get("loss"):
        message = f"Expected a history with a non-empty 'loss' list. Received: keys {sorted(history)}"
        raise ValueError(message)
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy")):
        for prefix, label in (("", "training"), ("val_", "validation")):
            values = history.get(prefix + metric)
            if values:
                axes.plot(np.arange(1, len(values) + 1), values, label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(metric.capitalize())
        axes.grid(alpha=0.3)
        axes.legend()
    return _save(figure, path)


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    normalize: bool = False,
    title: str = "Confusion matrix",
) -> Path:
    """Plot a confusion matrix (rows: true class, columns: predicted class).

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(C, C)`` counts, as in :attr:`cxrclassify.evaluation.Evaluation.confusion_matrix`.
    class_names : sequence of str
        Name of each row and column.
    path : path
        Output file.
    normalize : bool, default False
        Show each row as shares of its true class instead of counts.
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from cxrclassify.plots import plot_confusion_matrix
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "cm.png"
    >>> plot_confusion_matrix(np.array([[5, 1], [0, 4]]), ["covid19", "normal"], out).is_file()
    True
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(class_names):
        message = (
            f"Expected a square matrix with one row per class ({len(class_names)}). "
            f"Received: matrix of shape {matrix.shape}"
        )
        raise ValueError(message)
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        shown = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    else:
        shown = matrix
    size = 2.0 + 1.0 * len(class_names)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(shown, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=list(class_names), rotation=30, ha="right")
    axes.set_yticks(ticks, labels=list(class_names))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    threshold = shown.max() / 2 if shown.size and shown.max() > 0 else 0.5
    for row in range(shown.shape[0]):
        for column in range(shown.shape[1]):
            text = f"{shown[row, column]:.2f}" if normalize else f"{int(shown[row, column])}"
            colour = "white" if shown[row, column] > threshold else "black"
            axes.text(column, row, text, ha="center", va="center", color=colour)
    return _save(figure, path)


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
