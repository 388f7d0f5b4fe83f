"""Quickstart: the five calls, evaluation and figures on the bundled sample.

Loads the 48 real chest X-rays shipped with cxrclassify, splits them by
patient, builds the paper's classifier (a frozen VGG-16 with a fully connected
head), trains it, classifies and explains one test image with Grad-CAM,
evaluates it on the test split (overall and per image source), and writes the
figures and metrics to an output folder.

Run it from anywhere once cxrclassify is installed::

    python examples/quickstart.py --quick             # 64 px, 2 epochs, random weights: under a minute on a CPU
    python examples/quickstart.py --out results       # the paper's settings: 237 px, 80 epochs, ImageNet weights
    python examples/quickstart.py --weights vgg16_notop.weights.h5   # offline, with a local weights file

Without ``--out`` the results go to a new temporary folder, printed at the end.
The ``--quick`` model's accuracy means nothing; and 48 images cannot show that
any model works. cxrclassify is not a diagnostic device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cxrclassify


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny run: 64 px images, 2 epochs, random weights (unless --weights is given)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--weights", default=None,
                        help="'imagenet' (default without --quick), 'none', or the path of a .weights.h5 file "
                             "of the base without its top")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default: 0)")
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    image_size, epochs = (64, 2) if arguments.quick else (237, 80)
    weights = arguments.weights or ("none" if arguments.quick else "imagenet")
    weights = None if weights.lower() == "none" else weights
    out = arguments.out or Path(tempfile.mkdtemp(prefix="cxrclassify-quickstart-"))
    out.mkdir(parents=True, exist_ok=True)
    progress = not arguments.quick

    # 1. Load the bundled sample, decoded to RGB, resized and split 80/10/10 by patient.
    data = cxrclassify.load_datasets("sample", image_size=image_size, seed=arguments.seed, progress=progress)
    print(f"classes {data.class_names}; " + ", ".join(f"{name} {len(split)}" for name, split in data.items()))
    data.write_manifest(out / "split_manifest.csv")

    # 2. Build the classifier: frozen base, the paper's head.
    try:
        model = cxrclassify.build_model("vgg16", num_classes=len(data.class_names), weights=weights,
                                        image_size=image_size)
    except cxrclassify.WeightsUnavailableError as error:
        print(f"{error}\nRun with --weights none or --weights PATH, or --quick.", file=sys.stderr)
        return 1

    # 3. Train with the paper's optimiser settings (Adam, 0.001, batches of 15).
    history = cxrclassify.train(model, data, epochs=epochs, seed=arguments.seed, progress=progress)
    print(f"trained {epochs} epochs: final training accuracy {history['accuracy'][-1]:.2f}")

    # 4. Predict one test image.
    xray = data.test.paths[0]
    result = cxrclassify.predict(model, xray)
    probabilities = ", ".join(f"{name} {p:.2f}" for name, p in zip(result.class_names, result.probabilities[0]))
    print(f"{Path(xray).name}: predicted {result.labels[0]} ({probabilities}); true {data.test.records[0].label}")

    # 5. Explain it with Grad-CAM and write the overlay.
    heatmap = cxrclassify.grad_cam(model, xray)
    overlay = cxrclassify.save_gradcam_overlay(xray, heatmap, out / "gradcam.png")

    # Evaluate on the test split: accuracy with its 95% interval, per class and per source.
    evaluation = cxrclassify.evaluate(model, data)
    print(evaluation.summary())
    (out / "metrics.json").write_text(json.dumps(evaluation.to_dict(), indent=2), encoding="utf-8")

    # Figures.
    cxrclassify.plot_history(history, out / "training_curves.png")
    cxrclassify.plot_confusion_matrix(evaluation.confusion_matrix, evaluation.class_names,
                                      out / "confusion_matrix.png")

    print(f"wrote {overlay.name}, training_curves.png, confusion_matrix.png, metrics.json and "
          f"split_manifest.csv to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
