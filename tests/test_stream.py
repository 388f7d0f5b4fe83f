"""Records that stream: LazyImages, load_datasets(stream=True), the tf.data pipeline, features on disk."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import decode_records, sample_records
from cxrclassify.datasets.stream import LazyImages, array_dataset, is_lazy
from cxrclassify.features import FeatureCache, augmented_features


@pytest.fixture(scope="module")
def both():
    """The bundled sample loaded eagerly and streamed, at 32 px, with the same seed."""
    eager = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    lazy = cxrclassify.load_datasets("sample", image_size=32, progress=False, stream=True)
    return eager, lazy


def _batches(dataset) -> np.ndarray:
    return np.concatenate([images for images, _ in dataset.as_numpy_iterator()])


def test_lazy_images_are_the_eager_decode():
    samples = sample_records()[:10]
    lazy = LazyImages(samples, 32)
    eager = decode_records(samples, 32, progress=False)
    assert lazy.shape == eager.shape and lazy.dtype == eager.dtype and len(lazy) == 10
    np.testing.assert_array_equal(np.asarray(lazy), eager)
    np.testing.assert_array_equal(lazy[3], eager[3])
    np.testing.assert_array_equal(lazy[-1], eager[-1])
    np.testing.assert_array_equal(lazy[2:7:2], eager[2:7:2])
    np.testing.assert_array_equal(lazy[[9, 0, 4]], eager[[9, 0, 4]])
    np.testing.assert_array_equal(lazy[np.arange(10) % 3 == 0], eager[np.arange(10) % 3 == 0])
    np.testing.assert_array_equal(np.stack(list(lazy)), eager)
    np.testing.assert_array_equal(lazy.take([5, 1])[1], eager[1])
    np.testing.assert_array_equal(lazy[1:3, 0, 0], eager[1:3, 0, 0])
    with pytest.raises(cxrclassify.IndexOutOfRangeError, match=r"\[-10, 10\)"):
        lazy[10]
    assert is_lazy(lazy) and not is_lazy(eager)


def test_lazy_lung_crops_are_the_eager_ones():
    samples = sample_records()[:4]
    np.testing.assert_array_equal(np.asarray(LazyImages(samples, 32, lungs="crop")),
                                  decode_records(samples, 32, lungs="crop", progress=False))


def test_streamed_splits_equal_the_eager_ones(both):
    eager, lazy = both
    for name in ("train", "validation", "test"):
        split, streamed = getattr(eager, name), getattr(lazy, name)
        assert streamed.streamed and not split.streamed
        assert streamed.paths == split.paths and streamed.labels.tolist() == split.labels.tolist()
        np.testing.assert_array_equal(np.asarray(streamed.images), split.images)
        np.testing.assert_array_equal(streamed.materialized().images, split.images)
    assert lazy.duplicates == eager.duplicates and lazy.merged_groups == eager.merged_groups


@pytest.mark.parametrize("parallel", [1, 2, None])
def test_the_pipeline_yields_the_same_images_in_the_same_order(both, parallel):
    eager, lazy = both
    dataset = lazy.train.as_dataset(batch_size=5, num_parallel_calls=parallel)
    np.testing.assert_array_equal(_batches(dataset), eager.train.images)
    images, labels = next(iter(dataset))
    np.testing.assert_array_equal(labels.numpy(), eager.train.one_hot()[:5])
    np.testing.assert_array_equal(_batches(eager.train.as_dataset(batch_size=7)), eager.train.images)


def test_shuffle_is_seeded_and_the_same_streamed_or_not(both):
    eager, lazy = both
    first = _batches(lazy.train.as_dataset(batch_size=8, shuffle=True, seed=3))
    again = _batches(lazy.train.as_dataset(batch_size=8, shuffle=True, seed=3))
    in_memory = _batches(eager.train.as_dataset(batch_size=8, shuffle=True, seed=3))
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, in_memory)
    assert not np.array_equal(first, eager.train.images)
    assert sorted(map(bytes, first)) == sorted(map(bytes, eager.train.images))


def test_shards_partition_the_images(both):
    eager, lazy = both
    parts = [_batches(lazy.train.as_dataset(batch_size=4, shard=(3, index))) for index in range(3)]
    assert sum(len(part) for part in parts) == len(eager.train)
    np.testing.assert_array_equal(parts[1], eager.train.images[1::3])
    with pytest.raises(cxrclassify.ArgumentError, match=r"shard=\(count, index\)"):
        lazy.train.as_dataset(shard=(2, 2))


def test_single_images_integer_labels_and_images_only(both):
    eager, lazy = both
    singles = list(lazy.test.as_dataset(batch_size=None, one_hot=False).as_numpy_iterator())
    assert singles[0][0].shape == (32, 32, 3) and singles[0][1] == eager.test.labels[0]
    only = next(iter(array_dataset(eager.test.images, batch_size=2)))
    assert tuple(only.shape) == (2, 32, 32, 3)
    with pytest.raises(cxrclassify.ArgumentError, match="batch_size"):
        lazy.test.as_dataset(batch_size=0)


def test_content_digest_follows_the_files(tmp_path):
    source = Path(sample_records()[0].path)
    copy = tmp_path / source.name
    copy.write_bytes(source.read_bytes())
    sample = cxrclassify.datasets.Sample(str(copy), "covid19")
    before = LazyImages([sample], 32).content_digest()
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert LazyImages([sample], 32).content_digest() != before


def test_streamed_training_gives_the_same_model(both):
    eager, lazy = both
    models = []
    for data in both:
        model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32, seed=0)
        history = cxrclassify.train(model, data, epochs=2, seed=0, progress=False)
        models.append((model, history))
    (first, first_history), (second, second_history) = models
    assert first_history == second_history
    for left, right in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(left, right)
    assert first.metadata["ood"]["threshold"] == second.metadata["ood"]["threshold"]
    np.testing.assert_allclose(cxrclassify.predict(first, eager.test).probabilities,
                               cxrclassify.predict(second, lazy.test).probabilities, atol=1e-6)
    assert cxrclassify.evaluate(second, lazy.test).accuracy == cxrclassify.evaluate(first, eager.test).accuracy


def test_streamed_training_removes_its_temporary_features(both):
    _, lazy = both
    pattern = "cxrclassify-features-*"
    before = set(Path(tempfile.gettempdir()).glob(pattern))
    model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32, seed=0)
    cxrclassify.train(model, lazy, epochs=1, seed=0, progress=False)
    assert set(Path(tempfile.gettempdir()).glob(pattern)) == before


def test_features_are_written_to_disk_batch_by_batch(both, tmp_path):
    eager, lazy = both
    model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32, seed=0)
    in_memory = augmented_features(model, eager.train.images, progress=False)[0]
    cache = FeatureCache(tmp_path / "features")
    on_disk = augmented_features(model, lazy.train.images, cache=cache, batch_size=4, progress=False)[0]
    assert isinstance(on_disk, np.memmap)
    np.testing.assert_array_equal(np.asarray(on_disk), in_memory)
    assert not list((tmp_path / "features").glob(".*part*")), "no temporary file is left"
    again = augmented_features(model, lazy.train.images, cache=cache, progress=False)[0]
    assert again.filename == on_disk.filename


def test_leave_one_source_out_on_streamed_splits_equals_the_eager_one(both):
    eager, lazy = both
    results = [cxrclassify.leave_one_source_out(data, "vgg16", sources=["nih"], build_options={"weights": None},
                                                train_options={"epochs": 1, "progress": False})
               for data in (eager, lazy)]
    assert [fold.evaluation.accuracy for fold in results[0].folds] == \
        [fold.evaluation.accuracy for fold in results[1].folds]
    pooled = cxrclassify.crossval.pool_splits(lazy)
    assert pooled.streamed and len(pooled) == 48


def test_a_second_streamed_load_decodes_nothing_for_its_fingerprints(tmp_path, monkeypatch):
    from cxrclassify.datasets import fingerprints

    first = cxrclassify.load_datasets(sample_records(), image_size=32, progress=False, stream=True,
                                      data_home=tmp_path)
    computed = []
    real = fingerprints.fingerprint_images
    monkeypatch.setattr(fingerprints, "fingerprint_images", lambda *a, **k: computed.append(1) or real(*a, **k))
    second = cxrclassify.load_datasets(sample_records(), image_size=32, progress=False, stream=True,
                                       data_home=tmp_path)
    assert computed == [] and second.train.paths == first.train.paths
    assert list((tmp_path / "fingerprints").iterdir())


def test_the_audit_and_calibration_of_streamed_splits_equal_the_eager_ones(both):
    eager, lazy = both
    model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32, seed=0)
    cxrclassify.train(model, eager, epochs=1, seed=0, progress=False)
    assert cxrclassify.audit(model, lazy).to_dict() == cxrclassify.audit(model, eager).to_dict()
    assert cxrclassify.fit_temperature(model, lazy.validation) == cxrclassify.fit_temperature(model, eager.validation)
