"""The command line's main jobs on the bundled sample: predict, train, evaluate, models; exit codes, columns, errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import cxrclassify
from cxrclassify import cli
from cxrclassify.datasets import sample_dir

SAMPLE_IMAGES = sample_dir() / "images"
CLASS_COLUMNS = ["covid19", "normal", "pneumonia"]


def _csv_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    """A saved tiny classifier of the sample's three classes (random weights: for exit codes and columns)."""
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    cxrclassify.build_model("tinycnn", 3, weights=None, image_size=16, class_names=CLASS_COLUMNS, seed=0).save(path)
    return path


@pytest.fixture
def folder_with_a_bad_file(tmp_path):
    folder = tmp_path / "xrays"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in (0, 2):
        Image.fromarray(rng.integers(0, 255, (20, 22), dtype=np.uint8)).save(folder / f"x{index}.png")
    (folder / "x1.png").write_bytes(b"not an image")
    return folder


# ------------------------------------------------------------------------------------------ predict


def test_predict_with_the_bundled_model_writes_csv_rows_and_overlays(tmp_path, capsys):
    cam = tmp_path / "cam"
    code = cli.main(["predict", str(SAMPLE_IMAGES / "covid19"), str(SAMPLE_IMAGES / "normal"), "--cam", str(cam)])
    assert code == cli.EXIT_OK
    columns, rows = _csv_rows(capsys.readouterr().out)
    assert columns == ["input", "label", *CLASS_COLUMNS, "ood_score", "out_of_distribution", "error"]
    assert len(rows) == 32
    for row in rows:
        assert row["label"] in CLASS_COLUMNS and row["error"] == ""
        assert sum(float(row[name]) for name in CLASS_COLUMNS) == pytest.approx(1.0, abs=1e-5)
        assert row["out_of_distribution"] in ("True", "False") and float(row["ood_score"]) >= 0
    assert len(list(cam.glob("*_overlay.png"))) == 32 and (cam / "cam_grid.png").is_file()


def test_predict_the_bundled_sample_by_flag(tmp_path):
    out = tmp_path / "sample.csv"
    assert cli.main(["predict", "--sample", "--out", str(out)]) == cli.EXIT_OK
    _, rows = _csv_rows(out.read_text(encoding="utf-8"))
    assert len(rows) == 48 and all(row["input"].startswith(str(SAMPLE_IMAGES)) for row in rows)


def test_predict_json_to_a_file(tmp_path, tiny_model_path):
    out = tmp_path / "predictions.json"
    code = cli.main(["predict", str(SAMPLE_IMAGES / "pneumonia"), "--model", str(tiny_model_path),
                     "--format", "json", "--out", str(out)])
    assert code == cli.EXIT_OK
    rows = json.loads(out.read_text())
    assert len(rows) == 16
    assert set(rows[0]) == {"input", "label", *CLASS_COLUMNS, "ood_score", "out_of_distribution", "error"}
    assert rows[0]["error"] is None


def test_predict_skips_an_unreadable_file_with_exit_code_1(folder_with_a_bad_file, tiny_model_path, capsys, caplog):
    code = cli.main(["predict", str(folder_with_a_bad_file), "--model", str(tiny_model_path)])
    assert code == cli.EXIT_SKIPPED == 1
    _, rows = _csv_rows(capsys.readouterr().out)
    assert [row["error"] != "" for row in rows] == [False, True, False]
    assert "x1.png" in rows[1]["error"] and rows[1]["covid19"] == ""
    assert "skipped 1 of 3 images" in caplog.text


def test_predict_on_error_raise_exits_2_naming_the_file(folder_with_a_bad_file, tiny_model_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", str(folder_with_a_bad_file), "--model", str(tiny_model_path), "--on-error", "raise"])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "x1.png" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, expected", [
    (["predict", "no/such/image.png"], "no such image file or folder: 'no/such/image.png'"),
    (["predict"], "give IMAGES (files or folders), or --sample"),
    (["predict", str(SAMPLE_IMAGES), "--model", "no-such-model"], "'no-such-model' is neither"),
    (["predict", str(SAMPLE_IMAGES), "--format", "xml"], "invalid choice: 'xml'"),
    (["predict", str(SAMPLE_IMAGES), "--batch-size", "0"], "at least 1"),
])
def test_predict_bad_arguments_exit_2_with_a_message(arguments, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(arguments)
    assert exit_info.value.code == cli.EXIT_USAGE
    assert expected in capsys.readouterr().err


def test_predict_of_a_file_that_is_not_a_model_exits_2(tmp_path, capsys):
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"not a zip")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", str(SAMPLE_IMAGES / "normal"), "--model", str(fake)])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "fake.keras" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ train, evaluate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "vgg.keras"
    code = cli.main(["train", "sample", "--arch", "vgg16", "--weights", "none", "--image-size", "32",
                     "--epochs", "2", "--out", str(out)])
    return code, out


