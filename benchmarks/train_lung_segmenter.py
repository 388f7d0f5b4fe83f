"""Train the shipped lung segmenter on ieee8023 X-rays with lung masks, and measure it on unseen patients.

Data (``--data``, default ``../shared/data``): the 358 X-rays of ``ieee8023-covid-chestxray/images/`` that have
a lung mask in ``ieee8023-lung-masks/`` (the one CT image with a mask is left out), with their patient ids
from ``ieee8023-covid-chestxray/metadata.csv``. Patients who share an identical or near-identical picture
are joined first (``join_duplicate_groups``), then the patients are split 70 / 10 / 20 into training,
validation and test with ``--split-seed``; the patients of the package's sample images that have a mask
are forced into the test split, so that the shipped-sample test runs on unseen patients.

Images with two masks (51: v7labs and generalblockchain): the network is trained on the v7labs mask only,
and evaluated against it (the generalblockchain mask is reported too). v7labs draws 333 of the 359 masked
images and includes the lung behind the heart and down to the costophrenic angles; generalblockchain's
radiologists stop at the heart border. Training on both would ask the network for two different borders
on the same picture and teach it their average; with one convention per image it learns v7labs' wherever
v7labs exists. The 26 images with a generalblockchain mask alone are trained and evaluated on it.

Recipe: ``build_lung_unet(128)`` (grayscale, 8 base filters, depth 4), Adam with a cosine-decayed
learning rate, binary cross-entropy + soft Dice, light augmentation (rotation, scale, shift, gamma,
noise, blur; no flips: the heart is on the left), the weights of the epoch with the best validation
Dice kept. Seeded and deterministic on CPU (``keras.utils.set_random_seed``, seeded initialisers and
augmentation, ``tf.config.experimental.enable_op_determinism``): the same seed gives the same weights.

Dice is measured at each mask's own resolution, the network's probabilities resized back to the
image's size (``segment_lungs``), with and without post-processing (two largest regions, holes
filled); the test split's mean has a 95% bootstrap interval resampled by patient.

Writes ``lung_unet.weights.h5`` and ``lung_unet.json`` to ``--out`` (default
``src/cxrclassify/segmentation/weights``) and the measured numbers to ``--results`` (default
``benchmarks/results/lung_segmenter.json``).

Run::

    python benchmarks/train_lung_segmenter.py [--data ../shared/data] [--out DIR] [--seed 0] [--epochs 40]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO_ROOT, SHARED, Timer, machine
from PIL import Image
from scipy import ndimage

logger = logging.getLogger("train_lung_segmenter")

DEFAULT_OUT = REPO_ROOT / "src" / "cxrclassify" / "segmentation" / "weights"
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "lung_segmenter.json"
SAMPLE_MANIFEST = REPO_ROOT / "src" / "cxrclassify" / "sample" / "manifest.csv"
WEIGHTS_NAME = "lung_unet.weights.h5"
METADATA_NAME = "lung_unet.json"
PRIMARY = "v7labs"
SECONDARY = "generalblockchain"
FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}


# --------------------------------------------------------------------------- data


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def masked_images(data: Path) -> list[dict[str, Any]]:
    """One entry per X-ray with a mask: filename, patient, view, license and its mask path per source."""
    metadata = {row["filename"]: row for row in read_rows(data / "ieee8023-covid-chestxray" / "metadata.csv")}
    entries: dict[str, dict[str, Any]] = {}
    for row in read_rows(data / "ieee8023-lung-masks" / "masks.csv"):
        meta = metadata[row["filename"]]
        if meta["modality"] != "X-ray":
            continue
        entry = entries.setdefault(row["filename"], {
            "filename": row["filename"], "patient": meta["patientid"], "view": meta["view"],
            "image_license": meta["license"].strip() or "unknown", "masks": {},
            "image": data / "ieee8023-covid-chestxray" / "images" / row["filename"]})
        entry["masks"][row["source"]] = data / "ieee8023-lung-masks" / row["mask"]
    return [entries[name] for name in sorted(entries)]


def read_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 127


def reference_source(entry: dict[str, Any]) -> str:
    return PRIMARY if PRIMARY in entry["masks"] else SECONDARY


def forced_test_patients(entries: list[dict[str, Any]]) -> set[str]:
    """ieee8023 patients of the package sample's images that have a mask here."""
    by_name = {entry["filename"]: entry["patient"] for entry in entries}
    forced = set()
    for row in read_rows(SAMPLE_MANIFEST):
        name = Path(row["path"]).name
        if row["source"] == "ieee8023" and name in by_name:
            forced.add(by_name[name])
    return forced


