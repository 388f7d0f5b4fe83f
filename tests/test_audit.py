"""Shortcut audit (map mass, source probe) and the out-of-distribution score, on tiny synthetic data."""

from __future__ import annotations

import importlib
import io
import json
import logging
import zipfile

import h5py
import keras
import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.exceptions import DataError
from cxrclassify.explain.audit import audit, map_shares, region_masks, source_probe
from cxrclassify.models.ood import MahalanobisOOD, fit_ood, pooled_features

SIZE = 32
CORNERS = [(0, 0), (0, SIZE - 5), (SIZE - 5, 0), (SIZE - 5, SIZE - 5)]


def grey_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    grey = rng.integers(60, 140, (n, SIZE, SIZE)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def image_set(images, labels, *, sources=None, groups=None, prefix="img", class_names=("marked", "plain")):
    sources = sources if sources is not None else ["synthetic"] * len(images)
    groups = groups if groups is not None else [f"{prefix}-p{i}" for i in range(len(images))]
    records = [Sample(f"{prefix}_{i}.png", class_names[label], group=group, source=source)
               for i, (label, group, source) in enumerate(zip(labels, groups, sources))]
    return ImageSet(np.asarray(images), np.asarray(labels), records, list(class_names))


def marked_set(seed: int, n: int, where: str) -> ImageSet:
    """Label 0: a red 5x5 square (in a random corner, or near the centre); label 1: nothing."""
    rng = np.random.default_rng(seed)
    images, labels = grey_noise(rng, n), np.arange(n) % 2
    for index in np.flatnonzero(labels == 0):
        row, column = CORNERS[rng.integers(4)] if where == "corner" else rng.integers(12, 16, 2)
        images[index, row:row + 5, column:column + 5] = (255, 30, 30)
    return image_set(images, labels, prefix=where)


def marker_model(where: str) -> tuple[cxrclassify.models.CxrClassifier, ImageSet]:
    keras.utils.set_random_seed(0)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=SIZE, head="gap", freeze_base=False,
                                    dropout=0.0)
    history = cxrclassify.train(model, (marked_set(1, 40, where), None), epochs=15, batch_size=8,
                                learning_rate=3e-3, progress=False, fit_ood=False)
    assert history["accuracy"][-1] == 1.0
    return model, marked_set(2, 20, where)


def frozen_model(num_classes: int = 2) -> cxrclassify.models.CxrClassifier:
    keras.utils.set_random_seed(0)
    return cxrclassify.build_model("tinycnn", num_classes, weights=None, image_size=SIZE)


# --- map mass geometry ---------------------------------------------------------------------------------------------


def test_region_masks_geometry():
    masks = region_masks(SIZE, border=0.15)  # 5 px of 32
    assert masks["central"][5:27, 5:27].all() and masks["central"].sum() == 22 * 22
    assert not (masks["central"] & masks["border"]).any() and (masks["central"] | masks["border"]).all()
    assert masks["corners"].sum() == 4 * 25 and not (masks["corners"] & masks["central"]).any()
    assert masks["corners"][0, 0] and masks["corners"][31, 31] and not masks["corners"][0, 16]
    assert region_masks(10, border=0.0)["central"].all()
    for bad in (0.5, -0.1, 0.6):
        with pytest.raises(ValueError, match="border"):
            region_masks(SIZE, border=bad)


def test_map_shares_uniform_corner_and_empty_maps():
    maps = np.zeros((3, SIZE, SIZE), np.float32)
    maps[0] = 1.0
    maps[1, 30:, :2] = 1.0  # bottom-left corner
    shares = map_shares(maps, border=0.15)
    assert shares["central"][0] == pytest.approx(22 * 22 / SIZE**2)
    assert shares["corners"][0] == pytest.approx(100 / SIZE**2)
    assert shares["central"][1] == 0.0 and shares["corners"][1] == 1.0 and shares["border"][1] == 1.0
    assert all(np.isnan(values[2]) for values in shares.values())
    with pytest.raises(ValueError, match=r"\(N, S, S\)"):
        map_shares(np.zeros((SIZE, SIZE)))


# --- audit on models trained to use a marker -----------------------------------------------------------------------


def test_corner_marker_gives_low_central_share_and_marked_worst_images():
    model, test_set = marker_model("corner")
    result = audit(model, test_set, n_worst=5)
    assert result.accuracy == 1.0 and result.n_images == 20
    assert result.by_true_class["marked"]["central"]["mean"] < 0.2
    assert result.by_true_class["marked"]["corners"]["mean"] > 0.5
    assert [row["label"] for row in result.worst] == ["marked"] * 5
    assert [row["central_share"] for row in result.worst] == sorted(row["central_share"] for row in result.worst)
    assert result.worst_maps.shape == (5, SIZE, SIZE)
    assert any("predicted marked" in note for note in result.notes)
    summary = result.summary()
    assert "Least central maps" in summary and result.worst[0]["input"] in summary
    assert "all images come from one source" in result.source_probe.verdict
    json.dumps(result.to_dict())  # JSON-serialisable, NaN included


