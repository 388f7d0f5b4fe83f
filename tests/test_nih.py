"""NIH ChestX-ray14: the label file, the selection, fetching from a mirror and from the release's archives,
the adult_controls recipe and the confound warning."""

from __future__ import annotations

import csv
import hashlib
import io
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from loopback_server import LoopbackServer
from PIL import Image

from cxrclassify.datasets import Sample, load_datasets, nih_records, read_nih_labels
from cxrclassify.datasets.composite import (
    describe_composition,
    format_composition,
    warn_if_confounded,
)
from cxrclassify.datasets.nih import (
    NIH_ARCHIVE_SIZES,
    NIH_ARCHIVE_URLS,
    NIH_FINDINGS,
    fetch_nih_labels,
    nih_archive_plan,
    select_nih_images,
)
from cxrclassify.exceptions import ChecksumError, DataError, DownloadError

COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
           "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
LABEL_FILE = "Data_Entry_2017_v2020.csv"
ARCHIVE_SIZES = (4, 4, 2)

# Ten rows, sorted by Image Index as in the release: archive 1 holds rows 0-3, archive 2 rows 4-7, archive 3 rows 8-9.
ROWS = [
    ("00000001_000.png", "No Finding", 0, 1, "45", "F", "PA"),
    ("00000001_001.png", "Edema|Effusion|Pneumonia", 1, 1, "46", "F", "AP"),
    ("00000002_000.png", "Pneumonia", 0, 2, "12", "M", "AP"),            # a child
    ("00000003_000.png", "Infiltration", 0, 3, "60", "M", "PA"),         # neither class
    ("00000004_000.png", "No Finding", 0, 4, "70", "M", "AP"),
    ("00000005_000.png", "Cardiomegaly|Pneumonia", 0, 5, "412", "F", "PA"),  # a known bad age
    ("00000006_000.png", "No Finding", 0, 6, "33", "F", "PA"),
    ("00000007_000.png", " Pneumonia ", 0, 7, "81", "M", "AP"),
    ("00000008_000.png", "No Finding", 0, 8, "25", "M", "PA"),
    ("00000009_000.png", "Pneumonia", 0, 9, "52", "F", "PA"),
]


