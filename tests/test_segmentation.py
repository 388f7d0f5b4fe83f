"""Lung segmentation: the U-Net, the shipped weights, segment_lungs and the lung crop / mask preprocessing."""

from __future__ import annotations

import csv
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrclassify.datasets import sample_dir
from cxrclassify.exceptions import (
    ArgumentError,
    ArgumentTypeError,
    ChecksumError,
    CxrError,
    DataWarning,
    ImageDecodeError,
    MissingFileError,
    ModelError,
)
from cxrclassify.segmentation import (
    SHIPPED_METADATA,
    build_lung_unet,
    clean_lung_mask,
    crop_to_lungs,
    dice_score,
    load_lung_unet,
    lung_box,
    lung_probabilities,
    mask_outside_lungs,
    read_lung_unet_metadata,
    segment_lungs,
    unet_input,
)

SAMPLE_MASKS = sorted((sample_dir() / "masks").glob("*/*.png"))


def two_lungs(height=60, width=80) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[10:50, 8:34] = True
    mask[12:52, 46:72] = True
    return mask


@pytest.fixture(scope="module")
def tiny_unet():
    return build_lung_unet(32, seed=3, base_filters=2, depth=2)


# --------------------------------------------------------------------------- the network


def test_tiny_unet_builds_and_runs_on_32_px(tiny_unet):
    output = tiny_unet.predict(np.zeros((2, 32, 32, 1), "float32"), verbose=0)
    assert output.shape == (2, 32, 32, 1)
    assert np.all((output >= 0) & (output <= 1))


def test_same_seed_same_weights_whatever_the_global_state():
    import keras

    keras.utils.set_random_seed(1)
    first = build_lung_unet(32, seed=5, base_filters=2, depth=2).get_weights()
    keras.utils.set_random_seed(2)
    second = build_lung_unet(32, seed=5, base_filters=2, depth=2).get_weights()
    other = build_lung_unet(32, seed=6, base_filters=2, depth=2).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("arguments", [{"input_size": 30}, {"input_size": 0}, {"input_size": 32.0},
                                       {"depth": 0}, {"base_filters": -1}, {"seed": True}])
def test_unet_refuses_bad_arguments(arguments):
    with pytest.raises(ArgumentError, match="Received:"):
        build_lung_unet(**{"input_size": 32, **arguments})


def test_unet_input_is_grayscale_at_the_network_size(rng):
    image = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    out = unet_input(image, 32)
    assert out.shape == (32, 32, 1) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255


def test_segment_lungs_with_a_given_model_keeps_each_image_size(tiny_unet, tmp_path):
    path = tmp_path / "film.png"
    Image.fromarray(np.full((45, 61), 90, np.uint8)).save(path)
    masks = segment_lungs([path, Image.new("RGB", (20, 33)), np.zeros((64, 48, 4), np.uint8)], model=tiny_unet)
    assert [mask.shape for mask in masks] == [(45, 61), (33, 20), (64, 48)]
    assert all(mask.dtype == np.bool_ for mask in masks)
    batch = segment_lungs(np.zeros((3, 40, 50, 1), np.uint8), model=tiny_unet, batch_size=2)
    assert isinstance(batch, np.ndarray) and batch.shape == (3, 40, 50) and batch.dtype == np.bool_
    assert segment_lungs([], model=tiny_unet) == []
    probabilities = lung_probabilities(np.zeros((40, 50), np.uint8), model=tiny_unet)
    assert probabilities.shape == (40, 50) and probabilities.dtype == np.float32


@pytest.mark.parametrize("arguments, error", [
    ({"threshold": 0}, ArgumentError), ({"threshold": 1.0}, ArgumentError), ({"threshold": "0.5"}, ArgumentError),
    ({"batch_size": 0}, ArgumentError), ({"batch_size": 2.5}, ArgumentError),
    ({"model": "lung_unet.weights.h5"}, ArgumentTypeError),
])
def test_segment_lungs_refuses_bad_arguments(tiny_unet, arguments, error):
    arguments = {"model": tiny_unet, **arguments}
    with pytest.raises(error, match="Received:"):
        segment_lungs(np.zeros((32, 32), np.uint8), **arguments)


def test_segment_lungs_refuses_bad_images_and_models(tiny_unet):
    import keras

    with pytest.raises(ArgumentTypeError, match="Received: images of type int"):
        segment_lungs(3, model=tiny_unet)
    with pytest.raises(ImageDecodeError):
        segment_lungs([np.zeros((4, 4, 2), np.uint8)], model=tiny_unet)
    with pytest.raises(CxrError):
        segment_lungs(["/nonexistent/film.png"], model=tiny_unet)
    rgb_model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(1, 1)])
    with pytest.raises(ModelError, match="Received: model with input shape"):
        segment_lungs(np.zeros((32, 32), np.uint8), model=rgb_model)


# --------------------------------------------------------------------------- post-processing, Dice


