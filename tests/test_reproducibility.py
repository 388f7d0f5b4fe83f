"""The same seeds give the same weights and histories in separate processes; other seeds, other weights.

One script (``_SCRIPT``) builds and trains tiny models with every entry point
that trains (``build_model`` + ``train``, ``train_two_stage``,
``leave_one_source_out`` and ``reproduce``, the last with its data loader
replaced by in-memory images) and writes every weight array, history and
evaluation to an ``.npz``. It runs in two fresh interpreters at once, which
share nothing but the code: Python's hash seed, the random state the process
starts with and TensorFlow's state all differ between them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent

_SCRIPT = r'''
import importlib.util, json, random, sys
from pathlib import Path

import numpy as np

spec = importlib.util.spec_from_file_location("_cxr_conftest", sys.argv[2])  # registers "tinycnn"
spec.loader.exec_module(importlib.util.module_from_spec(spec))

import cxrclassify
import cxrclassify.crossval
from cxrclassify.datasets import DatasetSplits, ImageSet, Sample
from cxrclassify.report import reproduce
from cxrclassify.training import train_two_stage

out, seed, work = Path(sys.argv[1]), int(sys.argv[3]), Path(sys.argv[4])
arrays = {}

def fresh():
    """Reseed Python's and NumPy's generators from the system, as a new process starts: each check stands alone."""
    random.seed()
    np.random.seed()

def put(prefix, model=None, history=None):
    for index, weight in enumerate([] if model is None else model.get_weights()):
        arrays[f"{prefix}/weight{index:03d}"] = np.asarray(weight)
    for name, values in (history or {}).items():
        arrays[f"{prefix}/history/{name}"] = np.asarray(values)

# Unseeded first, before anything seeds Python's random: it must differ between the processes.
put("unseeded", cxrclassify.build_model("tinycnn", 2, weights=None, image_size=32, seed=None).head)

rng = np.random.default_rng(0)  # the data: the same in both processes
def image_set(n, sources, offset=0):
    labels = np.arange(n) % 2
    images = (rng.integers(0, 100, (n, 32, 32, 3)) + labels[:, None, None, None] * 120).astype(np.uint8)
    records = [Sample(f"img{offset + i}.png", ["covid19", "normal"][label], f"patient{(offset + i) // 2}",
                      sources[i % len(sources)]) for i, label in enumerate(labels)]
    return ImageSet(images, labels, records, ["covid19", "normal"])
train_set, validation_set, test_set = image_set(12, ["a", "b"]), image_set(4, ["a", "b"], 100), image_set(4, ["a"], 200)
options = {"progress": False, "batch_size": 4}

# build_model + train (cached features, augmented views, dropout, class weights), and another seed.
for name, model_seed in (("train", seed), ("train_other_seed", seed + 1)):
    fresh()
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=32, seed=model_seed)
    history = cxrclassify.train(model, (train_set, validation_set), epochs=3, seed=model_seed, augment=True,
                                augment_copies=2, **options)
    put(name, model, history)
model.save(work / "model.keras")
reloaded = cxrclassify.load_model(work / "model.keras")
arrays["train_other_seed/reloaded_seed"] = np.asarray(json.dumps(reloaded.seed))

# train_two_stage: the head on cached features, then the whole model on augmented batches.
fresh()
model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=32, seed=seed)
history = train_two_stage(model, (train_set, validation_set), head_epochs=2, fine_tune_epochs=2,
                          fine_tune_blocks=True, seed=seed, augment=True, augment_copies=2, **options)
put("two_stage", model, history)

# leave_one_source_out and reproduce: the models they build, and the seeds they build them with.
built = []
def recording(build):
    def build_model(*args, **kwargs):
        built.append(build(*args, **kwargs))
        return built[-1]
    return build_model
cxrclassify.crossval.build_model = recording(cxrclassify.crossval.build_model)
pooled = image_set(24, ["a", "b", "c"], 300)
fresh()
result = cxrclassify.crossval.leave_one_source_out(
    pooled, "tinycnn", build_options={"weights": None}, train_options={"epochs": 2, **options},
    validation_fraction=0.25, seed=seed, n_bootstrap=20)
for index, model in enumerate(built):
    put(f"crossval/fold{index}", model)
arrays["crossval/evaluations"] = np.asarray(json.dumps(result.to_dict(), sort_keys=True))
arrays["crossval/build_seeds"] = np.asarray(json.dumps([model.seed for model in built]))

built.clear()
cxrclassify.build_model = recording(cxrclassify.build_model)
cxrclassify.load_datasets = lambda *args, **kwargs: DatasetSplits(train_set, validation_set, test_set,
                                                                  ["covid19", "normal"])
fresh()
reproduce(work / "report", archs=("tinycnn",), weights=None, epochs=2, image_size=32, seed=seed, audit=False,
          progress=False)
for index, model in enumerate(built):
    put(f"reproduce/model{index}", model)
metrics = json.loads((work / "report" / "metrics.json").read_text())
def timeless(value):
    if isinstance(value, dict):
        return {key: timeless(item) for key, item in value.items() if key not in ("seconds", "versions")}
    return [timeless(item) for item in value] if isinstance(value, list) else value
arrays["reproduce/metrics"] = np.asarray(json.dumps(timeless(metrics), sort_keys=True))
arrays["reproduce/build_seeds"] = np.asarray(json.dumps([model.seed for model in built]))
np.savez(out, **arrays)
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[dict[str, np.ndarray]]:
    """The script's arrays from two fresh processes, run side by side, with seed 3."""
    folder = tmp_path_factory.mktemp("reproducibility")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PYTHONHASHSEED", None)  # each process draws its own hash seed
    processes = []
    for index in range(2):
        work = folder / f"run{index}"
        work.mkdir()
        command = [sys.executable, "-c", _SCRIPT, str(work / "arrays.npz"), str(TESTS / "conftest.py"), "3", str(work)]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                          text=True))
    results = []
    try:
        for index, process in enumerate(processes):
            output, _ = process.communicate(timeout=600)
            assert process.returncode == 0, f"run {index} failed:\n{output[-4000:]}"
            with np.load(folder / f"run{index}" / "arrays.npz") as arrays:
                results.append({name: arrays[name] for name in arrays.files})
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return results


