"""FetchOptions: one object for data_home, mirror, verify, known_hashes and progress, everywhere they went.

Every source, recipe and ``load_datasets`` takes ``fetch_options=FetchOptions(...)`` or the five keywords one
by one; both give the same records. The mirrors are small fake ones built in ``tmp_path`` (no network).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import inspect
import io
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from loopback_server import LoopbackServer
from PIL import Image

from cxrclassify import datasets
from cxrclassify.datasets import (
    FetchOptions,
    RemoteFile,
    bimcv_records,
    cxnet_records,
    fetch,
    ieee8023_records,
    kermany_records,
    load_datasets,
    nih_records,
    register_recipe,
    resolve_fetch_options,
)
from cxrclassify.datasets import _load
from cxrclassify.datasets.composite import adult_controls_records, soares2020_records
from cxrclassify.datasets.cxnet import fetch_cxnet_metadata
from cxrclassify.datasets.ieee8023 import IEEE8023_COMMIT, fetch_ieee8023_metadata
from cxrclassify.datasets.kermany import kermany_archive
from cxrclassify.datasets.nih import fetch_nih_images, fetch_nih_labels
from cxrclassify.exceptions import ArgumentTypeError, ChecksumError
from cxrclassify.models import pretrained

FIELDS = ("data_home", "mirror", "verify", "known_hashes", "progress")

#: Every function that took the five fetch keywords one by one.
FETCHING_FUNCTIONS = [
    ieee8023_records, fetch_ieee8023_metadata, kermany_records, kermany_archive, nih_records, fetch_nih_labels,
    fetch_nih_images, cxnet_records, fetch_cxnet_metadata, bimcv_records, soares2020_records, adult_controls_records,
]


# --------------------------------------------------------------------------- small fake mirrors


def _xray(path: Path, seed: int, *, side: int = 40, image_format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=image_format)
    return path


def _write_csv(path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def mirror(tmp_path):
    """One mirror folder holding small copies of ieee8023, Kermany, NIH, COVID-CXNet and BIMCV."""
    root = tmp_path / "mirror"
    # ieee8023: 8 frontal COVID-19 X-rays of 4 patients and a lateral view.
    ieee = root / "ieee8023-covid-chestxray"
    rows = [[str(i // 2), "M", str(40 + i), "COVID-19", ["PA", "AP"][i % 2], "X-ray", "images", f"covid {i}.jpg"]
            for i in range(8)]
    rows.append(["0", "M", "40", "COVID-19", "L", "X-ray", "images", "lateral.jpg"])
    for seed, row in enumerate(rows):
        _xray(ieee / "images" / row[-1], seed, image_format="JPEG")
    _write_csv(ieee / "metadata.csv", ["patientid", "sex", "age", "finding", "view", "modality", "folder",
                                       "filename"], rows)
    # Kermany: 6 normal and 6 pneumonia training X-rays of 12 children.
    members = [f"chest_xray/train/NORMAL/IM-{i:04d}-0001.jpeg" for i in range(6)]
    members += [f"chest_xray/train/PNEUMONIA/person{i}_{kind}_{i}.jpeg"
                for i, kind in enumerate(["bacteria", "virus"] * 3)]
    archive = root / "kermany-pediatric-cxr" / "ChestXRay2017.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        for seed, member in enumerate(members):
            buffer = io.BytesIO()
            Image.fromarray(np.random.default_rng(100 + seed).integers(0, 255, (40, 40), dtype=np.uint8)).save(
                buffer, format="JPEG")
            zipped.writestr(member, buffer.getvalue())
    # NIH: 8 adults, half "No Finding", half "Pneumonia".
    nih = root / "nih-chestxray14"
    nih_rows = [[f"{i + 1:08d}_000.png", "No Finding" if i % 2 else "Pneumonia", 0, i + 1, str(30 + i), "F", "PA",
                 1024, 1024, 0.14, 0.14] for i in range(8)]
    _write_csv(nih / "Data_Entry_2017_v2020.csv",
               ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"], nih_rows)
    for seed, row in enumerate(nih_rows):
        _xray(nih / "images" / row[0], 200 + seed, image_format="PNG")
    # COVID-CXNet: three adults.
    cxnet = root / "covid-cxnet"
    _write_csv(cxnet / "metadata.csv", ["filename", "patient_id", "sex", "age", "view", "label", "pcr_test",
                                        "location", "url"],
               [[f"{260 + i}.jpg", str(10 + i), "female", "60", "PA", "COVID-19", "positive", "Spain",
                 "https://radiopaedia.org/cases/x"] for i in range(3)], encoding="utf-8-sig")
    for i in range(3):
        _xray(cxnet / "chest_xray_images" / "covid19" / f"{260 + i}.jpg", 300 + i, image_format="JPEG")
    # BIMCV: two JPEG conversions (a mirror of modified files: verify=False).
    for seed, number in enumerate((1852, 1854)):
        _xray(root / "covid19-radiography-bimcv" / "COVID" / f"COVID-{number}.jpg", 400 + seed, side=224,
              image_format="JPEG")
    return root


def _quietly(function, *args, **kwargs):
    """Call ``function``, returning its result and the warnings it gave (category and text)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, [(type(w.message), str(w.message)) for w in caught]


