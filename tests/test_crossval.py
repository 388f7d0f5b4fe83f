"""Leave-one-source-out validation: folds, held-out counts, unseen classes, a shortcut that does not carry over."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cxrclassify.crossval import leave_one_source_out, pool_splits, subset
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.exceptions import DataError

CLASSES = ["disease", "healthy"]


def _images(rng, plan):
    """``plan``: (source, label, n, marker) rows; the marker is where the class evidence sits."""
    images, labels, records = [], [], []
    for source, label, count, marker in plan:
        for index in range(count):
            image = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
            if source.startswith("bright"):  # another hospital's exposure: the whole film lighter
                image += 170
            if marker == "left":
                image[:, :4] = 250
            elif marker == "right":
                image[:, -4:] = 250
            images.append(image)
            labels.append(CLASSES.index(label))
            records.append(Sample(f"{source}/{label}{index}.png", label, f"{source}-p{index // 2}", source))
    return ImageSet(np.stack(images), np.array(labels), records, list(CLASSES))


def _run(data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return leave_one_source_out(data, "tinycnn", build_options={"weights": None, "head": "gap", "freeze_base": False},
                                    train_options={"epochs": 40, "batch_size": 8, "learning_rate": 3e-3,
                                                   "progress": False}, n_bootstrap=0, **options)


def test_each_source_is_held_out_once_and_tested_whole(rng):
    data = _images(rng, [("a", "disease", 12, "left"), ("a", "healthy", 12, None),
                         ("b", "disease", 12, "left"), ("b", "healthy", 12, None)])
    result = _run(data)
    assert [fold.held_out for fold in result.folds] == ["a", "b"]
    for fold in result.folds:
        assert fold.n_test == 24 and fold.n_train + fold.n_validation == 24
        assert fold.evaluation.by_source == {fold.held_out: fold.evaluation.by_source[fold.held_out]}
        assert fold.unseen_classes == []
        assert fold.evaluation.accuracy > 0.8  # the evidence is the same in both sources: it carries over
    assert "a: 24 test images" in result.summary()
    assert result.to_dict()["folds"][1]["held_out"] == "b"


def test_a_source_shortcut_collapses_on_the_held_out_source(rng):
    """In source a the disease sits left; in b a right-hand marker only tells b apart: held out, b fails."""
    data = _images(rng, [("a", "disease", 16, "left"), ("a", "healthy", 16, None),
                         ("b", "disease", 16, "right"), ("b", "healthy", 16, "right"),
                         ("c", "disease", 16, "left"), ("c", "healthy", 16, None)])
    result = _run(data, sources=["b", "c"])
    assert result["c"].evaluation.accuracy > 0.8
    assert result["b"].evaluation.accuracy < result["c"].evaluation.accuracy


def test_the_ood_flag_is_measured_on_the_held_out_source_and_on_validation(rng):
    data = _images(rng, [("a", "disease", 16, "left"), ("a", "healthy", 16, None),
                         ("bright", "disease", 16, "left"), ("bright", "healthy", 16, None)])
    result = _run(data, sources=["bright"])
    fold = result["bright"]
    assert fold.ood_flagged > 0.9 > fold.ood_flagged_validation  # a new exposure is flagged, the old is not
    assert result.to_dict()["folds"][0]["ood_flagged"] == fold.ood_flagged
    assert "flagged out-of-distribution" in result.summary()


def test_classes_only_one_source_has_are_reported(rng):
    data = _images(rng, [("a", "disease", 8, "left"), ("a", "healthy", 8, None), ("b", "healthy", 8, None)])
    result = _run(data, sources=["a"])
    assert result["a"].unseen_classes == ["disease"]
    assert "never seen in training: disease" in result.summary()


def test_bad_inputs_are_named(rng):
    one_source = _images(rng, [("a", "disease", 4, "left"), ("a", "healthy", 4, None)])
    with pytest.raises(DataError, match="at least two sources"):
        _run(one_source)
    two = _images(rng, [("a", "disease", 4, "left"), ("b", "healthy", 4, None)])
    with pytest.raises(DataError, match=r"Received: sources=\['z'\]"):
        _run(two, sources=["z"])
    two.records[0] = Sample("nameless.png", "disease", "p0", None)
    with pytest.raises(DataError, match="nameless.png"):
        _run(two)
    with pytest.raises(TypeError, match="CxrClassifier"):
        leave_one_source_out(_images(rng, [("a", "disease", 4, None), ("b", "disease", 4, None)]), lambda: "model")


def test_pool_and_subset_keep_records_with_images(rng):
    data = _images(rng, [("a", "disease", 3, "left"), ("b", "healthy", 3, None)])
    picked = subset(data, [4, 0])
    assert picked.paths == [data.paths[4], data.paths[0]]
    assert np.array_equal(picked.images[0], data.images[4]) and picked.labels.tolist() == [1, 0]
    assert pool_splits(data) is data
