"""COVID-CXNet and the BIMCV images of the COVID-19 Radiography Database, fetched from loopback mirrors."""

from __future__ import annotations

import csv
import hashlib
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from loopback_server import LoopbackServer
from PIL import Image

from cxrclassify.datasets import (
    TRAINING_ONLY_SOURCES,
    Sample,
    bimcv_records,
    check_not_training_only,
    cxnet_records,
    is_training_only,
    join_duplicate_groups,
    load_datasets,
    read_cxnet_metadata,
    read_image,
    resize,
    select_cxnet_rows,
    split_training_only,
    write_manifest,
)
from cxrclassify.datasets.bimcv import BIMCV_COMMIT, BIMCV_IMAGE_SIZE, bimcv_registry
from cxrclassify.datasets.cxnet import (
    CXNET_COLUMNS,
    CXNET_COMMIT,
    CXNET_FILTER_RULES,
    cxnet_name_flags,
)
from cxrclassify.exceptions import (
    ArgumentError,
    ChecksumError,
    DataError,
    DataWarning,
    DownloadError,
    UnverifiedDownloadWarning,
)

CXNET_CACHE = f"covid-cxnet/{CXNET_COMMIT[:12]}"
BIMCV_CACHE = f"covid19-radiography-bimcv/{BIMCV_COMMIT[:12]}"
TWITTER = "https://twitter.com/ChestImaging/status/1243928581983670272"

# (filename, patient_id, sex, age, view, label, pcr_test, location, url, what the default filter does)
CXNET_ROWS = [
    ("260.jpg", "10", "female", "68", "", "COVID-19", "positive", "Spain", TWITTER, "kept"),
    ("261.png", "11", "male", "47", "AP", "COVID-19", "positive", "UK",
     "https://radiopaedia.org/cases/covid-19-pneumonia-12", "kept"),
    ("262.jpg", "11", "male", "47", "PA", "COVID-19", "negative", "UK", TWITTER, "pcr_negative"),
    ("263.jpg", "12", "", "", "", "COVID-19", "", "US", "https://www.eurorad.org/case/16858", "kept"),
    ("446p.jpg", "13", "female", "", "AP", "COVID-19", "positive", "Italy", TWITTER, "pediatric"),
    ("447.jpg", "14", "male", "12", "AP", "COVID-19", "positive", "Italy", TWITTER, "pediatric"),
    ("280-.jpg", "15", "male", "67", "PA", "COVID-19", "positive", "Spain", TWITTER, "normal_looking"),
    ("756.jpg", "16", "male", "50", "", "", "negative", "Spain", TWITTER, "blank_label"),
    ("370.jfif", "17", "female", "62", "", "COVID-19", "positive", "US",
     "https://doi.org/10.1056/NEJMoa2001191", "kept"),
    ("264.jpg", "", "male", "70", "AP", "COVID-19", "positive", "Spain", TWITTER, "kept"),
]
KEPT = [row[0] for row in CXNET_ROWS if row[-1] == "kept"]


