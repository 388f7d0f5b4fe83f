"""One person is one patient: joins before the split, patient naming for folders, record checks."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import cxrclassify
from cxrclassify.datasets import (
    Sample,
    as_samples,
    assign_patients,
    check_records,
    ieee8023_records,
    join_duplicate_groups,
    load_datasets,
    read_manifest,
)
from cxrclassify.datasets.ieee8023 import read_ieee8023_metadata, select_ieee8023_rows
from cxrclassify.datasets.kermany import parse_kermany_name
from cxrclassify.exceptions import ArgumentError, CxrError, DataError, SplitWarning


def _xray(path: Path, seed: int) -> Path:
    """A distinct smooth 'X-ray': low-frequency noise, so that thumbnails of two seeds differ."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (6, 6), dtype=np.uint8)
    Image.fromarray(coarse).resize((48, 48), Image.Resampling.BICUBIC).save(path)
    return path


@pytest.fixture
def follow_up_folder(tmp_path: Path) -> Path:
    """root/<class>/p<N>_<day>.png: 8 patients per class, two X-rays each."""
    root = tmp_path / "xrays"
    seed = 0
    for label in ("covid19", "normal"):
        (root / label).mkdir(parents=True)
        for patient in range(8):
            for day in (1, 2):
                seed += 1
                _xray(root / label / f"{label[0]}{patient}_day{day}.png", seed)
    return root


def _split_of_patient(data) -> dict[str, set[str]]:
    splits: dict[str, set[str]] = {}
    for name, split in data.items():
        for record in split.records:
            splits.setdefault(record.group, set()).add(name)
    return splits


def test_a_folder_without_patients_warns_that_it_is_split_by_image(follow_up_folder):
    with pytest.warns(SplitWarning, match="32 of 32 images carry no patient id"):
        load_datasets(follow_up_folder, image_size=16, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitWarning)
        load_datasets(follow_up_folder, image_size=16, progress=False, split_by="image")  # said on purpose


@pytest.mark.parametrize("naming", ["regex", "callable", "csv", "mapping"])
def test_folder_patients_can_be_named(follow_up_folder, tmp_path, naming):
    if naming == "regex":
        patients = r"^([a-z]\d+)_day"
    elif naming == "callable":
        def patients(path):
            return Path(path).name.split("_")[0]
    else:
        table = {str(path.relative_to(follow_up_folder)): path.name.split("_")[0]
                 for path in follow_up_folder.rglob("*.png")}
        if naming == "mapping":
            patients = table
        else:
            patients = tmp_path / "patients.csv"
            with patients.open("w", newline="", encoding="utf-8-sig") as handle:  # as Excel saves it
                writer = csv.writer(handle)
                writer.writerow(["file", "patient"])
                writer.writerows(table.items())
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitWarning)
        data = load_datasets(follow_up_folder, image_size=16, progress=False, patients=patients, seed=2)
    splits = _split_of_patient(data)
    assert len(splits) == 16 and all(len(names) == 1 for names in splits.values())


def test_patient_naming_errors_name_the_file(follow_up_folder, tmp_path):
    with pytest.raises(DataError, match=r"does not match the file name of .*c0_day1\.png"):
        load_datasets(follow_up_folder, image_size=16, progress=False, patients=r"^patient(\d+)")
    partial = tmp_path / "partial.csv"
    partial.write_text("path,patient\ncovid19/c0_day1.png,c0\n", encoding="utf-8")
    with pytest.raises(DataError, match="does not list the image"):
        load_datasets(follow_up_folder, image_size=16, progress=False, patients=partial)
    with pytest.raises(DataError, match="CSV file not found"):
        load_datasets(follow_up_folder, image_size=16, progress=False, patients=tmp_path / "absent.csv")
    with pytest.raises(DataError, match="lacks the columns"):
        bad = tmp_path / "bad.csv"
        bad.write_text("image,id\na.png,1\n", encoding="utf-8")
        assign_patients([Sample("a.png", "x")], bad)
    with pytest.raises(TypeError, match="Expected patients to be"):
        assign_patients([Sample("a.png", "x")], 42)
    with pytest.raises(DataError, match="valid regular expression"):
        assign_patients([Sample("a.png", "x")], "([unclosed")