def split_patients(entries: list[dict[str, Any]], seed: int, forced_test: set[str]) -> tuple[dict[str, str], list]:
    """Patient group of each image (patients sharing a picture joined) and the split of each group."""
    from cxrclassify.datasets import join_duplicate_groups, resize, to_rgb_uint8

    thumbnails = np.stack([resize(to_rgb_uint8(entry["image"]), 64) for entry in entries])
    groups, joins = join_duplicate_groups([entry["patient"] for entry in entries], thumbnails,
                                          [entry["filename"] for entry in entries])
    for entry, group in zip(entries, groups):
        entry["group"] = group
    forced_groups = {entry["group"] for entry in entries if entry["patient"] in forced_test}
    every = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = [every[i] for i in rng.permutation(len(every))]
    n_test = round(FRACTIONS["test"] * len(every))
    n_validation = round(FRACTIONS["validation"] * len(every))
    test = set(forced_groups)
    rest = [group for group in order if group not in test]
    test.update(rest[:max(0, n_test - len(test))])
    rest = [group for group in rest if group not in test]
    validation = set(rest[:n_validation])
    assignment = {group: "test" if group in test else "validation" if group in validation else "train"
                  for group in every}
    return assignment, [{"members": list(join.members), "evidence": [list(e) for e in join.evidence]}
                        for join in joins]


