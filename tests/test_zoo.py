"""The model zoo: every registered architecture end to end; fine-tuning blocks; pretrained records."""

from __future__ import annotations

import hashlib

import keras
import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.exceptions import ChecksumError
from cxrclassify.models import (
    PretrainedCfg,
    get_pretrained_cfg,
    get_spec,
    list_models,
    list_pretrained,
    load_pretrained,
    model_card,
    pretrained_cfg_from_file,
    register_pretrained,
)

from loopback_server import LoopbackServer


def _tiny_set(size: int, n: int = 6) -> ImageSet:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    images = rng.integers(0, 255, (n, size, size, 3)).astype(np.uint8)
    return ImageSet(images, labels, [Sample(f"{i}.png", "ab"[l], f"p{i}") for i, l in enumerate(labels)], ["a", "b"])


@pytest.mark.parametrize("arch", list_models())
def test_every_architecture_end_to_end(arch, tmp_path):
    size = max(32, get_spec(arch).min_input_size)
    keras.utils.set_random_seed(0)
    model = cxrclassify.build_model(arch, 2, weights=None, image_size=size)
    data = _tiny_set(size)
    history = cxrclassify.train(model, (data, None), epochs=1, batch_size=3, progress=False)
    assert np.isfinite(history["loss"][0])
    before = cxrclassify.predict(model, data).probabilities
    model.save(tmp_path / f"{arch}.keras")
    reloaded = cxrclassify.load_model(tmp_path / f"{arch}.keras")
    np.testing.assert_allclose(cxrclassify.predict(reloaded, data).probabilities, before, atol=1e-6)
    heatmap = cxrclassify.grad_cam(reloaded, data.images[0])
    assert heatmap.shape == (size, size) and np.isfinite(heatmap).all() and 0 <= heatmap.min() <= heatmap.max() <= 1


def test_new_architectures_are_registered():
    assert {"vgg16", "resnet50", "xception", "densenet121", "efficientnetb0", "mobilenetv2"} <= set(list_models())


@pytest.mark.parametrize("arch", ["vgg16", "resnet50", "mobilenetv2", "efficientnetb0"])
def test_top_blocks_are_trainable_and_the_rest_frozen(arch):
    model = cxrclassify.build_model(arch, 2, weights=None, image_size=32, trainable_blocks=1)
    top = model.blocks[-1]
    trainable_layers = {layer.name for layer in model.base.layers if layer.trainable_weights}
    assert trainable_layers and all(not isinstance(model.base.get_layer(name), keras.layers.BatchNormalization)
                                    for name in trainable_layers)
    assert any(name.startswith(top + "_") for name in trainable_layers)
    assert not any(name.startswith(model.blocks[0] + "_") for name in trainable_layers)
    model.set_trainable_blocks(False)
    assert not model.base.trainable_weights


def test_fine_tuning_trains_only_the_top_block_and_round_trips(tmp_path):
    model = cxrclassify.build_model("vgg16", 2, weights=None, image_size=32, trainable_blocks=1)
    frozen = np.asarray(model.base.get_layer("block1_conv1").kernel).copy()
    top = np.asarray(model.base.get_layer("block5_conv3").kernel).copy()
    cxrclassify.train(model, (_tiny_set(32), None), epochs=1, batch_size=3, progress=False)
    np.testing.assert_array_equal(np.asarray(model.base.get_layer("block1_conv1").kernel), frozen)
    assert not np.allclose(np.asarray(model.base.get_layer("block5_conv3").kernel), top)
    model.save(tmp_path / "tuned.keras")
    assert cxrclassify.load_model(tmp_path / "tuned.keras").trainable_blocks == 1


def test_bad_block_counts():
    with pytest.raises(ValueError, match="has 5 blocks. Received: blocks=9"):
        cxrclassify.build_model("vgg16", weights=None, image_size=32, trainable_blocks=9)
    with pytest.raises(ValueError, match="no block_pattern"):
        cxrclassify.build_model("tinycnn", weights=None, image_size=16, trainable_blocks=1)


def test_keras_imagenet_records_are_real_and_verifiable():
    names = list_pretrained(kind="base")
    assert names == ["densenet121.imagenet", "efficientnetb0.imagenet", "resnet50.imagenet",
                     "vgg16.imagenet", "xception.imagenet"]
    for name in names:
        cfg = get_pretrained_cfg(name)
        assert cfg.url.startswith("https://storage.googleapis.com/") and cfg.url.endswith(cfg.filename)
        assert cfg.md5 and len(cfg.md5) == 32 and "example" not in cfg.url
    with pytest.raises(ValueError, match="Unknown pretrained checkpoint"):
        get_pretrained_cfg("vgg16.made-up")
    with pytest.raises(ValueError, match="sha256 or md5"):
        PretrainedCfg("vgg16.x", "base", "u", "f", 224, "caffe", "d", "l", "c")