def test_records_with_a_group_keep_it():
    records = assign_patients([Sample("a/p1_x.png", "n", group="kept"), Sample("a/p2_x.png", "n")], r"^(p\d)")
    assert [record.group for record in records] == ["kept", "p2"]


@pytest.mark.parametrize("label", ["", "   ", None, 1.5, b"covid"])
def test_missing_or_empty_labels_are_errors(label):
    with pytest.raises(DataError, match="label to be a non-empty class name"):
        load_datasets([("a.png", label), ("b.png", "normal")], progress=False)


def test_a_file_under_two_labels_is_an_error(tmp_path):
    path = _xray(tmp_path / "a.png", 0)
    records = [(str(path), "covid19", "p1"), (str(tmp_path / "." / "a.png"), "normal", "p2")]
    with pytest.raises(DataError, match=r"listed 2 times, under the labels \['covid19', 'normal'\]"):
        load_datasets(records, progress=False)
    with pytest.raises(DataError, match="listed 2 times, under the label \\['normal'\\]"):
        check_records([Sample(str(path), "normal"), Sample(str(path), "normal")])


def test_integer_labels_and_blank_groups_are_read_as_documented():
    samples = as_samples([("a.png", 1, "", None), ("b.png", np.int64(0), 7, "site")])
    assert [(s.label, s.group, s.source) for s in samples] == [("1", None, None), ("0", "7", "site")]


@pytest.mark.parametrize("image_size", [0, -3, 2.5, "237", True])
def test_image_size_must_be_a_positive_int(image_size):
    with pytest.raises(ArgumentError, match="image_size"):
        load_datasets("sample", image_size=image_size, progress=False)


def test_a_manifest_saved_by_excel_is_read(tmp_path):
    image = _xray(tmp_path / "a.png", 1)
    rows = "".join(f"{image.name if i == 0 else _xray(tmp_path / f'i{i}.png', i + 1).name},{'ab'[i % 2]},p{i}\r\n"
                   for i in range(12))
    manifest = tmp_path / "excel.csv"
    manifest.write_bytes(("\ufeffpath,label,patient\r\n" + rows).encode("utf-8"))
    assert read_manifest(manifest)[0]["path"] == "a.png"
    data = load_datasets(manifest, image_size=16, progress=False)
    assert len(data.train) + len(data.validation) + len(data.test) == 12


