"""Accuracy of the paper's protocol on the soares2020 composite drawn from ../shared/data.

Trains each model with the paper's settings (frozen base, 80 epochs, Adam 0.001, batch 15, 237 px)
on the same patient-level split, and reports test metrics with 95% confidence intervals, overall
and per source. Weights: near-ImageNet VGG16 and torchvision ImageNet MobileNetV2 from
../shared/weights (the official Keras ImageNet files cannot be downloaded here).

Run::

    python benchmarks/bench_accuracy.py [--seed 0]
"""

from __future__ import annotations

import argparse

import keras

import cxrclassify
from _common import MOBILENET_WEIGHTS, VGG16_WEIGHTS, Timer, load_soares2020, machine, write_result

MODELS = {
    "vgg16": {"weights": VGG16_WEIGHTS, "preprocessing": None, "described": "near-ImageNet VGG16"},
    "mobilenetv2": {"weights": MOBILENET_WEIGHTS, "preprocessing": "torch",
                    "described": "torchvision ImageNet MobileNetV2"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    data = load_soares2020(seed=arguments.seed)
    results = {}
    for arch, options in MODELS.items():
        keras.utils.set_random_seed(arguments.seed)
        model = cxrclassify.build_model(arch, 3, weights=options["weights"], preprocessing=options["preprocessing"],
                                        image_size=237)
        with Timer() as timer:
            cxrclassify.train(model, data, seed=arguments.seed, progress=False)
        evaluation = cxrclassify.evaluate(model, data.test)
        results[arch] = {"weights": options["described"], "train_seconds": round(timer.seconds, 1),
                         "summary": evaluation.summary(), **evaluation.to_dict()}
        print(f"== {arch} ({options['described']})\n{evaluation.summary()}\n")
    report = {
        "what": "test metrics of the paper's protocol, soares2020 from ../shared/data, patient-level split",
        "split": {name: len(split) for name, split in data.items()},
        "models": results,
        "machine": machine(),
        "command": f"python benchmarks/bench_accuracy.py --seed {arguments.seed}",
    }
    write_result(f"accuracy_seed{arguments.seed}", report)


if __name__ == "__main__":
    main()
