"""Shortcut audit and cross-source validation on real X-rays: what the audit tools show.

1. Trains the paper's recipe (frozen base, Flatten-256 head, 80 epochs, Adam 1e-3, batch 15) on the
   paper's composite (soares2020: adult COVID-19 against pediatric controls) and on the adult
   composite (adult_controls: adult COVID-19 against adult NIH controls), both from ../shared/data,
   and audits each with ``cxrclassify.audit`` on its own test split: Grad-CAM mass inside the central
   box per class, and the source probe.
2. Tests the soares2020 model on the adult test split (patients it saw left out) and reports how many
   adult images its out-of-distribution score flags, against the flag rate on its own test split.
3. ``leave_one_source_out`` on the adult composite with Kermany's children added
   (``include_kermany=True``): a model trained without NIH, tested on NIH's adults, and one trained
   without Kermany, tested on Kermany's children.

Weights: torchvision ImageNet MobileNetV2 from ../shared/weights (the fastest real ImageNet base here).

Run::

    python benchmarks/bench_audit.py [--seed 0]
"""

from __future__ import annotations

import argparse
import warnings

import keras
from _common import (
    MOBILENET_WEIGHTS,
    SHARED,
    Timer,
    load_soares2020,
    machine,
    write_result,
)

import cxrclassify
from cxrclassify.crossval import subset

IMAGE_SIZE = 237
BUILD = {"weights": MOBILENET_WEIGHTS, "preprocessing": "torch", "head": "paper", "image_size": IMAGE_SIZE}


def load(recipe: str, seed: int, **options):
    return cxrclassify.load_datasets(recipe, mirror=SHARED / "data", verify=False, image_size=IMAGE_SIZE, seed=seed,
                                     progress=False, **options)


def trained(data, seed: int):
    keras.utils.set_random_seed(seed)
    model = cxrclassify.build_model("mobilenetv2", len(data.class_names), class_names=data.class_names, **BUILD)
    cxrclassify.train(model, data, seed=seed, progress=False, cache_dir=True, recipe="paper")
    return model


def audit_record(model, split) -> dict:
    audit = cxrclassify.audit(model, split)
    return {"summary": audit.summary(), **audit.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    seed = arguments.seed
    warnings.simplefilter("ignore")
    report: dict = {"what": __doc__.split("\n\n")[0], "weights": "torchvision ImageNet MobileNetV2",
                    "machine": machine(), "command": f"python benchmarks/bench_audit.py --seed {seed}"}

    with Timer() as timer:
        soares = load_soares2020(image_size=IMAGE_SIZE, seed=seed)
        adults = load("adult_controls", seed)
        soares_model, adult_model = trained(soares, seed), trained(adults, seed)
        report["audit"] = {"soares2020_model_on_soares2020_test": audit_record(soares_model, soares.test),
                           "adult_model_on_adult_test": audit_record(adult_model, adults.test)}
        seen = {record.group for split in (soares.train, soares.validation) for record in split.records}
        adult_test = subset(adults.test, [i for i, r in enumerate(adults.test.records) if r.group not in seen])
        own = cxrclassify.predict(soares_model, soares.test).out_of_distribution
        on_adults = cxrclassify.predict(soares_model, adult_test)
        by_label = {name: [bool(flag) for flag, record in zip(on_adults.out_of_distribution, adult_test.records)
                           if record.label == name] for name in adults.class_names}
        report["ood_of_soares2020_model"] = {
            "own_test_flagged": [int(own.sum()), len(own)],
            "adult_test_flagged_by_class": {name: [sum(flags), len(flags)] for name, flags in by_label.items()},
        }
        with_children = load("adult_controls", seed, include_kermany=True)
        crossval = cxrclassify.leave_one_source_out(
            with_children, "mobilenetv2", sources=["nih", "kermany"], seed=seed,
            build_options={key: value for key, value in BUILD.items() if key != "image_size"},
            train_options={"progress": False, "cache_dir": True})
        report["leave_one_source_out"] = {"summary": crossval.summary(), **crossval.to_dict()}
    report["seconds"] = round(timer.seconds, 1)
    write_result(f"audit_seed{seed}", report)
    for name, record in report["audit"].items():
        print(f"== {name}\n{record['summary']}\n")
    print("== OOD flags of the soares2020 model:", report["ood_of_soares2020_model"])
    print(f"\n== {crossval.summary()}")


if __name__ == "__main__":
    main()
