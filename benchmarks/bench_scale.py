"""Memory and time against the number of images: streamed loading, features on disk, head training.

What it measures, for N = 2,000, 8,000 and 32,000 records (each N in a fresh process, so
that peak resident memory is that N's alone):

* ``load``: ``load_datasets(records, image_size=96, stream=True)`` (one decoding pass for the
  fingerprints, the patient joins and the cross-split duplicate check; the splits decode on
  demand);
* ``features``: MobileNetV2 (``../shared/weights``, torchvision ImageNet, ``preprocessing="torch"``)
  features of the training split, written to disk batch by batch (``augmented_features`` with a
  ``FeatureCache``);
* ``train``: 5 epochs of the GAP head on those features (``train(..., cache_dir=...)`` reads them
  back; the OOD score is fitted on them too);
* peak resident memory (``ru_maxrss``) after each stage, and wall time per image.

The records are real X-rays from ``../shared/data`` (ieee8023, COVID-CXNet, NIH, Kermany: about
2,900 files), **repeated as distinct patients**: copy ``i`` of an image is a new file written once
to ``--work`` (outside the project) with its own seeded random crop (80 to 100% of each side),
rotation (up to 8 degrees) and brightness, at most 256 px, its own patient id, so that copies are
not the same picture (the duplicate check reports how many it still joins).

Decoding throughput: ``ImageSet.as_dataset`` over the same 2,000 images, in one process, side by
side in three interleaved rounds (best of each kept): ``num_parallel_calls=1`` (this process),
``2`` with the default ``decode_in="auto"`` (two worker processes) and ``2`` with
``decode_in="threads"``; the workers' start (once per process) is timed apart.

Targets (issue #15): peak RSS at 32,000 at most 1.25x that at 2,000; time per image at 32,000 at
most 1.2x that at 2,000; 2 parallel decoding calls at least 1.6x one.

Usage::

    python benchmarks/bench_scale.py [--sizes 2000,8000,32000] [--work /tmp/bench_scale] [--quick]

Writes ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import MOBILENET_WEIGHTS, REPO_ROOT, SHARED, machine

RESULTS = REPO_ROOT / "benchmarks" / "results" / "scale.json"
IMAGE_SIZE = 96
CLASSES = ["covid19", "normal", "pneumonia"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def base_records(work: Path) -> list:
    """The real X-rays of ../shared/data with their labels (sources fetched from the folder as a mirror)."""
    from cxrclassify.datasets import cxnet_records, ieee8023_records, kermany_records, nih_records

    options = {"mirror": SHARED / "data", "verify": False, "data_home": work / "home", "progress": False}
    records = (ieee8023_records(**options) + cxnet_records(**options) + nih_records(**options)
               + kermany_records(splits=("train",), **options))
    return [record for record in records if record.label in CLASSES]


def make_copies(work: Path, count: int) -> list[tuple[str, str, str, str]]:
    """``count`` records: perturbed copies of the real X-rays, each file written once (reused between runs)."""
    from PIL import Image, ImageEnhance

    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    index_file = work / "copies.json"
    known = json.loads(index_file.read_text()) if index_file.is_file() else []
    if len(known) >= count:
        return [tuple(row) for row in known[:count]]
    bases = sorted(base_records(work), key=lambda record: record.path)
    random.Random(0).shuffle(bases)  # every class in any first N
    rows = [tuple(row) for row in known]
    for index in range(len(known), count):
        base = bases[index % len(bases)]
        rng = random.Random(index)
        with Image.open(base.path) as opened:
            image = opened.convert("L")
        width, height = image.size
        crop_w, crop_h = int(width * rng.uniform(0.8, 1.0)), int(height * rng.uniform(0.8, 1.0))
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        image = image.crop((left, top, left + crop_w, top + crop_h)).rotate(rng.uniform(-8, 8), fillcolor=0)
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
        image.thumbnail((256, 256))
        path = folder / f"{index:06d}.jpg"
        image.save(path, quality=90)
        rows.append((str(path), base.label, f"copy-patient-{index}", base.source or "unknown"))
        if (index + 1) % 2000 == 0:
            print(f"  wrote {index + 1} of {count} copies", flush=True)
    index_file.write_text(json.dumps(rows))
    return rows


def run_one(work: Path, count: int) -> dict:
    """One N, in this (fresh) process."""
    import cxrclassify
    from cxrclassify.features import FeatureCache, augmented_features

    import shutil

    rows = make_copies(work, count)
    for stale in (work / f"home-{count}", work / f"features-{count}"):  # measure from nothing: no cached work
        shutil.rmtree(stale, ignore_errors=True)
    result: dict = {"n": count, "rss_start_mb": round(peak_rss_mb(), 1)}
    started = time.perf_counter()
    data = cxrclassify.load_datasets(rows, image_size=IMAGE_SIZE, stream=True, class_names=CLASSES, seed=0,
                                     progress=False, data_home=work / f"home-{count}")
    result["load_s"] = round(time.perf_counter() - started, 1)
    result["rss_after_load_mb"] = round(peak_rss_mb(), 1)
    result["joins"] = len(data.merged_groups)
    result["cross_split_duplicates"] = len(data.duplicates)
    result["split"] = [len(data.train), len(data.validation), len(data.test)]

    model = cxrclassify.build_model("mobilenetv2", 3, weights=MOBILENET_WEIGHTS, preprocessing="torch",
                                    image_size=IMAGE_SIZE, head="gap", class_names=CLASSES, seed=0)
    cache_dir = work / f"features-{count}"
    started = time.perf_counter()
    augmented_features(model, data.train.images, cache=FeatureCache(cache_dir), batch_size=64, progress=False)
    augmented_features(model, data.validation.images, cache=FeatureCache(cache_dir), batch_size=64, progress=False)
    result["features_s"] = round(time.perf_counter() - started, 1)
    result["rss_after_features_mb"] = round(peak_rss_mb(), 1)

    started = time.perf_counter()
    cxrclassify.train(model, data, epochs=5, early_stopping=None, cache_dir=cache_dir, seed=0, progress=False)
    result["train_s"] = round(time.perf_counter() - started, 1)
    result["rss_peak_mb"] = round(peak_rss_mb(), 1)
    total = result["load_s"] + result["features_s"] + result["train_s"]
    result["seconds_per_image_ms"] = round(1000 * total / count, 2)
    return result


def decode_throughput(work: Path, count: int = 2000) -> dict:
    """Images per second through ``as_dataset`` with 1 and 2 parallel calls (threads and processes)."""
    import cxrclassify
    from cxrclassify.datasets._decode_pool import shared_decode_pool

    rows = make_copies(work, count)
    data = cxrclassify.load_datasets(rows, image_size=IMAGE_SIZE, stream=True, class_names=CLASSES,
                                     validation_fraction=0.0, test_fraction=0.0, join_duplicates=False,
                                     progress=False, data_home=work / "home-decode")
    started = time.perf_counter()
    shared_decode_pool(2).decode([rows[0][0]], IMAGE_SIZE)  # the workers' start, timed apart
    pool_start_s = time.perf_counter() - started
    modes = {"1": {"num_parallel_calls": 1}, "2 threads": {"num_parallel_calls": 2, "decode_in": "threads"},
             "2": {"num_parallel_calls": 2}}  # "2": the default decode_in="auto", which picks processes here
    rates: dict = {}
    for _ in range(3):  # interleaved rounds: the machine is shared
        for mode, options in modes.items():
            started = time.perf_counter()
            seen = sum(len(batch) for batch, _ in data.train.as_dataset(batch_size=64, **options))
            rates.setdefault(mode, []).append(seen / (time.perf_counter() - started))
    best = {mode: max(values) for mode, values in rates.items()}
    return {"images": count, "images_per_s": {mode: round(rate, 1) for mode, rate in best.items()},
            "all_rounds_images_per_s": {mode: [round(rate, 1) for rate in values] for mode, values in rates.items()},
            "pool_start_s": round(pool_start_s, 2),
            "speedup_2_over_1": round(best["2"] / best["1"], 2),
            "speedup_2_threads_over_1": round(best["2 threads"] / best["1"], 2)}


def child_result(work: Path, *extra: str) -> dict:
    """Run this script with ``extra`` arguments in a fresh process and return what it measured."""
    completed = subprocess.run([sys.executable, __file__, "--work", str(work), *extra],
                               capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"{extra} failed:\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def update_decode_results(decode: dict) -> None:
    """Replace the decoding part of results/scale.json (the N runs are kept as they were)."""
    result = json.loads(RESULTS.read_text(encoding="utf-8"))
    result["decode"] = {**decode, "machine": machine(),
                        "command": "python benchmarks/bench_scale.py --decode-only"}
    result["targets"]["parallel_decoding_at_least_1.6x"] = decode["speedup_2_over_1"] >= 1.6
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["decode"], indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,8000,32000")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_scale"))
    parser.add_argument("--quick", action="store_true", help="N = 300 and 600 only")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--decode-only", action="store_true",
                        help="measure decoding throughput only, and update that part of results/scale.json")
    arguments = parser.parse_args()
    arguments.work.mkdir(parents=True, exist_ok=True)
    if arguments.one is not None:
        print("RESULT " + json.dumps(run_one(arguments.work, arguments.one)), flush=True)
        return
    if arguments.decode:
        print("RESULT " + json.dumps(decode_throughput(arguments.work)), flush=True)
        return
    if arguments.decode_only:
        make_copies(arguments.work, 2000)
        update_decode_results(child_result(arguments.work, "--decode"))
        return
    sizes = [300, 600] if arguments.quick else [int(size) for size in arguments.sizes.split(",")]
    make_copies(arguments.work, max(sizes + [2000]))

    def child(*extra: str) -> dict:
        return child_result(arguments.work, *extra)

    runs = []
    for size in sizes:
        runs.append(child("--one", str(size)))
        print(json.dumps(runs[-1]), flush=True)
    decode = child("--decode")
    first, last = runs[0], runs[-1]
    result = {
        "what": "streamed load, features on disk and 5 epochs of head training against N (fresh process per N)",
        "data": "real X-rays of ../shared/data (ieee8023, COVID-CXNet, NIH, Kermany) repeated as distinct patients: "
                "each copy a new file with its own seeded crop, rotation and brightness, at most 256 px",
        "image_size": IMAGE_SIZE, "model": "MobileNetV2 (torchvision ImageNet), GAP head",
        "machine": machine(), "runs": runs, "decode": decode,
        "ratios": {"peak_rss_last_over_first": round(last["rss_peak_mb"] / first["rss_peak_mb"], 3),
                   "time_per_image_last_over_first": round(last["seconds_per_image_ms"]
                                                           / first["seconds_per_image_ms"], 3)},
        "targets": {"peak_rss_at_most_1.25x": last["rss_peak_mb"] <= 1.25 * first["rss_peak_mb"],
                    "time_per_image_at_most_1.2x": last["seconds_per_image_ms"] <= 1.2 * first["seconds_per_image_ms"],
                    "parallel_decoding_at_least_1.6x": decode["speedup_2_over_1"] >= 1.6},
        "command": "python benchmarks/bench_scale.py" + (" --quick" if arguments.quick else
                                                          f" --sizes {arguments.sizes}"),
    }
    if not arguments.quick:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