def _png_bytes(seed: int, side: int = 24) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_labels(path: Path, rows=ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for index, findings, follow_up, patient, age, sex, view in rows:
            writer.writerow([index, findings, follow_up, patient, age, sex, view, 1024, 1024, 0.14, 0.14])
    return path


def _write_archive(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tarred:
        folder = tarfile.TarInfo("images")
        folder.type = tarfile.DIRTYPE
        tarred.addfile(folder)
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tarred.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture
def nih_mirror(tmp_path):
    """<mirror>/nih-chestxray14/{Data_Entry_2017_v2020.csv, images/<Image Index>}."""
    root = tmp_path / "mirror" / "nih-chestxray14"
    _write_labels(root / LABEL_FILE)
    for seed, row in enumerate(ROWS):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / row[0]).write_bytes(_png_bytes(seed))
    return root.parent


@pytest.fixture
def release(tmp_path):
    """The release in small: a label file and three archives images_00N.tar.gz of 4, 4 and 2 images."""
    root = tmp_path / "release"
    labels = _write_labels(root / LABEL_FILE)
    start = 0
    for number, size in enumerate(ARCHIVE_SIZES, start=1):
        members = {f"images/{row[0]}": _png_bytes(start + i) for i, row in enumerate(ROWS[start:start + size])}
        _write_archive(root / f"images_{number:03d}.tar.gz", members)
        start += size
    return labels


def _archive_urls(server: LoopbackServer) -> list[str]:
    return [f"{server.url}/images_{number:03d}.tar.gz" for number in range(1, len(ARCHIVE_SIZES) + 1)]


def _requested(server: LoopbackServer) -> list[str]:
    return [path for path, _ in server.requests]


# --------------------------------------------------------------------------- the label file


def test_label_file_is_parsed_into_sets_of_findings(tmp_path):
    images = read_nih_labels(_write_labels(tmp_path / LABEL_FILE))
    assert len(images) == 10
    assert images[1].findings == {"Edema", "Effusion", "Pneumonia"}
    assert images[7].findings == {"Pneumonia"}  # names are stripped
    assert images[0].findings == {"No Finding"} and images[0].patient == "1" and images[0].line == 2
    assert (images[0].age, images[0].sex, images[0].view, images[1].follow_up) == (45, "F", "PA", 1)
    assert images[5].age is None  # 412 years: one of the release's known bad ages


def test_old_age_format_and_padded_patient_ids(tmp_path):
    rows = [("00000010_000.png", "Mass", 0, "00010", "058Y", "M", "PA")]
    (image,) = read_nih_labels(_write_labels(tmp_path / LABEL_FILE, rows))
    assert image.age == 58 and image.patient == "10"


@pytest.mark.parametrize(
    ("findings", "age", "sex", "expected"),
    [
        ("Pneumonia|COVID-19", "40", "M", "unknown name"),
        ("Pneumonia|pneumonia", "40", "M", "unknown name"),        # exact names, not case-folded
        ("Pneumonia_like", "40", "M", "unknown name"),             # not string-matched
        ("No Finding|Pneumonia", "40", "M", "'No Finding' alone"),
        ("Pneumonia", "forty", "M", "Patient Age"),
        ("Pneumonia", "40", "X", "Patient Gender"),
    ],
)
def test_malformed_rows_name_the_file_and_line(tmp_path, findings, age, sex, expected):
    rows = [ROWS[0], ("00000011_000.png", findings, 0, 11, age, sex, "PA")]
    path = _write_labels(tmp_path / LABEL_FILE, rows)
    with pytest.raises(DataError) as caught:
        read_nih_labels(path)
    message = str(caught.value)
    assert str(path) in message and "line 3" in message and expected in message


def test_a_file_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text("patientid,finding\n1,COVID-19\n")
    with pytest.raises(DataError, match="not an NIH ChestX-ray14 label file"):
        read_nih_labels(path)


def test_the_fourteen_findings():
    assert len(NIH_FINDINGS) == 14 and "Pleural_Thickening" in NIH_FINDINGS and "No Finding" not in NIH_FINDINGS


# --------------------------------------------------------------------------- selection


def _indices(chosen):
    return {label: [image.index[:8] for image in images] for label, images in chosen.items()}


def test_selection_by_finding_view_age_and_sex(tmp_path):
    images = read_nih_labels(_write_labels(tmp_path / LABEL_FILE))
    default = _indices(select_nih_images(images))
    # adults only: the child (00000002) and the unknown age (00000005) are dropped
    assert default == {"normal": ["00000001", "00000004", "00000006", "00000008"],
                       "pneumonia": ["00000001", "00000007", "00000009"]}
    assert _indices(select_nih_images(images, min_age=None))["pneumonia"] == [
        "00000001", "00000002", "00000005", "00000007", "00000009"]
    assert _indices(select_nih_images(images, views=["PA"]))["normal"] == ["00000001", "00000006", "00000008"]
    assert _indices(select_nih_images(images, sexes=["F"])) == {"normal": ["00000001", "00000006"],
                                                               "pneumonia": ["00000001", "00000009"]}
    assert _indices(select_nih_images(images, max_age=50))["normal"] == ["00000001", "00000006", "00000008"]
    alone = select_nih_images(images, only_findings=True)
    assert _indices(alone)["pneumonia"] == ["00000007", "00000009"]


def test_an_image_of_two_classes_goes_to_the_first_in_label_map_order(tmp_path):
    images = read_nih_labels(_write_labels(tmp_path / LABEL_FILE))
    edema_first = select_nih_images(images, label_map={"edema": "Edema", "pneumonia": "Pneumonia"})
    assert "00000001_001.png" in [i.index for i in edema_first["edema"]]
    assert "00000001_001.png" not in [i.index for i in edema_first["pneumonia"]]
    pneumonia_first = select_nih_images(images, label_map={"pneumonia": "Pneumonia", "edema": "Edema"})
    assert [i.index for i in pneumonia_first["edema"]] == []
    with pytest.raises(DataError, match="Pneumonie"):
        select_nih_images(images, label_map={"pneumonia": "Pneumonie"})


# --------------------------------------------------------------------------- from a mirror


def test_mirror_over_http_fetches_the_label_file_then_only_the_selected_images(nih_mirror, tmp_path):
    with LoopbackServer(nih_mirror) as server:
        with pytest.warns(UserWarning, match="NIH publishes none"):
            records = nih_records(mirror=server.url, data_home=tmp_path / "home", progress=False)
        requested = _requested(server)
    selected = ["00000001_000.png", "00000004_000.png", "00000006_000.png", "00000008_000.png",
                "00000001_001.png", "00000007_000.png", "00000009_000.png"]
    assert requested == ["/nih-chestxray14/" + LABEL_FILE] + [f"/nih-chestxray14/images/{name}" for name in selected]
    assert [Path(record.path).name for record in records] == selected
    assert [record.label for record in records] == ["normal"] * 4 + ["pneumonia"] * 3
    assert {record.source for record in records} == {"nih"}
    assert records[0].group == "nih:1" and records[4].group == "nih:1"  # one patient, two images
    assert all(record.age >= 18 for record in records)
    assert (records[0].age, records[0].sex, records[0].view) == (45.0, "F", "PA")
    assert Path(records[0].path).read_bytes() == (nih_mirror / "nih-chestxray14" / "images" / selected[0]).read_bytes()


def test_mirror_folder_with_pinned_hashes_and_a_draw(nih_mirror, tmp_path):
    folder = nih_mirror / "nih-chestxray14"
    known = {f"nih-chestxray14/{path.relative_to(folder).as_posix()}": hashlib.sha256(path.read_bytes()).hexdigest()
             for path in folder.rglob("*") if path.is_file()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every file pinned: nothing to warn about
        records = nih_records(mirror=nih_mirror, known_hashes=known, n_per_label={"normal": 2, "pneumonia": None},
                              seed=3, data_home=tmp_path / "home", progress=False)
    labels = [record.label for record in records]
    assert labels.count("normal") == 2 and labels.count("pneumonia") == 3
    again = nih_records(mirror=nih_mirror, known_hashes=known, n_per_label={"normal": 2}, seed=3,
                        data_home=tmp_path / "home", progress=False)
    assert [r.path for r in again] == [r.path for r in records]
    wrong = dict(known, **{"nih-chestxray14/images/00000004_000.png": "0" * 64})
    with pytest.raises(ChecksumError, match="00000004_000.png"):
        nih_records(mirror=nih_mirror, known_hashes=wrong, data_home=tmp_path / "other", progress=False)
    with pytest.raises(DataError, match="only 4"):
        nih_records(mirror=nih_mirror, n_per_label=5, verify=False, data_home=tmp_path / "home", progress=False)


def test_no_label_file_without_a_mirror_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="nihcc.app.box.com"):
        fetch_nih_labels(data_home=tmp_path / "home")


def test_records_split_by_patient(nih_mirror, tmp_path):
    rows = [(f"{n:08d}_{k:03d}.png", "No Finding" if n % 2 else "Pneumonia", k, n, "50", "M", "PA")
            for n in range(1, 13) for k in range(2)]
    root = nih_mirror / "nih-chestxray14"
    _write_labels(root / LABEL_FILE, rows)
    for seed, row in enumerate(rows):
        (root / "images" / row[0]).write_bytes(_png_bytes(seed))
    records = nih_records(mirror=nih_mirror, verify=False, data_home=tmp_path / "home", progress=False)
    assert len(records) == 24 and len({record.group for record in records}) == 12
    data = load_datasets(records, image_size=8, progress=False)
    patients = [set(split.groups) for _, split in data.items()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])