def test_central_evidence_gives_high_central_share():
    model, test_set = marker_model("centre")
    result = audit(model, test_set, n_worst=3, lungs=None)  # the central box alone (noise has no lungs)
    assert result.by_true_class["marked"]["central"]["mean"] > 0.8
    assert result.by_true_class["marked"]["central"]["median"] > 0.8
    assert not any("predicted marked" in note for note in result.notes)
    assert len(result.images) == 20 and set(result.images[0]) >= {"input", "central_share", "corner_share",
                                                                   "ood_score", "out_of_distribution"}


def side_lungs(n: int) -> np.ndarray:
    """Two lung fields left and right of a 10-px mediastinum, as a segmenter would draw them."""
    lungs = np.zeros((n, SIZE, SIZE), dtype=bool)
    lungs[:, 4:28, 2:11] = True
    lungs[:, 4:28, 21:30] = True
    return lungs


def test_evidence_on_the_mediastinum_is_central_but_outside_the_lungs():
    model, test_set = marker_model("centre")  # the marker sits where the heart is, between the lungs
    result = audit(model, test_set, n_worst=3, lungs=side_lungs(len(test_set)))
    marked = result.by_true_class["marked"]
    assert marked["central"]["mean"] > 0.8  # the central box calls it fine ...
    assert marked["lungs"]["mean"] < marked["lung_area"]["mean"]  # ... the lung fields do not
    assert result.lungs_measured and result.uniform_lung_share == pytest.approx(2 * 24 * 9 / SIZE**2)
    assert any("inside the lung fields" in note and "predicted marked" in note for note in result.notes)
    assert {"lung_share", "lung_area"} <= set(result.images[0])
    assert "lungs mean" in result.summary() and "source synthetic" in result.summary()
    assert result.to_dict()["by_source"]["synthetic"]["n"] == 20


def test_audit_without_lungs_and_with_masks_of_the_wrong_shape():
    model = frozen_model()
    images = marked_set(3, 6, "corner")
    result = audit(model, images, lungs=None)
    assert not result.lungs_measured and "lungs" not in result.overall and "lung_share" not in result.images[0]
    with pytest.raises(ValueError, match=r"lung_masks of shape \(2, 32, 32\)"):
        audit(model, images, lungs=side_lungs(2))
    with pytest.raises(ValueError, match="lungs='segment'"):
        audit(model, images, lungs="crop")


def test_all_zero_maps_are_excluded_and_counted(monkeypatch):
    audit_module = importlib.import_module("cxrclassify.explain.audit")  # the package attribute is the function

    def empty_maps(model, batch, class_indices=None, **_):
        return np.zeros((len(batch), SIZE, SIZE), np.float32)

    monkeypatch.setattr(audit_module, "class_activation_maps", empty_maps)
    result = audit(frozen_model(), marked_set(3, 6, "corner"), n_worst=4)
    assert result.n_empty_maps == 6 and result.overall["n_empty"] == 6 and result.worst == []
    assert np.isnan(result.overall["central"]["mean"])
    assert result.to_dict()["overall"]["central"]["mean"] is None
    assert "6 of 6 maps are all zero" in result.summary()


def test_audit_rejects_images_of_another_size():
    small = image_set(np.zeros((4, 16, 16, 3), np.uint8), [0, 1, 0, 1])
    with pytest.raises(DataError, match="image_size=32"):
        audit(frozen_model(), small)


# --- source probe --------------------------------------------------------------------------------------------------


def two_source_set(seed: int, *, stripe: bool) -> ImageSet:
    """60 images of 20 patients (3 each), half from source "a", half from "b"; "b" may carry a bright top stripe."""
    rng = np.random.default_rng(seed)
    images = grey_noise(rng, 60)
    patients = np.repeat(np.arange(20), 3)
    sources = np.where(patients < 10, "a", "b")
    if stripe:
        images[sources == "b", :3, :] = 255
    labels = rng.integers(0, 2, 60)
    return image_set(images, labels, sources=list(sources), groups=[f"p{p}" for p in patients])


def test_source_probe_sees_a_visible_artefact():
    probe = source_probe(frozen_model(), two_source_set(4, stripe=True))
    assert probe.skipped is None and probe.n_patients == 20 and probe.n_splits == 5
    assert probe.balanced_accuracy > 0.95 and probe.chance_balanced_accuracy == 0.5
    assert probe.majority_baseline == 0.5 and "trivially visible" in probe.verdict
    assert probe.counts == {"a": 30, "b": 30}


