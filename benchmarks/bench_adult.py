"""Accuracy on unseen adult patients: the paper's recipe against better ones, on the adult composite.

The adult composite (``load_datasets("adult_controls")``: COVID-19 from ieee8023, normal and pneumonia
from NIH ChestX-ray14, all adults) is drawn from ../shared/data and split by patient: 70% training,
10% validation, 20% test (a larger test split than the paper's 10%, for narrower intervals). Every
variant is trained on the same training split and tested on the same test split; the table gives
accuracy (95% Wilson CI) and macro F1 (95% patient-bootstrap CI).

Two extra rows train the paper's protocol on the paper's own composite (soares2020: adult COVID-19
against pediatric controls) and test it on the adult test split, leaving out test patients that the
soares2020 draw used for training: the collapse the age shortcut causes.

Weights: near-ImageNet VGG16 and torchvision ImageNet MobileNetV2 from ../shared/weights.

Run::

    python benchmarks/bench_adult.py [--seed 0] [--variants NAME,NAME,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import warnings
from typing import Any

import keras
import numpy as np
from _common import (
    MOBILENET_WEIGHTS,
    SHARED,
    VGG16_WEIGHTS,
    Timer,
    load_soares2020,
    machine,
    write_result,
)
from PIL import Image, ImageOps

import cxrclassify
from cxrclassify.crossval import subset
from cxrclassify.training import train_two_stage

VGG16 = {"arch": "vgg16", "weights": VGG16_WEIGHTS, "preprocessing": None}
MOBILENET = {"arch": "mobilenetv2", "weights": MOBILENET_WEIGHTS, "preprocessing": "torch"}
BETTER = {"class_weight": "balanced", "early_stopping": 10}

# name: (what it is, model settings, image size, train options,
#        how: "adult" | "two_stage" | "equalized" | "cropped" | "soares2020")
VARIANTS: dict[str, tuple[str, dict[str, Any], int, dict[str, Any], str]] = {
    "paper-vgg16": ("paper recipe: VGG-16 frozen, Flatten-256 head, 237 px, 80 epochs, Adam 1e-3, batch 15",
                    {**VGG16, "head": "paper"}, 237, {}, "adult"),
    "paper-vgg16-balanced": (("paper recipe + balanced class weights + early stopping (10 epochs): train's default "
                              "recipe"),
                             {**VGG16, "head": "paper"}, 237, BETTER, "adult"),
    "paper-mobilenetv2": ("paper recipe with a MobileNetV2 base", {**MOBILENET, "head": "paper"}, 237, {}, "adult"),
    "paper-mobilenetv2-balanced": (("paper recipe with a MobileNetV2 base + balanced class weights + early "
                                    "stopping (train's default recipe)"),
                                   {**MOBILENET, "head": "paper"}, 237, BETTER, "adult"),
    "mobilenetv2-gap": ("MobileNetV2 frozen, global-average-pool head, balanced, early stopping",
                        {**MOBILENET, "head": "gap"}, 237, BETTER, "adult"),
    "mobilenetv2-gap-augment": ("mobilenetv2-gap + augmentation (rotation, shift, zoom, contrast; 4 views)",
                                {**MOBILENET, "head": "gap"}, 237, {**BETTER, "augment": True, "augment_copies": 4},
                                "adult"),
    "mobilenetv2-gap-equalized": ("mobilenetv2-gap on histogram-equalised images (train and test)",
                                  {**MOBILENET, "head": "gap"}, 237, BETTER, "equalized"),
    "mobilenetv2-gap-crop": (("mobilenetv2-gap on the central 80% of each image (a crude stand-in for lung "
                              "cropping: no lung segmentation model can be had offline here)"), {**MOBILENET, "head": "gap"}, 237,
                             BETTER, "cropped"),
    "mobilenetv2-gap-320": ("mobilenetv2-gap at 320 px", {**MOBILENET, "head": "gap"}, 320, BETTER, "adult"),
    "mobilenetv2-finetune": ("mobilenetv2-gap, then the top 2 blocks fine-tuned (5 epochs, Adam 1e-5)",
                             {**MOBILENET, "head": "gap"}, 237, BETTER, "two_stage"),
    "soares2020-vgg16": (("paper recipe trained on soares2020 (adult COVID-19 vs pediatric controls), "
                         "tested on adults"), {**VGG16, "head": "paper"}, 237, {}, "soares2020"),
    "soares2020-mobilenetv2": ("soares2020-vgg16 with a MobileNetV2 base", {**MOBILENET, "head": "paper"}, 237, {},
                               "soares2020"),
}


def load_adult(image_size: int, seed: int):
    return cxrclassify.load_datasets("adult_controls", mirror=SHARED / "data", verify=False, image_size=image_size,
                                     seed=seed, validation_fraction=0.1, test_fraction=0.2, progress=False)


def equalized(split):
    """The split with each image histogram-equalised (on its grey levels, after resizing)."""
    images = np.stack([np.asarray(ImageOps.equalize(Image.fromarray(image).convert("L")).convert("RGB"))
                       for image in split.images])
    return dataclasses.replace(split, images=images)


def cropped(split, keep: float = 0.8):
    """The split with each image cut to its central ``keep`` share of each side, resized back."""
    size = split.images.shape[1]
    margin = round(size * (1 - keep) / 2)
    images = np.stack([np.asarray(Image.fromarray(image[margin:size - margin, margin:size - margin])
                                  .resize((size, size), Image.Resampling.BILINEAR)) for image in split.images])
    return dataclasses.replace(split, images=images)


def without_patients(split, patients: set[str]):
    keep = [index for index, record in enumerate(split.records) if record.group not in patients]
    return subset(split, keep)


def run_variant(name: str, seed: int, cache: dict) -> dict[str, Any]:
    described, model_settings, image_size, options, how = VARIANTS[name]
    if image_size not in cache:
        cache[image_size] = load_adult(image_size, seed)
    adult = cache[image_size]
    keras.utils.set_random_seed(seed)
    settings = dict(model_settings)
    model = cxrclassify.build_model(settings.pop("arch"), 3, class_names=adult.class_names, image_size=image_size,
                                    **settings)
    train_options = {"seed": seed, "progress": False, "cache_dir": True, "recipe": "paper", **options}
    test_set, trained_on, note = adult.test, adult, ""
    with Timer() as timer:
        if how == "two_stage":
            train_options.pop("cache_dir")
            train_two_stage(model, adult, head_epochs=80, fine_tune_epochs=5, fine_tune_blocks=2, **train_options)
        elif how in ("equalized", "cropped"):
            transform = equalized if how == "equalized" else cropped
            trained_on = (transform(adult.train), transform(adult.validation))
            test_set = transform(adult.test)
            cxrclassify.train(model, trained_on, **train_options)
        elif how == "soares2020":
            soares = load_soares2020(image_size=image_size, seed=seed)
            cxrclassify.train(model, soares, **train_options)
            seen = {record.group for split in (soares.train, soares.validation) for record in split.records}
            test_set = without_patients(adult.test, seen)
            note = (f"{len(adult.test) - len(test_set)} adult test images of patients in the soares2020 training "
                    "or validation split left out")
        else:
            cxrclassify.train(model, adult, **train_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = cxrclassify.evaluate(model, test_set, seed=seed)
    return {"described": described, "image_size": image_size, "train_seconds": round(timer.seconds, 1),
            "note": note, "summary": evaluation.summary(), **evaluation.to_dict()}


def table_row(name: str, result: dict[str, Any]) -> str:
    accuracy, low, high = result["accuracy"], *result["accuracy_ci"]
    f1, f1_low, f1_high = result["macro_f1"], *result["macro_f1_ci"]
    return (f"| `{name}` | {accuracy:.1%} ({low:.1%} to {high:.1%}) | {result['n_correct']} / {result['n_images']} "
            f"| {f1:.3f} ({f1_low:.3f} to {f1_high:.3f}) | {result['train_seconds']:.0f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names: " + ", ".join(VARIANTS))
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    names = [name.strip() for name in arguments.variants.split(",") if name.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; expected some of {sorted(VARIANTS)}")
    cache: dict = {}
    results = {}
    for name in names:
        results[name] = run_variant(name, arguments.seed, cache)
        print(table_row(name, results[name]), flush=True)
        write_result(f"adult_seed{arguments.seed}_{name}", {
            "what": "accuracy on unseen adult patients (adult_controls composite from ../shared/data, patient split "
                    "70/10/20)", "variant": name, "result": results[name], "machine": machine(),
            "command": f"python benchmarks/bench_adult.py --seed {arguments.seed} --variants {name}"})
    adult = next(iter(cache.values()))
    print("split:", {split_name: len(split) for split_name, split in adult.items()})
    for name, result in results.items():
        print(f"\n== {name}: {result['described']}\n{result['summary']}")


if __name__ == "__main__":
    main()
