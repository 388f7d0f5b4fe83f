"""predict: every kind of input, in input order; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import cxrclassify
from cxrclassify.exceptions import ArgumentError, ArgumentTypeError, DataError, ImageDecodeError


@pytest.fixture(scope="module")
def model():
    return cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, class_names=["covid19", "normal"])


def test_inputs_of_every_kind_agree(model, class_folder):
    paths = sorted(str(p) for p in (class_folder / "covid19").iterdir())[:3]
    arrays = [np.asarray(Image.open(path)) for path in paths]  # various modes and shapes
    by_path = cxrclassify.predict(model, paths)
    by_array = cxrclassify.predict(model, [cxrclassify.datasets.to_rgb_uint8(a) for a in arrays])
    by_pil = cxrclassify.predict(model, [Image.open(path) for path in paths])
    np.testing.assert_allclose(by_path.probabilities, by_array.probabilities, atol=1e-6)
    np.testing.assert_allclose(by_path.probabilities, by_pil.probabilities, atol=1e-6)
    assert by_path.inputs == paths and by_array.inputs[0] == "<array 0>"
    assert set(by_path.labels) <= {"covid19", "normal"}


def test_order_is_input_order_across_batches(model, rng):
    images = rng.integers(0, 255, (7, 20, 20, 3)).astype(np.uint8)
    together = cxrclassify.predict(model, images, batch_size=3)
    one_by_one = np.concatenate([cxrclassify.predict(model, image).probabilities for image in images])
    np.testing.assert_allclose(together.probabilities, one_by_one, atol=1e-6)
    assert together.inputs == [f"<array {i}>" for i in range(7)]
    assert together.probabilities.sum(axis=1) == pytest.approx(np.ones(7), abs=1e-5)


def test_folder_is_read_recursively_and_sorted(model, class_folder):
    result = cxrclassify.predict(model, class_folder)
    assert len(result) == 24 and result.inputs == sorted(result.inputs)
    assert result.to_rows()[0].keys() == {"input", "label", "covid19", "normal", "ood_score", "out_of_distribution",
                                          "error"}
    assert result.skipped == [] and {row["error"] for row in result.to_rows()} == {None}


def test_single_path_and_pil_image(model, class_folder):
    path = next((class_folder / "normal").iterdir())
    assert len(cxrclassify.predict(model, path)) == 1
    assert cxrclassify.predict(model, Image.open(path)).inputs == ["<PIL image 0>"]


def test_empty_folder(model, tmp_path):
    with pytest.raises(DataError, match="Found no PNG, JPEG, TIFF or DICOM"):
        cxrclassify.predict(model, tmp_path)


def test_corrupt_file_is_named(model, tmp_path):
    bad = tmp_path / "scan_042.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageDecodeError, match="scan_042.jpg"):
        cxrclassify.predict(model, [bad])


def test_unsupported_item(model):
    with pytest.raises(ArgumentTypeError, match="Received: input 1 of type dict"):
        cxrclassify.predict(model, [np.zeros((4, 4)), {"not": "an image"}])


def test_3d_arrays_are_one_image_or_refused(model, rng):
    """A 3-D array is one image when its last axis is 1, 3 or 4; a grayscale batch must be (N, H, W, 1)."""
    grey = rng.integers(0, 255, (4, 20, 20)).astype(np.uint8)
    assert len(cxrclassify.predict(model, grey[..., None])) == 4
    assert len(cxrclassify.predict(model, grey[:3].transpose(1, 2, 0))) == 1  # (20, 20, 3): one RGB image
    with pytest.raises(ArgumentError, match=r"Received: inputs.shape=\(4, 20, 20\)"):
        cxrclassify.predict(model, grey)
