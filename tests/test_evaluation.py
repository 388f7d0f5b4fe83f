"""evaluate: metrics and their intervals, the patient bootstrap, calibration, breakdowns; the plots."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest
from PIL import Image
from scipy.special import softmax
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

import cxrclassify
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.evaluation import (
    AGE_GROUPS,
    calibrate,
    evaluate_predictions,
    expected_calibration_error,
    fit_temperature,
    fit_temperature_from_logits,
    format_ci,
    reliability_curve,
    wilson_interval,
)
from cxrclassify.plots import plot_reliability_diagram, plot_roc_curves, save_evaluation_figures


def test_wilson_interval_of_the_papers_score():
    low, high = wilson_interval(73, 75)
    assert (round(low * 100, 1), round(high * 100, 1)) == (90.8, 99.3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


def test_evaluation_counts_add_up_and_break_down_by_source(rng):
    images = rng.integers(0, 255, (30, 16, 16, 3)).astype(np.uint8)
    labels = np.arange(30) % 3
    records = [Sample(f"{i}.png", ["a", "b", "c"][label], f"p{i}", ["s1", "s2"][i % 2])
               for i, label in enumerate(labels)]
    split = ImageSet(images, labels, records, ["a", "b", "c"])
    model = cxrclassify.build_model("tinycnn", 3, weights=None, image_size=16)
    result = cxrclassify.evaluate(model, split)
    assert result.n_images == 30 and result.confusion_matrix.sum() == 30
    assert result.confusion_matrix.sum(axis=1).tolist() == [10, 10, 10]
    assert result.n_correct == int(np.trace(result.confusion_matrix))
    assert result.accuracy == pytest.approx(result.n_correct / 30)
    assert result.accuracy_ci[0] <= result.accuracy <= result.accuracy_ci[1]
    assert set(result.by_source) == {"s1", "s2"}
    assert sum(v["n_images"] for v in result.by_source.values()) == 30
    assert sum(v["n_correct"] for v in result.by_source.values()) == result.n_correct
    assert sum(v["confusion_matrix"] for v in result.by_source.values()).tolist() == result.confusion_matrix.tolist()
    json.dumps(result.to_dict())  # serialisable
    assert "accuracy" in result.summary() and "source s1" in result.summary()


def test_evaluate_refuses_mismatched_classes(rng):
    split = ImageSet(np.zeros((2, 16, 16, 3), np.uint8), np.array([0, 1]),
                     [Sample("a", "a"), Sample("b", "b")], ["a", "b"])
    model = cxrclassify.build_model("tinycnn", 3, weights=None, image_size=16)
    with pytest.raises(ValueError, match="3 outputs but the data has 2 classes"):
        cxrclassify.evaluate(model, split)


def test_plots_are_written(tmp_path):
    history = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.4, 0.6, 0.9], "val_loss": [1.1, 0.8, 0.7],
               "val_accuracy": [0.3, 0.5, 0.6]}
    curves = cxrclassify.plot_history(history, tmp_path / "curves.png")
    matrix = cxrclassify.plot_confusion_matrix(np.array([[3, 1], [0, 4]]), ["covid19", "normal"], tmp_path / "cm.png")
    normalized = cxrclassify.plot_confusion_matrix(np.array([[3, 1], [0, 0]]), ["covid19", "normal"],
                                                   tmp_path / "cm_norm.png", normalize=True)
    for path in (curves, matrix, normalized):
        assert Image.open(path).size[0] > 100
    with pytest.raises(ValueError, match="Expected a square matrix"):
        cxrclassify.plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="non-empty 'loss'"):
        cxrclassify.plot_history({}, tmp_path / "bad.png")


# --- metrics with intervals, from labels and probabilities ---------------------------------------

CLASSES = ["covid19", "normal", "pneumonia"]


def synthetic(rng, n, *, separation=1.5, n_classes=3, per_patient=1):
    """Labels and softmax probabilities of a fair classifier; ``per_patient`` identical images per patient."""
    patients = n // per_patient
    labels = rng.integers(0, n_classes, patients)
    logits = rng.normal(0, 1, (patients, n_classes))
    logits[np.arange(patients), labels] += separation
    groups = [f"p{i}" for i in range(patients)]
    repeat = np.repeat(np.arange(patients), per_patient)
    return labels[repeat], softmax(logits, axis=1)[repeat], [groups[i] for i in repeat]


def width(interval):
    return interval[1] - interval[0]


def test_format_ci_prints_the_papers_score():
    assert format_ci(73 / 75, wilson_interval(73, 75)) == "97.3% (90.8 to 99.3)"
    labels = np.r_[np.zeros(25, int), np.ones(25, int), np.full(25, 2)]
    probabilities = np.eye(3)[labels] * 0.8 + 0.2 / 3
    probabilities[:2] = probabilities[[30, 30]]  # two covid19 images called normal: 73 of 75 right
    result = evaluate_predictions(labels, probabilities, CLASSES, n_bootstrap=100)
    assert (result.n_correct, result.n_images) == (73, 75)
    assert "accuracy 97.3% (90.8 to 99.3), 73 of 75 images" in result.summary()


def test_metrics_match_sklearn_on_a_hand_made_example():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2])
    probabilities = np.array([
        [.7, .2, .1], [.5, .4, .1], [.3, .6, .1], [.4, .4, .2], [.1, .8, .1], [.2, .7, .1],
        [.3, .3, .4], [.6, .3, .1], [.1, .6, .3], [.1, .1, .8], [.2, .3, .5], [.3, .4, .3],
    ])
    predicted = probabilities.argmax(axis=1)
    result = evaluate_predictions(labels, probabilities, CLASSES, n_bootstrap=200)
    matrix = confusion_matrix(labels, predicted)
    assert result.confusion_matrix.tolist() == matrix.tolist()
    assert result.accuracy == pytest.approx((labels == predicted).mean())
    assert result.balanced_accuracy == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert result.macro_f1 == pytest.approx(f1_score(labels, predicted, average="macro"))
    recall = recall_score(labels, predicted, average=None)
    precision = precision_score(labels, predicted, average=None)
    for index, name in enumerate(CLASSES):
        negatives = labels != index
        specificity = ((predicted != index) & negatives).sum() / negatives.sum()
        assert result.sensitivity[name] == result.recall[name] == pytest.approx(recall[index])
        assert result.precision[name] == pytest.approx(precision[index])
        assert result.specificity[name] == pytest.approx(specificity)
        assert result.roc_auc[name] == pytest.approx(roc_auc_score(labels == index, probabilities[:, index]))
        successes, trials = ((predicted != index) & negatives).sum(), negatives.sum()
        assert result.specificity_ci[name] == pytest.approx(wilson_interval(successes, trials))
        assert result.recall_ci[name] == pytest.approx(wilson_interval(matrix[index, index], matrix[index].sum()))
        assert result.precision_ci[name] == pytest.approx(wilson_interval(matrix[index, index], matrix[:, index].sum()))
    assert result.macro_roc_auc == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr"))


def test_vectorised_bootstrap_statistics_match_sklearn_with_ties(rng):
    from cxrclassify.evaluation import _point_estimates, _statistics_plan, _weighted_statistics

    labels, probabilities, _ = synthetic(rng, 300)
    probabilities = np.round(probabilities, 1)  # many tied scores
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    plan = _statistics_plan(labels, predicted, probabilities)
    point = _point_estimates(labels, predicted, probabilities, 3)
    unit = _weighted_statistics(np.ones((1, len(labels))), plan)
    assert unit["balanced_accuracy"][0] == pytest.approx(point["balanced_accuracy"])
    assert unit["macro_f1"][0] == pytest.approx(point["macro_f1"])
    assert unit["roc_auc"][0] == pytest.approx(point["roc_auc"])
    # Integer weights are the same as repeating images.
    weights = rng.integers(0, 3, len(labels))
    repeated = np.repeat(np.arange(len(labels)), weights)
    weighted = _weighted_statistics(weights[None, :].astype(float), plan)
    assert weighted["roc_auc"][0, 1] == pytest.approx(roc_auc_score(labels[repeated] == 1, probabilities[repeated, 1]))
    assert weighted["balanced_accuracy"][0] == pytest.approx(
        balanced_accuracy_score(labels[repeated], predicted[repeated]))


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_data(rng):
    small = evaluate_predictions(*synthetic(rng, 150)[:2], CLASSES, groups=synthetic(rng, 150)[2])
    labels, probabilities, groups = synthetic(rng, 1200)
    large = evaluate_predictions(labels, probabilities, CLASSES, groups=groups)
    for result in (small, large):
        for value, interval in ((result.balanced_accuracy, result.balanced_accuracy_ci),
                                (result.macro_f1, result.macro_f1_ci),
                                (result.macro_roc_auc, result.macro_roc_auc_ci),
                                *((result.roc_auc[name], result.roc_auc_ci[name]) for name in CLASSES)):
            assert interval[0] <= value <= interval[1]
    assert width(large.balanced_accuracy_ci) < 0.6 * width(small.balanced_accuracy_ci)
    assert width(large.macro_roc_auc_ci) < 0.6 * width(small.macro_roc_auc_ci)
    assert large.n_bootstrap == 1000 and large.bootstrap_skipped["macro"] == 0 and not large.notes


def test_bootstrap_is_seeded():
    labels, probabilities, groups = synthetic(np.random.default_rng(3), 200)
    first = evaluate_predictions(labels, probabilities, CLASSES, groups=groups, seed=7)
    again = evaluate_predictions(labels, probabilities, CLASSES, groups=groups, seed=7)
    other = evaluate_predictions(labels, probabilities, CLASSES, groups=groups, seed=8)
    assert first.macro_f1_ci == again.macro_f1_ci != other.macro_f1_ci


def test_patients_move_together_in_the_bootstrap(rng):
    # 80 patients, each with 5 identical images: 80 observations, not 400.
    labels, probabilities, groups = synthetic(rng, 400, per_patient=5)
    by_patient = evaluate_predictions(labels, probabilities, CLASSES, groups=groups)
    by_image = evaluate_predictions(labels, probabilities, CLASSES)  # every image its own group
    one_each = evaluate_predictions(labels[::5], probabilities[::5], CLASSES, groups=groups[::5])
    assert (by_patient.n_groups, by_image.n_groups) == (80, 400)
    for metric in ("balanced_accuracy_ci", "macro_f1_ci", "macro_roc_auc_ci"):
        grouped, independent = width(getattr(by_patient, metric)), width(getattr(by_image, metric))
        assert grouped > 1.5 * independent, metric
        assert grouped == pytest.approx(width(getattr(one_each, metric)), rel=0.3), metric


def test_bootstrap_is_fast(rng):
    labels, probabilities, groups = synthetic(rng, 500)
    started = time.perf_counter()
    evaluate_predictions(labels, probabilities, CLASSES, groups=groups, n_bootstrap=1000)
    assert time.perf_counter() - started < 3.0  # about 0.2 s on a laptop core


def test_auc_is_nan_when_a_class_is_absent(rng):
    labels, probabilities, groups = synthetic(rng, 120, n_classes=3)
    labels = np.where(labels == 2, 1, labels)  # no pneumonia image left
    with pytest.warns(UserWarning, match="ROC AUC of 'pneumonia' is undefined"):
        result = evaluate_predictions(labels, probabilities, CLASSES, groups=groups)
    assert np.isnan(result.roc_auc["pneumonia"]) and np.isnan(result.macro_roc_auc)
    assert np.isnan(result.roc_auc_ci["pneumonia"][0]) and np.isnan(result.macro_roc_auc_ci[1])
    assert np.isfinite(result.roc_auc["covid19"]) and np.isnan(result.recall["pneumonia"])
    assert result.bootstrap_skipped["pneumonia"] == 1000
    assert "undefined" in result.summary()
    metrics = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert metrics["per_class"]["pneumonia"]["roc_auc"] is None and metrics["macro_roc_auc"] is None


def test_resamples_lacking_a_class_are_counted_and_flagged(rng):
    labels, probabilities, groups = synthetic(rng, 90)
    groups = ["rare" if label == 2 else group for label, group in zip(labels, groups)]  # one pneumonia patient
    with pytest.warns(UserWarning, match="More than 10% of the bootstrap resamples"):
        result = evaluate_predictions(labels, probabilities, CLASSES, groups=groups)
    assert 0.1 * 1000 < result.bootstrap_skipped["pneumonia"] < 1000  # about (1 - 1/G)^G of them
    assert result.bootstrap_skipped["pneumonia"] <= result.bootstrap_skipped["macro"]
    assert any("too narrow" in note for note in result.notes) and "too narrow" in result.summary()


def test_expected_calibration_error(rng):
    n = 20000
    confidence = rng.uniform(0.4, 1.0, n)
    correct = rng.random(n) < confidence  # right exactly as often as it says
    labels = np.where(correct, 0, 1)
    calibrated = np.stack([confidence, 1 - confidence], axis=1)
    assert expected_calibration_error(labels, calibrated) < 0.02
    overconfident = np.tile([0.95, 0.05], (n, 1))
    labels = (rng.random(n) < 0.4).astype(int)  # right 60% of the time, says 95%
    assert expected_calibration_error(labels, overconfident) == pytest.approx(0.35, abs=0.02)
    curve = reliability_curve(labels, overconfident)
    assert len(curve.count) == 15 and curve.count.sum() == n and curve.count[14] == n
    result = evaluate_predictions(labels[:300], overconfident[:300], ["a", "b"], n_bootstrap=0)
    assert result.ece > 0.1 and result.reliability_curve.count.sum() == 300


def test_temperature_fitting_recovers_a_known_temperature(rng):
    true_logits = rng.normal(0, 2.0, (6000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(true_logits, axis=1)])
    fitted = fit_temperature_from_logits(2.5 * true_logits, labels)  # overconfident by 2.5
    assert fitted == pytest.approx(2.5, rel=0.1)
    assert fit_temperature_from_logits(true_logits / 2, labels) == pytest.approx(0.5, rel=0.1)
    with pytest.raises(ValueError, match="integer labels"):
        fit_temperature_from_logits(true_logits, labels[:-1])


def brightness_split(rng, n, *, label_noise=0.0):
    """Images whose class sets their brightness; a share ``label_noise`` of labels redrawn at random."""
    true = np.arange(n) % 3
    images = rng.integers(0, 60, (n, 16, 16, 3)) + 60 * true[:, None, None, None] + rng.normal(0, 40, (n, 1, 1, 1))
    labels = np.where(rng.random(n) < label_noise, rng.integers(0, 3, n), true)
    records = [Sample(f"{i}.png", CLASSES[label], f"p{i}", "s") for i, label in enumerate(labels)]
    return ImageSet(images.clip(0, 255).astype(np.uint8), labels, records, CLASSES)


def test_calibrate_lowers_the_validation_nll(rng):
    train, validation = brightness_split(rng, 30), brightness_split(rng, 60, label_noise=0.2)
    model = cxrclassify.build_model("tinycnn", 3, weights=None, image_size=16, class_names=CLASSES)
    cxrclassify.train(model, (train, None), epochs=15, learning_rate=1e-2, progress=False)  # overfits: too sure
    before = cxrclassify.predict(model, validation).probabilities
    temperature = calibrate(model, validation)
    after = cxrclassify.predict(model, validation).probabilities
    assert model.temperature == temperature > 1.2
    assert model.metadata["calibration"]["temperature"] == temperature
    assert log_loss(validation.labels, after, labels=[0, 1, 2]) < log_loss(validation.labels, before, labels=[0, 1, 2])
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()  # no prediction changes
    assert fit_temperature(model, validation) == pytest.approx(temperature)  # from logits, whatever the current T
    result = cxrclassify.evaluate(model, validation, n_bootstrap=0)
    assert result.temperature == temperature and result.to_dict()["calibration"]["temperature"] == temperature
    with pytest.raises(ValueError, match="at least one image"):
        calibrate(model, ImageSet(validation.images[:0], validation.labels[:0], [], CLASSES))


def test_by_age_group_counts_add_up(rng):
    labels, probabilities, groups = synthetic(rng, 200)
    ages = [[4.0, 17.9, 18, 40, 64.9, 65, 90, None][i % 8] for i in range(200)]
    sources = ["kermany" if i % 3 else None for i in range(200)]
    result = evaluate_predictions(labels, probabilities, CLASSES, groups=groups, sources=sources, ages=ages)
    assert list(result.by_age_group) == list(AGE_GROUPS)
    assert [result.by_age_group[g]["n_images"] for g in AGE_GROUPS] == [50, 75, 50, 25]
    assert set(result.by_source) == {"kermany", "unknown"}
    for breakdown in (result.by_age_group, result.by_source):
        assert sum(v["n_images"] for v in breakdown.values()) == 200
        assert sum(v["n_correct"] for v in breakdown.values()) == result.n_correct
        assert sum(v["confusion_matrix"] for v in breakdown.values()).tolist() == result.confusion_matrix.tolist()
        for values in breakdown.values():
            assert {"n_images", "n_correct", "accuracy", "accuracy_ci", "confusion_matrix", "balanced_accuracy",
                    "recall"} <= set(values)
            matrix = values["confusion_matrix"]
            assert values["recall"]["normal"] == pytest.approx(matrix[1, 1] / matrix[1].sum())
            assert values["precision"]["normal"] == pytest.approx(matrix[1, 1] / matrix[:, 1].sum())
            negatives = np.delete(np.delete(matrix, 1, axis=0), 1, axis=1).sum()
            assert values["specificity"]["normal"] == pytest.approx(negatives / np.delete(matrix, 1, axis=0).sum())
            assert 0.0 <= values["macro_f1"] <= 1.0
    assert "age child (<18)" in result.summary() and "source unknown" in result.summary()
    assert evaluate_predictions(labels, probabilities, CLASSES, n_bootstrap=0).by_age_group == {}


def test_evaluate_breaks_down_by_recorded_age(rng):
    images = rng.integers(0, 255, (12, 16, 16, 3)).astype(np.uint8)
    labels = np.arange(12) % 3
    records = [Sample(f"{i}.png", CLASSES[label], f"p{i}", "s", age=[8.0, 30.0, 70.0, None][i % 4])
               for i, label in enumerate(labels)]
    model = cxrclassify.build_model("tinycnn", 3, weights=None, image_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = cxrclassify.evaluate(model, ImageSet(images, labels, records, CLASSES), n_bootstrap=50)
    assert {name: v["n_images"] for name, v in result.by_age_group.items()} == dict(zip(AGE_GROUPS, [3, 3, 3, 3]))
    assert result.predictions is not None and result.labels.tolist() == labels.tolist()


def test_by_site_reuses_the_breakdown_and_is_empty_without_sites(rng):
    labels, probabilities, groups = synthetic(rng, 90)
    sites = [["radiopaedia", "journal:nejm.org", None][i % 3] for i in range(90)]
    result = evaluate_predictions(labels, probabilities, CLASSES, groups=groups, sources=["ieee8023"] * 90,
                                  sites=sites, n_bootstrap=0)
    assert list(result.by_site) == ["journal:nejm.org", "radiopaedia", "unknown"]
    assert [v["n_images"] for v in result.by_site.values()] == [30, 30, 30]
    assert sum(v["n_correct"] for v in result.by_site.values()) == result.n_correct
    assert set(result.by_site["radiopaedia"]) == set(result.by_source["ieee8023"])  # the same metrics as by source
    assert "site journal:nejm.org: accuracy" in result.summary()
    assert json.loads(json.dumps(result.to_dict()))["by_site"]["unknown"]["n_images"] == 30
    assert evaluate_predictions(labels, probabilities, CLASSES, sites=[None] * 90, n_bootstrap=0).by_site == {}
    assert evaluate_predictions(labels, probabilities, CLASSES, n_bootstrap=0).to_dict()["by_site"] == {}
    images = rng.integers(0, 255, (6, 16, 16, 3)).astype(np.uint8)
    records = [Sample(f"{i}.png", CLASSES[i % 3], f"p{i}", "s", site=["h1", "h2"][i % 2]) for i in range(6)]
    model = cxrclassify.build_model("tinycnn", 3, weights=None, image_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluated = cxrclassify.evaluate(model, ImageSet(images, np.arange(6) % 3, records, CLASSES), n_bootstrap=0)
    assert {name: v["n_images"] for name, v in evaluated.by_site.items()} == {"h1": 3, "h2": 3}


def test_to_dict_is_strict_json(rng):
    labels, probabilities, groups = synthetic(rng, 60)
    result = evaluate_predictions(labels, probabilities, CLASSES, groups=groups, ages=[30] * 60, temperature=1.5)
    metrics = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert metrics["accuracy_ci"] == list(result.accuracy_ci) and metrics["confidence"] == 0.95
    assert set(metrics["per_class"]["covid19"]) >= {"sensitivity", "sensitivity_ci", "specificity", "precision",
                                                     "roc_auc", "roc_auc_ci", "n_images"}
    assert len(metrics["calibration"]["reliability_curve"]["count"]) == 15
    assert metrics["calibration"]["temperature"] == 1.5
    assert set(metrics["by_age_group"]) == {"adult (18-64)"}


def test_evaluate_predictions_refuses_bad_input():
    with pytest.raises(ValueError, match="sum to 1"):
        evaluate_predictions([0, 1], [[0.5, 0.2], [0.1, 0.9]], ["a", "b"])
    with pytest.raises(ValueError, match="labels in 0..1"):
        evaluate_predictions([0, 2], [[0.5, 0.5], [0.1, 0.9]], ["a", "b"])
    with pytest.raises(ValueError, match="2 distinct class names"):
        evaluate_predictions([0, 1], [[0.5, 0.5], [0.1, 0.9]], ["a"])
    with pytest.raises(ValueError, match="one entry of groups per image"):
        evaluate_predictions([0, 1], [[0.5, 0.5], [0.1, 0.9]], ["a", "b"], groups=["p"])
    with pytest.raises(ValueError, match="confidence level"):
        evaluate_predictions([0, 1], [[0.5, 0.5], [0.1, 0.9]], ["a", "b"], confidence=95)


def test_every_evaluation_figure_is_written_as_png_and_svg(rng, tmp_path):
    labels, probabilities, groups = synthetic(rng, 90)
    labels = np.where(labels == 2, 1, labels)  # a class without images: its curve is left out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_predictions(labels, probabilities, CLASSES, groups=groups, n_bootstrap=100)
    history = {"loss": [1.0, 0.6], "accuracy": [0.4, 0.7], "val_loss": [1.1, 0.8], "val_accuracy": [0.3, 0.6]}
    written = save_evaluation_figures(result, tmp_path / "figures", history=history)
    stems = {"confusion_matrix", "confusion_matrix_normalized", "roc_curves", "reliability_diagram", "training_curves"}
    assert {path.name for path in written} == {f"{stem}.{fmt}" for stem in stems for fmt in ("png", "svg")}
    for path in written:
        if path.suffix == ".png":
            assert Image.open(path).size[0] > 100
        else:
            text = path.read_text(encoding="utf-8")
            assert text.startswith("<?xml") or "<svg" in text
    assert plot_roc_curves(result, tmp_path / "roc.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    assert Image.open(plot_reliability_diagram(result, tmp_path / "reliability.png")).size[0] > 100
    with pytest.raises(ValueError, match="figure format"):
        plot_roc_curves(result, tmp_path / "roc.docx")
    with pytest.raises(ValueError, match="figure format"):
        save_evaluation_figures(result, tmp_path, formats=("png", "bmpx"))