def test_source_probe_near_chance_when_sources_look_alike():
    probe = source_probe(frozen_model(), two_source_set(5, stripe=False))
    assert probe.skipped is None
    assert probe.balanced_accuracy < 0.75
    assert "trivially" not in probe.verdict and "clearly" not in probe.verdict


def test_source_probe_flags_labels_confounded_with_sources():
    data = two_source_set(6, stripe=True)
    data.labels = np.array([0 if record.source == "a" else 1 for record in data.records])
    probe = source_probe(frozen_model(), data)
    assert probe.label_from_source_accuracy == 1.0 and probe.label_counts["a"] == {"marked": 30, "plain": 0}
    assert "shortcut to the label" in probe.verdict


def test_source_probe_skipped_with_one_source_or_one_patient():
    one_source = source_probe(frozen_model(), marked_set(7, 8, "corner"))
    assert one_source.skipped is not None and np.isnan(one_source.balanced_accuracy)
    assert "one source" in one_source.summary()
    data = two_source_set(8, stripe=True)
    groups = ["p0" if record.source == "a" else record.group for record in data.records]
    single = image_set(data.images, data.labels, sources=data.sources, groups=groups)
    assert "'a' has 1 patient" in source_probe(frozen_model(), single).skipped


# --- out-of-distribution score -------------------------------------------------------------------------------------


def test_ood_flags_other_distributions_and_few_in_distribution_images():
    model = frozen_model()
    rng = np.random.default_rng(9)
    train_set = image_set(grey_noise(rng, 80), np.arange(80) % 2)
    validation_set = image_set(grey_noise(rng, 60), np.arange(60) % 2)
    record = fit_ood(model, (train_set, validation_set))
    assert record["threshold_from"] == "validation" and record["n_train"] == 80 and record["feature_dim"] == 8
    assert model.metadata["ood"] == record and np.isfinite(record["threshold"])
    same = cxrclassify.predict(model, grey_noise(rng, 100))
    assert same.out_of_distribution.mean() <= 0.15
    noise = cxrclassify.predict(model, rng.integers(0, 256, (40, SIZE, SIZE, 3)).astype(np.uint8))
    inverted = cxrclassify.predict(model, 255 - grey_noise(rng, 40))
    assert noise.out_of_distribution.mean() >= 0.9 and inverted.out_of_distribution.mean() >= 0.9
    assert np.median(noise.ood_scores) > 2 * record["threshold"] > 2 * np.median(same.ood_scores)
    rows = same.to_rows()
    assert rows[0]["ood_score"] == pytest.approx(float(same.ood_scores[0]))
    assert isinstance(rows[0]["out_of_distribution"], bool)


def test_unfitted_model_gives_nan_scores_and_no_flags(caplog):
    model = frozen_model()
    assert not model.ood.is_fitted and np.isnan(model.ood.threshold)
    with caplog.at_level(logging.INFO, logger="cxrclassify"):
        result = cxrclassify.predict(model, grey_noise(np.random.default_rng(10), 20), batch_size=4)
    assert np.isnan(result.ood_scores).all() and not result.out_of_distribution.any()
    assert sum("not fitted" in message for message in caplog.messages) == 1
    row = result.to_rows()[0]
    assert set(row) == {"input", "label", "class_0", "class_1", "ood_score", "out_of_distribution", "error"}
    assert np.isnan(row["ood_score"]) and row["out_of_distribution"] is False
    assert audit(model, marked_set(11, 6, "corner")).ood == {"fitted": False}


def test_predict_probabilities_match_model_predict():
    model = frozen_model(3)
    model.temperature = 1.7
    images = np.random.default_rng(12).integers(0, 256, (7, SIZE, SIZE, 3)).astype(np.uint8)
    result = cxrclassify.predict(model, images, batch_size=3)
    expected = model.predict(images.astype(np.float32), verbose=0)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-6)


def test_fitted_ood_survives_save_and_load(tmp_path):
    model = frozen_model()
    rng = np.random.default_rng(13)
    fit_ood(model, image_set(grey_noise(rng, 30), np.arange(30) % 2))  # no validation: training scores
    assert model.metadata["ood"]["threshold_from"] == "training"
    images = np.concatenate([grey_noise(rng, 5), 255 - grey_noise(rng, 5)])
    before = cxrclassify.predict(model, images)
    model.save(tmp_path / "model.keras")
    loaded = cxrclassify.load_model(tmp_path / "model.keras")
    after = cxrclassify.predict(loaded, images)
    assert loaded.ood.is_fitted and loaded.ood.threshold == model.ood.threshold
    np.testing.assert_allclose(after.ood_scores, before.ood_scores, rtol=1e-6)
    np.testing.assert_array_equal(after.out_of_distribution, before.out_of_distribution)
    assert loaded.metadata["ood"] == model.metadata["ood"]