def test_clean_lung_mask_keeps_two_regions_and_fills_holes():
    mask = two_lungs()
    mask[30, 20] = False
    mask[2:4, 2:4] = True
    mask[55, 40] = True
    cleaned = clean_lung_mask(mask)
    assert np.array_equal(cleaned, two_lungs())
    assert not clean_lung_mask(np.zeros((5, 5), bool)).any()
    with pytest.raises(ArgumentError):
        clean_lung_mask(mask, keep=0)


def test_dice_score():
    mask = two_lungs()
    assert dice_score(mask, mask) == 1.0
    assert dice_score(mask, ~mask) == 0.0
    assert dice_score(np.zeros((3, 3), bool), np.zeros((3, 3), np.uint8)) == 1.0
    with pytest.raises(ArgumentError, match="same"):
        dice_score(mask, mask[:-1])
    with pytest.raises(ArgumentTypeError, match="threshold"):
        dice_score(mask.astype(float), mask)


# --------------------------------------------------------------------------- box, crop, mask


def test_lung_box_with_and_without_margin():
    mask = two_lungs()
    assert lung_box(mask, margin=0) == (10, 8, 52, 72)
    assert lung_box(mask) == (8, 5, 54, 75)  # 5% of 42 rows (2) and of 64 columns (3)
    assert lung_box(mask, margin=1) == (0, 0, 60, 80)  # clipped to the image
    assert lung_box(mask.astype(np.uint8) * 255, margin=0) == (10, 8, 52, 72)


def test_empty_mask_gives_the_whole_image_with_a_data_warning():
    image = np.full((20, 30), 77, np.uint8)
    empty = np.zeros((20, 30), bool)
    with pytest.warns(DataWarning, match="empty"):
        assert lung_box(empty) == (0, 0, 20, 30)
    with pytest.warns(DataWarning, match="uncropped"):
        assert crop_to_lungs(image, empty).shape == (20, 30, 3)
    with pytest.warns(DataWarning, match="nothing is masked"):
        assert np.all(mask_outside_lungs(image, empty) == 77)


def test_warning_points_at_the_caller():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lung_box(np.zeros((4, 4), bool))
    assert caught and Path(caught[0].filename).resolve() == Path(__file__).resolve()


def test_crop_to_lungs_is_the_box_of_the_rgb_image(rng):
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    mask = two_lungs()
    top, left, bottom, right = lung_box(mask)
    crop = crop_to_lungs(image, mask)
    assert crop.dtype == np.uint8 and np.array_equal(crop, image[top:bottom, left:right])
    assert crop_to_lungs(Image.fromarray(image), mask, margin=0).shape == (42, 64, 3)


def test_mask_outside_lungs_fills_outside_the_dilated_mask(rng):
    image = rng.integers(1, 255, (60, 80), dtype=np.uint8)
    mask = two_lungs()
    out = mask_outside_lungs(image, mask, dilation=0)
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert np.all(out[~mask] == 0) and np.array_equal(out[mask][:, 0], image[mask])
    grown = mask_outside_lungs(image, mask, dilation=0.05)  # 4 px
    kept = grown[..., 0] > 0
    assert kept.sum() > mask.sum() and kept[10, 5] and not kept[10, 2]
    coloured = mask_outside_lungs(image, mask, fill=(255, 0, 10), dilation=0)
    assert coloured[0, 0].tolist() == [255, 0, 10]


@pytest.mark.parametrize("call, error", [
    (lambda: lung_box([[1, 0]]), ArgumentTypeError),
    (lambda: lung_box(np.zeros((2, 2, 2), bool)), ArgumentError),
    (lambda: lung_box(np.zeros((0, 3), bool)), ArgumentError),
    (lambda: lung_box(np.ones((4, 4), np.float32)), ArgumentTypeError),
    (lambda: lung_box(two_lungs(), margin=-0.1), ArgumentError),
    (lambda: lung_box(two_lungs(), margin="5%"), ArgumentError),
    (lambda: crop_to_lungs(np.zeros((60, 81), np.uint8), two_lungs()), ArgumentError),
    (lambda: mask_outside_lungs(np.zeros((60, 80), np.uint8), two_lungs(), fill=300), ArgumentError),
    (lambda: mask_outside_lungs(np.zeros((60, 80), np.uint8), two_lungs(), fill=0.5), ArgumentTypeError),
    (lambda: mask_outside_lungs(np.zeros((60, 80), np.uint8), two_lungs(), dilation=2), ArgumentError),
    (lambda: crop_to_lungs(object(), two_lungs()), ArgumentTypeError),
])
def test_preprocessing_refuses_bad_inputs(call, error):
    with pytest.raises(error, match="Received"):
        call()


def test_pure_functions_do_not_change_their_inputs(rng):
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    mask = two_lungs()
    before = image.copy(), mask.copy()
    crop_to_lungs(image, mask)
    mask_outside_lungs(image, mask)
    assert np.array_equal(image, before[0]) and np.array_equal(mask, before[1])
    assert np.array_equal(mask_outside_lungs(image, mask), mask_outside_lungs(image, mask))


