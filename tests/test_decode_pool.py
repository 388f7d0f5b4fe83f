"""Decoding in worker processes: the same pixels in the same order as the eager path, and clear failures."""

from __future__ import annotations

import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import decode_records, sample_records
from cxrclassify.datasets._decode_pool import DecodePool, DecodeWorkerError, shared_decode_pool
from cxrclassify.datasets.stream import LazyImages


@pytest.fixture(scope="module")
def samples():
    return sample_records()[:20]


def _images(dataset) -> np.ndarray:
    return np.concatenate([batch[0] if isinstance(batch, tuple) else batch[None] if batch.ndim == 3 else batch
                           for batch in dataset.as_numpy_iterator()])


def test_worker_processes_decode_the_eager_pixels(samples):
    eager = decode_records(samples, 40, progress=False)
    with DecodePool(2) as pool:
        np.testing.assert_array_equal(pool.decode([sample.path for sample in samples], 40), eager)
        common = decode_records(samples[:3], 40, common_resolution=64, progress=False)
        np.testing.assert_array_equal(pool.decode([sample.path for sample in samples[:3]], 40,
                                                  common_resolution=64), common)
        assert pool.decode([], 40).shape == (0, 40, 40, 3)


@pytest.mark.parametrize("batch_size", [6, None])
def test_the_process_pipeline_equals_the_thread_pipeline(samples, batch_size):
    images = LazyImages(samples, 32)
    labels = np.arange(len(samples)) % 3
    options = {"batch_size": batch_size, "shuffle": True, "seed": 5, "num_parallel_calls": 2}
    in_threads = list(images.as_dataset(labels, decode_in="threads", **options).as_numpy_iterator())
    in_processes = list(images.as_dataset(labels, decode_in="processes", **options).as_numpy_iterator())
    assert len(in_threads) == len(in_processes) == (len(samples) if batch_size is None else 4)
    for (thread_images, thread_labels), (process_images, process_labels) in zip(in_threads, in_processes):
        np.testing.assert_array_equal(process_images, thread_images)
        np.testing.assert_array_equal(process_labels, thread_labels)
    order = np.concatenate([np.atleast_1d(labels_) for _, labels_ in in_processes])
    assert sorted(order.tolist()) == sorted(labels.tolist())


def test_shards_and_no_shuffle_keep_the_eager_order_in_processes(samples):
    eager = decode_records(samples, 32, progress=False)
    images = LazyImages(samples, 32)
    first = _images(images.as_dataset(batch_size=4, shard=(2, 0), decode_in="processes", num_parallel_calls=2))
    second = _images(images.as_dataset(batch_size=4, shard=(2, 1), decode_in="processes", num_parallel_calls=2))
    np.testing.assert_array_equal(first, eager[0::2])
    np.testing.assert_array_equal(second, eager[1::2])


def test_auto_decodes_small_sets_and_lung_fields_in_this_process(samples):
    images = LazyImages(samples, 32)
    assert images._batch_decoder(2, "auto") == (images.decode, 2)
    assert images._batch_decoder(1, "processes")[0] != images.decode
    lungs = LazyImages(samples, 32, lungs="crop")
    assert lungs._batch_decoder(2, "processes") == (lungs.decode, 1)


def test_a_file_the_workers_cannot_decode_is_named(tmp_path, samples):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    pool = shared_decode_pool(1)
    with pytest.raises(cxrclassify.ImageDecodeError, match="broken.png"):
        pool.decode([samples[0].path, str(broken)], 32)
    assert pool.decode([samples[0].path], 32).shape == (1, 32, 32, 3)  # the worker goes on


def test_the_pixel_limit_of_this_process_holds_in_the_workers(samples):
    with DecodePool(1) as pool, pytest.raises(cxrclassify.ImageDecodeError, match="pixels"):
        pool.decode([samples[0].path], 32, max_pixels=100)


def test_a_worker_that_died_gives_a_clear_error(samples):
    pool = DecodePool(1)
    try:
        worker = pool._workers[0]
        worker.process.kill()
        worker.process.wait()
        with pytest.raises(DecodeWorkerError, match=r"worker process 0 .*exited.*decode_in='threads'"):
            pool.decode([samples[0].path], 32)
    finally:
        pool.close()
    with pytest.raises(DecodeWorkerError, match="closed"):
        pool.decode([samples[0].path], 32)


@pytest.mark.parametrize("options, match", [({"decode_in": "gpu"}, "decode_in"),
                                            ({"num_parallel_calls": 0}, "num_parallel_calls")])
def test_bad_decoding_options_are_refused(samples, options, match):
    with pytest.raises(cxrclassify.ArgumentError, match=match):
        LazyImages(samples, 32).as_dataset(**options)
    with pytest.raises(cxrclassify.ArgumentError, match="processes"):
        DecodePool(0)


def test_batches_decoded_ahead_in_processes_come_in_order(samples):
    images = LazyImages(samples, 32)
    eager = decode_records(samples, 32, progress=False)
    batches = list(images.iter_batches(6, decode_in="processes"))
    assert [len(batch) for batch in batches] == [6, 6, 6, 2]
    np.testing.assert_array_equal(np.concatenate(batches), eager)
    iterator = images.iter_batches(3, decode_in="processes")
    np.testing.assert_array_equal(next(iterator), eager[:3])
    iterator.close()  # a consumer that stops early leaves nothing running


def test_autotune_is_tensorflows():
    import tensorflow as tf

    from cxrclassify.datasets.stream import AUTOTUNE

    assert AUTOTUNE == tf.data.AUTOTUNE