def _xray(path: Path, seed: int, *, side: int = 32, image_format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=image_format)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_cxnet_metadata(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig") as handle:  # upstream has a byte order mark
        writer = csv.DictWriter(handle, fieldnames=CXNET_COLUMNS)
        writer.writeheader()
        for filename, patient, sex, age, view, label, pcr, location, url, _ in rows:
            row = dict.fromkeys(CXNET_COLUMNS, "")
            row.update(filename=filename, patient_id=patient, sex=sex, age=age, view=view, label=label,
                       pcr_test=pcr, location=location, url=url)
            writer.writerow(row)
    return path


@pytest.fixture
def cxnet_mirror(tmp_path):
    """<mirror>/covid-cxnet/{metadata.csv, chest_xray_images/covid19/<file>}: 10 rows, one per rule and more."""
    root = tmp_path / "mirror" / "covid-cxnet"
    _write_cxnet_metadata(root / "metadata.csv", CXNET_ROWS)
    for seed, row in enumerate(CXNET_ROWS):
        _xray(root / "chest_xray_images" / "covid19" / row[0], seed, image_format="JPEG" if row[0].endswith(
            (".jpg", ".jfif")) else "PNG")
    return root.parent


@pytest.fixture
def bimcv_mirror(tmp_path):
    """<mirror>/covid19-radiography-bimcv/COVID/COVID-NNNN.jpg for three upstream numbers."""
    root = tmp_path / "mirror" / "covid19-radiography-bimcv" / "COVID"
    for seed, number in enumerate((1852, 1854, 1856)):
        _xray(root / f"COVID-{number}.jpg", 100 + seed, side=224, image_format="JPEG")
    return root.parent.parent


def _requested(server: LoopbackServer) -> list[str]:
    return [path for path, _ in server.requests]


# --------------------------------------------------------------------------- COVID-CXNet: the filter


def test_cxnet_names_mark_children_and_normal_looking_images():
    assert cxnet_name_flags("446p.jpg") == (True, False)
    assert cxnet_name_flags("280-.jpg") == (False, True)
    assert cxnet_name_flags("482p-.jpg") == (True, True)
    assert cxnet_name_flags("370.jfif") == cxnet_name_flags("001.jpeg") == (False, False)


def test_cxnet_default_filter_counts_what_each_rule_drops(cxnet_mirror):
    rows = read_cxnet_metadata(cxnet_mirror / "covid-cxnet" / "metadata.csv")
    assert rows[0]["filename"] == "260.jpg"  # the byte order mark is skipped
    selection = select_cxnet_rows(rows)
    assert [row["filename"] for row in selection.rows] == KEPT
    expected = Counter(row[-1] for row in CXNET_ROWS if row[-1] != "kept")
    assert selection.dropped == {rule: expected.get(rule, 0) for rule in CXNET_FILTER_RULES}
    assert selection.total == 10 and selection.dropped_total == 10 - len(KEPT)
    # counted independently: 756.jpg is PCR-negative too, and two rows have a blank PCR test... one of them kept
    assert selection.matched["pcr_negative"] == 2 and selection.matched["pcr_unknown"] == 1
    assert selection.summary() == "kept 5 of 10 rows; dropped: blank_label 1, pcr_negative 1, pediatric 2, normal_looking 1"


@pytest.mark.parametrize(
    ("option", "value", "now_kept"),
    [
        ("drop_pcr_negative", False, ["262.jpg"]),
        ("drop_pediatric", False, ["446p.jpg", "447.jpg"]),
        ("adult_age", None, ["447.jpg"]),  # the age rule off: the 'p' suffix alone marks a child
        ("adult_age", 10, ["447.jpg"]),
        ("drop_normal_looking", False, ["280-.jpg"]),
        ("drop_blank_label", False, []),  # 756.jpg is PCR-negative as well: the next rule drops it
    ],
)
def test_each_cxnet_rule_can_be_turned_off(cxnet_mirror, option, value, now_kept):
    rows = read_cxnet_metadata(cxnet_mirror / "covid-cxnet" / "metadata.csv")
    kept = [row["filename"] for row in select_cxnet_rows(rows, **{option: value}).rows]
    assert sorted(set(kept) - set(KEPT)) == sorted(now_kept) and set(KEPT) <= set(kept)


def test_cxnet_blank_pcr_and_other_labels_are_options(cxnet_mirror):
    rows = read_cxnet_metadata(cxnet_mirror / "covid-cxnet" / "metadata.csv")
    strict = select_cxnet_rows(rows, drop_pcr_unknown=True)
    assert "263.jpg" not in [row["filename"] for row in strict.rows] and strict.dropped["pcr_unknown"] == 1
    everything = select_cxnet_rows(rows, drop_blank_label=False, drop_pcr_negative=False, drop_pediatric=False,
                                   drop_normal_looking=False)
    assert len(everything) == 10
    assert select_cxnet_rows(rows, labels=("SARS",)).dropped["other_label"] == 9
    twice = select_cxnet_rows(rows + rows[:1])
    assert twice.dropped["duplicate_file"] == 1 and len(twice) == len(KEPT)
    with pytest.raises(ArgumentError, match="adult_age"):
        select_cxnet_rows(rows, adult_age="18")


def test_cxnet_metadata_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text("patientid,finding\n1,COVID-19\n")
    with pytest.raises(DataError, match="not a COVID-CXNet metadata.csv"):
        read_cxnet_metadata(path)
    _write_cxnet_metadata(path, [("../escape.jpg",) + CXNET_ROWS[0][1:]])
    with pytest.raises(DataError, match="row 1"):
        read_cxnet_metadata(path)


# --------------------------------------------------------------------------- COVID-CXNet: fetching


def test_cxnet_over_http_fetches_only_the_kept_images_and_records_the_hashes(cxnet_mirror, tmp_path):
    home = tmp_path / "home"
    with LoopbackServer(cxnet_mirror) as server:
        with pytest.warns(UnverifiedDownloadWarning) as caught:
            records = cxnet_records(mirror=server.url, data_home=home, progress=False)
        requested = _requested(server)
        messages = [str(item.message) for item in caught if item.category is UnverifiedDownloadWarning]
        # one warning for metadata.csv (with its sha256 to pin), one for all the images
        assert len(messages) == 2 and "5 COVID-CXNet image(s)" in messages[1]
        digest = _sha256(cxnet_mirror / "covid-cxnet" / "metadata.csv")
        assert digest in messages[0]

        assert [Path(record.path).name for record in records] == KEPT
        assert requested == ["/covid-cxnet/metadata.csv"] + [f"/covid-cxnet/chest_xray_images/covid19/{name}"
                                                              for name in KEPT]
        for record in records:
            assert Path(record.path).is_file()
            assert Path(record.path).parent == home / CXNET_CACHE / "chest_xray_images" / "covid19"
        first, second, blank, journal, nameless = records
        assert (first.label, first.group, first.source, first.age, first.sex, first.view, first.site) == (
            "covid19", "covid-cxnet:10", "covid-cxnet", 68.0, "F", None, "twitter-chestimaging")
        assert (second.sex, second.view, second.site) == ("M", "AP", "radiopaedia")
        assert (blank.age, blank.sex, blank.site) == (None, None, "eurorad")
        assert journal.site == "journal:nejm.org"
        assert nameless.group is None  # no patient_id: the image is its own group
        assert all(record.original_group is None for record in records)

        # A cache hit: no request, no warning (the sha256 recorded at the first download vouches).
        before = len(server.requests)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = cxnet_records(mirror=server.url, data_home=home, progress=False)
        assert again == records and len(server.requests) == before


def test_cxnet_pins_and_a_checksum_failure(cxnet_mirror, tmp_path):
    home = tmp_path / "home"
    root = cxnet_mirror / "covid-cxnet"
    known = {f"{CXNET_CACHE}/metadata.csv": _sha256(root / "metadata.csv")}
    known.update({f"{CXNET_CACHE}/chest_xray_images/covid19/{name}":
                  _sha256(root / "chest_xray_images" / "covid19" / name) for name in KEPT})
    with LoopbackServer(cxnet_mirror) as server:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnverifiedDownloadWarning)  # every file pinned: nothing unverified
            records = cxnet_records(mirror=server.url, data_home=home / "pinned", known_hashes=known,
                                    progress=False)
        assert len(records) == len(KEPT)

        wrong = dict(known, **{f"{CXNET_CACHE}/chest_xray_images/covid19/263.jpg": "0" * 64})
        with pytest.raises(ChecksumError, match="263.jpg"):
            cxnet_records(mirror=server.url, data_home=home / "wrong", known_hashes=wrong, progress=False)
    folder = home / "wrong" / CXNET_CACHE / "chest_xray_images" / "covid19"
    assert (folder / "261.png").is_file()  # fetched before it
    assert not (folder / "263.jpg").exists() and not list(folder.glob("*.part"))