def _relative(records, home: Path):
    """The records with their paths relative to the cache folder ``home`` (to compare two caches)."""
    return [dataclasses.replace(record, path=Path(record.path).relative_to(home).as_posix()) for record in records]


# --------------------------------------------------------------------------- FetchOptions itself


def test_defaults_are_those_of_the_old_keywords():
    options = FetchOptions()
    assert options.as_kwargs() == {"data_home": None, "mirror": None, "verify": True, "known_hashes": None,
                                   "progress": True}
    assert tuple(options.as_kwargs()) == FIELDS
    assert [field.name for field in dataclasses.fields(FetchOptions)] == list(FIELDS)
    assert repr(options) == "FetchOptions()"
    for function in FETCHING_FUNCTIONS + [fetch]:
        defaults = {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()}
        assert all(defaults.get(name, getattr(options, name)) == getattr(options, name) for name in FIELDS)


def test_it_is_frozen_hashable_and_picklable(tmp_path):
    pins = {"ieee8023/0f7245db6f5a/metadata.csv": "a" * 64}
    options = FetchOptions(data_home=tmp_path, mirror="http://127.0.0.1:9", verify=False, known_hashes=pins)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.mirror = "elsewhere"
    with pytest.raises(TypeError):
        options.known_hashes["another"] = "b" * 64  # a read-only copy
    pins["another"] = "b" * 64
    assert list(options.known_hashes) == ["ieee8023/0f7245db6f5a/metadata.csv"]  # the caller's dict is copied
    assert pickle.loads(pickle.dumps(options)) == options == copy.deepcopy(options)
    assert hash(options) == hash(dataclasses.replace(options, known_hashes=None))
    assert repr(options) == (f"FetchOptions(data_home={tmp_path!r}, mirror='http://127.0.0.1:9', verify=False, "
                             "known_hashes=<1 pin>)")


def test_replace_and_as_kwargs():
    options = FetchOptions(mirror="/data/cxr-mirror")
    quiet = options.replace(progress=False, verify=False)
    assert quiet == FetchOptions(mirror="/data/cxr-mirror", verify=False, progress=False)
    assert options.progress is True  # unchanged
    assert FetchOptions(**quiet.as_kwargs()) == quiet
    with pytest.raises(ArgumentTypeError, match=r"no field \['retries'\]"):
        options.replace(retries=3)


@pytest.mark.parametrize(("keywords", "named"), [
    ({"mirror": 3}, "mirror"),
    ({"data_home": ["a"]}, "data_home"),
    ({"known_hashes": [("a", "b")]}, "known_hashes"),
])
def test_malformed_fields_are_refused(keywords, named):
    with pytest.raises(ArgumentTypeError, match=f"Expected {named}"):
        FetchOptions(**keywords)


def test_resolve_fetch_options():
    options = FetchOptions(mirror="/m")
    assert resolve_fetch_options() == FetchOptions()
    assert resolve_fetch_options(options) is options
    assert resolve_fetch_options(mirror="/m", verify=False) == FetchOptions(mirror="/m", verify=False)
    with pytest.raises(ArgumentTypeError, match=r"both fetch_options and the fetch keyword \['verify'\]"):
        resolve_fetch_options(options, verify=True)
    with pytest.raises(ArgumentTypeError, match=r"unexpected keyword argument \['retries'\].*'known_hashes'"):
        resolve_fetch_options(retries=3)
    with pytest.raises(ArgumentTypeError, match="Expected fetch_options to be a FetchOptions"):
        resolve_fetch_options({"mirror": "/m"})


