"""The paper's sources (ieee8023, Kermany) and the soares2020 composite, fetched from loopback mirrors."""

from __future__ import annotations

import csv
import hashlib
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cxrclassify
from cxrclassify.datasets import ieee8023_records, kermany_records, load_datasets, read_manifest
from cxrclassify.datasets.ieee8023 import IEEE8023_COMMIT, finding_terms, ieee8023_registry, select_ieee8023_rows
from cxrclassify.datasets.kermany import kermany_index, parse_kermany_name
from cxrclassify.exceptions import ChecksumError, DuplicateImageWarning

from loopback_server import LoopbackServer

METADATA_COLUMNS = ["patientid", "offset", "sex", "age", "finding", "view", "modality", "folder", "filename", "license"]


def _xray(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 40), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def ieee8023_mirror(tmp_path):
    """<mirror>/ieee8023-covid-chestxray/{metadata.csv, images/}: 8 frontal COVID-19 X-rays of 4 patients, plus noise."""
    root = tmp_path / "mirror" / "ieee8023-covid-chestxray"
    rows = []
    for index in range(8):
        rows.append(dict(patientid=str(index // 2), offset="0", sex="M", age=str(40 + index), finding="COVID-19",
                         view=["PA", "AP", "AP Supine", "PA"][index % 4], modality="X-ray", folder="images",
                         filename=f"covid {index}.jpg", license="CC BY 4.0"))
    rows.append(dict(rows[0], filename="lateral.jpg", view="L"))
    rows.append(dict(rows[0], filename="ct.jpg", view="Axial", modality="CT"))
    rows.append(dict(rows[0], filename="sars.jpg", finding="SARS"))
    rows.append(dict(rows[0], filename="ards.jpg", finding="COVID-19, ARDS", patientid="9"))
    for number, row in enumerate(rows):
        _xray(root / "images" / row["filename"], number)
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return root.parent


@pytest.fixture
def kermany_zip(tmp_path):
    """A small ChestXRay2017.zip of the original layout."""
    archive = tmp_path / "kermany" / "ChestXRay2017.zip"
    archive.parent.mkdir(parents=True)
    members = [f"chest_xray/train/NORMAL/IM-{i:04d}-0001.jpeg" for i in range(6)]
    members += [f"chest_xray/train/PNEUMONIA/person{i}_{kind}_{i * 3}.jpeg" for i, kind in
                enumerate(["bacteria", "virus"] * 3)]
    members += ["chest_xray/test/NORMAL/NORMAL2-IM-0001-0001.jpeg", "__MACOSX/chest_xray/._IM-0000-0001.jpeg"]
    with zipfile.ZipFile(archive, "w") as zipped:
        for seed, member in enumerate(members):
            scratch = _xray(tmp_path / "scratch" / f"{seed}.jpeg", seed)
            zipped.write(scratch, member)
    return archive


def _hashes_of(mirror: Path, names: dict[str, str]) -> dict[str, str]:
    return {cache_name: hashlib.sha256((mirror / mirror_path).read_bytes()).hexdigest()
            for cache_name, mirror_path in names.items()}


def test_finding_terms_and_selection():
    assert finding_terms("COVID-19, ARDS") == {"COVID-19", "ARDS"}
    rows = [{"finding": "Pneumonia/Viral/COVID-19", "view": "AP Supine", "modality": "X-ray"},
            {"finding": "COVID-19", "view": "Axial", "modality": "CT"}]
    assert len(select_ieee8023_rows(rows)) == 1
    assert select_ieee8023_rows(rows, views=["Axial"], modalities=["CT"]) == [rows[1]]


def test_pinned_registry_has_every_original_file():
    registry = ieee8023_registry()
    assert len(registry) == 661 and "metadata.csv" in registry
    assert all(record.sha256 or record.git_blob_sha1 for record in registry.values())
    assert IEEE8023_COMMIT in registry["metadata.csv"].url
    assert registry["metadata.csv"].mirror_path == "ieee8023-covid-chestxray/metadata.csv"


def test_ieee8023_over_http_mirror_fetches_only_the_selection(ieee8023_mirror, tmp_path):
    home = tmp_path / "home"
    with LoopbackServer(ieee8023_mirror) as server:
        records = ieee8023_records(mirror=server.url, data_home=home, verify=False, progress=False)
        requested = [path for path, _ in server.requests]
    assert len(records) == 9  # 8 frontal COVID-19 X-rays + "COVID-19, ARDS"; no lateral, CT or SARS
    assert {record.source for record in records} == {"ieee8023"}
    assert records[0].group == "ieee8023:0" and records[0].age == 40 and records[0].view == "PA"
    assert not any("lateral" in path or "ct.jpg" in path or "sars" in path for path in requested)
    assert all(Path(record.path).is_file() and str(home) in record.path for record in records)


def test_ieee8023_mirror_of_modified_files_is_refused_unless_told(ieee8023_mirror, tmp_path):
    with pytest.raises(ChecksumError, match="verify=False or known_hashes"):
        ieee8023_records(mirror=ieee8023_mirror, data_home=tmp_path / "home", progress=False)
    cached = tmp_path / "home" / "ieee8023" / IEEE8023_COMMIT[:12] / "metadata.csv"
    assert not cached.exists() and not list(cached.parent.glob("*.part"))


def test_ieee8023_mirror_with_its_own_manifest(ieee8023_mirror, tmp_path):
    prefix = f"ieee8023/{IEEE8023_COMMIT[:12]}/"
    names = {prefix + "metadata.csv": "ieee8023-covid-chestxray/metadata.csv"}
    names.update({prefix + f"images/covid {i}.jpg": f"ieee8023-covid-chestxray/images/covid {i}.jpg" for i in range(8)})
    names[prefix + "images/ards.jpg"] = "ieee8023-covid-chestxray/images/ards.jpg"
    known = _hashes_of(ieee8023_mirror, names)
    records = ieee8023_records(mirror=ieee8023_mirror, data_home=tmp_path / "home", known_hashes=known, progress=False)
    assert len(records) == 9


def test_kermany_names():
    assert parse_kermany_name("chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg").subtype == "bacterial"
    assert parse_kermany_name("chest_xray/train/NORMAL/IM-0117-0001.jpeg").patient == "kermany:IM-0117"
    assert parse_kermany_name("chest_xray/train/NORMAL/notes.txt") is None


def test_kermany_from_local_archive_extracts_only_the_selection(kermany_zip, tmp_path):
    index = kermany_index(kermany_zip)
    assert len(index) == 13 and {image.split for image in index} == {"train", "test"}
    chosen = [image for image in index if image.label == "pneumonia"][:2]
    records = kermany_records(chosen, path=kermany_zip, data_home=tmp_path / "home", pneumonia_subtypes=True)
    assert [record.label for record in records] == ["bacterial_pneumonia", "viral_pneumonia"]
    extracted = [path for path in (tmp_path / "home").rglob("*.jpeg")]
    assert len(extracted) == 2 and all(Path(record.path).is_file() for record in records)


def test_kermany_from_extracted_folder(kermany_zip, tmp_path):
    with zipfile.ZipFile(kermany_zip) as zipped:
        zipped.extractall(tmp_path / "unzipped")
    records = kermany_records(path=tmp_path / "unzipped" / "chest_xray", splits=["test"])
    assert len(records) == 1 and records[0].label == "normal"


def test_kermany_download_unverified_warns_and_records_the_hash(kermany_zip, tmp_path):
    mirror = kermany_zip.parent.parent / "mirror"
    (mirror / "kermany-pediatric-cxr").mkdir(parents=True)
    shutil.copy(kermany_zip, mirror / "kermany-pediatric-cxr" / "ChestXRay2017.zip")
    digest = hashlib.sha256(kermany_zip.read_bytes()).hexdigest()
    with LoopbackServer(mirror) as server:
        with pytest.warns(UserWarning, match=digest):
            records = kermany_records(mirror=server.url, data_home=tmp_path / "home", progress=False)
        assert len(records) == 13
        with pytest.raises(ChecksumError):
            kermany_records(mirror=server.url, data_home=tmp_path / "other", sha256="0" * 64, progress=False)


def test_pinned_hash_of_a_user_archive(kermany_zip):
    with pytest.raises(ChecksumError, match="expected"):
        kermany_records(path=kermany_zip, sha256="f" * 64)


def test_split_by_image_is_an_explicit_opt_in(tmp_path):
    records = [(str(_xray(tmp_path / f"{i}.png", i)), "ab"[i % 2], "one-patient-per-class" + "ab"[i % 2])
               for i in range(20)]
    with pytest.raises(cxrclassify.DataError, match="at least 3 patients"):
        load_datasets(records, image_size=8, progress=False)
    data = load_datasets(records, image_size=8, split_by="image", progress=False)
    assert len(data.test) > 0 and set(data.test.groups) & set(data.train.groups)
    with pytest.raises(ValueError, match="split_by"):
        load_datasets(records, split_by="hospital", progress=False)


def test_manifest_reloads_the_same_split(tmp_path, class_folder):
    data = load_datasets(class_folder, image_size=8, seed=1, progress=False)
    manifest = data.write_manifest(tmp_path / "split.csv")
    again = load_datasets(manifest, image_size=8, seed=99, progress=False)
    for (_, first), (_, second) in zip(data.items(), again.items()):
        assert first.paths == second.paths
        np.testing.assert_array_equal(first.images, second.images)


def _records_with_reencoded_copies(tmp_path):
    """30 images under patients p*, and each again as JPEG under another patient q*."""
    records = []
    for index in range(30):
        path = _xray(tmp_path / f"img{index}.png", index)
        records.append((str(path), "ab"[index % 2], f"p{index}"))
    for index in range(30):
        copy = tmp_path / f"copy{index}.jpg"
        Image.open(tmp_path / f"img{index}.png").save(copy, quality=95)
        records.append((str(copy), "ab"[index % 2], f"q{index}"))
    return records


def test_duplicates_across_splits_are_reported(tmp_path):
    records = _records_with_reencoded_copies(tmp_path)
    with pytest.warns(DuplicateImageWarning, match=r"\(near-\)identical"):
        data = load_datasets(records, image_size=32, progress=False, join_duplicates=False)
    assert data.duplicates and all(pair.split_a != pair.split_b for pair in data.duplicates)
    assert any(not pair.exact for pair in data.duplicates)  # JPEG copies are near, not exact
    assert data.merged_groups == []


def test_patients_sharing_an_image_are_joined_before_the_split(tmp_path):
    records = _records_with_reencoded_copies(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuplicateImageWarning)
        data = load_datasets(records, image_size=32, progress=False)
    assert data.duplicates == []
    assert sorted(join.members for join in data.merged_groups) == sorted((f"p{i}", f"q{i}") for i in range(30))
    split_of = {record.original_group: name for name, split in data.items() for record in split.records}
    assert all(split_of[f"p{i}"] == split_of[f"q{i}"] for i in range(30))
    rows = read_manifest(data.write_manifest(tmp_path / "m.csv"))
    joined_row = next(row for row in rows if row["original_patient"] == "p3")
    assert joined_row["patient"] == "p3|q3"
    again = load_datasets(tmp_path / "m.csv", image_size=32, progress=False)
    assert [record.group for record in again.test.records] == [record.group for record in data.test.records]


def test_distinct_images_are_not_called_duplicates(class_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        data = load_datasets(class_folder, image_size=32, progress=False, split_by="image")
    assert data.duplicates == [] and data.merged_groups == []


def test_recipe_options_are_checked():
    with pytest.raises(TypeError, match="takes no option \\['mirror'\\]"):
        load_datasets("sample", mirror="http://127.0.0.1:9", progress=False)
    with pytest.raises(TypeError, match="only for named recipes"):
        load_datasets([("a.png", "x")], n_covid19=3, progress=False)


@pytest.mark.integration
def test_soares2020_from_the_shared_mirror_over_http(shared_data, tmp_path):
    with LoopbackServer(shared_data) as server:
        with pytest.warns(UserWarning, match="different sources"):
            data = load_datasets("soares2020", mirror=server.url, verify=False, data_home=tmp_path / "home",
                                 image_size=64, progress=False)
    counts = {name: sum(split.class_counts()[name] for _, split in data.items()) for name in data.class_names}
    assert counts == {"covid19": 175, "normal": 100, "pneumonia": 100}
    patients = [set(split.groups) for _, split in data.items()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    rows = read_manifest(data.manifest_path)
    assert len(rows) == 375 and {row["source"] for row in rows} == {"ieee8023", "kermany"}
    assert data.manifest_path.parent == tmp_path / "home" / "manifests"


def test_a_truncated_kermany_archive_is_a_clear_error(tmp_path):
    from cxrclassify.datasets.kermany import kermany_index
    from cxrclassify.exceptions import DataError, DownloadError

    archive = tmp_path / "ChestXRay2017.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for index in range(20):
            zipped.writestr(f"chest_xray/train/NORMAL/IM-{index:04d}-0001.jpeg", bytes(range(256)) * 8)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DownloadError, match="ChestXRay2017.zip"):
        kermany_index(archive)
    with pytest.raises(DataError, match=r"not a readable zip archive: a truncated download"):
        kermany_records(path=archive, progress=False)
    with pytest.raises(DataError, match="does not exist"):
        kermany_records(path=tmp_path / "absent.zip", progress=False)