# --------------------------------------------------------------------------- from the release's archives


def test_archive_plan_of_the_full_release():
    assert sum(NIH_ARCHIVE_SIZES) == 112_120 and len(NIH_ARCHIVE_URLS) == 12
    indices = [f"{i:08d}_000.png" for i in range(112_120)]
    plan = nih_archive_plan(indices, [indices[0], indices[4998], indices[4999], indices[105_000], indices[-1]])
    assert plan == {1: [indices[0], indices[4998]], 2: [indices[4999]], 12: [indices[105_000], indices[-1]]}
    assert nih_archive_plan(indices[:-1], [indices[0]]) is None


def test_only_the_archives_holding_selected_images_are_fetched(release, tmp_path):
    home = tmp_path / "home"
    with LoopbackServer(release.parent) as server:
        with pytest.warns(UserWarning, match="sha256"):  # no published checksum: recorded and said
            records = nih_records(label_path=release, archive_urls=_archive_urls(server),
                                  archive_sizes=ARCHIVE_SIZES, label_map={"pneumonia": "Pneumonia"},
                                  only_findings=True, data_home=home, progress=False)
        requested = _requested(server)
    # Pneumonia alone, adults: 00000007 (archive 2) and 00000009 (archive 3); archive 1 is not fetched.
    assert requested == ["/images_002.tar.gz", "/images_003.tar.gz"]
    assert [Path(record.path).name for record in records] == ["00000007_000.png", "00000009_000.png"]
    extracted = sorted(path.name for path in (home / "nih-chestxray14" / "extracted").rglob("*.png"))
    assert extracted == ["00000007_000.png", "00000009_000.png"]  # only the selected members
    assert Path(records[0].path).read_bytes() == _png_bytes(7)