def test_the_five_keywords_are_in_one_place():
    for function in FETCHING_FUNCTIONS:
        parameters = inspect.signature(function).parameters
        assert "fetch_options" in parameters, function.__name__
        assert not set(FIELDS) & set(parameters), function.__name__
        assert parameters["fetch_keywords"].kind is inspect.Parameter.VAR_KEYWORD
        assert "FetchOptions" in function.__doc__ or "Parameters are those of" in function.__doc__


@pytest.mark.parametrize("function", FETCHING_FUNCTIONS, ids=lambda function: function.__name__)
def test_an_unknown_keyword_is_refused_naming_it_and_the_allowed_ones(function):
    arguments = [[]] if function in (kermany_records, fetch_nih_images) else []
    with pytest.raises(ArgumentTypeError, match=rf"{function.__name__}\(\) got an unexpected keyword argument "
                                                r"\['mirorr'\].*\['data_home', 'mirror', 'verify', 'known_hashes', "
                                                r"'progress'\]"):
        function(*arguments, mirorr="/data/cxr-mirror")


@pytest.mark.parametrize("function", FETCHING_FUNCTIONS, ids=lambda function: function.__name__)
def test_fetch_options_and_an_old_keyword_together_are_refused(function):
    arguments = [[]] if function in (kermany_records, fetch_nih_images) else []
    with pytest.raises(ArgumentTypeError, match=rf"{function.__name__}\(\) got both fetch_options and the fetch "
                                                r"keyword \['mirror'\]"):
        function(*arguments, fetch_options=FetchOptions(verify=False), mirror="/data/cxr-mirror")


# --------------------------------------------------------------------------- fetch


def test_fetch_takes_options(tmp_path):
    content = b"PatientID,Finding\n1,COVID-19\n"
    (tmp_path / "mirror" / "demo").mkdir(parents=True)
    (tmp_path / "mirror" / "demo" / "a.csv").write_bytes(content)
    remote = RemoteFile(name="demo/v1/a.csv", url="https://example.invalid/a.csv", mirror_path="demo/a.csv",
                        sha256=hashlib.sha256(content).hexdigest())
    with LoopbackServer(tmp_path / "mirror") as server:
        by_options = fetch(remote, options=FetchOptions(data_home=tmp_path / "one", mirror=server.url,
                                                        progress=False))
        by_keywords = fetch(remote, data_home=tmp_path / "two", mirror=server.url, progress=False)
    assert by_options.read_bytes() == by_keywords.read_bytes() == content
    assert by_options == tmp_path / "one" / "demo" / "v1" / "a.csv"
    wrong = FetchOptions(data_home=tmp_path / "three", mirror=tmp_path / "mirror", known_hashes={remote.name: "0" * 64})
    with pytest.raises(ChecksumError, match="known_hashes entry"):
        fetch(remote, options=wrong)
    with pytest.raises(ArgumentTypeError, match=r"fetch\(\) got both options and the fetch keyword \['mirror'\]"):
        fetch(remote, options=FetchOptions(), mirror=tmp_path / "mirror")


# --------------------------------------------------------------------------- the sources: the same records


def test_ieee8023_over_http_gives_the_same_records(mirror, tmp_path):
    with LoopbackServer(mirror) as server:
        old, old_warnings = _quietly(ieee8023_records, mirror=server.url, data_home=tmp_path / "a", verify=False,
                                     progress=False)
        new, new_warnings = _quietly(ieee8023_records, fetch_options=FetchOptions(
            mirror=server.url, data_home=tmp_path / "b", verify=False, progress=False))
    assert len(old) == 8 and _relative(old, tmp_path / "a") == _relative(new, tmp_path / "b")
    assert old_warnings == new_warnings and old_warnings  # verify=False said once, by both