def test_model_saved_without_an_ood_layer_loads_unfitted(tmp_path):
    model = frozen_model()
    model.save(tmp_path / "new.keras")
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(tmp_path / "new.keras") as source, zipfile.ZipFile(old, "w") as target:
        for name in source.namelist():
            payload = source.read(name)
            if name == "model.weights.h5":
                buffer = io.BytesIO(payload)
                with h5py.File(buffer, "a") as weights:
                    ood_groups = [key for key in weights["layers"] if "ood" in key]
                    assert ood_groups
                    for key in ood_groups:
                        del weights["layers"][key]
                payload = buffer.getvalue()
            target.writestr(name, payload)
    loaded = cxrclassify.load_model(old)
    images = grey_noise(np.random.default_rng(14), 3)
    assert not loaded.ood.is_fitted
    np.testing.assert_allclose(cxrclassify.predict(loaded, images).probabilities,
                               cxrclassify.predict(model, images).probabilities, atol=1e-6)


def test_train_fits_ood_from_cached_features_like_predict():
    model = frozen_model()
    rng = np.random.default_rng(15)
    train_set = image_set(grey_noise(rng, 24), np.arange(24) % 2)
    validation_set = image_set(grey_noise(rng, 20), np.arange(20) % 2)
    cxrclassify.train(model, (train_set, validation_set), epochs=2, batch_size=8, progress=False,
                      augment=True, augment_copies=2)
    assert model.metadata["training"]["cached_features"] and model.ood.is_fitted
    record = model.metadata["ood"]
    assert record["n_train"] == 24 and record["n_validation"] == 20 and record["quantile"] == 0.95
    scores = cxrclassify.predict(model, validation_set).ood_scores
    assert np.isfinite(scores).all()
    assert record["threshold"] == pytest.approx(float(np.quantile(scores, 0.95)), rel=1e-4)


def test_train_without_fit_ood_and_fine_tuned_model():
    rng = np.random.default_rng(16)
    data = (image_set(grey_noise(rng, 12), np.arange(12) % 2), None)
    skipped = frozen_model()
    cxrclassify.train(skipped, data, epochs=1, batch_size=6, progress=False, fit_ood=False)
    assert not skipped.ood.is_fitted and "ood" not in skipped.metadata
    keras.utils.set_random_seed(0)
    tuned = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=SIZE, freeze_base=False)
    cxrclassify.train(tuned, data, epochs=1, batch_size=6, progress=False)
    assert tuned.ood.is_fitted and tuned.metadata["ood"]["threshold_from"] == "training"
    np.testing.assert_allclose(tuned.ood.score(pooled_features(tuned, data[0].images)).max(),
                               cxrclassify.predict(tuned, data[0]).ood_scores.max(), rtol=1e-5)


def test_mahalanobis_layer_checks_and_absent_classes():
    layer = MahalanobisOOD(3, 4)
    rng = np.random.default_rng(17)
    features = rng.normal(size=(50, 4))
    layer.fit(features, np.arange(50) % 2)  # class 2 has no image: never the nearest
    assert layer.is_fitted
    np.testing.assert_allclose(layer.means.numpy()[2], layer.means.numpy()[0])
    maps = np.repeat(np.repeat(features[:, None, None, :], 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(layer.score(maps), layer.score(features), rtol=1e-5)
    with pytest.raises(DataError, match="shape"):
        layer.fit(rng.normal(size=(10, 5)), np.zeros(10, int))
    with pytest.raises(DataError, match="class indices"):
        layer.fit(features, np.full(50, 3))
    with pytest.raises(DataError, match="quantile"):
        layer.fit(features, np.zeros(50, int), quantile=1.5)
    with pytest.warns(UserWarning, match="left unfitted"):
        record = fit_ood(frozen_model(), image_set(grey_noise(rng, 1), [0]))
    assert record["fitted"] is False


def test_the_lung_measure_on_real_x_rays_of_the_sample():
    data = cxrclassify.load_datasets("sample", image_size=64, progress=False)
    keras.utils.set_random_seed(0)
    model = cxrclassify.build_model("tinycnn", 3, weights=None, image_size=64)
    result = audit(model, data, n_worst=2)
    assert result.lungs_measured
    assert 0.15 < result.uniform_lung_share < 0.6  # the lungs cover a fifth to a half of a frontal film
    assert all(0.0 <= row["lung_area"] <= 1.0 for row in result.images)
    assert set(result.by_source) == set(data.test.sources)
