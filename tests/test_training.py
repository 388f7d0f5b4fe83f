"""train: the paper's defaults, cached frozen-base features, augmentation, checks, exact resume."""

from __future__ import annotations

import csv
import inspect
import warnings
import json
import logging

import keras
import numpy as np
import pytest

import cxrclassify
from cxrclassify.augment import Augmentation, augment_images
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.features import FeatureCache, augmented_features
from cxrclassify.models import ArchSpec, CxrClassifier, register_model
from cxrclassify.training import balanced_class_weight, extract_features, train_two_stage


def tiny_blocks(include_top=False, weights=None, input_shape=(16, 16, 3)):
    """Three named conv blocks, so that the top ones can be fine-tuned."""
    inputs = keras.Input(input_shape)
    x = inputs
    for block in (1, 2, 3):
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=f"block{block}_conv")(x)
    return keras.Model(inputs, keras.layers.MaxPooling2D(4, name="block3_pool")(x), name="tiny_blocks")


register_model(ArchSpec("tinyblocks", tiny_blocks, "tf", 16, "block3_conv", min_input_size=8,
                        block_pattern=r"^(block\d+)_"), overwrite=True)


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


def test_wrong_image_size_is_resized_to_the_models(rng, caplog):
    train_set, validation_set = _toy_splits(rng)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=24)
    with caplog.at_level(logging.INFO, logger="cxrclassify.training"):
        history = cxrclassify.train(model, (train_set, validation_set), epochs=1, progress=False)
    assert len(history["loss"]) == 1 and "image_size=24" in caplog.text
    assert train_set.images.shape[1:3] == (16, 16)  # the caller's split is not changed
    assert model.metadata["ood"]["fitted"]
    fitted = dict(model.metadata["ood"])
    assert cxrclassify.fit_ood(model, (train_set, validation_set))["threshold"] == pytest.approx(fitted["threshold"])


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


# --- class weights -----------------------------------------------------------------------------


def _subset(split, indices):
    return ImageSet(split.images[indices], split.labels[indices], [split.records[i] for i in indices],
                    split.class_names)


def _cross_entropy(model, images, labels):
    features = extract_features(model, images, progress=False)
    logits = keras.ops.convert_to_numpy(model.head(features, training=False)).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_probabilities[np.arange(len(labels)), labels]


def test_balanced_class_weight_weighs_the_loss_as_sklearn(rng):
    from sklearn.utils.class_weight import compute_class_weight

    train_set, _ = _toy_splits(rng)
    train_set = _subset(train_set, np.r_[np.arange(0, 30, 2), [1, 3, 5, 7, 9]])  # 15 dark, 5 bright
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=train_set.labels)
    assert balanced_class_weight(train_set.labels, 2) == pytest.approx(dict(enumerate(expected)))

    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, dropout=0.0)
    options = dict(epochs=1, batch_size=len(train_set), learning_rate=0.0, progress=False)  # one step, weights kept
    weighted = cxrclassify.train(model, (train_set, None), class_weight="balanced", **options)
    unweighted = cxrclassify.train(model, (train_set, None), class_weight=None, **options)
    cross_entropy = _cross_entropy(model, train_set.images, train_set.labels)
    assert weighted["loss"][0] == pytest.approx(np.mean(expected[train_set.labels] * cross_entropy), rel=1e-5)
    assert unweighted["loss"][0] == pytest.approx(np.mean(cross_entropy), rel=1e-5)
    assert model.metadata["training"]["class_weight"] is None

    cxrclassify.train(model, (train_set, None), class_weight={"bright": 3.0}, **options)
    assert model.metadata["training"]["class_weight"] == [1.0, 3.0]
    with pytest.raises(ValueError, match="class_weight"):
        cxrclassify.train(model, (train_set, None), class_weight="inverse", **options)


# --- augmentation --------------------------------------------------------------------------------


class _CountImages:
    """Counts the images that go through CxrClassifier.features (the base's forward passes)."""

    def __init__(self, monkeypatch):
        self.images = 0
        original = CxrClassifier.features

        def counting(model, images, training=False):
            self.images += len(images)
            return original(model, images, training=training)

        monkeypatch.setattr(CxrClassifier, "features", counting)


def test_augmented_copies_are_computed_once_then_sampled(rng, monkeypatch):
    train_set, validation_set = _toy_splits(rng)
    counter = _CountImages(monkeypatch)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    history = cxrclassify.train(model, (train_set, validation_set), epochs=6, augment=True, augment_copies=4,
                                progress=False)
    assert counter.images == len(train_set) * 4 + len(validation_set)  # not once per epoch
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    assert model.metadata["training"]["augment_copies"] == 4
    assert model.metadata["training"]["augmentation"]["horizontal_flip"] is False

    copies = augmented_features(model, train_set.images, copies=3, augmentation=Augmentation(), seed=0)
    np.testing.assert_array_equal(copies[0], extract_features(model, train_set.images, progress=False))
    assert not np.allclose(copies[1], copies[0]) and not np.allclose(copies[2], copies[1])


