"""train(..., strategy=...): data-parallel training over two logical CPUs, in a subprocess.

Logical devices must be configured before TensorFlow initialises, which the
test session has long done: each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
    '''
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

    import keras
    import cxrclassify
    from cxrclassify.datasets import ImageSet, Sample
    from cxrclassify.models import ArchSpec, register_model

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
    if sys.argv[1] == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: one local worker
    result = {"replicas": int(strategy.num_replicas_in_sync)}
    validation_images = validation_set.images.astype(np.float32)
    for freeze in (True, False):
        with strategy.scope():
            model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16, freeze_base=freeze)
        history = cxrclassify.train(model, (train_set, validation_set), epochs=4, batch_size=16,
                                    learning_rate=3e-3, augment=True, augment_copies=2, class_weight="balanced",
                                    strategy=strategy, progress=False)
        result["cached" if freeze else "fine_tuned"] = {
            "loss": history["loss"],
            "val_accuracy": history["val_accuracy"],
            "metadata": {key: model.metadata["training"][key] for key in ("cached_features", "replicas", "strategy")},
            "predicted": model.predict(validation_images, batch_size=16, verbose=0).tolist(),
            "called": np.asarray(model(validation_images)).tolist(),
            "library_predicted": cxrclassify.predict(model, validation_set.images[:7]).probabilities.tolist(),
        }
    outside = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    errors = []
    for options in ({"batch_size": 16}, {"batch_size": 15}):
        try:
            cxrclassify.train(outside, (train_set, None), epochs=1, strategy=strategy, progress=False, **options)
            errors.append(None)
        except ValueError as error:
            errors.append(str(error))
    result["errors"] = errors
    print("RESULT " + json.dumps(result))
    '''
)


def _run(kind: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    completed = subprocess.run([sys.executable, "-c", SCRIPT, kind], capture_output=True, text=True, timeout=540,
                               env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


def _check_training(run: dict, cached: bool, replicas: int) -> None:
    loss = np.asarray(run["loss"])
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
    assert run["metadata"]["cached_features"] is cached and run["metadata"]["replicas"] == replicas
    predicted = np.asarray(run["predicted"])
    assert predicted.shape == (10, 2)
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(predicted, np.asarray(run["called"]), atol=1e-5)
    # cxrclassify.predict gives one row per image under the strategy, an odd count included.
    np.testing.assert_allclose(np.asarray(run["library_predicted"]), np.asarray(run["called"])[:7], atol=1e-5)
    assert run["val_accuracy"][-1] >= 0.8  # the toy classes differ by brightness: easy


def test_mirrored_strategy_over_two_logical_cpus():
    result = _run("mirrored")
    assert result["replicas"] == 2
    _check_training(result["cached"], cached=True, replicas=2)
    _check_training(result["fine_tuned"], cached=False, replicas=2)
    built_outside, odd_batch = result["errors"]
    assert "built under the strategy's scope" in built_outside
    assert "multiple of 2" in odd_batch


def test_single_worker_multi_worker_mirrored_strategy():
    result = _run("multiworker")
    assert result["replicas"] >= 1
    _check_training(result["cached"], cached=True, replicas=result["replicas"])
    _check_training(result["fine_tuned"], cached=False, replicas=result["replicas"])