# --------------------------------------------------------------------------- shipped weights


def test_shipped_weights_are_small_and_described():
    facts = read_lung_unet_metadata()
    weights = SHIPPED_METADATA.parent / facts["weights_file"]
    assert weights.stat().st_size <= 10 * 2**20
    assert facts["dice"]["test"]["dice_mean"] >= 0.90
    assert (SHIPPED_METADATA.parent.parent / "MODEL_CARD.md").is_file()


def test_tampered_weights_raise_a_checksum_error_naming_the_file(tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(SHIPPED_METADATA.parent, folder)
    weights = folder / read_lung_unet_metadata()["weights_file"]
    content = bytearray(weights.read_bytes())
    content[-100] ^= 0xFF
    weights.write_bytes(bytes(content))
    with pytest.raises(ChecksumError, match=r"lung_unet\.weights\.h5.*Received: a file of \d+ bytes with sha256"):
        load_lung_unet(folder / SHIPPED_METADATA.name)
    with pytest.raises(OSError):  # a ChecksumError is an OSError too
        load_lung_unet(folder / SHIPPED_METADATA.name)


def test_bad_metadata_files_raise_library_errors(tmp_path):
    with pytest.raises(MissingFileError):
        load_lung_unet(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelError, match="not JSON"):
        load_lung_unet(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ModelError, match="without"):
        load_lung_unet(tmp_path / "other.json")
    facts = read_lung_unet_metadata()
    (tmp_path / "lonely.json").write_text(json.dumps(facts))
    with pytest.raises(MissingFileError, match="weights file"):
        load_lung_unet(tmp_path / "lonely.json")
    with pytest.raises(ArgumentTypeError):
        load_lung_unet(3)


def test_shipped_model_is_loaded_once():
    assert load_lung_unet() is load_lung_unet()


def sample_pairs():
    pairs = []
    for mask in SAMPLE_MASKS:
        images = list((sample_dir() / "images" / mask.parent.name).glob(mask.stem + ".*"))
        pairs.append((images[0], mask))
    return pairs


def test_sample_masks_are_shipped_for_sample_images():
    pairs = sample_pairs()
    assert 1 <= len(pairs) <= 3
    with open(sample_dir() / "manifest.csv", newline="") as handle:
        listed = {row["path"] for row in csv.DictReader(handle)}
    for image, mask in pairs:
        assert f"images/{image.parent.name}/{image.name}" in listed
        assert Image.open(mask).size == Image.open(image).size


@pytest.mark.parametrize("pair", sample_pairs(), ids=lambda pair: pair[0].name)
def test_shipped_model_segments_a_sample_image(pair):
    image, mask = pair
    reference = np.asarray(Image.open(mask).convert("L")) > 127
    predicted = segment_lungs(image)
    assert predicted.shape == reference.shape
    assert dice_score(predicted, reference) >= 0.85


def test_segmenting_when_no_mask_is_given():
    image, mask = sample_pairs()[0]
    reference = np.asarray(Image.open(mask).convert("L")) > 127
    crop = crop_to_lungs(image)
    top, left, bottom, right = lung_box(reference)
    assert abs(crop.shape[0] - (bottom - top)) < 0.15 * (bottom - top)
    assert abs(crop.shape[1] - (right - left)) < 0.15 * (right - left)
    masked = mask_outside_lungs(image)
    assert masked.shape == reference.shape + (3,)


# --------------------------------------------------------------------------- real masks from ../shared


@pytest.mark.integration
def test_shipped_model_on_held_out_shared_masks(shared_data):
    """The held-out test patients of the shipped model (read from its metadata), at the masks' own resolution."""
    facts = read_lung_unet_metadata()
    test_patients = set(facts["split"]["test_patients"])
    assert set(facts["split"]["forced_into_test"]) <= test_patients
    meta = {}
    with open(shared_data / "ieee8023-covid-chestxray" / "metadata.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            meta[row["filename"]] = row["patientid"]
    with open(shared_data / "ieee8023-lung-masks" / "masks.csv", newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle)
                if row["source"] == "v7labs" and meta.get(row["filename"]) in test_patients]
    assert len(rows) >= 50
    start = time.perf_counter()
    images = [shared_data / "ieee8023-covid-chestxray" / "images" / row["filename"] for row in rows]
    masks = segment_lungs(images)
    scores = []
    for row, predicted in zip(rows, masks):
        reference = np.asarray(Image.open(shared_data / "ieee8023-lung-masks" / row["mask"]).convert("L")) > 127
        assert predicted.shape == reference.shape
        scores.append(dice_score(predicted, reference))
    assert np.mean(scores) >= 0.90, scores
    assert min(scores) >= 0.7, scores
    assert time.perf_counter() - start < 30