def test_cxnet_image_missing_from_the_mirror_is_a_404(cxnet_mirror, tmp_path):
    (cxnet_mirror / "covid-cxnet" / "chest_xray_images" / "covid19" / "261.png").unlink()
    with LoopbackServer(cxnet_mirror) as server:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnverifiedDownloadWarning)
            with pytest.raises(DownloadError, match="404"):
                cxnet_records(mirror=server.url, data_home=tmp_path / "home", progress=False)
    folder = tmp_path / "home" / CXNET_CACHE / "chest_xray_images" / "covid19"
    assert (folder / "260.jpg").is_file() and not (folder / "261.png").exists()
    assert not list(folder.glob("*.part"))


def test_cxnet_from_a_local_mirror_with_selected_rows(cxnet_mirror, tmp_path):
    rows = select_cxnet_rows(read_cxnet_metadata(cxnet_mirror / "covid-cxnet" / "metadata.csv")).rows[:2]
    with pytest.warns(UnverifiedDownloadWarning, match="verify=False"):
        records = cxnet_records(rows=rows, mirror=cxnet_mirror.as_uri(), data_home=tmp_path / "home", verify=False,
                                progress=False)
    assert [record.group for record in records] == ["covid-cxnet:10", "covid-cxnet:11"]
    assert "github" not in records[0].path and CXNET_COMMIT[:12] in records[0].path
    with pytest.raises(ArgumentError, match="commit"):
        cxnet_records(rows=rows, commit="main", mirror=cxnet_mirror, progress=False)


