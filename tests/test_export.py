"""Export for serving: SavedModel and TFLite files predict what the Keras model predicts.

Measured (2-core CPU, TF 2.21 / Keras 3.15, 16 bundled X-rays at 32 px, max abs difference
of probabilities from ``model.predict``, which runs the graph the SavedModel holds; an
eager ``model(x)`` call differs from it by up to about 3e-5 for MobileNetV2):

============================ ========== ============ ==========================
arch (weights)               SavedModel TFLite float TFLite quantised (classes)
============================ ========== ============ ==========================
tinycnn (random)             0          9e-8         6e-4 (16/16 same)
vgg16 (random)               0          6e-8         1.4e-3 (16/16 same)
mobilenetv2 (torchvision)    0          8e-7         0.015 (near ties: 10/16)
mobilenetv2 (random, BN set) 0          2e-5         0.43 (13/16)
============================ ========== ============ ==========================

Asserted: SavedModel atol 1e-5; TFLite float atol 1e-4; quantised atol 0.1, and for
tinycnn and vgg16 the same class for at least 90 % of the images (with a random head,
MobileNetV2's probabilities are near ties at 32 px, so its classes flip within 0.015).
Random MobileNetV2 weights quantise badly, so MobileNetV2 runs with the torchvision
ImageNet weights of ../shared/weights when they are there; without them (random weights,
batch-norm statistics set from the images), its quantised file is only checked for valid
probabilities.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import cxrclassify
from cxrclassify.exceptions import ModelError, OutputExistsError
from cxrclassify.models.io import (
    EXPORT_METADATA_FILE,
    export_savedmodel,
    export_tflite,
    read_export_metadata,
    savedmodel_predict,
    tflite_predict,
)

from conftest import SHARED

SAMPLE_IMAGES = Path(cxrclassify.__file__).parent / "sample" / "images"
CLASS_NAMES = ["covid19", "normal", "pneumonia"]
ARCHS = ["tinycnn", "mobilenetv2", "vgg16"]
SIZE = 32
MOBILENETV2_WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_notop_imagenet_torchvision.weights.h5"


def sample_xrays(size: int, count: int = 16) -> np.ndarray:
    """``count`` of the bundled X-rays as float32 ``(count, size, size, 3)`` RGB in [0, 255]."""
    paths = sorted(path for path in SAMPLE_IMAGES.rglob("*") if path.is_file())[::3][:count]
    images = [np.asarray(Image.open(path).convert("RGB").resize((size, size)), dtype=np.float32) for path in paths]
    return np.stack(images)


def calibrate_batch_norm(model: cxrclassify.CxrClassifier, images: np.ndarray) -> None:
    """Set the base's batch-norm statistics from ``images``.

    With random weights and Keras's initial statistics, MobileNetV2's features shrink to
    about 1e-12 and every output is 1/3, which would make any comparison pass.
    """
    layers = [layer for layer in model.base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    model.base.trainable = True
    for layer in layers:
        layer.momentum = 0.0
    model.base(model.preprocess(images), training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    model.base.trainable = False


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return sample_xrays(SIZE)


@pytest.fixture(scope="module", params=ARCHS)
def exported(request, images, tmp_path_factory):
    """A classifier of each architecture, its SavedModel and its Keras probabilities."""
    options = {"weights": None}
    if request.param == "mobilenetv2" and MOBILENETV2_WEIGHTS.is_file():
        options = {"weights": MOBILENETV2_WEIGHTS, "preprocessing": "torch"}
    model = cxrclassify.build_model(request.param, 3, image_size=SIZE, class_names=CLASS_NAMES, **options)
    if options["weights"] is None:
        calibrate_batch_norm(model, images)
    expected = model.predict(images, verbose=0)
    assert expected.std(axis=0).max() > 1e-3, "degenerate test model: the same output for every image"
    path = export_savedmodel(model, tmp_path_factory.mktemp(request.param) / "savedmodel")
    return model, path, expected


def test_savedmodel_matches_keras(exported, images):
    model, path, expected = exported
    probabilities = savedmodel_predict(path, images, batch_size=5)
    assert probabilities.shape == (len(images), 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-5)
    if model.arch == "tinycnn":  # the same code for every architecture: checked once
        np.testing.assert_allclose(savedmodel_predict(path, images[0]), expected[0], rtol=0, atol=1e-5)
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        (spec,) = signature.structured_input_signature[1].values()
        assert spec.name == "images" and spec.shape.as_list() == [None, SIZE, SIZE, 3] and spec.dtype == tf.float32
        outputs = signature(images=tf.constant(images))
        assert list(outputs) == ["probabilities"]
        np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, rtol=0, atol=1e-5)


def test_savedmodel_carries_the_metadata(exported):
    model, path, _ = exported
    facts = json.loads((path / "assets" / EXPORT_METADATA_FILE).read_text(encoding="utf-8"))
    assert facts == read_export_metadata(path)
    assert facts["class_names"] == CLASS_NAMES
    assert facts["arch"] == model.arch and facts["image_size"] == SIZE and facts["num_classes"] == 3
    assert facts["preprocessing"] == model.preprocessing and facts["head"] == "paper"
    assert facts["metadata"] == json.loads(json.dumps(model.metadata, default=str))
    assert facts["cxrclassify_version"] == cxrclassify.__version__
    assert facts["input"]["shape"] == [None, SIZE, SIZE, 3] and facts["output"]["shape"] == [None, 3]


@pytest.fixture(scope="module")
def float_tflite(exported, tmp_path_factory) -> Path:
    model, savedmodel, _ = exported
    path = tmp_path_factory.mktemp(model.arch) / "model.tflite"
    # From the classifier once (the slowest route: it exports a SavedModel again), else from the folder.
    return export_tflite(model if model.arch == "tinycnn" else savedmodel, path)


def test_tflite_float_matches_keras(exported, float_tflite, images):
    model, _, expected = exported
    probabilities = tflite_predict(float_tflite, images, batch_size=7)
    assert probabilities.shape == (len(images), 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-4)
    if model.arch == "tinycnn":
        np.testing.assert_allclose(tflite_predict(float_tflite, images[0]), expected[0], rtol=0, atol=1e-4)


def test_tflite_quantized_is_close(exported, float_tflite, images, tmp_path):
    model, savedmodel, expected = exported
    path = export_tflite(savedmodel, tmp_path / "quantized.tflite", quantize=True)
    probabilities = tflite_predict(path, images)
    assert probabilities.shape == (len(images), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert path.stat().st_size < float_tflite.stat().st_size / 3
    if model.arch == "mobilenetv2" and not MOBILENETV2_WEIGHTS.is_file():
        return  # random MobileNetV2 weights quantise badly (0.43 measured)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=0.1)
    if model.arch != "mobilenetv2":  # its probabilities are near ties with a random head
        assert np.mean(probabilities.argmax(axis=1) == expected.argmax(axis=1)) >= 0.9


def test_wrong_image_size_names_the_expected_one(tmp_path):
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=32)
    path = export_savedmodel(model, tmp_path / "savedmodel")
    wrong = np.zeros((2, 48, 48, 3), np.float32)
    expected_size = r"Expected images of shape \(N, 32, 32, 3\).*32 x 32.*Received: .*\(2, 48, 48, 3\)"
    with pytest.raises(ValueError, match=expected_size):
        savedmodel_predict(path, wrong)
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\).*Received: .*\(2, 32, 32\)"):
        savedmodel_predict(path, wrong[:, :32, :32, 0])
    with pytest.raises(ValueError, match=r"N >= 1.*Received: .*\(0, 32, 32, 3\)"):
        savedmodel_predict(path, np.zeros((0, 32, 32, 3)))
    tflite = export_tflite(path, tmp_path / "model.tflite")
    with pytest.raises(ValueError, match=expected_size):
        tflite_predict(tflite, wrong)


def test_only_classifiers_are_exported(tmp_path):
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match=r"Expected a CxrClassifier.*Received: a Sequential"):
        export_savedmodel(plain, tmp_path / "savedmodel")
    with pytest.raises(TypeError, match=r"Expected model to be a cxrclassify CxrClassifier.*Received: a Seq"):
        export_tflite(plain, tmp_path / "model.tflite")
    assert not any(tmp_path.iterdir())


def test_existing_folder_is_not_overwritten(tmp_path):
    model = cxrclassify.build_model("tinycnn", 2, weights=None)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="non-empty folder"):
        export_savedmodel(model, tmp_path / "taken")
    assert [path.name for path in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    export_savedmodel(model, tmp_path / "empty")  # an empty folder is fine
    assert read_export_metadata(tmp_path / "empty")["class_names"] is None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty", "taken"]  # no leftovers


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="Expected a SavedModel folder"):
        savedmodel_predict(tmp_path / "missing", np.zeros((1, 32, 32, 3)))
    with pytest.raises(FileNotFoundError, match="Expected a SavedModel folder"):
        read_export_metadata(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"Expected the path of a \.tflite file"):
        tflite_predict(tmp_path / "missing.tflite", np.zeros((1, 32, 32, 3)))
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelError, match="junk.tflite"):
        tflite_predict(tmp_path / "junk.tflite", np.zeros((1, 32, 32, 3)))
    with pytest.raises(OutputExistsError, match="which is a folder"):  # a FileExistsError
        export_tflite(cxrclassify.build_model("tinycnn", 2, weights=None), tmp_path)


def test_metadata_is_required(tmp_path):
    model = cxrclassify.build_model("tinycnn", 2, weights=None)
    path = export_savedmodel(model, tmp_path / "savedmodel")
    (path / "assets" / EXPORT_METADATA_FILE).unlink()
    with pytest.raises(ModelError, match=r"exported by cxrclassify.*Received: .*no such file"):
        read_export_metadata(path)
    black = np.zeros((1, 32, 32, 3), np.float32)  # predicting does not need the metadata
    np.testing.assert_allclose(savedmodel_predict(path, black), model.predict(black, verbose=0), atol=1e-5)


def test_tflite_export_logs_the_file_size(tmp_path, caplog):
    model = cxrclassify.build_model("tinycnn", 2, weights=None, head="gap")
    with caplog.at_level(logging.INFO, logger="cxrclassify.models.io"):
        path = export_tflite(model, tmp_path / "nested" / "model.tflite", quantize=True)
    assert path.is_file() and [item.name for item in path.parent.iterdir()] == ["model.tflite"]
    assert re.search(r"dynamic-range quantised TensorFlow Lite file .*model\.tflite \(0\.\d MB\)", caplog.text)
