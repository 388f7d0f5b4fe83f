"""The nearest-neighbour OOD score (build_model(..., ood="knn")): fit, flags, capacity, save and load."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.exceptions import ArgumentError, DataError
from cxrclassify.models.ood import NearestNeighbourOOD, build_ood, fit_ood

SIZE = 32


def grey_noise(rng, n):
    base = rng.normal(120, 12, (n, 1, 1, 1))
    return np.clip(base + rng.normal(0, 6, (n, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


def image_set(images, labels):
    records = [Sample(f"img{i}.png", str(label), f"p{i}", "synthetic") for i, label in enumerate(labels)]
    return ImageSet(images, np.asarray(labels), records, ["0", "1"])


def knn_model():
    keras.utils.set_random_seed(0)
    return cxrclassify.build_model("tinycnn", 2, weights=None, image_size=SIZE, ood="knn")


def test_the_score_is_the_cosine_distance_to_the_kth_nearest_reference():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(50, 6))
    layer = NearestNeighbourOOD(2, 6, k=3).fit(train, np.arange(50) % 2, rng.normal(size=(20, 6)))
    queries = rng.normal(size=(5, 6))
    normalised = train / np.linalg.norm(train, axis=1, keepdims=True)
    cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ normalised.T
    expected = 1.0 - np.sort(cosine, axis=1)[:, -3]
    np.testing.assert_allclose(layer.score(queries), expected, atol=2e-3)  # references kept in float16
    assert layer.n_reference == 50 and layer.score(train[:1] * 7.0)[0] < layer.score(-train[:1])[0]


def test_without_validation_each_training_image_is_scored_without_itself():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(80, 6))
    layer = NearestNeighbourOOD(2, 6).fit(train, np.arange(80) % 2)
    # Scored with itself among the references, every training image is at distance 0: a zero threshold.
    assert layer.threshold > 0.05
    assert np.mean(layer.score(rng.normal(size=(200, 6))) > layer.threshold) < 0.2


def test_more_training_images_than_capacity_keeps_a_seeded_draw():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(300, 4))
    first = NearestNeighbourOOD(2, 4, capacity=64).fit(train, np.arange(300) % 2, seed=5)
    again = NearestNeighbourOOD(2, 4, capacity=64).fit(train, np.arange(300) % 2, seed=5)
    other = NearestNeighbourOOD(2, 4, capacity=64).fit(train, np.arange(300) % 2, seed=6)
    assert first.n_reference == 64
    np.testing.assert_array_equal(first.reference.numpy(), again.reference.numpy())
    assert not np.array_equal(first.reference.numpy(), other.reference.numpy())


def test_unfitted_scores_are_nan_and_flag_nothing():
    layer = NearestNeighbourOOD(2, 4)
    scores = layer.score(np.ones((3, 4)))
    assert np.isnan(scores).all() and not layer.is_out_of_distribution(scores).any() and np.isnan(layer.threshold)


def test_a_knn_model_flags_other_distributions_and_round_trips(tmp_path):
    model = knn_model()
    rng = np.random.default_rng(3)
    record = fit_ood(model, (image_set(grey_noise(rng, 80), np.arange(80) % 2),
                             image_set(grey_noise(rng, 60), np.arange(60) % 2)))
    assert record["method"].startswith("cosine distance") and record["threshold_from"] == "validation"
    same = cxrclassify.predict(model, grey_noise(rng, 100))
    stripes = np.tile((np.arange(SIZE) % 8 < 4)[None, :, None, None] * 255, (40, 1, SIZE, 3)).astype(np.uint8)
    other = cxrclassify.predict(model, stripes)
    assert same.out_of_distribution.mean() <= 0.15 and other.out_of_distribution.mean() >= 0.9
    model.save(tmp_path / "knn.keras")
    loaded = cxrclassify.load_model(tmp_path / "knn.keras")
    assert isinstance(loaded.ood, NearestNeighbourOOD) and loaded.get_config()["ood"] == "knn"
    np.testing.assert_allclose(cxrclassify.predict(loaded, noise_images := grey_noise(rng, 8)).ood_scores,
                               cxrclassify.predict(model, noise_images).ood_scores, rtol=1e-4, atol=1e-6)
    assert loaded.ood.threshold == model.ood.threshold


def test_train_fits_the_knn_score():
    model = knn_model()
    rng = np.random.default_rng(4)
    cxrclassify.train(model, (image_set(grey_noise(rng, 24), np.arange(24) % 2),
                              image_set(grey_noise(rng, 20), np.arange(20) % 2)),
                      epochs=1, batch_size=8, progress=False)
    assert model.ood.is_fitted and model.ood.n_reference == 24


def test_the_default_stays_mahalanobis_and_old_configs_load():
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=SIZE)
    assert type(model.ood).__name__ == "MahalanobisOOD" and model.get_config()["ood"] == "mahalanobis"
    config = model.get_config()
    del config["ood"]  # a model saved before the option existed
    assert type(cxrclassify.models.CxrClassifier.from_config(config).ood).__name__ == "MahalanobisOOD"


def test_bad_ood_arguments_are_named():
    with pytest.raises(ArgumentError, match=r"ood to be one of \['knn', 'mahalanobis'\]. Received: ood='lof'"):
        cxrclassify.build_model("tinycnn", 2, weights=None, image_size=SIZE, ood="lof")
    with pytest.raises(ArgumentError, match="Received: k=9"):
        NearestNeighbourOOD(2, 4, k=9, capacity=8)
    with pytest.raises(DataError, match="more training images than k=3"):
        NearestNeighbourOOD(2, 4, k=3).fit(np.ones((3, 4)), np.array([0, 1, 0]))
    assert type(build_ood("mahalanobis", 2, 4)).__name__ == "MahalanobisOOD"