def test_the_old_name_augment_views_still_trains_the_same_model_and_warns(rng):
    from cxrclassify.features import view_features
    from cxrclassify.training import TrainConfig

    train_set, validation_set = _toy_splits(rng)
    options = dict(epochs=2, augment=True, seed=3, progress=False)
    weights = []
    for renamed in ({"augment_copies": 3}, {"augment_views": 3}):
        model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, seed=0)
        if "augment_views" in renamed:
            with pytest.warns(cxrclassify.CxrDeprecationWarning, match="'augment_views' is renamed 'augment_copies'") as caught:
                cxrclassify.train(model, (train_set, validation_set), **renamed, **options)
            assert caught[0].filename == __file__  # the warning points at the caller's line
        else:
            cxrclassify.train(model, (train_set, validation_set), **renamed, **options)
        assert model.metadata["training"]["augment_copies"] == 3
        weights.append(model.head.get_weights())
    for new, old in zip(*weights):
        np.testing.assert_array_equal(new, old)
    with pytest.warns(cxrclassify.CxrDeprecationWarning):
        assert TrainConfig().replace(augment_views=5).augment_copies == 5
    with pytest.warns(cxrclassify.CxrDeprecationWarning), pytest.raises(cxrclassify.ArgumentTypeError, match="not both"):
        cxrclassify.train(model, (train_set, validation_set), augment_views=2, augment_copies=4, **options)
    with pytest.warns(cxrclassify.CxrDeprecationWarning, match="augmented_features"):
        old = view_features(model, train_set.images, views=2, augmentation=Augmentation(), seed=0, progress=False)
    new = augmented_features(model, train_set.images, copies=2, augmentation=Augmentation(), seed=0, progress=False)
    from cxrclassify.training import _RENAMED_DEFAULTS
    assert _RENAMED_DEFAULTS == {"augment_copies": TrainConfig().augment_copies}
    np.testing.assert_array_equal(old[1], new[1])


def _correlation(first, second):
    first = first.reshape(len(first), -1) - first.reshape(len(first), -1).mean(axis=1, keepdims=True)
    second = second.reshape(len(second), -1) - second.reshape(len(second), -1).mean(axis=1, keepdims=True)
    return (first * second).sum(axis=1) / np.sqrt((first ** 2).sum(axis=1) * (second ** 2).sum(axis=1))


def test_augmentation_stays_within_its_ranges_and_never_mirrors(rng):
    images = rng.integers(0, 40, (24, 32, 32, 3)).astype(np.uint8)
    images[:, 6:26, 4:13] += 150  # a bright "heart" on one side: mirrored images are easy to tell
    mirrored = images[:, :, ::-1]
    views = augment_images(images, Augmentation(), seed=0)
    assert not np.array_equal(views, images)
    assert (_correlation(views, images) > _correlation(views, mirrored) + 0.3).all()
    flipped = augment_images(images, Augmentation(horizontal_flip=True), seed=0)
    assert (_correlation(flipped, mirrored) > _correlation(flipped, images)).any()

    brightness = augment_images(images, Augmentation(rotation=0, shift=0, zoom=0, contrast=0, brightness=0.1),
                                seed=1)
    assert np.abs(brightness - images).max() <= 0.1 * 255 + 1e-3
    assert 0 <= brightness.min() and brightness.max() <= 255
    shifted = augment_images(images, Augmentation(rotation=0, zoom=0, brightness=0, contrast=0, shift=0.1), seed=2)
    assert (np.abs(shifted - images).reshape(24, -1).mean(axis=1) > 0).any()
    with pytest.raises(ValueError, match="rotation"):
        Augmentation(rotation=-1)


# --- early stopping, schedules, logs ------------------------------------------------------------


def _contradicting_validation(train_set):
    """The training images with the other label: the better the fit, the worse the validation loss."""
    return ImageSet(train_set.images, 1 - train_set.labels, train_set.records, train_set.class_names)


class _WeightsPerEpoch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def test_early_stopping_stops_and_restores_the_best_weights(rng):
    train_set, _ = _toy_splits(rng)
    validation_set = _contradicting_validation(train_set)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    recorder = _WeightsPerEpoch()
    history = cxrclassify.train(model, (train_set, validation_set), epochs=30, learning_rate=0.01, early_stopping=2,
                                callbacks=[recorder], progress=False)
    assert len(history["loss"]) < 30 and model.metadata["training"]["stopped_early"] is True
    best = int(np.argmin(history["val_loss"]))
    assert model.metadata["training"]["best_epoch"] == best + 1
    for final, kept in zip(model.head.get_weights(), recorder.weights[best]):
        np.testing.assert_array_equal(final, kept)