def test_ieee8023_pins_travel_in_the_options(mirror, tmp_path):
    folder = mirror / "ieee8023-covid-chestxray"
    prefix = f"ieee8023/{IEEE8023_COMMIT[:12]}/"
    pins = {prefix + path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in folder.rglob("*") if path.is_file()}
    options = FetchOptions(mirror=mirror, data_home=tmp_path / "home", known_hashes=pins, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every file pinned: nothing to warn about
        records = ieee8023_records(fetch_options=options)
    assert len(records) == 8
    with pytest.raises(ChecksumError, match="verify=False or known_hashes"):
        ieee8023_records(fetch_options=options.replace(known_hashes=None, data_home=tmp_path / "other"))


def test_kermany_gives_the_same_records(mirror, tmp_path):
    old, old_warnings = _quietly(kermany_records, mirror=mirror, data_home=tmp_path / "a", progress=False)
    new, new_warnings = _quietly(kermany_records, fetch_options=FetchOptions(mirror=mirror, data_home=tmp_path / "b",
                                                                             progress=False))
    assert len(old) == 12 and _relative(old, tmp_path / "a") == _relative(new, tmp_path / "b")
    assert len(old_warnings) == len(new_warnings) == 1  # the archive's sha256, recorded at its first download


def test_nih_gives_the_same_records(mirror, tmp_path):
    old, old_warnings = _quietly(nih_records, mirror=mirror, data_home=tmp_path / "a", progress=False)
    new, new_warnings = _quietly(nih_records, fetch_options=FetchOptions(mirror=mirror, data_home=tmp_path / "b",
                                                                         progress=False))
    assert len(old) == 8 and _relative(old, tmp_path / "a") == _relative(new, tmp_path / "b")
    assert [category for category, _ in old_warnings] == [category for category, _ in new_warnings]


def test_cxnet_gives_the_same_records(mirror, tmp_path):
    old, old_warnings = _quietly(cxnet_records, mirror=mirror, data_home=tmp_path / "a", progress=False)
    new, new_warnings = _quietly(cxnet_records, fetch_options=FetchOptions(mirror=mirror, data_home=tmp_path / "b",
                                                                           progress=False))
    assert len(old) == 3 and _relative(old, tmp_path / "a") == _relative(new, tmp_path / "b")
    assert [category for category, _ in old_warnings] == [category for category, _ in new_warnings]


def test_bimcv_gives_the_same_records(mirror, tmp_path):
    old, _ = _quietly(bimcv_records, numbers=[1852, 1854], mirror=mirror, verify=False, data_home=tmp_path / "a", progress=False)
    new, _ = _quietly(bimcv_records, numbers=[1852, 1854], fetch_options=FetchOptions(mirror=mirror, verify=False,
                                                                data_home=tmp_path / "b", progress=False))
    assert len(old) == 2 and _relative(old, tmp_path / "a") == _relative(new, tmp_path / "b")


def test_soares2020_and_adult_controls_give_the_same_records(mirror, tmp_path):
    counts = {"n_covid19": 6, "n_normal": 4, "n_pneumonia": 4}
    old, _ = _quietly(soares2020_records, mirror=mirror, verify=False, data_home=tmp_path / "a", progress=False,
                      **counts)
    new, _ = _quietly(soares2020_records, fetch_options=FetchOptions(mirror=mirror, verify=False,
                                                                     data_home=tmp_path / "b", progress=False),
                      **counts)
    assert len(old) == 14 and _relative(old, tmp_path / "a") == _relative(new, tmp_path / "b")
    counts = {"n_covid19": 4, "n_normal": 2, "n_pneumonia": 2}
    old, _ = _quietly(adult_controls_records, mirror=mirror, verify=False, data_home=tmp_path / "c",
                      progress=False, include_kermany=True, **counts)
    new, _ = _quietly(adult_controls_records, fetch_options=FetchOptions(mirror=mirror, verify=False,
                                                                         data_home=tmp_path / "d", progress=False),
                      include_kermany=True, **counts)
    assert len(old) == 12 and _relative(old, tmp_path / "c") == _relative(new, tmp_path / "d")


# --------------------------------------------------------------------------- load_datasets and the recipes


def test_load_datasets_soares2020_with_keywords_or_options(mirror, tmp_path):
    counts = {"n_covid19": 8, "n_normal": 6, "n_pneumonia": 6}
    old, _ = _quietly(load_datasets, "soares2020", mirror=mirror, verify=False, data_home=tmp_path / "a",
                      image_size=16, progress=False, **counts)
    new, _ = _quietly(load_datasets, "soares2020", fetch_options=FetchOptions(mirror=mirror, verify=False,
                                                                              data_home=tmp_path / "b"),
                      image_size=16, progress=False, **counts)
    for (name, first), (_, second) in zip(old.items(), new.items()):
        assert _relative(first.records, tmp_path / "a") == _relative(second.records, tmp_path / "b"), name
        np.testing.assert_array_equal(first.images, second.images)
    assert old.manifest_path.parent == tmp_path / "a" / "manifests"
    assert new.manifest_path.parent == tmp_path / "b" / "manifests"  # the cache folder of the options
    with pytest.raises(ArgumentTypeError, match=r"load_datasets\(\) got both fetch_options and the fetch keyword "
                                                r"\['verify'\]"):
        load_datasets("soares2020", fetch_options=FetchOptions(mirror=mirror), verify=False, progress=False)
    with pytest.raises(TypeError, match=r"takes no option \['n_kittens'\]"):
        load_datasets("soares2020", fetch_options=FetchOptions(mirror=mirror), n_kittens=3, progress=False)


def test_the_sample_takes_no_fetch_option(tmp_path):
    for options in ({"data_home": tmp_path}, {"mirror": "http://127.0.0.1:9"}, {"verify": False},
                    {"known_hashes": {}}):
        (name,) = options
        with pytest.raises(ArgumentTypeError, match=rf"The dataset 'sample' takes no option \['{name}'\]"):
            load_datasets("sample", progress=False, **options)
        with pytest.raises(ArgumentTypeError, match=rf"The dataset 'sample' takes no option \['{name}'\]"):
            load_datasets("sample", progress=False, fetch_options=FetchOptions(**options))
    data = load_datasets("sample", image_size=16, progress=False, fetch_options=FetchOptions(progress=False))
    assert len(data.train) + len(data.validation) + len(data.test) == 48


def test_recipes_old_and_new_style(tmp_path):
    received = {}

    @register_recipe("test-fetch-options-old-style")
    def old_style(*, mirror=None, verify=True):
        received["old"] = (mirror, verify)
        return datasets.sample_records()

    @register_recipe("test-fetch-options-new-style")
    def new_style(*, fetch_options=None, **fetch_keywords):
        received["new"] = resolve_fetch_options(fetch_options, **fetch_keywords)
        return datasets.sample_records()

    try:
        _load._call_recipe("test-fetch-options-old-style", seed=0, mirror="/m", verify=False)
        assert received.pop("old") == ("/m", False)
        _load._call_recipe("test-fetch-options-old-style", fetch_options=FetchOptions(mirror="/n"))
        assert received.pop("old") == ("/n", True)
        with pytest.raises(ArgumentTypeError, match=r"takes no option \['data_home'\]"):
            _load._call_recipe("test-fetch-options-old-style", data_home=tmp_path)
        _load._call_recipe("test-fetch-options-new-style", seed=3, mirror="/m", progress=False)
        assert received.pop("new") == FetchOptions(mirror="/m", progress=False)  # seed dropped, as before
        _load._call_recipe("test-fetch-options-new-style", fetch_options=FetchOptions(data_home=tmp_path))
        assert received.pop("new") == FetchOptions(data_home=tmp_path)
        with pytest.raises(ArgumentTypeError, match=r"takes no option \['n_covid19'\]"):
            _load._call_recipe("test-fetch-options-new-style", n_covid19=3)
    finally:
        _load._RECIPES.pop("test-fetch-options-old-style", None)
        _load._RECIPES.pop("test-fetch-options-new-style", None)


# --------------------------------------------------------------------------- fetch_pretrained


def test_fetch_pretrained_takes_fetch_options(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(pretrained, "fetch", lambda remote, **kwargs: calls.append(kwargs) or tmp_path)
    monkeypatch.delenv(pretrained.WEIGHTS_MIRROR_ENV, raising=False)
    pretrained.fetch_pretrained("vgg16.imagenet", fetch_options=FetchOptions(verify=False), retries=1)
    pretrained.fetch_pretrained("vgg16.imagenet", verify=False, retries=1)
    assert calls[0] == calls[1] == {"options": FetchOptions(verify=False), "retries": 1}
    monkeypatch.setenv(pretrained.WEIGHTS_MIRROR_ENV, "/srv/weights")
    pretrained.fetch_pretrained("vgg16.imagenet", fetch_options=FetchOptions(data_home=tmp_path))
    assert calls[-1] == {"options": FetchOptions(data_home=tmp_path, mirror="/srv/weights")}
    with pytest.raises(ArgumentTypeError, match=r"fetch_pretrained\(\) got both fetch_options and the fetch "
                                                r"keyword \['mirror'\]"):
        pretrained.fetch_pretrained("vgg16.imagenet", fetch_options=FetchOptions(), mirror="/elsewhere")
