"""The pretrained chest X-ray classifier shipped in the package: offline, verified, its card, its recorded predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import sample_dir
from cxrclassify.models import pretrained
from cxrclassify.models.pretrained import (
    PretrainedCfg,
    bundled_dir,
    get_pretrained_cfg,
    model_card,
    read_bundled_record,
    verified_bundled_copy,
)

NAME = "mobilenetv2.covid3-v1"
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundled_model():
    return cxrclassify.load_pretrained(NAME)


def test_the_record_is_registered_and_bundled():
    cfg = get_pretrained_cfg(NAME)
    assert cfg.kind == "classifier" and cfg.bundled == f"{NAME}.keras" and cfg.url == ""
    assert cfg.class_names == ("covid19", "normal", "pneumonia") and cfg.input_size == 224
    assert len(cfg.sha256) == 64 and cfg.size == (bundled_dir() / cfg.bundled).stat().st_size
    assert NAME in cxrclassify.list_pretrained(kind="classifier")


def test_load_pretrained_is_offline_and_never_fetches(monkeypatch, bundled_model):
    def no_network(*args, **kwargs):
        raise AssertionError("a bundled checkpoint must not be fetched")

    monkeypatch.setattr(pretrained, "fetch", no_network)
    model = cxrclassify.load_pretrained(NAME)
    assert model.arch == "mobilenetv2" and model.lungs == "crop" and model.image_size == 224
    assert model.temperature is not None and model.metadata["ood"]["fitted"]


def test_predictions_on_the_sample_equal_the_recorded_ones(bundled_model):
    recorded = json.loads((bundled_dir() / f"{NAME}.sample_predictions.json").read_text(encoding="utf-8"))
    predictions = cxrclassify.predict(bundled_model, [sample_dir() / row["path"] for row in recorded], batch_size=16)
    assert len(predictions) == len(recorded) == 48
    np.testing.assert_allclose(predictions.probabilities, [row["probabilities"] for row in recorded], atol=2e-5)
    assert predictions.labels == [row["label"] for row in recorded]
    assert [bool(flag) for flag in predictions.out_of_distribution] == [row["out_of_distribution"] for row in recorded]


def test_the_model_card_is_in_the_metadata_and_the_record(bundled_model):
    card = bundled_model.metadata["model_card"]
    assert card == get_pretrained_cfg(NAME).card
    assert card["not_a_diagnostic_device"] is True
    assert set(card["sources"]) == {"ieee8023", "covid-cxnet", "nih", "kermany"}
    assert all(source["licence"] for source in card["sources"].values())
    assert any("BIMCV" in excluded for excluded in card["excluded"])
    for source, values in card["per_source_test"].items():
        assert len(values["accuracy_ci"]) == 2, source
    assert card["leave_one_source_out"]["variants"] and len(card["failure_modes"]) >= 3
    folds = card["leave_one_source_out"]["shipped_recipe"]
    assert {fold["held_out"] for fold in folds} == set(card["sources"])
    text = model_card(get_pretrained_cfg(NAME))
    for heading in ("## Training data", "## Test metrics", "## Leave one source out (this recipe)",
                    "## Sources and hospitals never seen in training",
                    "## Known failure modes", "Not a diagnostic device"):
        assert heading in text
    assert text == (bundled_dir() / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_the_docs_show_the_same_card():
    page = (REPO_ROOT / "docs" / "pretrained.rst").read_text(encoding="utf-8")
    assert ".. include:: ../src/cxrclassify/pretrained/MODEL_CARD.md" in page


def test_a_damaged_bundled_copy_is_refused(tmp_path, monkeypatch):
    good = tmp_path / "m.keras"
    good.write_bytes(b"checkpoint bytes")
    cfg = PretrainedCfg("tinycnn.bundled-test", "classifier", "", "m.keras", 16, "none", "none", "CC0", "none",
                        sha256=pretrained.file_sha256(good), size=good.stat().st_size, bundled="m.keras")
    monkeypatch.setattr(pretrained, "bundled_dir", lambda: tmp_path)
    assert verified_bundled_copy(cfg) == good
    good.write_bytes(b"checkpoint byteZ")  # same size, other content
    with pytest.raises(cxrclassify.ChecksumError, match="m.keras.*sha256"):
        verified_bundled_copy(cfg)
    good.write_bytes(b"short")
    with pytest.raises(cxrclassify.ChecksumError, match="5 bytes"):
        verified_bundled_copy(cfg)
    good.unlink()
    with pytest.raises(cxrclassify.MissingFileError, match="Reinstall"):
        verified_bundled_copy(cfg)


def test_a_record_round_trips_through_json(tmp_path):
    cfg = get_pretrained_cfg(NAME)
    path = tmp_path / "record.json"
    path.write_text(json.dumps(cfg.to_dict()), encoding="utf-8")
    assert read_bundled_record(path) == cfg
    path.write_text(json.dumps({**cfg.to_dict(), "colour": "blue"}), encoding="utf-8")
    with pytest.raises(cxrclassify.ModelError, match="colour"):
        read_bundled_record(path)


def test_a_bundled_record_needs_a_sha256():
    with pytest.raises(cxrclassify.ArgumentError, match="sha256"):
        PretrainedCfg("tinycnn.x", "classifier", "", "m.keras", 16, "none", "none", "CC0", "none", md5="0" * 32,
                      bundled="m.keras")


def test_the_installed_package_holds_the_model_and_stays_under_40_mb():
    """A wheel holds the package's files (compressed) and a small dist-info: their sum bounds its size."""
    package = Path(cxrclassify.__file__).resolve().parent
    files = [path for path in package.rglob("*") if path.is_file() and "__pycache__" not in path.parts]
    assert sum(path.stat().st_size for path in files) < 40 * 1024 * 1024
    for name in (f"{NAME}.keras", f"{NAME}.json", f"{NAME}.sample_predictions.json", "MODEL_CARD.md"):
        assert (package / "pretrained" / name).is_file(), name