def test_a_manifest_row_without_a_path_is_an_error(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n,normal\nb.png,covid19\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty path"):
        load_datasets(manifest, progress=False)


def test_a_manifest_that_is_not_utf8_is_an_error(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,label\nä.png,normal\n".encode("latin-1"))
    with pytest.raises(DataError, match="expected a UTF-8 CSV"):
        load_datasets(manifest, progress=False)


@pytest.mark.parametrize(
    ("member", "patient"),
    [
        ("chest_xray/train/NORMAL/IM-0439-0001.jpeg", "kermany:IM-0439"),
        ("chest_xray/train/NORMAL/IM-0439-0001-0001.jpeg", "kermany:IM-0439"),
        ("chest_xray/train/NORMAL/IM-0553-0001-0003.jpeg", "kermany:IM-0553"),
        ("chest_xray/test/NORMAL/NORMAL2-IM-0030-0001.jpeg", "kermany:NORMAL2-IM-0030"),
        ("chest_xray/train/NORMAL/NORMAL2-IM-1345-0001-0002.jpeg", "kermany:NORMAL2-IM-1345"),
    ],
)
def test_kermany_normal_studies_are_one_patient(member, patient):
    assert parse_kermany_name(member).patient == patient


def test_joins_chain_and_leave_distinct_images_alone(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    images[1] = images[0]  # a = b
    images[3] = images[1]  # b = c: a, b and c are one person
    groups, joins = join_duplicate_groups(["a", "b", "e", "c", "d"], images, [f"{i}.png" for i in range(5)])
    assert groups == ["a|b|c", "a|b|c", "e", "a|b|c", "d"]
    assert [join.members for join in joins] == [("a", "b", "c")]
    assert len(joins[0].evidence) == 3  # every linking pair is kept as evidence
    unchanged, none = join_duplicate_groups(["a", "a"], images[:2], ["0.png", "1.png"])  # one group already
    assert unchanged == ["a", "a"] and none == []


def test_join_duplicate_groups_checks_lengths():
    with pytest.raises(ArgumentError, match="one group and one path per image"):
        join_duplicate_groups(["a"], np.zeros((2, 8, 8, 3), np.uint8), ["x", "y"])


_record_field = st.one_of(
    st.none(), st.text(max_size=5), st.integers(-3, 3), st.floats(allow_nan=True), st.binary(max_size=3),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.tuples(_record_field), st.tuples(_record_field, _record_field),
                          st.tuples(_record_field, _record_field, _record_field, _record_field),
                          st.tuples(*[_record_field] * 5), _record_field), max_size=4))
def test_record_parsing_gives_samples_or_a_data_error(records):
    try:
        samples = as_samples(records)
        check_records(samples)
    except CxrError:
        return
    for sample, record in zip(samples, records):
        assert isinstance(sample.path, str) and sample.path
        assert isinstance(sample.label, str) and sample.label.strip()
        assert sample.group is None or (isinstance(sample.group, str) and sample.group.strip())
        assert 2 <= len(record) <= 4


@pytest.fixture(scope="module")
def ieee8023_covid(tmp_path_factory):
    from conftest import SHARED

    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"../shared/data is absent ({data})")
    home = tmp_path_factory.mktemp("home")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cxrclassify.UnverifiedDownloadWarning)
        return ieee8023_records(mirror=data, data_home=home, verify=False, progress=False)


@pytest.mark.integration
def test_one_person_filed_under_two_ieee8023_ids_is_one_patient(ieee8023_covid, tmp_path):
    # Two classes from one collection: older and younger COVID-19 patients (each image once).
    labelled = [Sample(r.path, "older" if (r.age or 0) >= 60 else "younger", r.group, r.source, r.age)
                for r in ieee8023_covid]
    for seed in range(6):
        data = load_datasets(labelled, image_size=64, seed=seed, progress=False)
        joined = {join.members for join in data.merged_groups}
        assert ("ieee8023:178", "ieee8023:97") in joined
        assert ("ieee8023:137", "ieee8023:202") in joined
        split_of = {}
        for name, split in data.items():
            for record in split.records:
                split_of.setdefault(record.original_group or record.group, set()).add(name)
        assert split_of["ieee8023:97"] == split_of["ieee8023:178"] and len(split_of["ieee8023:97"]) == 1
        assert data.duplicates == []  # nothing left for the cross-split check to warn about
    rows = read_manifest(data.write_manifest(tmp_path / "m.csv"))
    assert {row["patient"] for row in rows if row["original_patient"] == "ieee8023:97"} == {"ieee8023:178|ieee8023:97"}



@pytest.mark.integration
def test_a_file_listed_under_two_ieee8023_patients_is_one_record():
    from conftest import SHARED

    metadata = SHARED / "data" / "ieee8023-covid-chestxray" / "metadata.csv"
    if not metadata.is_file():
        pytest.skip("../shared/data is absent")
    rows = read_ieee8023_metadata(metadata)
    assert sum(row["filename"] == "000001-27.jpg" for row in rows) == 2  # patients 287 and 340
    selected = select_ieee8023_rows(rows, findings=("Legionella",))
    assert [row["patientid"] for row in selected if row["filename"] == "000001-27.jpg"] == ["287"]


@pytest.mark.parametrize("class_names", [["a", "a"], ["a", ""], ["a", None]])
def test_class_names_must_be_distinct_non_empty_strings(class_names):
    with pytest.raises(ArgumentError, match="class_names"):
        load_datasets([("x.png", "a"), ("y.png", "a")], class_names=class_names, progress=False)
