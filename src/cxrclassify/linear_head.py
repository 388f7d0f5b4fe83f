"""A linear head fitted in closed form: L2-regularised multinomial logistic regression on pooled features.

The frozen base's global-average-pooled features are standardised and a
multinomial logistic regression (scikit-learn's ``LogisticRegression``, L-BFGS)
is fitted on them, its inverse regularisation strength ``C`` chosen on the
validation split by log-loss. The result is exactly a ``"gap"`` head
(global average pooling, dropout, one dense layer): the standardisation is
folded into the dense layer's weights, and dropout does nothing at inference,
so :func:`set_gap_head` makes the classifier compute the regression's
probabilities. :func:`~cxrclassify.train` with ``recipe="linear"`` does all
of it; the benchmarks call :func:`fit_linear_head` on cached features, which
is the same computation.

Sample weights are the product of the class weights (``"balanced"``: every
class counts as much) and, with ``site_balanced=True``, site weights that make
every site count as much within its class (see :func:`balancing_weights`), so
that the largest site of a class does not decide what the class looks like.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .exceptions import ArgumentError, TrainingWarning

__all__ = ["DEFAULT_C_GRID", "LinearHead", "balancing_weights", "fit_linear_head", "set_gap_head"]

logger = logging.getLogger(__name__)

#: The values of ``C`` (inverse L2 strength, on standardised features) tried on the validation split.
DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0)


@dataclass(frozen=True)
class LinearHead:
    """A fitted linear head: ``probabilities = softmax(features @ weights + bias)``.

    Attributes
    ----------
    weights : numpy.ndarray
        ``(d, num_classes)`` float32, acting on the raw pooled features (the
        standardisation folded in).
    bias : numpy.ndarray
        ``(num_classes,)`` float32.
    c : float
        The inverse regularisation strength used.
    validation_log_loss : dict of float to float
        The validation log-loss of each ``C`` tried (empty without validation).

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.linear_head import LinearHead
    >>> head = LinearHead(np.eye(2, dtype=np.float32), np.zeros(2, np.float32), 1.0, {})
    >>> [round(float(p), 3) for p in head.predict_proba(np.array([[2.0, 0.0]]))[0]]
    [0.881, 0.119]
    """

    weights: np.ndarray
    bias: np.ndarray
    c: float
    validation_log_loss: dict

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of ``(N, d)`` pooled features."""
        logits = np.asarray(features, dtype=np.float64) @ self.weights.astype(np.float64) + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def balancing_weights(
    labels: Sequence[int] | np.ndarray,
    *,
    class_weight: str | Mapping[int, float] | None = "balanced",
    sites: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Per-sample weights: class weights, times site weights when ``sites`` are given.

    Parameters
    ----------
    labels : sequence of int
        The class index of each sample.
    class_weight : {"balanced"}, mapping or None, default "balanced"
        ``"balanced"``: ``n / (k * n_class)``, every class counting as much;
        a ``{class index: weight}`` mapping; ``None``: all ones.
    sites : sequence of str or None, optional
        The site of each sample (``None`` counts as one site, ``"unknown"``).
        Within each class, each site's samples are weighed so that every site
        of the class carries the same total weight.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 weights with mean 1.

    Examples
    --------
    >>> from cxrclassify.linear_head import balancing_weights
    >>> balancing_weights([0, 0, 0, 1]).round(3).tolist()
    [0.667, 0.667, 0.667, 2.0]
    >>> balancing_weights([0, 0, 0, 1], sites=["a", "a", "b", "c"]).round(3).tolist()
    [0.5, 0.5, 1.0, 2.0]
    """
    labels = np.asarray(labels, dtype=np.int64)
    weights = np.ones(len(labels), dtype=np.float64)
    if len(labels) == 0:
        return weights
    if class_weight == "balanced":
        counts = Counter(labels.tolist())
        weights *= np.array([len(labels) / (len(counts) * counts[label]) for label in labels.tolist()])
    elif isinstance(class_weight, Mapping):
        weights *= np.array([float(class_weight.get(label, 1.0)) for label in labels.tolist()])
    elif class_weight is not None:
        message = f"Expected class_weight='balanced', a mapping or None. Received: class_weight={class_weight!r}"
        raise ArgumentError(message)
    if sites is not None:
        if len(sites) != len(labels):
            message = f"Expected one site per sample. Received: {len(sites)} sites for {len(labels)} samples"
            raise ArgumentError(message)
        keys = [(label, site or "unknown") for label, site in zip(labels.tolist(), sites)]
        per_site = Counter(keys)
        sites_per_class = Counter(label for label, _ in per_site)
        class_sizes = Counter(labels.tolist())
        weights *= np.array([class_sizes[label] / (sites_per_class[label] * per_site[(label, site)])
                             for label, site in keys])
    return weights / weights.mean()


def fit_linear_head(
    features: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    num_classes: int,
    sample_weight: np.ndarray | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    c: float | None = None,
    max_iter: int = 2000,
) -> LinearHead:
    """Fit an L2 multinomial logistic regression on pooled features; ``C`` by validation log-loss.

    Parameters
    ----------
    features : numpy.ndarray
        ``(N, d)`` pooled base features of the training images.
    labels : sequence of int
        Their class indices, in ``[0, num_classes)``.
    num_classes : int
        Number of classes (a class absent from training gets a bias of -30).
    sample_weight : numpy.ndarray, optional
        Per-sample weights (:func:`balancing_weights`).
    validation : tuple of numpy.ndarray, optional
        The validation split, ``(features, labels)``: ``C`` is the value of ``c_grid`` with the least
        validation log-loss. Without it, ``C = 0.01`` (or ``c``).
    c_grid : sequence of float, default :data:`DEFAULT_C_GRID`
        The values tried.
    c : float, optional
        Use this ``C`` and try nothing.
    max_iter : int, default 2000
        L-BFGS iterations.

    Returns
    -------
    LinearHead

    Raises
    ------
    ArgumentError
        If the shapes disagree, a label is out of range, or fewer than two
        classes are present.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.linear_head import fit_linear_head
    >>> rng = np.random.default_rng(0)
    >>> labels = np.arange(40) % 2
    >>> features = rng.normal(size=(40, 5)) + labels[:, None] * 2.0
    >>> head = fit_linear_head(features, labels, num_classes=2, validation=(features[:10], labels[:10]))
    >>> float((head.predict_proba(features).argmax(axis=1) == labels).mean())
    1.0
    >>> sorted(head.validation_log_loss) == [0.001, 0.01, 0.1, 1.0]
    True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    _check_shapes(features, labels, num_classes, "features")
    present = np.unique(labels)
    if len(present) < 2:
        message = f"Expected training labels of at least two classes. Received: only class {present.tolist()}"
        raise ArgumentError(message)
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-8] = 1.0
    standardised = (features - mean) / scale

    def fitted(value: float) -> LogisticRegression:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # sklearn's convergence notes; checked below
            regression = LogisticRegression(C=value, max_iter=max_iter, tol=1e-6)
            regression.fit(standardised, labels, sample_weight=sample_weight)
        if regression.n_iter_.max() >= max_iter:
            warnings.warn(f"The linear head did not converge in {max_iter} iterations (C={value})",
                          TrainingWarning, stacklevel=3)
        return regression

    losses: dict[float, float] = {}
    if c is not None:
        chosen = float(c)
    elif validation is None:
        chosen = 0.01
    else:
        validation_features = (np.asarray(validation[0], dtype=np.float64) - mean) / scale
        validation_labels = np.asarray(validation[1], dtype=np.int64)
        _check_shapes(validation_features, validation_labels, num_classes, "validation features")
        for value in c_grid:
            probabilities = _full_probabilities(fitted(float(value)), validation_features, num_classes)
            losses[float(value)] = float(log_loss(validation_labels, probabilities, labels=range(num_classes)))
        chosen = min(losses, key=lambda value: (losses[value], value))
    regression = fitted(chosen)
    weights = np.zeros((features.shape[1], num_classes))
    bias = np.full(num_classes, -30.0)
    coefficients = regression.coef_ if len(regression.classes_) > 2 else np.vstack([-regression.coef_,
                                                                                     regression.coef_]) / 2
    intercepts = (regression.intercept_ if len(regression.classes_) > 2
                  else np.array([-regression.intercept_[0], regression.intercept_[0]]) / 2)
    for row, class_index in enumerate(regression.classes_):
        weights[:, class_index] = coefficients[row] / scale
        bias[class_index] = intercepts[row] - float(np.dot(coefficients[row], mean / scale))
    logger.info("Linear head: C=%g (validation log-loss %s)", chosen, losses or "not measured")
    return LinearHead(weights.astype(np.float32), bias.astype(np.float32), chosen, losses)


