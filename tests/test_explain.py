"""grad_cam through the nested frozen base; overlays."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

import cxrclassify
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.explain import overlay_heatmap


@pytest.mark.parametrize("arch, size", [("vgg16", 32), ("resnet50", 32), ("xception", 71)])
def test_heatmap_through_nested_frozen_base(arch, size):
    """No 'graph disconnected' error, no None gradient, a map in [0, 1] at the image's own size."""
    keras.utils.set_random_seed(0)
    model = cxrclassify.build_model(arch, 3, weights=None, image_size=size)
    image = np.random.default_rng(0).integers(0, 255, (90, 120), dtype=np.uint8)
    for class_index in (None, 0, 2):
        heatmap = cxrclassify.grad_cam(model, image, class_index)
        assert heatmap.shape == (90, 120) and heatmap.dtype == np.float32
        assert np.isfinite(heatmap).all() and heatmap.min() >= 0 and heatmap.max() <= 1


def _quadrant_data(rng, n=60, size=32):
    """Class 'marked' has a bright square in the top-left quadrant; 'plain' does not."""
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    labels = np.arange(n) % 2
    for image, label in zip(images, labels):
        if label:
            top, left = rng.integers(2, size // 2 - 8, 2)
            image[top:top + 6, left:left + 6] = 255
    records = [Sample(f"q{i}.png", ["plain", "marked"][label], f"p{i}") for i, label in enumerate(labels)]
    return ImageSet(images, labels, records, ["plain", "marked"])


def test_heatmap_mass_lies_where_the_evidence_is(rng):
    keras.utils.set_random_seed(0)
    data = _quadrant_data(rng)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=32, head="gap", freeze_base=False)
    cxrclassify.train(model, (data, None), epochs=30, batch_size=10, learning_rate=3e-3, progress=False)
    marked = [image for image, label in zip(data.images, data.labels) if label == 1][:10]
    shares = []
    for image in marked:
        heatmap = cxrclassify.grad_cam(model, image, class_index=1)
        shares.append(heatmap[:16, :16].sum() / max(heatmap.sum(), 1e-9))
    assert cxrclassify.evaluate(model, data).accuracy > 0.9
    assert np.median(shares) > 0.5  # a quarter of the image holds most of the map


def test_class_index_out_of_range():
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    with pytest.raises(ValueError, match="class_index between 0 and 1"):
        cxrclassify.grad_cam(model, np.zeros((16, 16)), class_index=2)


def test_unknown_layer_names_candidates():
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    with pytest.raises(ValueError, match="Layer 'block99' is not in the 'tinycnn' base"):
        cxrclassify.grad_cam(model, np.zeros((16, 16)), layer="block99")


def test_named_layer_is_used():
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    assert cxrclassify.grad_cam(model, np.zeros((16, 16)), layer="conv1").shape == (16, 16)


def test_overlay_png(tmp_path):
    image = np.tile(np.arange(40, dtype=np.uint8), (30, 1))
    heatmap = np.zeros((3, 4), np.float32)
    heatmap[0, 0] = 1.0
    path = cxrclassify.save_gradcam_overlay(image, heatmap, tmp_path / "sub" / "overlay.png", alpha=0.5)
    written = np.asarray(Image.open(path))
    assert written.shape == (30, 40, 3)
    assert written[0, 0, 0] > written[0, 0, 2]  # hot corner is red in "jet"
    np.testing.assert_array_equal(overlay_heatmap(image, heatmap, alpha=0.0)[..., 0], image)
    with pytest.raises(ValueError, match="alpha between 0 and 1"):
        overlay_heatmap(image, heatmap, alpha=2)
