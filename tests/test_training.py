"""train: the paper's defaults, cached frozen-base features, checks, resume."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.training import extract_features


def _toy_splits(rng, n=40, size=16):
    """Two classes told apart by brightness; ImageSets built directly, no files."""
    labels = np.arange(n) % 2
    images = rng.integers(0, 100, (n, size, size, 3)).astype(np.uint8) + (labels * 120)[:, None, None, None].astype(np.uint8)
    records = [Sample(f"toy{i}.png", ["dark", "bright"][label], f"p{i}", "toy") for i, label in enumerate(labels)]
    def subset(indices):
        return ImageSet(images[indices], labels[indices], [records[i] for i in indices], ["dark", "bright"])
    return subset(np.arange(0, 30)), subset(np.arange(30, n))


def test_defaults_are_the_papers():
    parameters = inspect.signature(cxrclassify.train).parameters
    assert parameters["epochs"].default == 80
    assert parameters["batch_size"].default == 15
    assert parameters["learning_rate"].default == pytest.approx(1e-3)


def test_history_has_training_and_validation_curves(rng):
    train_set, validation_set = _toy_splits(rng)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    history = cxrclassify.train(model, (train_set, validation_set), epochs=25, progress=False)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == 25 for values in history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert model.class_names == ["dark", "bright"]
    assert model.metadata["training"]["cached_features"] is True
    assert len(model.metadata["training"]["data_manifest_sha256"]) == 64


def test_cached_head_predicts_as_the_full_model(rng):
    """The head trained on cached features, put back in the full model, gives the same predictions."""
    train_set, validation_set = _toy_splits(rng)
    model = cxrclassify.build_model("vgg16", 2, weights=None, image_size=32)
    train_set = ImageSet(np.stack([np.resize(image, (32, 32, 3)) for image in train_set.images]),
                         train_set.labels, train_set.records, train_set.class_names)
    validation_set = ImageSet(np.stack([np.resize(image, (32, 32, 3)) for image in validation_set.images]),
                              validation_set.labels, validation_set.records, validation_set.class_names)
    cxrclassify.train(model, (train_set, validation_set), epochs=5, progress=False)
    features = extract_features(model, validation_set.images, progress=False)
    from_cache = keras.ops.convert_to_numpy(keras.ops.softmax(model.head(features, training=False)))
    from_full_model = cxrclassify.predict(model, validation_set).probabilities
    np.testing.assert_allclose(from_full_model, from_cache, rtol=1e-4, atol=1e-6)
    assert not np.allclose(from_full_model, from_full_model[0])  # the head learned something input-dependent


def test_cached_and_uncached_training_agree_without_dropout(rng):
    train_set, validation_set = _toy_splits(rng)
    histories = []
    for cache in (True, False):
        keras.utils.set_random_seed(1)  # same initial head weights in both runs
        model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, dropout=0.0)
        histories.append(cxrclassify.train(model, (train_set, None), epochs=3, batch_size=30,
                                           cache_features=cache, progress=False, seed=5))
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-3)


def test_same_seed_same_history(rng):
    train_set, validation_set = _toy_splits(rng)
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(1)
        model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
        runs.append(cxrclassify.train(model, (train_set, validation_set), epochs=3, seed=7, progress=False))
    assert runs[0] == runs[1]


def test_fine_tuning_path_trains_the_base(rng):
    train_set, _ = _toy_splits(rng)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, freeze_base=False)
    before = np.asarray(model.base.weights[0]).copy()
    history = cxrclassify.train(model, (train_set, None), epochs=2, progress=False)
    assert model.metadata["training"]["cached_features"] is False and len(history["loss"]) == 2
    assert not np.allclose(before, np.asarray(model.base.weights[0]))
    with pytest.raises(ValueError, match="needs a frozen base"):
        cxrclassify.train(model, (train_set, None), epochs=1, cache_features=True, progress=False)


def test_mismatched_number_of_classes(rng):
    train_set, validation_set = _toy_splits(rng)
    model = cxrclassify.build_model("tinycnn", 3, weights=None, image_size=16)
    with pytest.raises(ValueError, match="3 outputs but the data has 2 classes.*num_classes=2"):
        cxrclassify.train(model, (train_set, validation_set), epochs=1, progress=False)


def test_mismatched_class_names(rng):
    train_set, validation_set = _toy_splits(rng)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, class_names=["bright", "dark"])
    with pytest.raises(ValueError, match="differ from the data's"):
        cxrclassify.train(model, (train_set, validation_set), epochs=1, progress=False)


def test_wrong_image_size_says_how_to_load(rng):
    train_set, validation_set = _toy_splits(rng)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=24)
    with pytest.raises(ValueError, match=r"image_size=24"):
        cxrclassify.train(model, (train_set, validation_set), epochs=1, progress=False)


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.stop_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.stop_epoch:
            raise KeyboardInterrupt("simulated interruption")


def test_interrupted_run_resumes_from_its_checkpoint(rng, tmp_path):
    train_set, validation_set = _toy_splits(rng)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    with pytest.raises(KeyboardInterrupt):
        cxrclassify.train(model, (train_set, validation_set), epochs=6, checkpoint_dir=tmp_path / "ckpt",
                          callbacks=[_StopAfter(2)], progress=False)
    assert any((tmp_path / "ckpt").iterdir())
    resumed = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    history = cxrclassify.train(resumed, (train_set, validation_set), epochs=6,
                                checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert len(history["loss"]) == 3  # epochs 4 to 6: the first three were not run again
