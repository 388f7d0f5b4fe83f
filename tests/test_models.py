"""build_model: the paper's architectures, preprocessing, weights files, save and reload."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cxrclassify
from cxrclassify.exceptions import ModelError
from cxrclassify.models import Preprocessing, get_spec, list_models

PAPER_ARCHS = {"vgg16": 32, "resnet50": 32, "xception": 71}


@pytest.mark.parametrize("arch, size", sorted(PAPER_ARCHS.items()))
def test_paper_architectures_build_frozen_and_predict(arch, size):
    model = cxrclassify.build_model(arch, num_classes=3, weights=None, image_size=size)
    assert model.arch == arch and not model.base.trainable
    assert all(not weight.trainable for weight in model.base.weights)
    assert len(model.trainable_weights) == 4  # the head's two dense layers
    probabilities = model.predict_on_batch(np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)))
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=1), 1.0, rtol=1e-5)
    model.base.get_layer(get_spec(arch).last_conv_layer)  # the registry names a real layer


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Expected one of .*'resnet50'.*'vgg16'.*'xception'.*Received: arch='alexnet'"):
        cxrclassify.build_model("alexnet", weights=None)


@pytest.mark.parametrize("bad", [1, 0, 2.5, "3"])
def test_invalid_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        cxrclassify.build_model("tinycnn", num_classes=bad, weights=None)


def test_too_small_input_says_the_minimum():
    with pytest.raises(ValueError, match="at least 71 x 71"):
        cxrclassify.build_model("xception", weights=None, image_size=40)


def test_class_names_must_match_num_classes():
    with pytest.raises(ValueError, match="Expected 3 distinct class names"):
        cxrclassify.build_model("tinycnn", 3, weights=None, class_names=["a", "b"])


def test_unknown_head():
    with pytest.raises(ValueError, match="Unknown head"):
        cxrclassify.build_model("tinycnn", weights=None, head="transformer")


@pytest.mark.parametrize("mode, reference", [
    ("caffe", keras.applications.vgg16.preprocess_input),
    ("tf", keras.applications.xception.preprocess_input),
    ("torch", lambda x: keras.applications.imagenet_utils.preprocess_input(x, mode="torch")),
])
def test_preprocessing_matches_keras(mode, reference):
    images = np.random.default_rng(1).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    expected = reference(images.copy())
    np.testing.assert_allclose(np.asarray(Preprocessing(mode)(images)), expected, rtol=1e-5, atol=1e-4)


def test_weights_file_is_loaded(tmp_path):
    donor = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    donor.save_weights(path)
    model = cxrclassify.build_model("vgg16", weights=path, image_size=32)
    for ours, theirs in zip(model.base.weights, donor.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert model.metadata["base_weights"] == str(path)


def test_weights_file_of_another_architecture_is_refused(tmp_path):
    donor = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "mobilenet.weights.h5"
    donor.save_weights(path)
    with pytest.raises(ModelError, match=r"mobilenet.weights.h5.*does not fit architecture 'vgg16'"):
        cxrclassify.build_model("vgg16", weights=path, image_size=32)


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        cxrclassify.build_model("vgg16", weights=tmp_path / "missing.weights.h5", image_size=32)


def test_save_and_reload_predict_identically(tmp_path):
    model = cxrclassify.build_model("vgg16", 3, weights=None, image_size=32, class_names=["covid19", "normal", "pneumonia"])
    images = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    before = np.asarray(model.predict_on_batch(images))
    model.save(tmp_path / "model.keras")
    reloaded = cxrclassify.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded, cxrclassify.CxrClassifier)
    assert reloaded.class_names == ["covid19", "normal", "pneumonia"] and reloaded.image_size == 32
    assert not reloaded.base.trainable
    np.testing.assert_array_equal(np.asarray(reloaded.predict_on_batch(images)), before)


def test_custom_architecture_works_everywhere(tmp_path):
    assert "tinycnn" in list_models()
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, head="gap")
    heatmap = cxrclassify.grad_cam(model, np.zeros((20, 20), np.uint8))
    assert heatmap.shape == (20, 20)
    model.save(tmp_path / "tiny.keras")
    assert keras.models.load_model(tmp_path / "tiny.keras").arch == "tinycnn"


def test_load_model_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.keras"):
        cxrclassify.load_model(tmp_path / "absent.keras")
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(cxrclassify.ModelError, match="Received: a Sequential"):
        cxrclassify.load_model(tmp_path / "plain.keras")
    (tmp_path / "junk.keras").write_bytes(b"junk")
    with pytest.raises(cxrclassify.ModelError, match="junk.keras"):
        cxrclassify.load_model(tmp_path / "junk.keras")
