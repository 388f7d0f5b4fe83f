"""The linear recipe (an L2 logistic regression as the gap head) and site-balanced weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import cxrclassify
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.exceptions import ArgumentError
from cxrclassify.linear_head import balancing_weights, fit_linear_head, set_gap_head
from cxrclassify.models.ood import pooled_features


def test_site_weights_give_every_site_of_a_class_the_same_total():
    labels = np.array([0] * 9 + [1] * 3)
    sites = ["big"] * 8 + ["small"] + ["x", "y", "y"]
    weights = balancing_weights(labels, class_weight=None, sites=sites)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[:8].sum() == pytest.approx(weights[8])  # big and small weigh the same in class 0
    assert weights[9] == pytest.approx(weights[10:12].sum())
    balanced = balancing_weights(labels, sites=sites)  # and the classes weigh the same
    assert balanced[:9].sum() == pytest.approx(balanced[9:].sum())
    with pytest.raises(ArgumentError, match="one site per sample"):
        balancing_weights(labels, sites=sites[:3])


def test_linear_head_is_sklearns_regression_on_standardised_features():
    rng = np.random.default_rng(1)
    labels = np.arange(90) % 3
    features = rng.normal(size=(90, 6)) + np.eye(3, 6)[labels] * 1.5
    head = fit_linear_head(features, labels, num_classes=3, c=0.1)
    standardised = (features - features.mean(0)) / features.std(0)
    reference = LogisticRegression(C=0.1, max_iter=2000, tol=1e-6).fit(standardised, labels)
    np.testing.assert_allclose(head.predict_proba(features), reference.predict_proba(standardised), atol=1e-5)


def test_c_is_chosen_by_validation_log_loss_and_an_absent_class_gets_no_probability():
    rng = np.random.default_rng(2)
    labels = np.arange(60) % 2
    features = rng.normal(size=(60, 20)) + labels[:, None] * 0.5
    head = fit_linear_head(features[:40], labels[:40], num_classes=3, validation=(features[40:], labels[40:]))
    assert head.c == min(head.validation_log_loss, key=head.validation_log_loss.get)
    assert head.predict_proba(features)[:, 2].max() < 1e-9
    with pytest.raises(ArgumentError, match="at least two classes"):
        fit_linear_head(features, np.zeros(60, int), num_classes=2)
    with pytest.raises(ArgumentError, match=r"labels in \[0, 2\)"):
        fit_linear_head(features, labels + 1, num_classes=2)


def test_train_linear_makes_the_model_compute_the_regression():
    data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    model = cxrclassify.build_model("vgg16", 3, weights=None, image_size=32, head="gap")
    history = cxrclassify.train(model, data, recipe="linear", progress=False)
    assert sorted(history) == ["accuracy", "loss", "val_accuracy", "val_loss"] and len(history["loss"]) == 1
    record = model.metadata["training"]
    assert record["recipe"] == "linear" and record["linear_c"] in (0.001, 0.01, 0.1, 1.0)
    assert model.ood.is_fitted
    head = fit_linear_head(pooled_features(model, data.train.images), data.train.labels, num_classes=3,
                           sample_weight=balancing_weights(data.train.labels), c=record["linear_c"])
    np.testing.assert_allclose(cxrclassify.predict(model, data.test.images).probabilities,
                               head.predict_proba(pooled_features(model, data.test.images)), atol=1e-4)
    again = cxrclassify.build_model("vgg16", 3, weights=None, image_size=32, head="gap")
    cxrclassify.train(again, data, recipe="linear", progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))


def test_train_linear_refuses_what_it_cannot_fit():
    data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    paper_head = cxrclassify.build_model("vgg16", 3, weights=None, image_size=32)
    with pytest.raises(ArgumentError, match="head='gap'"):
        cxrclassify.train(paper_head, data, recipe="linear", progress=False)
    trainable = cxrclassify.build_model("vgg16", 3, weights=None, image_size=32, head="gap", freeze_base=False)
    with pytest.raises(ArgumentError, match="frozen base"):
        cxrclassify.train(trainable, data, recipe="linear", progress=False)
    with pytest.raises(ArgumentError, match="lr_schedule"):
        cxrclassify.train(cxrclassify.build_model("vgg16", 3, weights=None, image_size=32, head="gap"), data,
                          recipe="linear", lr_schedule="cosine", progress=False)
    with pytest.raises(ArgumentError, match="'gap' head"):
        set_gap_head(paper_head, fit_linear_head(np.eye(4), [0, 1, 0, 1], num_classes=2))


def _two_site_set(seed: int) -> ImageSet:
    """Class 0 from a big site (bright) and a small one (dark); class 1 from one site (mid-grey)."""
    rng = np.random.default_rng(seed)
    levels = [200] * 18 + [40] * 2 + [120] * 20
    sites = ["big"] * 18 + ["small"] * 2 + ["mid"] * 20
    labels = np.array([0] * 20 + [1] * 20)
    images = np.stack([np.clip(rng.normal(level, 20, (32, 32, 3)), 0, 255).astype(np.uint8) for level in levels])
    records = [Sample(f"{site}{i}.png", "ab"[label], group=f"p{i}", site=site)
               for i, (site, label) in enumerate(zip(sites, labels))]
    return ImageSet(images, labels, records, ["a", "b"])


def test_site_balanced_training_changes_the_weights_and_is_recorded():
    train_set = _two_site_set(0)
    results = {}
    for balanced in (False, True):
        model = cxrclassify.build_model("vgg16", 2, weights=None, image_size=32, head="gap")
        cxrclassify.train(model, (train_set, None), epochs=2, site_balanced=balanced, progress=False, fit_ood=False)
        results[balanced] = model
        assert model.metadata["training"]["site_balanced"] is balanced
    assert not np.allclose(results[False].head.get_weights()[0], results[True].head.get_weights()[0])
