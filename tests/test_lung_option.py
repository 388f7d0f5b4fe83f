"""The classifier's ``lungs`` option: from load_datasets to train, predict, grad_cam and a saved model.

The segmenter is replaced by a fake that draws a known box, so that each step's
geometry can be checked exactly; the shipped segmenter itself is tested in
tests/test_segmentation.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.exceptions import ArgumentError
from cxrclassify.segmentation import lungs as segmenter
from cxrclassify.segmentation.options import check_lungs, prepare_lung_fields


def box_of(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The fake lungs: rows 25%..75%, columns 10%..60% of the image."""
    height, width = shape[:2]
    return height // 4, width // 10, 3 * height // 4, 6 * width // 10


@pytest.fixture
def fake_segmenter(monkeypatch):
    calls = []

    def segment(images, *, batch_size=16, **_):
        calls.append(len(images))
        masks = []
        for image in images:
            top, left, bottom, right = box_of(np.asarray(image).shape)
            mask = np.zeros(np.asarray(image).shape[:2], dtype=bool)
            mask[top:bottom, left:right] = True
            masks.append(mask)
        return masks

    monkeypatch.setattr(segmenter, "segment_lungs", segment)
    return calls


def noisy_image(seed: int, shape=(60, 80)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def test_check_lungs_names_the_bad_value():
    assert [check_lungs(value) for value in (None, "crop", "mask")] == [None, "crop", "mask"]
    for bad in ("lungs", True, 1):
        with pytest.raises(ArgumentError, match=r"Expected lungs to be None, 'crop' or 'mask'. Received: lungs="):
            check_lungs(bad)
    with pytest.raises(ArgumentError, match="lungs='box'"):
        cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, lungs="box")
    with pytest.raises(ArgumentError, match="lungs='box'"):
        cxrclassify.load_datasets("sample", image_size=16, lungs="box", progress=False)


def test_crop_and_mask_follow_the_segmented_lungs(fake_segmenter):
    images = [noisy_image(0), noisy_image(1, (90, 50))]
    cropped, boxes = prepare_lung_fields(images, "crop")
    for box, image in zip(boxes, images):  # the fake lungs' box, widened by lung_box's 5% margin
        top, left, bottom, right = box_of(image.shape)
        assert box == (top - round(0.05 * (bottom - top)), left - round(0.05 * (right - left)),
                       bottom + round(0.05 * (bottom - top)), right + round(0.05 * (right - left)))
    for image, crop, (top, left, bottom, right) in zip(images, cropped, boxes):
        np.testing.assert_array_equal(crop, image[top:bottom, left:right])
    masked, whole = prepare_lung_fields(images, "mask")
    assert whole == [(0, 0, 60, 80), (0, 0, 90, 50)]
    assert masked[0].shape == images[0].shape and (masked[0][0, -1] == 0).all()  # a corner far from the lungs
    np.testing.assert_array_equal(masked[0][30, 20], images[0][30, 20])  # inside the lungs: kept
    assert fake_segmenter == [2, 2]  # one pass of the segmenter per call, not one per image


def test_load_datasets_records_the_option_and_train_checks_it(fake_segmenter):
    data = cxrclassify.load_datasets("sample", image_size=32, lungs="crop", progress=False)
    assert {split.lungs for _, split in data.items()} == {"crop"}
    whole = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    assert [split.paths for _, split in data.items()] == [split.paths for _, split in whole.items()]
    assert not np.array_equal(data.train.images, whole.train.images)
    plain = cxrclassify.build_model("tinycnn", 3, weights=None, image_size=32)
    with pytest.raises(ArgumentError, match=r"lungs=None\. Received: images loaded with lungs='crop'"):
        cxrclassify.train(plain, data, epochs=1, progress=False)
    cropping = cxrclassify.build_model("tinycnn", 3, weights=None, image_size=32, lungs="crop")
    history = cxrclassify.train(cropping, data, epochs=1, progress=False, fit_ood=False)
    assert len(history["loss"]) == 1


def test_predict_and_grad_cam_apply_the_model_option(fake_segmenter, tmp_path):
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=32, lungs="crop")
    images = [noisy_image(2), noisy_image(3)]
    result = cxrclassify.predict(model, images)
    cropped, boxes = prepare_lung_fields(images, "crop")
    same = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=32)
    same.set_weights(model.get_weights())
    np.testing.assert_allclose(result.probabilities, cxrclassify.predict(same, cropped).probabilities, atol=1e-6)
    heatmaps = cxrclassify.grad_cam(model, images)
    for heatmap, (top, left, bottom, right) in zip(heatmaps, boxes):
        assert heatmap.shape == (60, 80)
        outside = np.ones_like(heatmap, dtype=bool)
        outside[top:bottom, left:right] = False
        assert (heatmap[outside] == 0).all()  # the map lies in the crop the model saw


def test_a_saved_model_keeps_the_option(tmp_path, fake_segmenter):
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=32, lungs="mask")
    assert model.get_config()["lungs"] == "mask"
    model.save(tmp_path / "masked.keras")
    again = cxrclassify.load_model(tmp_path / "masked.keras")
    assert again.lungs == "mask"
    images = [noisy_image(4)]
    np.testing.assert_allclose(cxrclassify.predict(again, images).probabilities,
                               cxrclassify.predict(model, images).probabilities, atol=1e-6)


def test_an_image_set_built_by_hand_has_no_lung_option():
    split = ImageSet(np.zeros((1, 8, 8, 3), np.uint8), np.array([0]), [Sample("a.png", "x")], ["x"])
    assert split.lungs is None
