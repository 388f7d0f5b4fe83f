"""The cxrclassify command line: the demo on the bundled sample; explain's --on-error and exit codes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

import cxrclassify
from cxrclassify import cli


def test_demo_writes_every_output(tmp_path):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--weights", "none", "--epochs", "2", "--image-size", "32"]) == 0
    for name in ("training_curves.png", "confusion_matrix.png", "confusion_matrix_normalized.png",
                 "metrics.json", "split_manifest.csv", "summary.txt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    overlays = list((out / "gradcam").glob("*.png"))
    assert len(overlays) == metrics["n_images"] > 0
    assert metrics["weights"] == "random initialisation" and len(metrics["history"]["loss"]) == 2
    assert metrics["epochs_run"] == 2 and metrics["random_base"] is True
    summary = (out / "summary.txt").read_text(encoding="utf-8")
    assert "2 of at most 2 epochs ran" in summary and "randomly initialised" in summary
    assert set(metrics["by_source"]) <= {"ieee8023", "kermany", "nih"}


def test_demo_caption_says_a_base_is_random_and_how_many_epochs_ran():
    assert cli.demo_caption("vgg16", "random initialisation (ImageNet weights unavailable)", 41, 80, 32) == (
        "vgg16, RANDOMLY INITIALISED base (not ImageNet): 41 of at most 80 epochs ran on 32 images")
    assert "RANDOM" not in cli.demo_caption("vgg16", "/w/vgg16.weights.h5", 80, 80, 32)


def test_demo_goes_on_without_imagenet_weights(tmp_path, monkeypatch, caplog):
    real_build = cxrclassify.build_model

    def offline_build(*args, weights=None, **kwargs):
        if weights == "imagenet":
            raise cxrclassify.WeightsUnavailableError("URL fetch failure (simulated offline machine)")
        return real_build(*args, weights=weights, **kwargs)

    monkeypatch.setattr(cxrclassify, "build_model", offline_build)
    summary = cli.run_demo(tmp_path / "offline", weights="imagenet", epochs=1, image_size=32)
    assert "ImageNet weights unavailable" in summary
    assert "could not be downloaded" in caplog.text


def test_demo_accepts_a_weights_file(tmp_path):
    import keras

    path = tmp_path / "base.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(path)
    summary = cli.run_demo(tmp_path / "with-file", weights=str(path), epochs=1, image_size=32)
    assert str(path) in summary


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert cxrclassify.__version__ in capsys.readouterr().out


@pytest.mark.integration
def test_reproduce_writes_a_self_contained_report(shared_data, tmp_path):
    out = tmp_path / "paper"
    code = cli.main(["reproduce", "--out", str(out), "--archs", "vgg16,mobilenetv2", "--weights", "none",
                     "--mirror", str(shared_data), "--no-verify", "--data-home", str(tmp_path / "home"),
                     "--epochs", "2", "--image-size", "32", "--counts", "20,10,10", "--adult-counts", "30,15,15"])
    assert code == 0
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    assert "data:image/png;base64," in html and "<img" in html  # figures embedded
    for text in (html, markdown):
        assert "vgg16" in text and "mobilenetv2" in text and "97.3% (90.8% to 99.3%), 73 of 75" in text
        assert "95% CI" in text and "not a diagnostic device" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"vgg16", "mobilenetv2"} and metrics["versions"]["tensorflow"]
    assert metrics["models"]["vgg16"]["n_images"] == metrics["models"]["mobilenetv2"]["n_images"]
    assert (out / "split_manifest.csv").read_text().count("\n") == 41
    adults = metrics["adult_controls"]
    assert set(adults["models"]) == {"vgg16", "mobilenetv2"} and adults["n_test"] > 0
    for comparison in adults["models"].values():
        paper, adult = comparison["paper_composite_model"], comparison["adult_control_model"]
        assert paper["n_images"] == adult["n_images"] == adults["n_test"]
        assert set(paper["by_source"]) <= {"ieee8023", "nih"}
    assert set(metrics["audit"]) == {"vgg16", "mobilenetv2"}
    assert 0.0 <= metrics["audit"]["vgg16"]["source_probe"]["accuracy"] <= 1.0
    for text in (html, markdown):
        assert "Tested on adult controls" in text and "adult normals called COVID-19" in text
        assert "Shortcut audit" in text


def test_counts_option_is_checked():
    assert cli._parse_counts("5,6,7", "--counts") == {"n_covid19": 5, "n_normal": 6, "n_pneumonia": 7}
    with pytest.raises(SystemExit, match="three whole numbers"):
        cli._parse_counts("5,6", "--adult-counts")


def test_weights_option_parsing():
    assert cli._parse_weights(None) == "imagenet"
    assert cli._parse_weights(["none"]) is None
    assert cli._parse_weights(["vgg16=a.h5", "resnet50=none"]) == {"vgg16": "a.h5", "resnet50": None}


@pytest.fixture
def folder_with_a_bad_file(tmp_path):
    folder = tmp_path / "xrays"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in (0, 2):
        Image.fromarray(rng.integers(0, 255, (20, 22), dtype=np.uint8)).save(folder / f"x{index}.png")
    (folder / "x1.png").write_bytes(b"not an image")
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, class_names=["covid19", "normal"])
    model.save(tmp_path / "m.keras")
    return folder


def test_explain_skips_bad_files_by_default_and_exits_1(folder_with_a_bad_file, tmp_path, caplog):
    out = tmp_path / "out"
    code = cli.main(["explain", str(tmp_path / "m.keras"), str(folder_with_a_bad_file), "--out", str(out)])
    assert code == cli.EXIT_SKIPPED == 1
    assert sorted(path.name for path in out.glob("*_overlay.png")) == ["0000_x0_overlay.png", "0002_x2_overlay.png"]
    with open(out / "predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["error"] != "" for row in rows] == [False, True, False]
    assert "x1.png" in rows[1]["error"] and rows[1]["covid19"] == ""
    assert "skipped 1 of 3 images" in caplog.text


def test_explain_on_error_raise_stops_with_exit_code_2(folder_with_a_bad_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["explain", str(tmp_path / "m.keras"), str(folder_with_a_bad_file), "--out", str(tmp_path / "out"),
                  "--on-error", "raise"])
    assert exit_info.value.code == cli.EXIT_USAGE == 2
    assert "x1.png" in capsys.readouterr().err