def test_archives_from_a_mirror_and_images_already_extracted(release, tmp_path):
    mirror = tmp_path / "archive-mirror"
    (mirror / "nih-chestxray14").mkdir(parents=True)
    for path in release.parent.iterdir():
        (mirror / "nih-chestxray14" / path.name).write_bytes(path.read_bytes())
    home = tmp_path / "home"
    with LoopbackServer(mirror) as server:
        first = nih_records(mirror=server.url, from_archives=True, archive_sizes=ARCHIVE_SIZES,
                            archive_urls=["https://unused.invalid/x.gz"] * 3, verify=False, data_home=home,
                            progress=False)
        fetched = _requested(server)
        server.requests.clear()
        again = nih_records(mirror=server.url, from_archives=True, archive_sizes=ARCHIVE_SIZES,
                            archive_urls=["https://unused.invalid/x.gz"] * 3, verify=False, data_home=home,
                            progress=False)
        assert _requested(server) == []  # the label file and the extracted images are cached
    assert fetched == ["/nih-chestxray14/" + LABEL_FILE] + [f"/nih-chestxray14/images_00{n}.tar.gz" for n in (1, 2, 3)]
    assert [r.path for r in first] == [r.path for r in again] and len(first) == 7


def test_a_label_file_not_of_the_full_release_scans_archives_in_turn(release, tmp_path):
    with LoopbackServer(release.parent) as server:
        with pytest.warns(UserWarning, match="cannot be derived"):
            records = nih_records(label_path=release, archive_urls=_archive_urls(server), archive_sizes=(4, 4, 3),
                                  label_map={"normal": "No Finding"}, views=["PA"], min_age=30, max_age=45,
                                  verify=False, data_home=tmp_path / "home", progress=False)
        requested = _requested(server)
    # 00000001 (archive 1) and 00000006 (archive 2): found before archive 3, which is never fetched.
    assert requested == ["/images_001.tar.gz", "/images_002.tar.gz"]
    assert [Path(r.path).name for r in records] == ["00000001_000.png", "00000006_000.png"]


def test_an_archive_with_a_member_escaping_the_target_is_refused(release, tmp_path):
    evil = {"images/00000001_000.png": _png_bytes(0), "../evil.png": b"gotcha",
            "images/00000001_001.png": _png_bytes(1), "images/00000002_000.png": _png_bytes(2),
            "images/00000003_000.png": _png_bytes(3)}
    _write_archive(release.parent / "images_001.tar.gz", evil)
    home = tmp_path / "home"
    with LoopbackServer(release.parent) as server, pytest.raises(DownloadError) as caught:
        nih_records(label_path=release, archive_urls=_archive_urls(server), archive_sizes=ARCHIVE_SIZES,
                    verify=False, data_home=home, progress=False)
    message = str(caught.value)
    assert "../evil.png" in message and "outside the target folder" in message and "images_001.tar.gz" in message
    assert not list(tmp_path.rglob("evil.png"))
    assert not list((home / "nih-chestxray14").rglob("*.png"))


def test_an_interrupted_archive_download_resumes(release, tmp_path):
    # Large incompressible images, so that the connection drops after several network reads.
    big = {f"images/{row[0]}": _png_bytes(seed, side=300) for seed, row in enumerate(ROWS[4:8])}
    _write_archive(release.parent / "images_002.tar.gz", big)
    with LoopbackServer(release.parent) as server:
        server.drop_after("/images_002.tar.gz", 200_000)
        records = nih_records(label_path=release, archive_urls=_archive_urls(server), archive_sizes=ARCHIVE_SIZES,
                              label_map={"normal": "No Finding"}, views=["AP"], verify=False,
                              data_home=tmp_path / "home", progress=False)
        ranges = server.requests_for("/images_002.tar.gz")
    assert [Path(r.path).name for r in records] == ["00000004_000.png"]
    assert len(ranges) == 2 and ranges[0] is None
    assert ranges[1] is not None and ranges[1].startswith("bytes=") and int(ranges[1][len("bytes="):-1]) > 0
    assert Path(records[0].path).read_bytes() == big["images/00000004_000.png"]