def test_learning_rate_schedules(rng):
    train_set, _ = _toy_splits(rng)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    cosine = cxrclassify.train(model, (train_set, None), epochs=4, lr_schedule="cosine", progress=False)
    assert cosine["learning_rate"][0] < 1e-3 and np.all(np.diff(cosine["learning_rate"]) < 0)
    assert cosine["learning_rate"][-1] == pytest.approx(0.0, abs=1e-9)

    plateau = cxrclassify.train(model, (train_set, _contradicting_validation(train_set)), epochs=8,
                                learning_rate=0.01, lr_schedule="plateau", progress=False)
    assert plateau["learning_rate"][0] == pytest.approx(0.01)
    assert plateau["learning_rate"][-1] == pytest.approx(0.001)
    with pytest.raises(ValueError, match="lr_schedule"):
        cxrclassify.train(model, (train_set, None), epochs=1, lr_schedule="step", progress=False)


def test_logs_are_written(rng, tmp_path):
    train_set, validation_set = _toy_splits(rng)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    history = cxrclassify.train(model, (train_set, validation_set), epochs=3, log_dir=tmp_path / "logs",
                                progress=False)
    with (tmp_path / "logs" / "history.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"} and len(rows) == 3
    assert [float(row["val_loss"]) for row in rows] == pytest.approx(history["val_loss"])
    saved = json.loads((tmp_path / "logs" / "history.json").read_text())
    assert saved["history"]["loss"] == pytest.approx(history["loss"])
    assert saved["settings"]["epochs"] == 3 and saved["settings"]["batch_size"] == 15


# --- on-disk feature cache ------------------------------------------------------------------------


def test_feature_cache_is_reused_across_runs(rng, tmp_path, monkeypatch):
    train_set, validation_set = _toy_splits(rng)
    counter = _CountImages(monkeypatch)
    monkeypatch.setenv("CXRCLASSIFY_HOME", str(tmp_path / "home"))
    histories = []
    for cache_dir in (tmp_path / "home" / "features", True):  # True: <CXRCLASSIFY_HOME>/features
        keras.utils.set_random_seed(3)  # the same base weights: the same cache keys
        model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
        histories.append(cxrclassify.train(model, (train_set, validation_set), epochs=2, augment=True,
                                           augment_copies=3, cache_dir=cache_dir, progress=False))
    assert counter.images == len(train_set) * 3 + len(validation_set)  # the second run ran no base
    assert histories[0] == histories[1]
    assert model.metadata["training"]["feature_cache"] == str(tmp_path / "home" / "features")
    entries = FeatureCache(tmp_path / "home" / "features").entries()
    assert sorted((entry["view"], entry["shape"][0]) for entry in entries) == [(0, 10), (0, 30), (1, 30), (2, 30)]
    assert all(entry["dtype"] == "float32" and entry["arch"] == "tinycnn" for entry in entries)


# --- exact resume ---------------------------------------------------------------------------------


def _weights_of(model, cached):
    return (model.head if cached else model).get_weights()