# --------------------------------------------------------------------------- BIMCV


def test_bimcv_registry_lists_every_upstream_png_with_its_sha256():
    registry = bimcv_registry()
    assert len(registry) == 1652 and (min(registry), max(registry)) == (1852, 3616)
    assert all(record.sha256 and len(record.sha256) == 64 for record in registry.values())
    record = registry[1852]
    assert record.url == ("https://raw.githubusercontent.com/rtchanon/Machine-Learning-for-COVID-19-detection-from-"
                          f"chest-X-RAYS/{BIMCV_COMMIT}/COVID-19_Radiography_Dataset/COVID/COVID-1852.png")
    assert record.name == f"{BIMCV_CACHE}/COVID/COVID-1852.png"
    jpg = bimcv_registry(mirror_suffix=".jpg")[1852]
    assert jpg.mirror_path == "covid19-radiography-bimcv/COVID/COVID-1852.jpg" and jpg.url == record.url
    with pytest.raises(ArgumentError, match="mirror_suffix"):
        bimcv_registry(mirror_suffix=".jpeg")


def test_bimcv_over_http_gives_training_only_records(bimcv_mirror, tmp_path):
    home = tmp_path / "home"
    with LoopbackServer(bimcv_mirror) as server:
        with pytest.warns(UserWarning) as caught:
            records = bimcv_records(numbers=[1856, 1852, 1854], mirror=server.url, verify=False, data_home=home,
                                    progress=False)
        categories = Counter(item.category for item in caught)
        assert categories[DataWarning] == 1 and categories[UnverifiedDownloadWarning] == 1  # once each, not per image
        licence = next(str(item.message) for item in caught if item.category is DataWarning)
        assert "development only" in licence and "224 x 224" in licence
        assert _requested(server) == [f"/covid19-radiography-bimcv/COVID/COVID-{n}.jpg" for n in (1852, 1854, 1856)]
        assert [(r.label, r.group, r.source, r.site) for r in records] == [
            ("covid19", f"bimcv:COVID-{n}", "bimcv", "bimcv-valencia") for n in (1852, 1854, 1856)]
        assert all(Path(r.path).parent == home / BIMCV_CACHE / "COVID" for r in records)
        assert all(is_training_only(r) for r in records) and TRAINING_ONLY_SOURCES == {"bimcv"}

        before = len(server.requests)
        with pytest.warns(DataWarning), warnings.catch_warnings():  # the licence, on every call
            warnings.simplefilter("ignore", UnverifiedDownloadWarning)
            again = bimcv_records(numbers=[1852, 1854, 1856], mirror=server.url, verify=False, data_home=home,
                                  progress=False)
        assert again == records and len(server.requests) == before


def test_bimcv_mirror_of_jpeg_conversions_is_refused_unless_told(bimcv_mirror, tmp_path):
    home = tmp_path / "home"
    with pytest.warns(DataWarning), pytest.raises(ChecksumError, match="verify=False or known_hashes"):
        bimcv_records(numbers=[1852], mirror=bimcv_mirror, data_home=home, progress=False)
    folder = home / BIMCV_CACHE / "COVID"
    assert not (folder / "COVID-1852.jpg").exists() and not list(folder.glob("*.part"))

    folder_of = bimcv_mirror / "covid19-radiography-bimcv" / "COVID"
    known = {f"{BIMCV_CACHE}/COVID/COVID-{n}.jpg": _sha256(folder_of / f"COVID-{n}.jpg") for n in (1852, 1854)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedDownloadWarning)
        warnings.simplefilter("ignore", DataWarning)
        records = bimcv_records(numbers=[1852, 1854], mirror=bimcv_mirror, known_hashes=known, data_home=home,
                                progress=False)
    assert len(records) == 2


def test_bimcv_upstream_pngs_are_checked_against_the_registry(tmp_path):
    # A mirror of PNGs (the upstream format) is verified against the packaged upstream sha256:
    # these stand-ins are not the upstream files, so they are refused.
    mirror = tmp_path / "mirror"
    _xray(mirror / "covid19-radiography-bimcv" / "COVID" / "COVID-1852.png", 0, side=224)
    with LoopbackServer(mirror) as server:
        with pytest.warns(DataWarning), pytest.raises(ChecksumError, match=bimcv_registry()[1852].sha256):
            bimcv_records(numbers=[1852], mirror=server.url, mirror_suffix=".png", data_home=tmp_path / "home",
                          progress=False)
    folder = tmp_path / "home" / BIMCV_CACHE / "COVID"
    assert not (folder / "COVID-1852.png").exists() and not list(folder.glob("*.part"))


