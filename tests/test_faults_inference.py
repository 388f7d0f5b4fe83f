"""Regression tests of predict / explain_images / ``cxrclassify explain`` on bad or ambiguous input.

One section per reported fault: ambiguous 3-D arrays, bad arguments, ``Predictions == Predictions``,
folders with some unreadable files (``on_error``), and the CLI's ``nan`` OOD scores.
"""

from __future__ import annotations

import csv
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cxrclassify
from cxrclassify import cli
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.exceptions import (
    ArgumentError,
    ArgumentTypeError,
    CxrError,
    DataWarning,
    ImageDecodeError,
)
from cxrclassify.explain import explain_images
from cxrclassify.inference import Predictions, SkippedInput

CLASSES = ["covid19", "normal"]


@pytest.fixture(scope="module")
def model():
    return cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, class_names=CLASSES)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """a.png, b.png (corrupt), c.jpg, d.png (empty file), e.png: three good images, two bad."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "c.jpg", "e.png"):
        Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(folder / name)
    (folder / "b.png").write_bytes(b"not an image")
    (folder / "d.png").write_bytes(b"")
    return folder


def _data_warnings(record) -> list[warnings.WarningMessage]:
    return [item for item in record if issubclass(item.category, DataWarning)]


# 1. Batch rules for arrays ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 40, 2), (5, 40, 40), (3, 20, 24)])
def test_ambiguous_3d_array_is_refused_with_the_ways_to_pass_it(model, shape):
    with pytest.raises(ArgumentError, match=r"\(N, H, W, 1\).*list of \(H, W\) arrays.*one image as \(H, W\)"
                                            rf".*Received: inputs.shape={re.escape(str(shape))}$"):
        cxrclassify.predict(model, np.zeros(shape, np.uint8))


@pytest.mark.parametrize("shape", [(40,), (2, 20, 20, 2), (2, 20, 20, 5), (1, 2, 20, 20, 1), ()])
def test_array_that_is_neither_an_image_nor_a_batch_is_refused(model, shape):
    with pytest.raises(ArgumentError, match=r"Received: inputs.shape="):
        cxrclassify.predict(model, np.zeros(shape, np.uint8))


@pytest.mark.parametrize("shape, count", [((20, 24), 1), ((20, 24, 1), 1), ((20, 24, 3), 1), ((20, 24, 4), 1),
                                          ((5, 20, 24, 1), 5), ((2, 20, 24, 3), 2), ((3, 20, 24, 4), 3)])
def test_images_and_batches_by_the_documented_rules(model, shape, count):
    result = cxrclassify.predict(model, np.full(shape, 100, np.uint8))
    assert len(result) == count and result.inputs == [f"<array {i}>" for i in range(count)]


def test_grayscale_batch_as_4d_or_as_a_list_gives_the_same_predictions(model):
    images = np.random.default_rng(0).integers(0, 255, (5, 20, 24), dtype=np.uint8)
    assert cxrclassify.predict(model, images[..., None]) == cxrclassify.predict(model, list(images))


def test_lists_of_arrays_of_any_size_keep_working(model):
    images = [np.zeros((20, 24), np.uint8), np.full((30, 18, 3), 200, np.uint8), np.ones((12, 12, 1), np.uint8)]
    assert len(cxrclassify.predict(model, images)) == 3


def test_grad_cam_and_explain_images_follow_the_same_rules(model, tmp_path):
    with pytest.raises(ArgumentError, match="Ambiguous image array"):
        cxrclassify.grad_cam(model, np.zeros((5, 40, 40), np.uint8))
    with pytest.raises(ArgumentError, match="Ambiguous image array"):
        explain_images(model, np.zeros((40, 40, 2), np.uint8), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was written


# 2. Bad arguments ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "4"])
def test_batch_size_must_be_a_positive_integer(model, batch_size):
    with pytest.raises(ArgumentError, match=r"batch_size to be a positive integer. Received: batch_size="):
        cxrclassify.predict(model, np.zeros((20, 20), np.uint8), batch_size=batch_size)


def test_object_array_is_a_cxr_error(model):
    with pytest.raises(ImageDecodeError, match=r"Received: inputs.dtype=object"):
        cxrclassify.predict(model, np.array([["a", "b"], ["c", "d"]], dtype=object))
    with pytest.raises(CxrError, match=r"dtype="):
        cxrclassify.predict(model, np.array([["a", "b"], ["c", "d"]]))  # a string array
    with pytest.raises(ImageDecodeError, match=r"Could not decode <array 1>: .*Received: dtype=object"):
        cxrclassify.predict(model, [np.zeros((20, 20)), np.array([["a", "b"], ["c", "d"]], dtype=object)])


@pytest.mark.parametrize("inputs, type_name", [({"x.png": 0}, "dict"), (b"\x89PNG", "bytes"), (None, "NoneType"),
                                               (3, "int")])
def test_other_input_types_name_the_argument(model, inputs, type_name):
    with pytest.raises(ArgumentTypeError, match=rf"Received: inputs of type {type_name}$"):
        cxrclassify.predict(model, inputs)


def test_model_and_on_error_are_checked(model):
    with pytest.raises(ArgumentTypeError, match="Received: model of type str"):
        cxrclassify.predict("model.keras", np.zeros((20, 20), np.uint8))
    for on_error in ("ignore", None, True):
        with pytest.raises(ArgumentError, match=rf"Received: on_error={on_error!r}$"):
            cxrclassify.predict(model, np.zeros((20, 20), np.uint8), on_error=on_error)


# 3. Predictions equality ----------------------------------------------------------------------------------------


def test_predictions_compare_by_value_and_are_not_hashable(model):
    images = np.random.default_rng(0).integers(0, 255, (3, 20, 20, 1), dtype=np.uint8)
    first, second = cxrclassify.predict(model, images), cxrclassify.predict(model, images)
    assert np.isnan(first.ood_scores).all()  # unfitted: nan == nan here
    assert first == second and not first != second
    assert first != cxrclassify.predict(model, images[:2])
    assert first != cxrclassify.predict(model, images[::-1])
    changed = cxrclassify.predict(model, images)
    changed.probabilities[0, 0] += 1e-3
    assert first != changed
    assert first != "not predictions" and first != None  # noqa: E711
    with pytest.raises(TypeError, match="unhashable"):
        hash(first)


def test_predictions_equality_counts_skipped():
    base = dict(probabilities=np.array([[0.5, 0.5]]), class_indices=np.array([0]), labels=["a"],
                class_names=["a", "b"], inputs=["x.png"], ood_scores=np.array([np.nan], np.float32))
    assert Predictions(**base) == Predictions(**base)
    assert Predictions(**base) != Predictions(**base, skipped=[SkippedInput(1, "y.png", "broken")])


# 4. Folders with some bad files (on_error) ----------------------------------------------------------------------


def test_bad_file_raises_by_default_and_names_it(model, mixed_folder):
    with pytest.raises(ImageDecodeError, match="b.png"):
        cxrclassify.predict(model, mixed_folder)


def test_skip_keeps_the_good_predictions_in_input_order(model, mixed_folder, caplog):
    good = [str(mixed_folder / name) for name in ("a.png", "c.jpg", "e.png")]
    with caplog.at_level(logging.WARNING, logger="cxrclassify"), warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = cxrclassify.predict(model, mixed_folder, on_error="skip", batch_size=2)
    alone = cxrclassify.predict(model, good)
    assert result.inputs == alone.inputs == good and result.labels == alone.labels
    np.testing.assert_allclose(result.probabilities, alone.probabilities, atol=1e-6)
    assert [(item.index, Path(item.input).name) for item in result.skipped] == [(1, "b.png"), (3, "d.png")]
    assert all("Could not decode image file" in item.reason for item in result.skipped)
    data_warnings = _data_warnings(record)
    assert len(data_warnings) == 1 and "Skipped 2 of 5 inputs" in str(data_warnings[0].message)
    assert data_warnings[0].filename == __file__  # stacklevel: the caller's line
    assert sum("b.png" in message for message in caplog.messages) == 1
    rows = result.to_rows()
    assert [Path(row["input"]).name for row in rows] == ["a.png", "b.png", "c.jpg", "d.png", "e.png"]
    assert rows[1]["error"] and rows[1]["covid19"] is None and rows[1]["label"] is None
    assert rows[0]["error"] is None and rows[0]["covid19"] == pytest.approx(float(result.probabilities[0, 0]))
    assert len(result.to_rows(include_skipped=False)) == 3


def test_skip_in_lists_and_truncated_pil_images(model, tmp_path):
    png = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(png)
    (tmp_path / "truncated.png").write_bytes(png.read_bytes()[:200])
    truncated = Image.open(tmp_path / "truncated.png")  # opens; fails when its pixels are read
    inputs = [np.zeros((20, 20), np.uint8), truncated, np.zeros((5, 40, 40), np.uint8), png]
    with pytest.raises(ImageDecodeError, match="Could not decode <PIL image 1>"):
        cxrclassify.predict(model, inputs)
    with pytest.warns(DataWarning, match="Skipped 2 of 4"):
        result = cxrclassify.predict(model, inputs, on_error="skip")
    assert result.inputs == ["<array 0>", str(png)]
    assert [item.input for item in result.skipped] == ["<PIL image 1>", "<array 2>"]


def test_skip_with_nothing_decodable_returns_an_empty_result(model, tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.warns(DataWarning, match="Skipped 1 of 1"):
        result = cxrclassify.predict(model, tmp_path, on_error="skip")
    assert len(result) == 0 and result.probabilities.shape == (0, 2) and len(result.skipped) == 1
    assert [row["error"] is not None for row in result.to_rows()] == [True]


def test_explain_images_skips_and_lists_bad_files_in_its_csv(model, mixed_folder, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ImageDecodeError, match="b.png"):
        explain_images(model, mixed_folder, out, grid=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        written = explain_images(model, mixed_folder, out, on_error="skip", grid=False, class_index=[0, 1, 1, 0, 1])
    assert len(_data_warnings(record)) == 1
    assert sorted(path.name for path in written if path.suffix == ".png") == [
        "0000_a_overlay.png", "0002_c_overlay.png", "0004_e_overlay.png"]
    with open(out / "predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(row["input"]).name for row in rows] == ["a.png", "b.png", "c.jpg", "d.png", "e.png"]
    assert [bool(row["error"]) for row in rows] == [False, True, False, True, False]
    assert rows[1]["covid19"] == rows[1]["overlay"] == rows[1]["label"] == ""
    assert [row["explained"] for row in rows] == ["covid19", "", "normal", "", "normal"]  # class_index by input
    with pytest.warns(DataWarning):
        expected = cxrclassify.predict(model, mixed_folder, on_error="skip")
    np.testing.assert_allclose([float(rows[i]["normal"]) for i in (0, 2, 4)], expected.probabilities[:, 1],
                               atol=1e-6)
    with pytest.raises(ArgumentError, match="Received: on_error='ignore'"):
        explain_images(model, mixed_folder, out, on_error="ignore")


# 5. The CLI's OOD scores agree with predict ----------------------------------------------------------------------


def test_cli_explain_writes_the_ood_scores_predict_gives(tmp_path, rng):
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, class_names=CLASSES)
    images = rng.integers(0, 255, (10, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(10) % 2
    train_set = ImageSet(images, labels, [Sample(f"t{i}.png", CLASSES[label]) for i, label in enumerate(labels)],
                         CLASSES)
    cxrclassify.fit_ood(model, train_set)
    path = tmp_path / "m.keras"
    model.save(path)
    folder = tmp_path / "xrays"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (30, 26), dtype=np.uint8)).save(folder / f"x{index}.png")
    out = tmp_path / "out"
    assert cli.main(["explain", str(path), str(folder), "--out", str(out)]) == cli.EXIT_OK
    with open(out / "predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = cxrclassify.predict(cxrclassify.load_model(path), sorted(str(file) for file in folder.iterdir()))
    assert expected.has_ood_scores and [row["input"] for row in rows] == expected.inputs
    scores = np.array([float(row["ood_score"]) for row in rows], dtype=np.float32)
    np.testing.assert_allclose(scores, expected.ood_scores, rtol=1e-6)
    assert [row["out_of_distribution"] == "True" for row in rows] == expected.out_of_distribution.tolist()
    np.testing.assert_allclose([float(row["covid19"]) for row in rows], expected.probabilities[:, 0], atol=1e-6)

