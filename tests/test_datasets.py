"""load_datasets: folders, record lists, the bundled sample, patient-level splits, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import (
    Sample,
    list_recipes,
    read_manifest,
    sample_dir,
    sample_records,
    stratified_group_split,
)
from cxrclassify.exceptions import DataError, ImageDecodeError

from conftest import write_image


def test_folder_loads_decodes_resizes_and_splits(class_folder):
    data = cxrclassify.load_datasets(class_folder, image_size=24, progress=False)
    train, validation, test, class_names = data
    assert class_names == ["covid19", "normal"]
    assert len(train) + len(validation) + len(test) == 24
    for split in (train, validation, test):
        assert split.images.shape[1:] == (24, 24, 3) and split.images.dtype == np.uint8
        assert set(split.labels.tolist()) == {0, 1}  # stratified: both classes everywhere
        assert all(record.source == "xrays" for record in split.records)
    assert len(train) >= 16


def test_split_is_reproducible_and_seed_dependent(class_folder):
    first = cxrclassify.load_datasets(class_folder, image_size=8, seed=3, progress=False)
    again = cxrclassify.load_datasets(class_folder, image_size=8, seed=3, progress=False)
    other = cxrclassify.load_datasets(class_folder, image_size=8, seed=4, progress=False)
    assert first.test.paths == again.test.paths
    assert first.test.paths != other.test.paths


def _patient_records(tmp_path, rng, n_patients=30, images_per_patient=3):
    records = []
    for patient in range(n_patients):
        label = ["covid19", "normal", "pneumonia"][patient % 3]
        for view in range(images_per_patient):
            path = write_image(tmp_path / f"p{patient}_{view}.png", rng, size=(12, 12))
            records.append((str(path), label, f"patient{patient}", "hospital-a" if patient % 2 else "hospital-b"))
    return records


@pytest.mark.parametrize("seed", range(5))
def test_no_patient_is_in_two_splits(tmp_path, rng, seed):
    records = _patient_records(tmp_path, rng)
    data = cxrclassify.load_datasets(records, image_size=8, seed=seed, progress=False)
    groups = [set(split.groups) for _, split in data.items()]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert sum(len(split) for _, split in data.items()) == 90
    assert {record.source for _, split in data.items() for record in split.records} == {"hospital-a", "hospital-b"}


def test_split_fractions_are_about_80_10_10():
    labels = np.repeat([0, 1, 2], 100)
    groups = [f"g{i}" for i in range(300)]
    train, validation, test = stratified_group_split(labels, groups, seed=0)
    assert len(test) == pytest.approx(30, abs=3) and len(validation) == pytest.approx(30, abs=3)
    assert len(set(train) | set(validation) | set(test)) == 300
    for split in (train, validation, test):
        counts = np.bincount(labels[split], minlength=3)
        assert counts.max() - counts.min() <= 2  # stratified by class


def test_records_accept_samples_and_tuples(tmp_path, rng):
    paths = [write_image(tmp_path / f"{i}.png", rng, size=(10, 10)) for i in range(6)]
    records = [Sample(str(p), "a" if i < 3 else "b", group=f"p{i}") for i, p in enumerate(paths)]
    data = cxrclassify.load_datasets(records, image_size=8, validation_fraction=0, test_fraction=0.34, progress=False)
    assert len(data.validation) == 0 and len(data.train) + len(data.test) == 6


def test_manifest_round_trip(tmp_path, class_folder):
    data = cxrclassify.load_datasets(class_folder, image_size=8, progress=False)
    rows = read_manifest(data.write_manifest(tmp_path / "manifest.csv"))
    assert [row["split"] for row in rows].count("test") == len(data.test)
    paths = {str((tmp_path / row["path"]).resolve()) for row in rows}  # written relative to the manifest
    assert paths == {str(Path(record.path).resolve()) for _, s in data.items() for record in s.records}
    assert set(rows[0]) == {"path", "label", "patient", "source", "site", "split", "age", "sex", "view", "original_patient"}


def test_bundled_sample_keeps_source_and_patient():
    records = sample_records()
    assert "sample" in list_recipes() and len(records) == 48
    assert {record.source for record in records} == {"ieee8023", "kermany", "nih"}
    assert len({record.group for record in records}) == 48
    assert (sample_dir() / "ATTRIBUTION.md").is_file()
    data = cxrclassify.load_datasets("sample", image_size=16, progress=False)
    assert data.class_names == ["covid19", "normal", "pneumonia"]


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "covid19").mkdir()
    with pytest.raises(DataError, match="Found no image"):
        cxrclassify.load_datasets(tmp_path, progress=False)


def test_one_class_is_a_clear_error(tmp_path, rng):
    for index in range(5):
        write_image(tmp_path / "covid19" / f"{index}.png", rng)
    with pytest.raises(DataError, match="at least two classes"):
        cxrclassify.load_datasets(tmp_path, progress=False)


def test_corrupt_image_in_folder_names_the_file(class_folder):
    (class_folder / "normal" / "corrupt_scan.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageDecodeError, match="corrupt_scan.png"):
        cxrclassify.load_datasets(class_folder, progress=False)


def test_class_with_too_few_patients_is_a_clear_error(tmp_path, rng):
    records = [(str(write_image(tmp_path / f"{i}.png", rng)), "a", "p1") for i in range(4)]
    records += [(str(write_image(tmp_path / f"b{i}.png", rng)), "b", f"q{i}") for i in range(4)]
    with pytest.raises(DataError, match="at least 3 patients"):
        cxrclassify.load_datasets(records, progress=False)


def test_unknown_source_name_lists_the_recipes():
    with pytest.raises(DataError, match="sample"):
        cxrclassify.load_datasets("no-such-dataset-or-folder", progress=False)


def test_label_outside_class_names_is_refused(class_folder):
    with pytest.raises(DataError, match="not in class_names"):
        cxrclassify.load_datasets(class_folder, class_names=["covid19", "pneumonia"], progress=False)


def test_bad_record_says_what_was_received():
    with pytest.raises(DataError, match="Received: record 0"):
        cxrclassify.load_datasets([("only-a-path",)], progress=False)


def test_manifest_with_relative_image_paths_reloads_from_another_folder(tmp_path, rng, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for label in ("a", "b"):
        for index in range(6):
            write_image(tmp_path / "xrays" / label / f"{index}.png", rng, size=(12, 12))
    data = cxrclassify.load_datasets("xrays", image_size=8, progress=False)
    manifest = data.write_manifest(tmp_path / "out" / "split.csv")
    monkeypatch.chdir(tmp_path / "out")
    again = cxrclassify.load_datasets(manifest, image_size=8, progress=False)
    assert len(again.train) == len(data.train) and again.test.labels.tolist() == data.test.labels.tolist()


def test_tiny_dataset_splits_without_a_scikit_learn_error(tmp_path, rng):
    records = [(str(write_image(tmp_path / f"{i}.png", rng, size=(8, 8))), "ab"[i % 2], f"p{i}") for i in range(18)]
    data = cxrclassify.load_datasets(records, image_size=8, progress=False)
    assert len(data.train) + len(data.validation) + len(data.test) == 18 and len(data.test) >= 2
