"""An out-of-distribution score: how far an image's features lie from the training images'.

A classifier always answers with one of its classes, even for an image unlike
anything it was trained on (a child's X-ray for a model trained on adults, a
lateral view, a photograph). :class:`MahalanobisOOD` measures how unusual an
image is to the model: the Mahalanobis distance of its global-average-pooled
base features to the nearest class mean, with one covariance matrix shared by
the classes (Lee et al., "A simple unified framework for detecting
out-of-distribution samples and adversarial attacks", NeurIPS 2018). The
covariance is estimated with Ledoit-Wolf shrinkage, so that it stays invertible
when there are fewer training images than feature channels.

Every :class:`~cxrclassify.models.CxrClassifier` carries one, as its ``ood``
layer; :func:`fit_ood` fits it (:func:`~cxrclassify.train` does so at the end
of training), it is saved and reloaded with the model, and
:func:`~cxrclassify.predict` reports each image's score and whether it is above
the threshold: the ``quantile`` (95% by default) of the validation images'
scores, so that about 5% of in-distribution images are flagged.

:class:`NearestNeighbourOOD` (``build_model(..., ood="knn")``) scores instead the
cosine distance to the nearest training image (Sun et al., "Out-of-distribution
detection with deep nearest neighbors", ICML 2022): on the recipe benchmark it
flags more of an unseen hospital's normal X-rays than the Mahalanobis score at
the same in-distribution rate (``benchmarks/RESULTS.md``).

A high score means "unlike the training images *as the model sees them*": it
catches images from another hospital, age group or device only where the
model's features tell them apart, and says nothing about whether the class is
right.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from ..exceptions import ArgumentError, ArgumentTypeError, DataError, TrainingWarning

__all__ = ["OOD_METHODS", "MahalanobisOOD", "NearestNeighbourOOD", "build_ood", "fit_ood", "pool_features",
           "pooled_features"]

logger = logging.getLogger(__name__)


class _ThresholdedScore(keras.layers.Layer):
    """What the OOD layers share: a score of pooled features, a threshold, a fitted flag, the input checks.

    Subclasses add their own weights first, then call :meth:`_add_threshold_weights` (the order of a saved
    model's variables), and implement ``call`` (masked by :meth:`_unless_unfitted`) and ``fit``.
    """

    def __init__(self, num_classes: int, feature_dim: int, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")  # statistics need float32, whatever the model's policy
        super().__init__(trainable=False, **{key: value for key, value in kwargs.items() if key != "trainable"})
        self.num_classes = _check_positive("num_classes", num_classes)
        self.feature_dim = _check_positive("feature_dim", feature_dim)

    def _add_threshold_weights(self) -> None:
        self.cutoff = self.add_weight(shape=(), initializer="zeros", trainable=False, name="threshold")
        self.fitted = self.add_weight(shape=(), initializer="zeros", trainable=False, name="fitted")
        self.built = True

    def _unless_unfitted(self, scores):
        return ops.where(self.fitted > 0.5, scores, ops.full_like(scores, float("nan")))

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has set the score's statistics and the threshold."""
        return bool(self.fitted.numpy() > 0.5)

    @property
    def threshold(self) -> float:
        """Scores above it are flagged as out of distribution; ``nan`` before :meth:`fit`."""
        return float(self.cutoff.numpy()) if self.is_fitted else float("nan")

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def score(self, features: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """``(N,)`` float32 scores of ``(N, d)`` pooled features or ``(N, h, w, d)`` feature maps."""
        features = np.asarray(features)
        if len(features) == 0:
            return np.zeros(0, dtype=np.float32)
        parts = [ops.convert_to_numpy(self(features[start:start + batch_size]))
                 for start in range(0, len(features), batch_size)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def is_out_of_distribution(self, scores: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: scores above the threshold; all ``False`` before :meth:`fit` (``nan`` scores)."""
        scores = np.asarray(scores, dtype=np.float32)
        flags = np.zeros(scores.shape, dtype=bool)
        if self.is_fitted:
            np.greater(scores, self.threshold, out=flags, where=np.isfinite(scores))
        return flags

    def _pooled(self, features: np.ndarray, name: str) -> np.ndarray:
        pooled = pool_features(features).astype(np.float64)
        if pooled.ndim != 2 or pooled.shape[1] != self.feature_dim:
            message = (f"Expected {name} of shape (N, {self.feature_dim}) or (N, h, w, {self.feature_dim}). "
                       f"Received: {name} of shape {np.shape(features)}")
            raise DataError(message)
        return pooled

    def _check_labels(self, labels: np.ndarray, count: int) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (count,) or count < 2:
            message = (f"Expected one label per training image and at least two images. Received: "
                       f"{labels.shape[0] if labels.ndim else 0} labels for {count} images")
            raise DataError(message)
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= self.num_classes:
            message = (f"Expected integer class indices in [0, {self.num_classes - 1}]. "
                       f"Received: labels from {labels.min()} to {labels.max()} ({labels.dtype})")
            raise DataError(message)
        return labels.astype(np.int64)

    @staticmethod
    def _check_quantile(quantile: float) -> None:
        if not 0.0 < float(quantile) <= 1.0:
            message = f"Expected quantile in (0, 1]. Received: quantile={quantile!r}"
            raise DataError(message)

    def load_own_variables(self, store) -> None:
        if len(store.keys()) == 0:
            # A classifier saved before the OOD score existed: it loads, unfitted.
            logger.info("The saved model has no OOD score: it is left unfitted")
            return
        super().load_own_variables(store)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes, "feature_dim": self.feature_dim}


@keras.saving.register_keras_serializable(package="cxrclassify")
class MahalanobisOOD(_ThresholdedScore):
    """Minimum Mahalanobis distance of pooled features to the class means (tied covariance).

    Called on ``(N, d)`` pooled features or ``(N, h, w, d)`` feature maps
    (averaged over ``h`` and ``w`` first), it returns ``(N,)`` scores:
    ``min_c sqrt((x - mu_c)^T P (x - mu_c))`` with ``mu_c`` the mean of class
    ``c``'s training features and ``P`` the inverse of the shared covariance.
    Until :meth:`fit` has been called every score is ``nan``.

    Its weights (class means ``(num_classes, d)``, precision matrix ``(d, d)``,
    threshold, fitted flag) are not trainable and are saved with the model:
    ``d * d * 4`` bytes for the precision matrix (1 MB for VGG16's 512
    channels, 16 MB for ResNet50's and Xception's 2048).

    Parameters
    ----------
    num_classes : int
        Number of classes (one mean each).
    feature_dim : int
        Channels of the base's output.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.models.ood import MahalanobisOOD
    >>> rng = np.random.default_rng(0)
    >>> layer = MahalanobisOOD(2, 4)
    >>> bool(np.isnan(layer.score(np.zeros((1, 4)))[0])), layer.is_fitted
    (True, False)
    >>> train = rng.normal(size=(200, 4))
    >>> _ = layer.fit(train, np.arange(200) % 2)
    >>> near, far = layer.score(np.stack([train[0], train[0] + 50.0]))
    >>> bool(near < layer.threshold < far)
    True
    """

    def __init__(self, num_classes: int, feature_dim: int, **kwargs: Any):
        super().__init__(num_classes, feature_dim, **kwargs)
        self.means = self.add_weight(shape=(self.num_classes, self.feature_dim), initializer="zeros",
                                     trainable=False, name="means")
        self.precision = self.add_weight(shape=(self.feature_dim, self.feature_dim), initializer="zeros",
                                         trainable=False, name="precision")
        self._add_threshold_weights()

    def call(self, inputs):
        features = ops.cast(inputs, "float32")
        if len(features.shape) == 4:
            features = ops.mean(features, axis=(1, 2))
        differences = features[:, None, :] - self.means[None, :, :]
        squared = ops.sum(ops.einsum("nkd,de->nke", differences, self.precision) * differences, axis=-1)
        return self._unless_unfitted(ops.sqrt(ops.maximum(ops.min(squared, axis=1), 0.0)))

    def fit(
        self,
        features_train: np.ndarray,
        labels_train: np.ndarray,
        features_validation: np.ndarray | None = None,
        *,
        quantile: float = 0.95,
    ) -> MahalanobisOOD:
        """Set the class means, the shared precision matrix and the threshold.

        Parameters
        ----------
        features_train : numpy.ndarray
            ``(N, d)`` pooled features (or ``(N, h, w, d)`` feature maps) of the
            training images.
        labels_train : numpy.ndarray
            ``(N,)`` class indices. A class without a training image gets no
            mean of its own (it is then never the nearest class).
        features_validation : numpy.ndarray, optional
            Features of held-out in-distribution images: the threshold is the
            ``quantile`` of their scores. Without them, of the training
            images' scores, which are lower than unseen images' (so more than
            ``1 - quantile`` of new in-distribution images get flagged).
        quantile : float, default 0.95
            Share of the reference images scored at or below the threshold.

        Returns
        -------
        MahalanobisOOD
            The layer itself.

        Raises
        ------
        cxrclassify.exceptions.DataError
            If the features and labels do not match, labels are out of range,
            there are fewer than two training images, or ``quantile`` is not in ``(0, 1]``.
        """
        train = self._pooled(features_train, "features_train")
        labels = self._check_labels(labels_train, len(train))
        self._check_quantile(quantile)
        means = self._class_means(train, labels)
        precision = ledoit_wolf_precision(train, means, labels)
        self.means.assign(means.astype(np.float32))
        self.precision.assign(((precision + precision.T) / 2.0).astype(np.float32))
        self.fitted.assign(1.0)
        if features_validation is not None and len(features_validation):
            reference, origin = self._pooled(features_validation, "features_validation"), "validation"
        else:
            reference, origin = train, "training"
            logger.info("No validation features: the OOD threshold is the %.3g quantile of the training images' "
                        "scores, which underestimates unseen images' scores", quantile)
        threshold = float(np.quantile(self.score(reference), float(quantile)))
        self.cutoff.assign(threshold)
        logger.info("Fitted the OOD score on %d images (%d features); threshold %.4g = %.3g quantile of the %s "
                    "scores", len(train), self.feature_dim, threshold, quantile, origin)
        return self

    def _class_means(self, train: np.ndarray, labels: np.ndarray) -> np.ndarray:
        present = np.unique(labels)
        means = np.zeros((self.num_classes, self.feature_dim))
        for index in present:
            means[index] = train[labels == index].mean(axis=0)
        absent = sorted(set(range(self.num_classes)) - set(present.tolist()))
        if absent:
            # A copy of a present class's mean never changes the minimum: as if the class were left out.
            means[absent] = means[present[0]]
            logger.info("Classes %s have no training image: the OOD score ignores them", absent)
        return means



@keras.saving.register_keras_serializable(package="cxrclassify")
class NearestNeighbourOOD(_ThresholdedScore):
    """Cosine distance of pooled features to the ``k``-th nearest training image.

    The training images' pooled features, L2-normalised, are kept as reference
    vectors (at most ``capacity``: a seeded draw of them when there are more),
    stored in float16 with the model (``capacity * d * 2`` bytes: 5 MB for
    MobileNetV2's 1,280 channels at the default 2,048). An image's score is
    ``1 - cos(x, r_k)`` with ``r_k`` its ``k``-th most similar reference: 0
    for a copy of a training image, up to 2. Same interface as
    :class:`MahalanobisOOD` (:meth:`fit`, :meth:`score`,
    :meth:`is_out_of_distribution`, ``threshold``); every score is ``nan``
    until :meth:`fit`. A cosine distance sees the direction of the features,
    not their size: an image that only raises every channel together (a
    brighter copy, say) is not flagged, where the Mahalanobis score may be.

    Parameters
    ----------
    num_classes : int
        Number of classes (kept for the common interface; the score ignores labels).
    feature_dim : int
        Channels of the base's output.
    k : int, default 1
        Which nearest neighbour's distance is the score.
    capacity : int, default 2048
        Most reference vectors kept.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.models.ood import NearestNeighbourOOD
    >>> rng = np.random.default_rng(0)
    >>> layer = NearestNeighbourOOD(2, 8, capacity=128)
    >>> train, validation = rng.normal(5, 1, size=(100, 8)), rng.normal(5, 1, size=(40, 8))
    >>> _ = layer.fit(train, np.arange(100) % 2, validation)
    >>> near, far = layer.score(np.stack([train[0], -np.ones(8)]))
    >>> bool(near < layer.threshold < far), layer.n_reference
    (True, 100)
    """

    def __init__(self, num_classes: int, feature_dim: int, k: int = 1, capacity: int = 2048, **kwargs: Any):
        super().__init__(num_classes, feature_dim, **kwargs)
        self.k = _check_positive("k", k)
        self.capacity = _check_positive("capacity", capacity)
        if self.k > self.capacity:
            message = f"Expected k to be at most capacity ({self.capacity}). Received: k={k!r}"
            raise ArgumentError(message)
        self.reference = self.add_weight(shape=(self.capacity, self.feature_dim), initializer="zeros",
                                         trainable=False, dtype="float16", name="reference")
        self.valid = self.add_weight(shape=(self.capacity,), initializer="zeros", trainable=False, name="valid")
        self._add_threshold_weights()

    @property
    def n_reference(self) -> int:
        """How many training images' features are kept as references."""
        return int(round(float(ops.convert_to_numpy(ops.sum(self.valid)))))

    def call(self, inputs):
        features = ops.cast(inputs, "float32")
        if len(features.shape) == 4:
            features = ops.mean(features, axis=(1, 2))
        features = features / ops.maximum(ops.norm(features, axis=-1, keepdims=True), 1e-12)
        similarities = ops.matmul(features, ops.transpose(ops.cast(self.reference, "float32")))
        similarities = ops.where(self.valid[None, :] > 0.5, similarities, ops.full_like(similarities, -3.0))
        kth = ops.top_k(similarities, self.k, sorted=True)[0][:, self.k - 1]
        return self._unless_unfitted(ops.maximum(1.0 - kth, 0.0))  # float16 references: a cosine may pass 1

    def fit(
        self,
        features_train: np.ndarray,
        labels_train: np.ndarray,
        features_validation: np.ndarray | None = None,
        *,
        quantile: float = 0.95,
        seed: int = 0,
    ) -> NearestNeighbourOOD:
        """Keep the training features as references and set the threshold.

        Parameters
        ----------
        features_train : numpy.ndarray
            ``(N, d)`` pooled features (or ``(N, h, w, d)`` feature maps) of the training images.
        labels_train : numpy.ndarray
            ``(N,)`` class indices (checked, not used by the score).
        features_validation : numpy.ndarray, optional
            Features of held-out in-distribution images: the threshold is the
            ``quantile`` of their scores. Without them, of the training images'
            scores with each image's own reference left out.
        quantile : float, default 0.95
            Share of the reference images scored at or below the threshold.
        seed : int, default 0
            Draws the references when there are more training images than ``capacity``.

        Returns
        -------
        NearestNeighbourOOD
            The layer itself.

        Raises
        ------
        cxrclassify.exceptions.DataError
            As :meth:`MahalanobisOOD.fit`, and when there are no more than ``k`` training images.
        """
        train = self._pooled(features_train, "features_train")
        self._check_labels(labels_train, len(train))
        self._check_quantile(quantile)
        if len(train) <= self.k:
            message = (f"Expected more training images than k={self.k} to fit the nearest-neighbour OOD score. "
                       f"Received: {len(train)} training images")
            raise DataError(message)
        chosen = np.arange(len(train))
        if len(train) > self.capacity:
            chosen = np.sort(np.random.default_rng(seed).choice(len(train), self.capacity, replace=False))
            logger.info("Kept %d of %d training images as OOD references (capacity)", self.capacity, len(train))
        normalised = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
        reference = np.zeros((self.capacity, self.feature_dim), dtype=np.float16)
        reference[:len(chosen)] = normalised[chosen].astype(np.float16)
        valid = np.zeros(self.capacity, dtype=np.float32)
        valid[:len(chosen)] = 1.0
        self.reference.assign(reference)
        self.valid.assign(valid)
        self.fitted.assign(1.0)
        if features_validation is not None and len(features_validation):
            scores, origin = self.score(self._pooled(features_validation, "features_validation")), "validation"
        else:
            scores, origin = self._leave_one_out_scores(normalised, chosen), "training"
        threshold = float(np.quantile(scores, float(quantile)))
        self.cutoff.assign(threshold)
        logger.info("Fitted the nearest-neighbour OOD score (k=%d) on %d images; threshold %.4g = %.3g quantile "
                    "of the %s scores", self.k, len(train), threshold, quantile, origin)
        return self

    def _leave_one_out_scores(self, normalised: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """Training images' scores, a reference image's own vector left out."""
        reference = self.reference.numpy()[:len(chosen)].astype(np.float32)
        similarities = normalised.astype(np.float32) @ reference.T
        similarities[chosen, np.arange(len(chosen))] = -3.0
        kth = -np.sort(-similarities, axis=1)[:, self.k - 1]
        return np.maximum(1.0 - kth, 0.0).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "k": self.k, "capacity": self.capacity}


#: The OOD scores :func:`build_ood` makes, by name.
OOD_METHODS = {
    "mahalanobis": "mahalanobis, tied covariance (Ledoit-Wolf), global-average-pooled base features",
    "knn": "cosine distance to the nearest training image (k=1), L2-normalised global-average-pooled base features",
}


def build_ood(method: str, num_classes: int, feature_dim: int) -> MahalanobisOOD | NearestNeighbourOOD:
    """The OOD layer of a classifier: ``"mahalanobis"`` (:class:`MahalanobisOOD`) or ``"knn"`` (:class:`NearestNeighbourOOD`).

    Examples
    --------
    >>> from cxrclassify.models.ood import build_ood
    >>> type(build_ood("knn", 3, 16)).__name__
    'NearestNeighbourOOD'
    """
    if method == "mahalanobis":
        return MahalanobisOOD(num_classes, feature_dim, name="ood")
    if method == "knn":
        return NearestNeighbourOOD(num_classes, feature_dim, name="ood")
    message = f"Expected ood to be one of {sorted(OOD_METHODS)}. Received: ood={method!r}"
    raise ArgumentError(message)


def ledoit_wolf_precision(features: np.ndarray, means: np.ndarray, labels: np.ndarray, *,
                          chunk_size: int = 2048) -> np.ndarray:
    """The precision of the Ledoit-Wolf covariance of ``features - means[labels]``, a chunk of rows at a time.

    The same estimate as scikit-learn's ``LedoitWolf(assume_centered=True)`` on the
    centred features (its shrinkage formula, written with the scatter matrix
    ``X^T X`` and the rows' fourth powers ``sum ||x||^4``, which add up over chunks),
    without the centred ``(N, d)`` float64 copy: memory holds ``d x d`` and one chunk.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.covariance import LedoitWolf
    >>> from cxrclassify.models.ood import ledoit_wolf_precision
    >>> x = np.random.default_rng(0).normal(size=(50, 4))
    >>> labels = np.zeros(50, dtype=int)
    >>> means = x.mean(axis=0, keepdims=True)
    >>> reference = LedoitWolf(assume_centered=True).fit(x - means).precision_
    >>> bool(np.allclose(ledoit_wolf_precision(x, means, labels, chunk_size=7), reference))
    True
    """
    from scipy import linalg

    count, dimension = len(features), features.shape[1]
    scatter = np.zeros((dimension, dimension))
    fourth_powers = 0.0
    for start in range(0, count, chunk_size):
        centred = np.asarray(features[start:start + chunk_size], dtype=np.float64) - means[labels[start:start + chunk_size]]
        scatter += centred.T @ centred
        fourth_powers += float(np.sum(np.sum(centred ** 2, axis=1) ** 2))
    covariance = scatter / count
    trace_mean = float(np.trace(covariance)) / dimension  # sklearn's mu
    delta_sum = float(np.sum(covariance ** 2))  # ||X^T X||_F^2 / n^2
    beta = (fourth_powers / count - delta_sum) / (dimension * count)
    delta = (delta_sum - 2.0 * trace_mean * float(np.trace(covariance)) + dimension * trace_mean ** 2) / dimension
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrinkage) * covariance
    shrunk.flat[:: dimension + 1] += shrinkage * trace_mean
    return linalg.pinvh(shrunk, check_finite=False)


def pool_features(features: np.ndarray) -> np.ndarray:
    """Global average pooling of ``(N, h, w, d)`` feature maps; ``(N, d)`` features are returned as they are.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.models.ood import pool_features
    >>> pool_features(np.ones((2, 3, 3, 5))).shape, pool_features(np.ones((2, 5))).shape
    ((2, 5), (2, 5))
    """
    if isinstance(features, (list, tuple)):  # arrays, memory maps and row readers are read a chunk at a time
        features = np.asarray(features)
    if len(features.shape) == 4:  # a chunk of rows at a time: feature maps on disk are read a chunk at a time
        pooled = np.empty((len(features), features.shape[-1]), dtype=np.float32)
        for start in range(0, len(features), 256):
            pooled[start:start + 256] = np.asarray(features[start:start + 256]).mean(axis=(1, 2), dtype=np.float64)
        return pooled
    return np.asarray(features)


def pooled_features(model: Any, images: np.ndarray, *, batch_size: int = 16) -> np.ndarray:
    """The global-average-pooled base features of ``images``: one forward pass of the base per batch.

    Parameters
    ----------
    model : CxrClassifier
        The classifier whose preprocessing and base are run.
    images : numpy.ndarray
        ``(N, S, S, 3)`` RGB images in ``[0, 255]`` at the model's input size.
    batch_size : int, default 16
        Images per forward pass.

    Returns
    -------
    numpy.ndarray
        ``(N, d)`` float32, ``d`` the channels of the base's output.

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.models.ood import pooled_features
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> pooled_features(model, np.zeros((3, 32, 32, 3), np.uint8)).shape
    (3, 512)
    """
    if not hasattr(images, "shape"):  # a list of arrays; a lazy set is decoded a batch at a time below
        images = np.asarray(images)
    parts = [pool_features(ops.convert_to_numpy(model.features(
        np.asarray(images[start:start + batch_size]).astype(np.float32))))
             for start in range(0, len(images), batch_size)]
    if not parts:
        return np.zeros((0, model.ood.feature_dim), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def fit_ood(
    model: Any,
    data: Any,
    *,
    quantile: float = 0.95,
    batch_size: int = 16,
    features: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> dict[str, Any]:
    """Fit a classifier's out-of-distribution score on its training (and validation) images.

    Computes the pooled base features of the training split (the original
    images, never augmented copies) and of the validation split, fits
    ``model.ood`` (see :class:`MahalanobisOOD`) and records what was done in
    ``model.metadata["ood"]``. :func:`~cxrclassify.train` calls it at the end
    of training unless ``fit_ood=False``; call it again after changing the
    base (fine-tuning it outside :func:`~cxrclassify.train`).

    Parameters
    ----------
    model : CxrClassifier
        A trained classifier.
    data : DatasetSplits, (train, validation) or ImageSet
        What :func:`~cxrclassify.load_datasets` returned (its train and
        validation splits are used), a pair of
        :class:`~cxrclassify.datasets.ImageSet` (validation may be ``None``), or
        a training ImageSet alone. Without validation images the threshold is
        set on the training images' scores (said in a log line).
    quantile : float, default 0.95
        Share of the validation images scored at or below the threshold.
    batch_size : int, default 16
        Images per forward pass.
    features : (train, validation), optional
        Base features already computed for the two splits, in their order
        (feature maps or pooled; validation may be ``None``): the base is then
        not run. :func:`~cxrclassify.train` passes its cached features.

    Returns
    -------
    dict
        The record put in ``model.metadata["ood"]``: ``fitted``, ``method``, ``quantile``,
        ``threshold``, ``threshold_from`` (``"validation"`` or
        ``"training"``), ``n_train``, ``n_validation`` and ``feature_dim``.

    Warns
    -----
    TrainingWarning
        With fewer than two training images: the score is left unfitted (and
        the record says so), rather than failing at the end of a training run.

    Examples
    --------
    >>> import cxrclassify
    >>> from cxrclassify.models.ood import fit_ood
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> record = fit_ood(model, data)
    >>> model.ood.is_fitted, record["threshold_from"], record["feature_dim"]
    (True, 'validation', 512)
    """
    train_set, validation_set = _ood_splits(data)
    if len(train_set) < 2:
        reason = f"too few training images to fit the OOD score ({len(train_set)}; at least 2 are needed)"
        warnings.warn(f"The OOD score is left unfitted: {reason}.", TrainingWarning, stacklevel=2)
        model.metadata["ood"] = {"fitted": False, "reason": reason}
        return dict(model.metadata["ood"])
    if features is None:
        train_set, validation_set = (None if split is None else split.resized(model.image_size)
                                     for split in (train_set, validation_set))
        train_features = pooled_features(model, train_set.images, batch_size=batch_size)
        validation_features = None if validation_set is None else pooled_features(
            model, validation_set.images, batch_size=batch_size)
    else:
        train_features, validation_features = (pool_features(part) if part is not None else None for part in features)
    if validation_set is None:
        validation_features = None
    model.ood.fit(train_features, np.asarray(train_set.labels), validation_features, quantile=quantile)
    record = {
        "fitted": True,
        "method": OOD_METHODS["knn" if isinstance(model.ood, NearestNeighbourOOD) else "mahalanobis"],
        "quantile": float(quantile),
        "threshold": model.ood.threshold,
        "threshold_from": "training" if validation_features is None or not len(validation_features) else "validation",
        "n_train": len(train_set),
        "n_validation": 0 if validation_features is None else len(validation_features),
        "feature_dim": model.ood.feature_dim,
    }
    model.metadata["ood"] = record
    return dict(record)


def _ood_splits(data: Any) -> tuple[Any, Any]:
    from ..datasets import DatasetSplits, ImageSet

    if isinstance(data, DatasetSplits):
        train_set, validation_set = data.train, data.validation
    elif isinstance(data, ImageSet):
        train_set, validation_set = data, None
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], ImageSet):
        train_set, validation_set = data
    else:
        message = ("Expected data to be what load_datasets returned, a (train, validation) pair of ImageSet or "
                   f"an ImageSet. Received: data of type {type(data).__name__}")
        raise ArgumentTypeError(message)
    if validation_set is not None and len(validation_set) == 0:
        validation_set = None
    return train_set, validation_set


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        message = f"Expected {name} to be a positive integer. Received: {name}={value!r}"
        raise ArgumentError(message)
    return int(value)
