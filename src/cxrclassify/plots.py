"""Figures: training curves, confusion matrices, ROC curves, reliability diagrams and class activation maps.

Figures are made with :class:`matplotlib.figure.Figure` directly, not through
``pyplot``, so the library never touches a user's global plotting state. The
suffix of each path chooses the format (``.png``, ``.svg``, ``.pdf``...);
:func:`save_evaluation_figures` writes every figure of an evaluation at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from .datasets._images import to_rgb_uint8
from .evaluation import format_ci
from .exceptions import ArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from .evaluation import Evaluation

__all__ = [
    "plot_cam_grid",
    "plot_confusion_matrix",
    "plot_history",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "save_evaluation_figures",
]


def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike[str], *,
                 caption: str | None = None) -> Path:
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
        raise ArgumentError(message)
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
    return _save(figure, path, caption)


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    normalize: bool = False,
    title: str = "Confusion matrix",
    caption: str | None = None,
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
        raise ArgumentError(message)
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
    return _save(figure, path, caption)


def plot_roc_curves(evaluation: "Evaluation", path: str | os.PathLike[str], *,
                    title: str = "ROC curves (one class vs the rest)", caption: str | None = None) -> Path:
    """Plot the one-vs-rest ROC curve of each class, its AUC and interval in the legend.

    Parameters
    ----------
    evaluation : Evaluation
        What :func:`~cxrclassify.evaluate` returned (it keeps the true labels and
        the probabilities the curves need).
    path : path
        Output file; its suffix chooses the format (``.png``, ``.svg``, ...).
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        The file written. A class with no image, or only images, in the data has
        no curve; the legend says so.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from cxrclassify.evaluation import evaluate_predictions
    >>> from cxrclassify.plots import plot_roc_curves
    >>> result = evaluate_predictions(np.array([0, 0, 1, 1]), np.array([[.9, .1], [.4, .6], [.3, .7], [.2, .8]]),
    ...                               ["covid19", "normal"], n_bootstrap=0)
    >>> plot_roc_curves(result, pathlib.Path(tempfile.mkdtemp()) / "roc.svg").is_file()
    True
    """
    labels, probabilities = _labels_and_probabilities(evaluation)
    figure = Figure(figsize=(6, 5.5), layout="constrained")
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    for index, name in enumerate(evaluation.class_names):
        positive = labels == index
        if positive.all() or not positive.any():
            axes.plot([], [], label=f"{name}: no curve ({'only' if positive.all() else 'no'} images of the class)")
            continue
        false_positive_rate, true_positive_rate, _ = roc_curve(positive, probabilities[:, index])
        interval = evaluation.roc_auc_ci.get(name, (float("nan"), float("nan")))
        axes.plot(false_positive_rate, true_positive_rate, linewidth=1.8,
                  label=f"{name}: AUC {format_ci(evaluation.roc_auc[name], interval, percent=False)}")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_aspect("equal")
    axes.set_xlabel("false positive rate (1 - specificity)")
    axes.set_ylabel("true positive rate (sensitivity)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    return _save(figure, path, caption)


def plot_reliability_diagram(evaluation: "Evaluation", path: str | os.PathLike[str], *,
                             title: str = "Reliability diagram", caption: str | None = None) -> Path:
    """Plot accuracy per confidence bin against the diagonal of perfect calibration, ECE in the title.

    Bars show the share of correct predictions among the images whose top-class
    probability falls in each bin; red marks show the bins' mean confidence,
    where a calibrated classifier's bars would end. Below, the number of images
    per bin.

    Parameters
    ----------
    evaluation : Evaluation
        What :func:`~cxrclassify.evaluate` returned.
    path : path
        Output file; its suffix chooses the format.
    title : str
        Start of the figure title; the ECE (and temperature) are appended.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from cxrclassify.evaluation import evaluate_predictions
    >>> from cxrclassify.plots import plot_reliability_diagram
    >>> result = evaluate_predictions(np.array([0, 0, 1, 1]), np.array([[.9, .1], [.4, .6], [.3, .7], [.2, .8]]),
    ...                               ["covid19", "normal"], n_bootstrap=0)
    >>> plot_reliability_diagram(result, pathlib.Path(tempfile.mkdtemp()) / "reliability.png").is_file()
    True
    """
    curve = evaluation.reliability_curve
    if curve is None:
        message = "Expected an Evaluation with a reliability curve. Received: reliability_curve=None"
        raise ArgumentError(message)
    centres = (curve.bin_edges[:-1] + curve.bin_edges[1:]) / 2
    widths = np.diff(curve.bin_edges)
    filled = curve.count > 0
    figure = Figure(figsize=(6, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.bar(centres[filled], curve.accuracy[filled], width=widths[filled], color="tab:blue", alpha=0.75,
            edgecolor="black", linewidth=0.6, label="accuracy")
    top.plot(centres[filled], curve.confidence[filled], "_", color="tab:red", markersize=14, markeredgewidth=2,
             label="mean confidence (where the bar should end)")
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    temperature = "" if evaluation.temperature is None else f", temperature {evaluation.temperature:.2f}"
    top.set_title(f"{title} (ECE {evaluation.ece:.3f}{temperature})")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(centres, curve.count, width=widths, color="grey", edgecolor="black", linewidth=0.6)
    bottom.set_xlabel("confidence (probability of the predicted class)")
    bottom.set_ylabel("images")
    return _save(figure, path, caption)


def save_evaluation_figures(
    evaluation: "Evaluation",
    folder: str | os.PathLike[str],
    *,
    history: Mapping[str, Sequence[float]] | None = None,
    formats: Sequence[str] = ("png", "svg"),
    caption: str | None = None,
) -> list[Path]:
    """Write every figure of an evaluation, in each format, to a folder.

    Writes ``confusion_matrix``, ``confusion_matrix_normalized``, ``roc_curves``,
    ``reliability_diagram`` and, with ``history``, ``training_curves``, each
    once per format.

    Parameters
    ----------
    evaluation : Evaluation
        What :func:`~cxrclassify.evaluate` returned.
    folder : path
        Output folder, created if needed.
    history : mapping, optional
        What :func:`~cxrclassify.train` returned, for the training curves.
    formats : sequence of str, default ("png", "svg")
        File formats, as suffixes without the dot (``"png"``, ``"svg"``, ``"pdf"``...).
    caption : str, optional
        A line written above every figure, in red: what a reader must know to
        read them (``"randomly initialised base; 12 of 80 epochs ran"``).

    Returns
    -------
    list of pathlib.Path
        The files written, format by format.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from cxrclassify.evaluation import evaluate_predictions
    >>> from cxrclassify.plots import save_evaluation_figures
    >>> result = evaluate_predictions(np.array([0, 0, 1, 1]), np.array([[.9, .1], [.4, .6], [.3, .7], [.2, .8]]),
    ...                               ["covid19", "normal"], n_bootstrap=0)
    >>> sorted(path.name for path in save_evaluation_figures(result, tempfile.mkdtemp(), formats=["svg"]))
    ['confusion_matrix.svg', 'confusion_matrix_normalized.svg', 'reliability_diagram.svg', 'roc_curves.svg']
    """
    folder = Path(folder)
    formats = [formats] if isinstance(formats, str) else list(formats)
    if not formats:
        message = "Expected at least one figure format. Received: formats=[]"
        raise ArgumentError(message)
    for file_format in formats:
        _check_format(f"figure.{str(file_format).lstrip('.')}")
    written = []
    for file_format in (str(value).lstrip(".").lower() for value in formats):
        matrix, names = evaluation.confusion_matrix, evaluation.class_names
        written.append(plot_confusion_matrix(matrix, names, folder / f"confusion_matrix.{file_format}",
                                             caption=caption))
        written.append(plot_confusion_matrix(matrix, names, folder / f"confusion_matrix_normalized.{file_format}",
                                             normalize=True, title="Confusion matrix (share of each true class)",
                                             caption=caption))
        written.append(plot_roc_curves(evaluation, folder / f"roc_curves.{file_format}", caption=caption))
        written.append(plot_reliability_diagram(evaluation, folder / f"reliability_diagram.{file_format}",
                                                caption=caption))
        if history is not None:
            written.append(plot_history(history, folder / f"training_curves.{file_format}", caption=caption))
    return written


def plot_cam_grid(
    images: Sequence[object],
    heatmaps: Sequence[np.ndarray],
    path: str | os.PathLike[str] | None = None,
    *,
    titles: Sequence[str] | None = None,
    alpha: float = 0.4,
    colormap: str = "jet",
    pairs_per_row: int = 2,
    overlay_title: str | Sequence[str] = "class activation map",
) -> Figure:
    """Plot X-rays beside their class activation maps, pair by pair, as Figure 4 of Soares & Soares (2020).

    Each image is shown twice, side by side: as it is (titled with ``titles``,
    for instance its name, predicted class and probability) and with its
    heatmap laid over it in ``colormap``. One colour bar, for the map values,
    serves the whole figure.

    Parameters
    ----------
    images : sequence of arrays, paths or PIL images
        The X-rays (grayscale or RGB, any size).
    heatmaps : sequence of numpy.ndarray
        One ``(h, w)`` map in ``[0, 1]`` per image, as :func:`~cxrclassify.explain.grad_cam`
        returns; stretched over its image if its size differs.
    path : path, optional
        Also write the figure there; the suffix chooses the format.
    titles : sequence of str, optional
        One title per image, above the plain X-ray.
    alpha : float, default 0.4
        Opacity of the heatmap.
    colormap : str, default "jet"
        Name of a matplotlib colormap.
    pairs_per_row : int, default 2
        Image-and-overlay pairs per row.
    overlay_title : str or sequence of str, default "class activation map"
        Title above every overlay, or one per image (for instance the method and
        the class explained).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (made without ``pyplot``: safe with any backend).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from cxrclassify.plots import plot_cam_grid
    >>> images = [np.zeros((40, 30), np.uint8), np.full((20, 20, 3), 90, np.uint8), np.zeros((8, 8), np.uint8)]
    >>> heatmaps = [np.eye(4), np.ones((20, 20)), np.zeros((8, 8))]
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "grid.png"
    >>> figure = plot_cam_grid(images, heatmaps, out, titles=["a: covid19 (0.91)", "b", "c"])
    >>> out.is_file(), len(figure.axes)  # 2 rows of 2 pairs, and the colour bar
    (True, 9)
    """
    images, heatmaps = list(images), [np.asarray(heatmap, dtype=np.float32) for heatmap in heatmaps]
    if not images or len(images) != len(heatmaps):
        message = (f"Expected one heatmap per image, and at least one image. "
                   f"Received: {len(images)} images and {len(heatmaps)} heatmaps")
        raise ArgumentError(message)
    if titles is not None and len(titles) != len(images):
        message = f"Expected one title per image ({len(images)}). Received: {len(titles)} titles"
        raise ArgumentError(message)
    overlay_titles = [overlay_title] * len(images) if isinstance(overlay_title, str) else list(overlay_title)
    if len(overlay_titles) != len(images):
        message = f"Expected one overlay title, or one per image ({len(images)}). Received: {len(overlay_titles)}"
        raise ArgumentError(message)
    if not 0.0 <= alpha <= 1.0:
        message = f"Expected alpha between 0 and 1. Received: alpha={alpha}"
        raise ArgumentError(message)
    if isinstance(pairs_per_row, bool) or not isinstance(pairs_per_row, int) or pairs_per_row < 1:
        message = f"Expected pairs_per_row to be a positive integer. Received: pairs_per_row={pairs_per_row!r}"
        raise ArgumentError(message)
    cmap = _get_colormap(colormap)
    pairs = min(pairs_per_row, len(images))
    rows = -(-len(images) // pairs)
    figure = Figure(figsize=(2.6 * 2 * pairs + 0.8, 2.9 * rows), layout="constrained")
    grid = np.asarray(figure.subplots(rows, 2 * pairs, squeeze=False))
    for axes in grid.ravel():
        axes.set_axis_off()
    for index, (image, heatmap) in enumerate(zip(images, heatmaps)):
        if heatmap.ndim != 2:
            message = f"Expected each heatmap to be a 2-D array. Received: heatmap {index} of shape {heatmap.shape}"
            raise ArgumentError(message)
        rgb = to_rgb_uint8(image)
        height, width = rgb.shape[:2]
        plain, overlaid = grid[index // pairs, 2 * (index % pairs)], grid[index // pairs, 2 * (index % pairs) + 1]
        plain.imshow(rgb)
        overlaid.imshow(rgb)
        overlaid.imshow(np.clip(np.nan_to_num(heatmap), 0.0, 1.0), cmap=cmap, vmin=0.0, vmax=1.0, alpha=alpha,
                        interpolation="bilinear", extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        plain.set_title(titles[index] if titles is not None else f"image {index}", fontsize="small")
        overlaid.set_title(overlay_titles[index], fontsize="small")
    figure.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=list(grid.ravel()), shrink=0.6,
                    label="map value")
    if path is not None:
        _save(figure, path)
    return figure


def _labels_and_probabilities(evaluation: "Evaluation") -> tuple[np.ndarray, np.ndarray]:
    labels = getattr(evaluation, "labels", None)
    probabilities = getattr(evaluation, "probabilities", None)
    if labels is None or probabilities is None:
        message = ("Expected an Evaluation that keeps its true labels and probabilities (as evaluate() and "
                   "evaluate_predictions() return). Received: labels or probabilities of None")
        raise ArgumentError(message)
    return np.asarray(labels), np.asarray(probabilities)


def _check_format(path: str | os.PathLike[str]) -> str:
    """The format a path's suffix names, if matplotlib can write it."""
    suffix = Path(path).suffix.lstrip(".").lower()
    supported = Figure().canvas.get_supported_filetypes()
    if suffix not in supported:
        message = (f"Expected a file suffix naming a figure format ({', '.join(sorted(supported))}). "
                   f"Received: {os.fspath(path)!r}")
        raise ArgumentError(message)
    return suffix


def _save(figure: Figure, path: str | os.PathLike[str], caption: str | None = None) -> Path:
    """Write the figure; a ``caption`` (what the reader must know, such as a random base) heads it in red."""
    path = Path(path)
    if caption:
        figure.suptitle(caption, color="darkred", fontsize=9)
    file_format = _check_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, format=file_format)
    return path


def _get_colormap(name: str) -> Colormap:
    """The matplotlib colormap called ``name``, or a ValueError naming some valid ones."""
    try:
        return colormaps[name]
    except (KeyError, TypeError):
        message = (f"Expected the name of a matplotlib colormap, such as 'jet', 'inferno', 'viridis' or 'gray'. "
                   f"Received: colormap={name!r}")
        raise ArgumentError(message) from None
