"""evaluate, its confidence intervals and per-source breakdown; the plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import cxrclassify
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.evaluation import wilson_interval


def test_wilson_interval_of_the_papers_score():
    low, high = wilson_interval(73, 75)
    assert (round(low * 100, 1), round(high * 100, 1)) == (90.8, 99.3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


def test_evaluation_counts_add_up_and_break_down_by_source(rng):
    images = rng.integers(0, 255, (30, 16, 16, 3)).astype(np.uint8)
    labels = np.arange(30) % 3
    records = [Sample(f"{i}.png", ["a", "b", "c"][label], f"p{i}", ["s1", "s2"][i % 2]) for i, label in enumerate(labels)]
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