# --------------------------------------------------------------------------- composition and confounds


def _records(spec):
    """Records from (label, source, age, count) tuples, one patient each."""
    records = []
    for label, source, age, count in spec:
        records += [Sample(f"{label}-{source}-{i}.png", label, f"{source}:{label}{i}", source, age)
                    for i in range(count)]
    return records


def test_the_warning_names_the_isolated_class_for_the_seed_papers_composite():
    records = _records([("covid19", "ieee8023", 60, 3), ("normal", "kermany", None, 3),
                        ("pneumonia", "kermany", None, 3)])
    with pytest.warns(UserWarning) as caught:
        problems = warn_if_confounded(records)
    message = str(caught[0].message)
    assert "different sources" in message and "different age groups" in message
    assert problems == ["class 'covid19' shares no source with the other classes",
                        "class 'covid19' shares no age group with the other classes"]
    assert "covid19: ieee8023" in message and "normal: kermany" in message and "normal: children" in message


def test_the_warning_names_covid19_for_adult_controls_and_says_nothing_of_ages():
    records = _records([("covid19", "ieee8023", 60, 3), ("normal", "nih", 40, 3), ("pneumonia", "nih", 50, 3)])
    with pytest.warns(UserWarning, match="different sources") as caught:
        problems = warn_if_confounded(records)
    assert problems == ["class 'covid19' shares no source with the other classes"]
    assert "age groups:" not in str(caught[0].message).split("different sources")[0]


def test_two_classes_of_different_ages_from_one_source_are_named():
    records = _records([("covid19", "hospital", 60, 3), ("normal", "hospital", 8, 3)])
    with pytest.warns(UserWarning, match="different age groups"):
        problems = warn_if_confounded(records)
    assert problems == ["class 'covid19' shares no age group with the other classes",
                        "class 'normal' shares no age group with the other classes"]


def test_no_warning_for_a_balanced_mix():
    records = _records([(label, source, age, 2) for label in ("covid19", "normal", "pneumonia")
                        for source, age in (("hospital-a", 60), ("hospital-b", 9))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_confounded(records) == []


def test_composition_by_class_and_source_adds_up():
    records = _records([("covid19", "ieee8023", 60, 3), ("normal", "nih", 40, 2), ("normal", "kermany", None, 4)])
    records.append(Sample("x.png", "covid19", "ieee8023:covid190", "ieee8023", None, view="PA"))
    rows = describe_composition(records)
    assert [(r["label"], r["source"], r["images"], r["patients"]) for r in rows] == [
        ("covid19", "ieee8023", 4, 3), ("normal", "kermany", 4, 4), ("normal", "nih", 2, 2)]
    assert sum(r["images"] for r in rows) == len(records)
    assert rows[0]["age_known"] == 3 and rows[0]["views"] == {"PA": 1, "unknown": 3}
    assert (rows[1]["children"], rows[1]["adults"], rows[2]["adults"]) == (4, 0, 2)
    table = format_composition(rows)
    assert table.splitlines()[0].startswith("label") and "kermany" in table and len(table.splitlines()) == 4


# --------------------------------------------------------------------------- the real data


@pytest.mark.integration
def test_adult_controls_from_the_shared_mirror(shared_data, tmp_path):
    with pytest.warns(UserWarning, match="class 'covid19' shares no source"):
        data = load_datasets("adult_controls", mirror=shared_data, verify=False, data_home=tmp_path / "home",
                             image_size=32, progress=False)
    assert data.class_names == ["covid19", "normal", "pneumonia"]
    records = [record for _, split in data.items() for record in split.records]
    patients = [set(split.groups) for _, split in data.items()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    totals = {name: sum(split.class_counts()[name] for _, split in data.items()) for name in data.class_names}
    assert all(count > 0 for count in totals.values())
    nih = [record for record in records if record.source == "nih"]
    assert nih and all(record.age is not None and record.age >= 18 for record in nih)
    assert {record.label for record in nih} == {"normal", "pneumonia"}
    assert {record.source for record in records if record.label == "covid19"} == {"ieee8023"}
    assert all(record.age is None or record.age >= 18 for record in records)
    rows = describe_composition(records)
    for name, total in totals.items():
        assert sum(row["images"] for row in rows if row["label"] == name) == total
    assert sum(row["images"] for row in rows) == len(records) == sum(totals.values())