def _differing(first: dict[str, np.ndarray], second: dict[str, np.ndarray], prefix: str) -> list[str]:
    names = sorted(name for name in first if name.startswith(prefix + "/"))
    assert names and names == sorted(name for name in second if name.startswith(prefix + "/"))
    return [name for name in names if not np.array_equal(first[name], second[name],
                                                         equal_nan=first[name].dtype.kind == "f")]


@pytest.mark.parametrize("entry_point", ["train", "train_other_seed", "two_stage", "crossval", "reproduce"])
def test_same_seed_same_weights_and_history_in_fresh_processes(runs, entry_point):
    assert _differing(runs[0], runs[1], entry_point) == []
    assert any("/weight" in name for name in runs[0] if name.startswith(entry_point + "/"))


def test_the_runs_record_histories_and_evaluations(runs):
    arrays = runs[0]
    assert len(arrays["train/history/loss"]) == 3 and len(arrays["train/history/val_loss"]) == 3
    assert arrays["two_stage/history/stage"].tolist() == ["head", "head", "fine_tune", "fine_tune"]
    assert [fold["held_out"] for fold in json.loads(str(arrays["crossval/evaluations"]))["folds"]] == ["a", "b", "c"]
    assert "tinycnn" in json.loads(str(arrays["reproduce/metrics"]))["models"]


def test_crossval_and_reproduce_build_every_model_with_the_seed(runs):
    arrays = runs[0]
    assert json.loads(str(arrays["crossval/build_seeds"])) == [3, 3, 3]  # one model per held-out source
    assert json.loads(str(arrays["reproduce/build_seeds"])) == [3, 3]  # the paper model and the adult-control model
    assert json.loads(str(arrays["train_other_seed/reloaded_seed"])) == 4  # the seed survives save and load


def test_other_seeds_give_other_weights(runs):
    """The check can fail: another seed, or no seed, does give other weights."""
    arrays = runs[0]
    other = {name.replace("train_other_seed/", "train/", 1): value
             for name, value in arrays.items() if name.startswith("train_other_seed/weight")}
    kernels = [name for name in other if arrays[name].ndim > 1]
    assert kernels and all(not np.array_equal(arrays[name], other[name]) for name in kernels)
    assert not np.array_equal(arrays["train/history/loss"], arrays["train_other_seed/history/loss"])
    unseeded = [name for name in arrays if name.startswith("unseeded/weight") and arrays[name].ndim > 1]
    assert unseeded and all(not np.array_equal(runs[0][name], runs[1][name]) for name in unseeded)
