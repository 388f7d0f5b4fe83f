"""train(..., strategy=MultiWorkerMirroredStrategy()) across two worker processes on 127.0.0.1.

Each worker is a fresh interpreter with its own ``TF_CONFIG``; the two find
each other on two free loopback ports. Both train the same tiny CNN for one
epoch, on cached features (frozen base) and fine-tuned (the whole model, with
on-the-fly augmentation). The test checks that both exit cleanly, end with the
same weights, that training changed them, and that each worker fed Keras only
its own part of every global batch: the training dataset the strategy
distributed is recorded in each worker and iterated again after training.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

TIMEOUT_S = 240
PATHS = ("cached", "fine_tuned")

SCRIPT = textwrap.dedent(
    '''
    import json, sys
    import numpy as np
    import tensorflow as tf
    import keras
    import cxrclassify
    from cxrclassify.datasets import ImageSet, Sample
    from cxrclassify.models import ArchSpec, register_model

    folder, index = sys.argv[1], int(sys.argv[2])

    def tiny_cnn(include_top=False, weights=None, input_shape=(16, 16, 3)):
        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
        x = keras.layers.MaxPooling2D(2, name="pool1")(x)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
        return keras.Model(inputs, x, name="tiny_cnn")

    register_model(ArchSpec("tinycnn", tiny_cnn, "tf", 32, "last_conv", min_input_size=8), overwrite=True)

    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    images = (rng.integers(0, 100, (40, 16, 16, 3)) + labels[:, None, None, None] * 120).astype(np.uint8)
    records = [Sample(f"toy{i}.png", ["dark", "bright"][label], f"p{i}", "toy") for i, label in enumerate(labels)]

    def split(indices):
        return ImageSet(images[indices], labels[indices], [records[i] for i in indices], ["dark", "bright"])

    train_set, validation_set = split(np.arange(30)), split(np.arange(30, 40))
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # the cluster and this worker's place: TF_CONFIG

    # Record what Keras hands the strategy to distribute, and what it got back.
    distributed = []
    distribute = strategy.experimental_distribute_dataset

    def recording(dataset, options=None):
        distributed.append((dataset, distribute(dataset, options)))
        return distributed[-1][1]

    strategy.experimental_distribute_dataset = recording

    result = {"replicas": int(strategy.num_replicas_in_sync)}
    for freeze, name in ((True, "cached"), (False, "fine_tuned")):
        with strategy.scope():
            model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, freeze_base=freeze)
        initial = [np.array(weight) for weight in model.trainable_weights]
        del distributed[:]
        history = cxrclassify.train(model, (train_set, validation_set), epochs=1, batch_size=16,
                                    learning_rate=3e-3, augment=True, augment_copies=2, class_weight="balanced",
                                    strategy=strategy, progress=False)
        final = [np.array(weight) for weight in model.trainable_weights]
        whole, mine = distributed[0]  # the training batches (validation comes later, when the epoch ends)
        global_inputs = [np.asarray(batch[0]) for batch in whole]
        local_inputs = [np.asarray(strategy.experimental_local_results(batch)[0][0]) for batch in mine]
        arrays = {f"initial_{i}": weight for i, weight in enumerate(initial)}
        arrays.update({f"final_{i}": weight for i, weight in enumerate(final)})
        arrays.update({f"global_{i}": batch for i, batch in enumerate(global_inputs)})
        arrays.update({f"local_{i}": batch for i, batch in enumerate(local_inputs)})
        np.savez(f"{folder}/worker{index}_{name}.npz", **arrays)
        result[name] = {"history": history, "weights": len(final), "steps": len(global_inputs),
                        "local_steps": len(local_inputs),
                        "metadata": {key: model.metadata["training"][key]
                                     for key in ("cached_features", "replicas", "strategy")}}
    with open(f"{folder}/worker{index}.json", "w") as handle:
        json.dump(result, handle)
    '''
)


def _free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (all held open until all are found)."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(probe)
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def _loopback_tcp() -> bool:
    try:
        _free_loopback_ports(1)
        return True
    except OSError:
        return False


def _tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.is_file() else "(no output)"


@pytest.mark.skipif(not _loopback_tcp(), reason="TCP on 127.0.0.1 is unavailable: the workers cannot connect")
def test_two_workers_train_to_the_same_weights(tmp_path: Path):
    try:
        ports = _free_loopback_ports(2)
    except OSError as error:
        pytest.skip(f"TCP on 127.0.0.1 is unavailable: {error}")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers, logs = [], []
    try:
        for index in range(2):
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            logs.append(tmp_path / f"worker{index}.log")
            with open(logs[-1], "wb") as log:
                workers.append(subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), str(index)],
                                                stdout=log, stderr=subprocess.STDOUT, env=env))
        deadline = time.monotonic() + TIMEOUT_S
        for worker in workers:
            worker.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"The workers did not finish within {TIMEOUT_S} s:\n"
                    + "\n".join(f"--- worker {i}\n{_tail(log)}" for i, log in enumerate(logs)))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for index, worker in enumerate(workers):
        assert worker.returncode == 0, f"worker {index} exited with {worker.returncode}:\n{_tail(logs[index])}"

    results = [json.loads((tmp_path / f"worker{index}.json").read_text()) for index in range(2)]
    assert [result["replicas"] for result in results] == [2, 2]
    for name in PATHS:
        runs = [result[name] for result in results]
        arrays = [np.load(tmp_path / f"worker{index}_{name}.npz") for index in range(2)]
        for run in runs:
            assert run["metadata"] == {"cached_features": name == "cached", "replicas": 2,
                                       "strategy": "CollectiveAllReduceStrategy"}
            assert np.isfinite(run["history"]["loss"]).all()
        # Every step's metrics are reduced over both workers: the same history on each.
        assert runs[0]["history"] == runs[1]["history"]

        # The same weights on both workers, and not those they started from.
        count = runs[0]["weights"]
        assert count == runs[1]["weights"] and count > 0
        for i in range(count):
            np.testing.assert_array_equal(arrays[0][f"initial_{i}"], arrays[1][f"initial_{i}"])
            np.testing.assert_allclose(arrays[0][f"final_{i}"], arrays[1][f"final_{i}"], rtol=0, atol=1e-6)
            assert not np.allclose(arrays[0][f"final_{i}"], arrays[0][f"initial_{i}"], rtol=0, atol=1e-7)

        # Each worker fed its replica a disjoint part of every global batch, the two parts making the batch.
        steps = runs[0]["steps"]
        assert steps == 2 and all(run["local_steps"] == steps for run in runs)  # 30 images, batches of 16
        for step in range(steps):
            whole = [arrays[index][f"global_{step}"] for index in range(2)]
            np.testing.assert_array_equal(whole[0], whole[1])  # both workers made the same global batch
            parts = [arrays[index][f"local_{step}"] for index in range(2)]
            assert [len(part) for part in parts] == [len(whole[0]) // 2] * 2  # 16 -> 8 + 8, 14 -> 7 + 7
            np.testing.assert_array_equal(np.concatenate(parts), whole[0])
