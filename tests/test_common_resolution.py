"""load_datasets(common_resolution=...): every class brought to one resolution before the model's size."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

import cxrclassify
from cxrclassify.datasets import Sample, decode_records, read_image, resize
from cxrclassify.exceptions import ArgumentError, ConfoundingWarning


@pytest.fixture()
def mixed_records(tmp_path):
    """The sample's X-rays: half kept at full size ("nih"), half saved at 32 px first ("bimcv")."""
    from cxrclassify.datasets import sample_records

    records = []
    for index, sample in enumerate(sample_records()[:24]):
        if index % 2:
            records.append(Sample(sample.path, "normal", f"nih:{index}", "nih"))
        else:
            small = tmp_path / f"b{index}.png"
            Image.fromarray(resize(read_image(sample.path), 32)).save(small)
            records.append(Sample(str(small), "covid19", f"bimcv:{index}", "bimcv"))
    return records


def test_each_image_is_resized_to_the_common_resolution_first(mixed_records):
    record = mixed_records[1]  # a full-size image
    direct = decode_records([record], 64, progress=False)[0]
    via_common = decode_records([record], 64, progress=False, common_resolution=32)[0]
    expected = resize(resize(read_image(record.path), 32), 64)
    np.testing.assert_array_equal(via_common, expected)
    assert not np.array_equal(direct, via_common)


def test_a_small_source_beside_a_large_one_is_warned_about_and_the_warning_names_the_fix(mixed_records):
    with pytest.warns(ConfoundingWarning, match=r"\['bimcv'\] are 224 x 224 px.*common_resolution=224"):
        cxrclassify.load_datasets(mixed_records, image_size=32, split_by="image", progress=False,
                                  join_duplicates=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfoundingWarning)
        data = cxrclassify.load_datasets(mixed_records, image_size=32, split_by="image", progress=False,
                                         join_duplicates=False, common_resolution=224)
    assert len(data.train) + len(data.validation) + len(data.test) == len(mixed_records)


def test_the_common_resolution_removes_a_sharpness_shortcut(mixed_records):
    """Sharpness tells a 32-px source from a full-size one at 128 px, unless both go through 32 px first."""
    def sharpness(images):
        gray = images.astype(np.float32).mean(axis=-1)
        return np.abs(np.diff(gray, axis=2)).mean(axis=(1, 2))

    labels = np.array([r.label == "covid19" for r in mixed_records])
    plain = sharpness(decode_records(mixed_records, 128, progress=False))
    common = sharpness(decode_records(mixed_records, 128, progress=False, common_resolution=32))
    gap_plain = abs(plain[labels].mean() - plain[~labels].mean())
    gap_common = abs(common[labels].mean() - common[~labels].mean())
    assert gap_common < gap_plain / 3


@pytest.mark.parametrize("value", [0, 7, 5000, 2.5, True, "224"])
def test_bad_common_resolution_is_named(mixed_records, value):
    with pytest.raises(ArgumentError, match=r"common_resolution.*Received: common_resolution="):
        cxrclassify.load_datasets(mixed_records, image_size=32, split_by="image", progress=False,
                                  common_resolution=value)