def test_bimcv_selection_and_a_404(bimcv_mirror, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DataWarning, UnverifiedDownloadWarning))
        with LoopbackServer(bimcv_mirror) as server:
            with pytest.raises(DownloadError, match="404"):
                bimcv_records(numbers=[1852, 1858], mirror=server.url, verify=False, data_home=tmp_path / "home",
                              progress=False)
        with pytest.raises(DataError, match="unknown"):
            bimcv_records(numbers=[1853], mirror=bimcv_mirror, verify=False, progress=False)  # not a BIMCV file
        with pytest.raises(ArgumentError, match="numbers"):
            bimcv_records(numbers=["COVID-1852"], mirror=bimcv_mirror, verify=False, progress=False)
        with pytest.raises(ArgumentError, match="n="):
            bimcv_records(numbers=[1852], n=2, mirror=bimcv_mirror, verify=False, progress=False)
        first = bimcv_records(numbers=[1852, 1854, 1856], n=2, seed=3, mirror=bimcv_mirror, verify=False,
                              data_home=tmp_path / "home", progress=False)
        again = bimcv_records(numbers=[1852, 1854, 1856], n=2, seed=3, mirror=bimcv_mirror, verify=False,
                              data_home=tmp_path / "home", progress=False)
    assert len(first) == 2 and first == again


def test_training_only_records_are_kept_out_of_evaluation():
    records = [Sample("a.jpg", "covid19", "bimcv:COVID-1852", "bimcv"), Sample("b.png", "normal", "nih:1", "nih"),
               Sample("c.jpg", "covid19", "bimcv:COVID-1854", "bimcv")]
    training_only, others = split_training_only(records)
    assert [r.path for r in training_only] == ["a.jpg", "c.jpg"] and [r.path for r in others] == ["b.png"]
    check_not_training_only(others)
    with pytest.raises(DataError, match=r"the test split.*2 record\(s\) of source 'bimcv' \(2\)"):
        check_not_training_only(records, purpose="the test split")


# --------------------------------------------------------------------------- the shared data as a mirror


@pytest.fixture(scope="module")
def shared_cxnet(tmp_path_factory):
    from conftest import SHARED

    data = SHARED / "data"
    if not (data / "covid-cxnet").is_dir():
        pytest.skip(f"../shared/data/covid-cxnet is absent ({data})")
    home = tmp_path_factory.mktemp("home")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedDownloadWarning)
        return cxnet_records(mirror=data, data_home=home, verify=False, progress=False)


@pytest.mark.integration
def test_cxnet_default_filter_on_the_real_metadata(shared_data):
    rows = read_cxnet_metadata(shared_data / "covid-cxnet" / "metadata.csv")
    assert len(rows) == 352 and list(rows[0]) == list(CXNET_COLUMNS)
    selection = select_cxnet_rows(rows)
    # The counts of the shared data's README, rule by rule...
    assert {rule: selection.matched[rule] for rule in ("blank_label", "pcr_negative", "pcr_unknown",
                                                      "normal_looking")} == {
        "blank_label": 1, "pcr_negative": 19, "pcr_unknown": 26, "normal_looking": 22}
    assert selection.matched["pediatric"] == 19  # 15 'p' suffixes (2 of them 'p-'), 19 ages under 18: 19 rows
    # ...and what the default filter drops, each row under its first rule.
    assert selection.dropped == {"duplicate_file": 0, "blank_label": 1, "other_label": 0, "pcr_negative": 18,
                                 "pcr_unknown": 0, "pediatric": 19, "normal_looking": 16}
    assert len(selection) == 298 and len({row["patient_id"] for row in selection.rows}) == 178


@pytest.mark.integration
def test_cxnet_records_from_the_shared_mirror(shared_cxnet):
    assert len(shared_cxnet) == 298 and len({r.group for r in shared_cxnet}) == 178
    sites = Counter(record.site for record in shared_cxnet)
    assert sites["twitter-chestimaging"] == 107 and sites["radiopaedia"] == 31 and sites["eurorad"] == 12
    assert None not in sites and all(record.age is None or record.age >= 18 for record in shared_cxnet)
    assert {record.view for record in shared_cxnet} <= {"AP", "PA", None}
    assert {record.sex for record in shared_cxnet} <= {"M", "F", None}