def training_arrays(entries: list[dict[str, Any]], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs ``(N, S, S, 1)`` and soft targets ``(N, S, S, 1)`` (the mask area-resized) for training."""
    from cxrclassify.segmentation import unet_input

    inputs, targets = [], []
    for entry in entries:
        inputs.append(unet_input(entry["image"], size))
        mask = Image.fromarray(read_mask(entry["masks"][reference_source(entry)]).astype(np.uint8) * 255)
        small = mask.resize((size, size), resample=Image.Resampling.BILINEAR, reducing_gap=2.0)
        targets.append(np.asarray(small, dtype=np.float32)[..., None] / 255.0)
    return np.stack(inputs), np.stack(targets)


# --------------------------------------------------------------------------- augmentation


def augment(images: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random affine (rotation +-10 deg, scale 0.85-1.15, shift +-8%), then gamma, blur and noise on the image."""
    size = images.shape[1]
    centre = np.array([size / 2.0, size / 2.0])
    out_images = np.empty_like(images)
    out_targets = np.empty_like(targets)
    for index in range(len(images)):
        angle = np.deg2rad(rng.uniform(-10, 10))
        scale = rng.uniform(0.85, 1.15)
        shift = rng.uniform(-0.08, 0.08, size=2) * size
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
        offset = centre - rotation @ (centre + shift)
        image = ndimage.affine_transform(images[index, ..., 0], rotation, offset, order=1, mode="nearest")
        target = ndimage.affine_transform(targets[index, ..., 0], rotation, offset, order=1, mode="constant")
        gamma = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
        image = 255.0 * (np.clip(image, 0, 255) / 255.0) ** gamma
        if rng.random() < 0.3:
            image = ndimage.gaussian_filter(image, rng.uniform(0.5, 1.2))
        if rng.random() < 0.3:
            image = image + rng.normal(0.0, rng.uniform(2, 8), image.shape)
        out_images[index, ..., 0] = np.clip(image, 0, 255)
        out_targets[index, ..., 0] = np.clip(target, 0, 1)
    return out_images, out_targets


# --------------------------------------------------------------------------- training


def soft_dice_bce(y_true, y_pred):
    import keras
    from keras import ops

    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
    intersection = ops.sum(y_true * y_pred, axis=(1, 2, 3))
    total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
    dice = ops.mean((2.0 * intersection + 1.0) / (total + 1.0))
    return bce + (1.0 - dice)


def small_dice(model, images: np.ndarray, targets: np.ndarray) -> float:
    predicted = model.predict(images, batch_size=32, verbose=0) > 0.5
    truth = targets > 0.5
    intersection = np.logical_and(predicted, truth).sum(axis=(1, 2, 3))
    total = predicted.sum(axis=(1, 2, 3)) + truth.sum(axis=(1, 2, 3))
    return float(np.mean(np.where(total > 0, 2.0 * intersection / np.maximum(total, 1), 1.0)))


def train(train_entries, validation_entries, arguments) -> tuple[Any, list[dict[str, float]]]:
    import keras

    from cxrclassify.segmentation import build_lung_unet

    size = arguments.input_size
    x_train, y_train = training_arrays(train_entries, size)
    x_validation, y_validation = training_arrays(validation_entries, size)
    keras.utils.set_random_seed(arguments.seed)
    model = build_lung_unet(size, seed=arguments.seed, base_filters=arguments.base_filters, depth=arguments.depth)
    steps = int(np.ceil(len(x_train) / arguments.batch_size)) * arguments.epochs
    schedule = keras.optimizers.schedules.CosineDecay(arguments.learning_rate, decay_steps=steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=soft_dice_bce)
    rng = np.random.default_rng(arguments.seed)
    history, best, best_weights = [], -1.0, None
    for epoch in range(arguments.epochs):
        images, targets = augment(x_train, y_train, rng)
        order = rng.permutation(len(images))
        fit = model.fit(images[order], targets[order], batch_size=arguments.batch_size, epochs=1, shuffle=False,
                        verbose=0)
        dice = small_dice(model, x_validation, y_validation)
        history.append({"epoch": epoch + 1, "loss": round(float(fit.history["loss"][-1]), 5),
                        "validation_dice_small": round(dice, 5)})
        logger.info("epoch %d/%d: loss %.4f, validation Dice at %d px %.4f", epoch + 1, arguments.epochs,
                    fit.history["loss"][-1], size, dice)
        if dice > best:
            best, best_weights = dice, [weight.copy() for weight in model.get_weights()]
    # A fresh, uncompiled copy: its weights file holds the network only, not Adam's moments.
    shipped = build_lung_unet(size, seed=arguments.seed, base_filters=arguments.base_filters, depth=arguments.depth)
    shipped.set_weights(best_weights)
    return shipped, history


# --------------------------------------------------------------------------- evaluation


def bootstrap_by_patient(values: list[float], patients: list[str], seed: int, rounds: int = 2000) -> list[float]:
    """95% percentile interval of the mean over images, patients resampled with replacement."""
    by_patient: dict[str, list[float]] = defaultdict(list)
    for value, patient in zip(values, patients):
        by_patient[patient].append(value)
    sums = np.array([sum(v) for v in by_patient.values()])
    counts = np.array([len(v) for v in by_patient.values()])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(rounds, len(sums)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def evaluate(model, entries: list[dict[str, Any]], seed: int, with_ci: bool) -> dict[str, Any]:
    """Dice at each mask's own resolution, raw and post-processed, against the reference mask (and the other)."""
    from cxrclassify.segmentation import clean_lung_mask, dice_score, lung_probabilities

    rows = []
    for start in range(0, len(entries), 32):
        chunk = entries[start:start + 32]
        maps = lung_probabilities([entry["image"] for entry in chunk], model=model)
        for entry, probabilities in zip(chunk, maps):
            raw = probabilities > 0.5
            cleaned = clean_lung_mask(raw)
            reference = reference_source(entry)
            truth = read_mask(entry["masks"][reference])
            row = {"filename": entry["filename"], "patient": entry["group"], "view": entry["view"],
                   "reference": reference, "dice_raw": dice_score(raw, truth), "dice": dice_score(cleaned, truth)}
            if reference == PRIMARY and SECONDARY in entry["masks"]:
                other = read_mask(entry["masks"][SECONDARY])
                row["dice_vs_generalblockchain"] = dice_score(cleaned, other)
                row["v7labs_vs_generalblockchain"] = dice_score(truth, other)
            rows.append(row)
    dice = [row["dice"] for row in rows]
    patients = [row["patient"] for row in rows]
    summary: dict[str, Any] = {
        "images": len(rows), "patients": len(set(patients)),
        "dice_mean": round(float(np.mean(dice)), 4),
        "dice_median": round(float(np.median(dice)), 4),
        "dice_min": round(float(np.min(dice)), 4),
        "dice_raw_mean": round(float(np.mean([row["dice_raw"] for row in rows])), 4),
        "images_changed_by_postprocess": int(sum(row["dice"] != row["dice_raw"] for row in rows)),
        "images_below_0.8": int(sum(value < 0.8 for value in dice)),
    }
    if with_ci:
        summary["dice_ci95_patient_bootstrap"] = bootstrap_by_patient(dice, patients, seed)
        summary["dice_raw_ci95_patient_bootstrap"] = bootstrap_by_patient(
            [row["dice_raw"] for row in rows], patients, seed)
        per_patient: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            per_patient[row["patient"]].append(row["dice"])
        summary["dice_mean_of_patient_means"] = round(float(np.mean([np.mean(v) for v in per_patient.values()])), 4)
    by_reference = defaultdict(list)
    for row in rows:
        by_reference[row["reference"]].append(row["dice"])
    summary["dice_by_reference_mask"] = {name: {"images": len(v), "dice_mean": round(float(np.mean(v)), 4)}
                                         for name, v in sorted(by_reference.items())}
    by_view = defaultdict(list)
    for row in rows:
        by_view[row["view"]].append(row["dice"])
    summary["dice_by_view"] = {name: {"images": len(v), "dice_mean": round(float(np.mean(v)), 4)}
                               for name, v in sorted(by_view.items())}
    double = [row for row in rows if "dice_vs_generalblockchain" in row]
    if double:
        summary["double_masked"] = {
            "images": len(double),
            "dice_vs_v7labs": round(float(np.mean([row["dice"] for row in double])), 4),
            "dice_vs_generalblockchain": round(float(np.mean([row["dice_vs_generalblockchain"] for row in double])), 4),
            "v7labs_vs_generalblockchain": round(
                float(np.mean([row["v7labs_vs_generalblockchain"] for row in double])), 4),
        }
    worst = sorted(rows, key=lambda row: row["dice"])[:5]
    summary["worst"] = [{"filename": row["filename"], "dice": round(row["dice"], 4), "view": row["view"]}
                        for row in worst]
    return summary


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data",
                        help="the shared data folder (default: ../shared/data relative to the project root)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the weights and their JSON")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the measured numbers (JSON)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, augmentation and order")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the patient split")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    import cxrclassify
    from cxrclassify._download import file_sha256

    tf.config.threading.set_intra_op_parallelism_threads(arguments.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    data = arguments.data.resolve()
    if not (data / "ieee8023-lung-masks" / "masks.csv").is_file():
        raise SystemExit(f"{data} holds no ieee8023-lung-masks/masks.csv: pass --data, the shared data folder")

    with Timer() as total:
        entries = masked_images(data)
        forced = forced_test_patients(entries)
        assignment, joins = split_patients(entries, arguments.split_seed, forced)
        splits = {name: [entry for entry in entries if assignment[entry["group"]] == name] for name in FRACTIONS}
        for name, chosen in splits.items():
            logger.info("%s: %d images of %d patients", name, len(chosen), len({e["group"] for e in chosen}))
        with Timer() as training:
            model, history = train(splits["train"], splits["validation"], arguments)
        with Timer() as evaluation:
            measured = {name: evaluate(model, chosen, arguments.seed, with_ci=(name == "test"))
                        for name, chosen in splits.items()}

    out = arguments.out
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_NAME
    model.save_weights(weights)
    sha256 = file_sha256(weights)
    command = "python benchmarks/train_lung_segmenter.py " + " ".join(
        f"--{name.replace('_', '-')} {value}" for name, value in (
            ("seed", arguments.seed), ("split_seed", arguments.split_seed), ("epochs", arguments.epochs),
            ("input_size", arguments.input_size), ("base_filters", arguments.base_filters),
            ("depth", arguments.depth), ("batch_size", arguments.batch_size),
            ("learning_rate", arguments.learning_rate)))
    licences = defaultdict(int)
    for entry in splits["train"] + splits["validation"]:
        licences[entry["image_license"]] += 1
    metadata = {
        "format": "cxrclassify-lung-unet",
        "format_version": 1,
        "weights_file": WEIGHTS_NAME,
        "sha256": sha256,
        "size_bytes": weights.stat().st_size,
        "architecture": "build_lung_unet",
        "input_size": arguments.input_size,
        "base_filters": arguments.base_filters,
        "depth": arguments.depth,
        "parameters": int(model.count_params()),
        "input": "float32 (N, S, S, 1) grayscale in [0, 255] (Pillow L of the RGB image resized to S x S)",
        "output": "(N, S, S, 1) lung probability (sigmoid); resize back to the image and threshold at 0.5",
        "threshold": 0.5,
        "postprocess": "two largest 8-connected regions kept, holes filled",
        "training_data": {
            "images": "ieee8023/covid-chestxray-dataset (Cohen et al., arXiv:2003.11597, 2006.11988), frontal X-rays "
                      "downscaled to at most 512 px, at upstream commit 0f7245db6f5aa4001ea75cf69fe6cfe091928403",
            "masks": {"v7labs": "v7labs/covid-19-xray-dataset @51fca0d0d089b2fa7b0b95f0aed32ebaebd561f2, CC BY 4.0",
                      "generalblockchain": "GeneralBlockchain/covid-19-chest-xray-segmentations-dataset "
                                           "@377a49490e910a66a7f7aee1b92cdc3d5ac4bddf, CC BY 4.0"},
            "mask_choice": "v7labs mask where an image has both; generalblockchain where it is the only one",
            "images_per_split": {name: len(chosen) for name, chosen in splits.items()},
            "patients_per_split": {name: len({e["group"] for e in chosen}) for name, chosen in splits.items()},
            "image_licenses_train_and_validation": dict(sorted(licences.items())),
        },
        "split": {"by": "ieee8023 patientid (patients sharing a picture joined)", "seed": arguments.split_seed,
                  "fractions": FRACTIONS, "forced_into_test": sorted(forced, key=lambda p: (len(p), p)),
                  "test_patients": sorted({entry["patient"] for entry in splits["test"]}, key=lambda p: (len(p), p))},
        "seed": arguments.seed,
        "dice": {name: {key: value for key, value in result.items() if key != "worst"}
                 for name, result in measured.items()},
        "license": "weights: MIT (as cxrclassify); trained on CC BY 4.0 masks (v7labs, GeneralBlockchain) and "
                   "ieee8023 images under their own per-image licences (see MODEL_CARD.md)",
        "model_card": "MODEL_CARD.md",
        "command": command,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "cxrclassify": cxrclassify.__version__,
    }
    (out / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    result = {
        "what": __doc__.split("\n\n")[0],
        "command": command,
        "machine": machine(),
        "seconds": {"total": round(total.seconds, 1), "training": round(training.seconds, 1),
                    "evaluation": round(evaluation.seconds, 1)},
        "weights": {"file": str(weights.relative_to(REPO_ROOT)) if weights.is_relative_to(REPO_ROOT) else str(weights),
                    "sha256": sha256, "size_bytes": weights.stat().st_size, "parameters": int(model.count_params())},
        "split": metadata["split"] | {"patient_joins": joins,
                                      "images": metadata["training_data"]["images_per_split"],
                                      "patients": metadata["training_data"]["patients_per_split"]},
        "dice": measured,
        "history": history,
    }
    arguments.results.parent.mkdir(parents=True, exist_ok=True)
    arguments.results.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    test = measured["test"]
    logger.info("test: Dice %.4f (95%% CI %s) on %d images of %d patients (raw %.4f); wrote %s (%d bytes) in %.0f s",
                test["dice_mean"], test["dice_ci95_patient_bootstrap"], test["images"], test["patients"],
                test["dice_raw_mean"], weights, weights.stat().st_size, total.seconds)


if __name__ == "__main__":
    main()