def test_train_saves_the_model_its_split_and_history(trained):
    code, out = trained
    assert code == cli.EXIT_OK
    model = cxrclassify.load_model(out)
    assert model.arch == "vgg16" and model.image_size == 32 and list(model.class_names) == CLASS_COLUMNS
    assert model.temperature is not None
    history = json.loads(out.with_suffix(".history.json").read_text())
    assert 1 <= len(history["loss"]) <= 2
    with open(out.with_suffix(".split.csv"), encoding="utf-8") as handle:
        splits = {row["split"] for row in csv.DictReader(handle)}
    assert splits == {"train", "validation", "test"}


def test_evaluate_writes_the_report_of_the_test_split(trained, tmp_path):
    _, model_path = trained
    out = tmp_path / "evaluation"
    code = cli.main(["evaluate", str(model_path), str(model_path.with_suffix(".split.csv")), "--out", str(out)])
    assert code == cli.EXIT_OK
    for name in ("report.html", "report.md", "metrics.json", "predictions.csv", "confusion_matrix.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    with open(model_path.with_suffix(".split.csv"), encoding="utf-8") as handle:
        n_test = sum(row["split"] == "test" for row in csv.DictReader(handle))
    assert metrics["n_images"] == n_test
    assert len(metrics["accuracy_ci"]) == 2
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "Not a diagnostic device" in html
    columns, rows = _csv_rows((out / "predictions.csv").read_text(encoding="utf-8"))
    assert columns[:4] == ["input", "true_label", "source", "label"] and len(rows) == n_test


def test_evaluate_a_folder_with_the_bundled_model(tmp_path):
    out = tmp_path / "evaluation"
    assert cli.main(["evaluate", "mobilenetv2.covid3-v1", str(SAMPLE_IMAGES), "--out", str(out)]) == cli.EXIT_OK
    assert json.loads((out / "metrics.json").read_text())["n_images"] == 48


def test_evaluate_refuses_labels_the_model_does_not_have(tmp_path, tiny_model_path, capsys):
    data = tmp_path / "data" / "tuberculosis"
    data.mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(data / "a.png")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", str(tiny_model_path), str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "['tuberculosis']" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, expected", [
    (["train", "no/such/folder", "--arch", "vgg16", "--out", "m.keras"], "'no/such/folder' is none of these"),
    (["train", "sample", "--arch", "alexnet", "--out", "m.keras"], "--arch must be one of"),
    (["train", "sample", "--arch", "vgg16", "--out", "m.h5"], "--out must end in .keras"),
    (["train", "sample", "--out", "m.keras"], "the following arguments are required: --arch"),
    (["evaluate", "no-such-model", "sample", "--out", "x"], "'no-such-model' is neither"),
])
def test_train_and_evaluate_bad_arguments_exit_2(arguments, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(arguments)
    assert exit_info.value.code == cli.EXIT_USAGE
    assert expected in capsys.readouterr().err


def test_train_will_not_overwrite_a_model(tmp_path, capsys):
    existing = tmp_path / "m.keras"
    existing.write_bytes(b"keep me")
    with pytest.raises(SystemExit):
        cli.main(["train", "sample", "--arch", "vgg16", "--out", str(existing)])
    assert "--overwrite" in capsys.readouterr().err and existing.read_bytes() == b"keep me"


# -------------------------------------------------------------------------------------------- models


def test_models_lists_architectures_and_checkpoints(capsys):
    assert cli.main(["models"]) == cli.EXIT_OK
    text = capsys.readouterr().out
    for name in cxrclassify.list_models():
        assert name in text
    assert "mobilenetv2.covid3-v1" in text and "bundled" in text
    assert cli.main(["models", "--format", "json"]) == cli.EXIT_OK
    listing = json.loads(capsys.readouterr().out)
    assert {arch["name"] for arch in listing["architectures"]} == set(cxrclassify.list_models())
    bundled = [cfg for cfg in listing["pretrained"] if cfg["bundled"]]
    assert [cfg["name"] for cfg in bundled] == ["mobilenetv2.covid3-v1"]
    assert bundled[0]["class_names"] == CLASS_COLUMNS


# --------------------------------------------------------------------------- help without TensorFlow


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_help_does_not_import_tensorflow():
    completed = _run_python(
        "import sys\n"
        "from cxrclassify.cli import main\n"
        "for command in ([], ['predict'], ['train'], ['evaluate'], ['models'], ['demo'], ['explain']):\n"
        "    try:\n"
        "        main([*command, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('TF-IMPORTED' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'TF-NOT-IMPORTED')\n"
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().endswith("TF-NOT-IMPORTED")
    assert "usage: cxrclassify predict" in completed.stdout


def test_tensorflow_start_up_noise_is_silenced_unless_verbose():
    completed = subprocess.run([sys.executable, "-m", "cxrclassify.cli", "models"], capture_output=True, text=True,
                               timeout=300, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert completed.returncode == 0, completed.stderr
    assert "mobilenetv2.covid3-v1" in completed.stdout
    for noise in ("absl::InitializeLog", "oneDNN", "cudart_stub", "cpu_feature_guard", "cuInit"):
        assert noise not in completed.stderr, completed.stderr