def set_gap_head(model, head: LinearHead) -> None:
    """Make a classifier's ``"gap"`` head compute ``head``: its dense layer gets the weights and bias.

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.linear_head import LinearHead, set_gap_head
    >>> model = cxrclassify.build_model("vgg16", 2, weights=None, image_size=32, head="gap")
    >>> width = model.head.layers[-1].kernel.shape[0]
    >>> set_gap_head(model, LinearHead(np.zeros((width, 2), np.float32), np.array([1.0, 0.0], np.float32), 1.0, {}))
    >>> [round(float(p), 3) for p in model(np.zeros((1, 32, 32, 3))).numpy()[0]]
    [0.731, 0.269]
    """
    if getattr(model, "head_kind", None) != "gap":
        message = ("Expected a classifier with a 'gap' head (build_model(..., head='gap')) for a linear head. "
                   f"Received: head={getattr(model, 'head_kind', None)!r}")
        raise ArgumentError(message)
    dense = model.head.layers[-1]
    kernel, bias = dense.get_weights()
    if kernel.shape != head.weights.shape:
        message = f"Expected a linear head of shape {kernel.shape}. Received: weights of shape {head.weights.shape}"
        raise ArgumentError(message)
    dense.set_weights([head.weights, head.bias])


def _full_probabilities(regression, features: np.ndarray, num_classes: int) -> np.ndarray:
    """The regression's probabilities over all ``num_classes`` (zero for classes it never saw), renormalised."""
    probabilities = np.full((len(features), num_classes), 1e-12)
    probabilities[:, regression.classes_] = regression.predict_proba(features)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def _check_shapes(features: np.ndarray, labels: np.ndarray, num_classes: int, name: str) -> None:
    if features.ndim != 2 or len(features) != len(labels):
        message = (f"Expected {name} of shape (N, d) and one label per row. Received: {name} of shape "
                   f"{features.shape} and {len(labels)} labels")
        raise ArgumentError(message)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        message = f"Expected labels in [0, {num_classes}). Received: labels from {labels.min()} to {labels.max()}"
        raise ArgumentError(message)
