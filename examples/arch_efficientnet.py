"""EfficientNetB0: build first, load at ``model.image_size``, train, evaluate, predict, Grad-CAM.

Shows, on EfficientNetB0 (``"efficientnetb0"``), the order that works for every
architecture: build the model first, then load the data with
``load_datasets(..., image_size=model.image_size)``, so that each X-ray is
resized once, from its file, to what the base takes. ``train`` and ``evaluate``
resize data loaded at another size themselves (an INFO log line says so), but
that resizes every image twice and costs time.

EfficientNetB0's defaults (``cxrclassify.models.get_spec("efficientnetb0")``):
224 x 224 pixels (at least 32) and ``"none"`` preprocessing: raw 0-255 values,
because Keras's EfficientNetB0 rescales and normalises its input in its own
first layers. The preprocessing is built into the model: always feed it raw
0-255 RGB images, never preprocess them yourself. Its ImageNet weights were
trained at 224 px.

Run it once cxrclassify is installed::

    python examples/arch_efficientnet.py --quick           # random weights, 32 px, 1 epoch: seconds on a CPU
    python examples/arch_efficientnet.py --out results     # ImageNet weights, 224 px, 80 epochs
    python examples/arch_efficientnet.py --image-size 320  # any size from 32 up: the data follow the model
    python examples/arch_efficientnet.py --weights PATH    # offline: a .weights.h5 file of the base without its top

Without ``--out`` the results go to a new temporary folder, printed at the end.
The ``--quick`` model's accuracy means nothing, and the 48 bundled X-rays
cannot show that any model works. cxrclassify is not a diagnostic device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cxrclassify
from cxrclassify.models import get_spec

ARCH = "efficientnetb0"
#: The bundled sample's classes, in the order of the model's outputs.
CLASS_NAMES = ["covid19", "normal", "pneumonia"]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny run: random weights (unless --weights is given), the smallest input, 1 epoch, "
                             "no OOD score")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--weights", default=None,
                        help="'imagenet' (default without --quick), 'none', or the path of a .weights.h5 file "
                             "of the base without its top")
    parser.add_argument("--image-size", type=int, default=None,
                        help=f"input side in pixels (default: {get_spec(ARCH).default_input_size}, the "
                             "architecture's own)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: 80; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default: 0)")
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    spec = get_spec(ARCH)
    weights = arguments.weights or ("none" if arguments.quick else "imagenet")
    weights = None if weights.lower() == "none" else weights
    # --quick: the smallest input the architecture takes (32 px, or its minimum if larger). Otherwise
    # image_size=None: build_model picks the architecture's default.
    image_size = arguments.image_size or (max(32, spec.min_input_size) if arguments.quick else None)
    epochs = arguments.epochs or (1 if arguments.quick else 80)
    out = arguments.out or Path(tempfile.mkdtemp(prefix=f"cxrclassify-{ARCH}-"))
    out.mkdir(parents=True, exist_ok=True)
    progress = not arguments.quick

    # 1. Build first: the model knows its input size and its preprocessing.
    try:
        model = cxrclassify.build_model(ARCH, num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES,
                                        weights=weights, image_size=image_size)
    except cxrclassify.WeightsUnavailableError as error:
        print(f"{error}\nRun with --weights none or --weights PATH, or --quick.", file=sys.stderr)
        return 1
    print(f"{ARCH}: {model.image_size} x {model.image_size} input, {model.preprocessing!r} preprocessing "
          f"(built in), {'random' if weights is None else weights} weights")

    # 2. Load the bundled sample at the model's input size, split 80/10/10 by patient.
    data = cxrclassify.load_datasets("sample", image_size=model.image_size, class_names=CLASS_NAMES,
                                     seed=arguments.seed, progress=progress)
    print(", ".join(f"{name} {len(split)}" for name, split in data.items()))

    # 3. Train: the frozen base runs once per image, the head is fitted on its features, then the
    #    out-of-distribution score (skipped by --quick: its covariance of up to 2048 features takes
    #    seconds on a CPU, and predictions then carry no OOD flag).
    history = cxrclassify.train(model, data, epochs=epochs, seed=arguments.seed, progress=progress,
                                fit_ood=not arguments.quick)
    print(f"trained {len(history['loss'])} epochs: final training accuracy {history['accuracy'][-1]:.2f}")

    # 4. Evaluate on the test split: every metric with its 95% interval, per class and per source.
    evaluation = cxrclassify.evaluate(model, data.test)
    print(evaluation.summary())
    (out / "metrics.json").write_text(json.dumps(evaluation.to_dict(), indent=2), encoding="utf-8")

    # 5. Predict: files of any size are decoded and resized to the model's input.
    result = cxrclassify.predict(model, data.test.paths)
    for label, record in zip(result.labels, data.test.records):
        print(f"{Path(record.path).name}: predicted {label}, true {record.label}")

    # 6. Explain one test image with Grad-CAM on the base's last convolutional layer.
    xray = data.test.paths[0]
    heatmap = cxrclassify.grad_cam(model, xray)
    overlay = cxrclassify.save_gradcam_overlay(xray, heatmap, out / "gradcam.png")
    cxrclassify.plot_confusion_matrix(evaluation.confusion_matrix, evaluation.class_names,
                                      out / "confusion_matrix.png")
    print(f"Grad-CAM on {spec.last_conv_layer!r}; wrote {overlay.name}, confusion_matrix.png and "
          f"metrics.json to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