SAME_PICTURES = [("332.jpg", "351.jpg"), ("330.jpg", "349.jpg"), ("361.jpg", "370.jfif"),
                 ("409.jpeg", "788.jpeg"), ("410.jpeg", "789.jpeg"), ("411.jpeg", "790.jpeg")]
JOINED_PATIENTS = sorted([("covid-cxnet:38", "covid-cxnet:48"), ("covid-cxnet:53", "covid-cxnet:57"),
                          ("covid-cxnet:102", "covid-cxnet:235")])


@pytest.mark.integration
def test_the_six_same_pictures_under_two_patient_ids_are_joined(shared_cxnet):
    by_name = {Path(record.path).name: record for record in shared_cxnet}
    pairs = [(by_name[a], by_name[b]) for a, b in SAME_PICTURES]
    assert all(a.group != b.group for a, b in pairs)
    records = [record for pair in pairs for record in pair]
    images = np.stack([resize(read_image(record.path), 64) for record in records])
    groups, joins = join_duplicate_groups([r.group for r in records], images, [r.path for r in records])
    assert all(groups[2 * i] == groups[2 * i + 1] for i in range(len(pairs)))
    assert sorted(join.members for join in joins) == JOINED_PATIENTS


@pytest.mark.integration
def test_load_datasets_joins_the_cxnet_patients_filed_twice(shared_cxnet):
    # Two classes from one collection, older and younger patients, so that the split is stratified.
    labelled = [Sample(r.path, "older" if (r.age or 0) >= 60 else "younger", r.group, r.source, r.age, site=r.site)
                for r in shared_cxnet]
    data = load_datasets(labelled, image_size=48, progress=False)
    joined = [set(join.members) for join in data.merged_groups]
    for pair in JOINED_PATIENTS:
        assert any(set(pair) <= members for members in joined), pair
    split_of: dict[str, set[str]] = {}
    for name, split in data.items():
        for record in split.records:
            split_of.setdefault(record.original_group or record.group, set()).add(name)
    for a, b in JOINED_PATIENTS:
        assert split_of[a] == split_of[b] and len(split_of[a]) == 1
    assert data.duplicates == []
    assert {site for _, split in data.items() for site in split.sites} >= {"twitter-chestimaging", "radiopaedia"}


@pytest.mark.integration
def test_bimcv_from_the_shared_mirror(shared_data, tmp_path):
    home = tmp_path / "home"
    with pytest.warns(DataWarning), pytest.raises(ChecksumError, match="verify=False or known_hashes"):
        bimcv_records(mirror=shared_data, data_home=home, progress=False)  # JPEG conversions: not the upstream files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DataWarning, UnverifiedDownloadWarning))
        records = bimcv_records(mirror=shared_data, verify=False, data_home=home, progress=False)
    assert len(records) == 1652 and len({r.path for r in records}) == 1652 == len({r.group for r in records})
    assert {(r.label, r.source, r.site) for r in records} == {("covid19", "bimcv", "bimcv-valencia")}
    names = {Path(r.path).name for r in records}
    with (shared_data / "covid19-radiography-bimcv" / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        listed = [row for row in csv.DictReader(handle)]
    assert names == {Path(row["filename"]).name for row in listed}
    registry = bimcv_registry()
    assert {row["original_sha256"] for row in listed} == {record.sha256 for record in registry.values()}
    for record in records[::400]:
        assert read_image(record.path).shape[:2] == BIMCV_IMAGE_SIZE
    with pytest.raises(DataError, match="training-only"):
        check_not_training_only(records)


def test_load_datasets_trains_on_training_only_sources_and_never_tests_on_them(tmp_path):
    records = [Sample(str(_xray(tmp_path / f"b{index}.png", index)), "covid19", source="bimcv")
               for index in range(12)]
    records += [Sample(str(_xray(tmp_path / f"o{index}.png", 100 + index)), "ab"[index % 2],
                       group=f"p{index}", source="other") for index in range(40)]
    data = load_datasets([*records[12:], *records[:12]], image_size=16, seed=3, progress=False,
                         class_names=["a", "b", "covid19"])
    assert sorted(data.train.sources).count("bimcv") == 12
    assert "bimcv" not in data.validation.sources + data.test.sources
    assert len(data.validation) and len(data.test)
    manifest = tmp_path / "split.csv"
    rows = data.manifest()
    rows[next(index for index, row in enumerate(rows) if row["source"] == "bimcv")]["split"] = "test"
    write_manifest(rows, manifest)
    with pytest.raises(DataError, match="training-only"):
        load_datasets(manifest, image_size=16, progress=False)