@pytest.fixture
def weights_mirror(tmp_path):
    """A folder serving a tiny base's weights file, and a registered record of it (MD5, as Keras records)."""
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    folder = tmp_path / "mirror"
    folder.mkdir()
    path = folder / "vgg16_tiny_notop.weights.h5"
    base.save_weights(path)
    cfg = register_pretrained(PretrainedCfg(
        "vgg16.tinytest", "base", "https://weights.invalid/vgg16_tiny_notop.weights.h5", path.name, 32, "caffe",
        "random", "MIT", "none", md5=hashlib.md5(path.read_bytes()).hexdigest()), overwrite=True)
    return folder, cfg, base


def test_load_pretrained_over_http_then_from_the_cache(weights_mirror, tmp_path):
    folder, cfg, base = weights_mirror
    with LoopbackServer(folder) as server:
        model = load_pretrained(cfg.name, num_classes=2, image_size=32, mirror=server.url, data_home=tmp_path / "h")
        first = len(server.requests)
        again = load_pretrained(cfg.name, num_classes=2, image_size=32, mirror=server.url, data_home=tmp_path / "h")
        assert first == 1 and len(server.requests) == first  # the second load was a cache hit
    for ours, theirs in zip(model.base.weights, base.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert again.arch == "vgg16" and model.preprocessing == "caffe"


def test_corrupted_weights_are_refused(weights_mirror, tmp_path):
    folder, cfg, _ = weights_mirror
    with open(folder / cfg.filename, "r+b") as handle:
        handle.seek(-10, 2)
        handle.write(b"0123456789")
    with LoopbackServer(folder) as server:
        with pytest.raises(ChecksumError, match="md5"):
            load_pretrained(cfg.name, image_size=32, mirror=server.url, data_home=tmp_path / "h")
    assert not list((tmp_path / "h").rglob(cfg.filename))


def test_build_model_fetches_imagenet_through_a_weights_mirror(weights_mirror, tmp_path, monkeypatch):
    folder, cfg, base = weights_mirror
    real = get_pretrained_cfg("vgg16.imagenet")
    monkeypatch.setitem(cxrclassify.models.pretrained._PRETRAINED, "vgg16.imagenet",
                        PretrainedCfg("vgg16.imagenet", "base", real.url, cfg.filename, 32, "caffe", "x", "x", "x",
                                      md5=cfg.md5))
    monkeypatch.setenv("CXRCLASSIFY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CXRCLASSIFY_WEIGHTS_MIRROR", str(folder))
    model = cxrclassify.build_model("vgg16", 2, weights="imagenet", image_size=32)
    np.testing.assert_array_equal(np.asarray(model.base.weights[0]), np.asarray(base.weights[0]))
    assert "via mirror" in model.metadata["base_weights"]
    with pytest.raises(cxrclassify.ModelError, match="No verifiable ImageNet weights record"):
        cxrclassify.build_model("mobilenetv2", 2, weights="imagenet", image_size=32)


def test_classifier_record_from_file_and_model_card(tmp_path):
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, class_names=["covid19", "normal"])
    model.save(tmp_path / "tiny-clf.keras")
    cfg = pretrained_cfg_from_file(tmp_path / "tiny-clf.keras", "tinycnn.clf", url="https://weights.invalid/tiny-clf.keras",
                                   training_data="synthetic", license="CC BY 4.0", citation="none",
                                   metrics={"accuracy": 0.5})
    register_pretrained(cfg, overwrite=True)
    with LoopbackServer(tmp_path) as server:
        reloaded = load_pretrained("tinycnn.clf", mirror=server.url, data_home=tmp_path / "h")
    images = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(reloaded.predict_on_batch(images)), np.asarray(model.predict_on_batch(images)))
    card = model_card(cfg)
    assert "covid19, normal" in card and cfg.sha256 in card and "Not a diagnostic device" in card
    with pytest.raises(cxrclassify.ModelError, match="architecture 'tinycnn'"):
        pretrained_cfg_from_file(tmp_path / "tiny-clf.keras", "vgg16.clf", url="u", training_data="d", license="l",
                                 citation="c")
