"""Any architecture: build first, load at ``model.image_size``, train, evaluate, predict, Grad-CAM.

The walkthrough behind ``examples/arch_*.py`` (one thin script per family),
runnable by itself on any registered architecture::

    python examples/architecture_walkthrough.py --arch densenet121 --quick
    python examples/architecture_walkthrough.py --arch vgg16 --out results

It builds the model first, then loads the bundled sample with
``load_datasets(..., image_size=model.image_size)``, so that each X-ray is
resized once, from its file, to what the base takes. ``train`` and
``evaluate`` resize data loaded at another size themselves (an INFO log line
says so), but that resizes every image twice and costs time. The preprocessing
is built into the model: always feed it raw 0-255 RGB images.

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

#: The architecture run when ``--arch`` is not given.
DEFAULT_ARCH = "mobilenetv2"
#: The bundled sample's classes, in the order of the model's outputs.
CLASS_NAMES = ["covid19", "normal", "pneumonia"]


def parse_arguments(arch: str | None, description: str) -> argparse.Namespace:
    """Read the command line; ``--arch`` is offered only when the script does not fix ``arch``."""
    parser = argparse.ArgumentParser(description=description)
    if arch is None:
        parser.add_argument("--arch", default=DEFAULT_ARCH, choices=cxrclassify.list_models(),
                            help=f"registered architecture (default: {DEFAULT_ARCH})")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run: random weights (unless --weights is given), the smallest input, 1 epoch, "
                             "no OOD score")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--weights", default=None,
                        help="'imagenet' (default without --quick), 'none', or the path of a .weights.h5 file "
                             "of the base without its top")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input side in pixels (default: the architecture's own)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: 80; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default: 0)")
    arguments = parser.parse_args()
    if arch is not None:
        arguments.arch = arch
    return arguments


def run_walkthrough(arguments: argparse.Namespace) -> int:
    """Build, load, train, evaluate, predict and explain on one architecture; return the exit status."""
    arch = arguments.arch
    spec = get_spec(arch)
    weights = arguments.weights or ("none" if arguments.quick else "imagenet")
    weights = None if weights.lower() == "none" else weights
    # --quick: the smallest input the architecture takes (32 px, or its minimum if larger). Otherwise
    # image_size=None: build_model picks the architecture's default.
    image_size = arguments.image_size or (max(32, spec.min_input_size) if arguments.quick else None)
    epochs = arguments.epochs or (1 if arguments.quick else 80)
    out = arguments.out or Path(tempfile.mkdtemp(prefix=f"cxrclassify-{arch}-"))
    out.mkdir(parents=True, exist_ok=True)
    progress = not arguments.quick

    # 1. Build first: the model knows its input size and its preprocessing.
    try:
        model = cxrclassify.build_model(arch, num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES,
                                        weights=weights, image_size=image_size)
    except cxrclassify.WeightsUnavailableError as error:
        print(f"{error}\nRun with --weights none or --weights PATH, or --quick.", file=sys.stderr)
        return 1
    print(f"{arch}: {model.image_size} x {model.image_size} input, {model.preprocessing!r} preprocessing "
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


def main(arch: str | None = None, doc: str | None = None) -> int:
    """Run the walkthrough on ``arch`` (or on ``--arch`` when ``arch`` is None)."""
    return run_walkthrough(parse_arguments(arch, (doc or __doc__).split("\n\n")[0]))


if __name__ == "__main__":
    sys.exit(main())