@pytest.mark.parametrize("cached", [True, False], ids=["cached-views", "fine-tuning"])
def test_resumed_run_ends_as_the_uninterrupted_one(rng, tmp_path, cached):
    train_set, validation_set = _toy_splits(rng)
    options = dict(epochs=4, seed=11, augment=True, augment_copies=3, lr_schedule="cosine", early_stopping=10,
                   class_weight="balanced", progress=False)

    def fresh_model():
        keras.utils.set_random_seed(1)
        return cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, freeze_base=cached)

    reference = fresh_model()
    uninterrupted = cxrclassify.train(reference, (train_set, validation_set), **options)
    interrupted = fresh_model()
    with pytest.raises(KeyboardInterrupt):
        cxrclassify.train(interrupted, (train_set, validation_set), checkpoint_dir=tmp_path / "ckpt",
                          callbacks=[_StopAfter(1)], **options)
    resumed = fresh_model()
    history = cxrclassify.train(resumed, (train_set, validation_set), checkpoint_dir=tmp_path / "ckpt",
                                log_dir=tmp_path / "logs", **options)
    assert len(history["loss"]) == 2
    saved = json.loads((tmp_path / "logs" / "history.json").read_text())["history"]
    np.testing.assert_allclose(saved["loss"], uninterrupted["loss"], rtol=1e-6)  # earlier epochs included
    for name in ("loss", "val_loss", "accuracy", "learning_rate"):
        np.testing.assert_allclose(history[name], uninterrupted[name][2:], rtol=1e-6)
    for got, expected in zip(_weights_of(resumed, cached), _weights_of(reference, cached)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert not (tmp_path / "ckpt").exists()


# --- two-stage recipe ------------------------------------------------------------------------------


class _StopFineTuning(keras.callbacks.Callback):
    """Interrupts the first fine-tuning epoch (the fit of the whole classifier), once."""

    fired = False

    def on_epoch_end(self, epoch, logs=None):
        if isinstance(self.model, CxrClassifier) and not _StopFineTuning.fired:
            _StopFineTuning.fired = True
            raise KeyboardInterrupt("simulated interruption")


def test_two_stage_trains_the_head_then_the_top_blocks_and_resumes(rng, tmp_path):
    train_set, validation_set = _toy_splits(rng)
    model = cxrclassify.build_model("tinyblocks", 2, weights=None, image_size=16)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.base.layers}
    options = dict(head_epochs=3, fine_tune_epochs=2, fine_tune_blocks=1, fine_tune_learning_rate=1e-3,
                   log_dir=tmp_path / "logs", checkpoint_dir=tmp_path / "ckpt", callbacks=[_StopFineTuning()],
                   progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(model, (train_set, validation_set), **options)
    assert (tmp_path / "ckpt" / "head_stage.npz").is_file()  # the head stage is not run again
    history = train_two_stage(model, (train_set, validation_set), **options)
    assert history["stage"] == ["head"] * 3 + ["fine_tune"] * 2 and len(history["val_loss"]) == 5
    after = {layer.name: layer.get_weights() for layer in model.base.layers}
    changed = {name for name in before
               if any(not np.array_equal(old, new) for old, new in zip(before[name], after[name]))}
    assert changed == {"block3_conv"}
    record = model.metadata["training"]
    assert record["recipe"] == "two_stage" and record["head_stage"]["cached_features"] is True
    assert record["cached_features"] is False and record["learning_rate"] == 1e-3 and record["trainable_blocks"] == 1
    assert json.loads((tmp_path / "logs" / "history.json").read_text())["history"]["stage"] == history["stage"]
    assert not any(path.is_file() for path in (tmp_path / "ckpt").rglob("*"))
    with pytest.raises(TypeError, match="epochs"):
        train_two_stage(model, (train_set, validation_set), epochs=3)
    with pytest.raises(ValueError, match="fine_tune_blocks"):
        train_two_stage(model, (train_set, validation_set), fine_tune_blocks=0)


def test_recipes_set_the_defaults_and_explicit_options_win(rng):
    train_set, validation_set = _toy_splits(rng)
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    options = dict(epochs=1, progress=False)
    cxrclassify.train(model, (train_set, validation_set), **options)
    record = model.metadata["training"]
    assert record["recipe"] == "recommended" and record["early_stopping"] == 10
    assert record["class_weight"] == pytest.approx(list(balanced_class_weight(train_set.labels, 2).values()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no validation split: no early stopping, and no warning about it
        cxrclassify.train(model, (train_set, None), **options)
    assert model.metadata["training"]["early_stopping"] is None
    cxrclassify.train(model, (train_set, validation_set), recipe="paper", **options)
    record = model.metadata["training"]
    assert record["recipe"] == "paper" and record["class_weight"] is None and record["early_stopping"] is None
    cxrclassify.train(model, (train_set, validation_set), recipe="paper", early_stopping=3, **options)
    assert model.metadata["training"]["early_stopping"] == 3
    with pytest.raises(ValueError, match=r"Received: recipe='fast'"):
        cxrclassify.train(model, (train_set, validation_set), recipe="fast", **options)


def test_a_train_config_is_the_same_as_its_keywords(rng):
    from cxrclassify.training import TRAINING_PRESETS, TrainConfig

    train_set, validation_set = _toy_splits(rng)
    histories = []
    for call in ({"recipe": "paper", "epochs": 2}, {"config": TrainConfig.preset("paper", epochs=2)},
                 {"config": "paper", "epochs": 2}):
        model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, seed=0)
        config = call.pop("config", None)
        histories.append(cxrclassify.train(model, (train_set, validation_set), config, progress=False, **call))
        assert model.metadata["training"]["recipe"] == "paper" and model.metadata["training"]["class_weight"] is None
    assert histories[0] == histories[1] == histories[2]
    assert TRAINING_PRESETS["recommended"] == TrainConfig()
    with pytest.raises(cxrclassify.ArgumentTypeError, match="colour"):
        TrainConfig().replace(colour="blue")
    with pytest.raises(cxrclassify.ArgumentError, match="recipe"):
        TrainConfig(recipe="fast")
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, seed=0)
    history = cxrclassify.train(model, (train_set, validation_set), TrainConfig(epochs=3, early_stopping=None),
                                epochs=1, progress=False)
    assert len(history["loss"]) == 1  # a keyword given another value than its default changes the config
