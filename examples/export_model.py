"""Export a trained classifier for serving (SavedModel, TensorFlow Lite) and check what the exports predict.

Trains the paper's classifier on the 48 real X-rays bundled with cxrclassify,
exports it as a TensorFlow SavedModel (for TensorFlow Serving or
``tf.saved_model.load``), a float TensorFlow Lite file and a dynamic-range
quantised TensorFlow Lite file, reloads each with
``cxrclassify.models.savedmodel_predict`` / ``tflite_predict``, and prints, for
the test images, the largest absolute difference between the probabilities of
each export and those of the Keras model. It writes the exports, the facts
stored with the SavedModel (``assets/cxrclassify.json``), a bar chart of the
differences and the Keras model's confusion matrix on the test split.

Run it once cxrclassify is installed::

    python examples/export_model.py --quick             # 32 px, random VGG-16, 2 epochs: under a minute on a CPU
    python examples/export_model.py --out exports       # 237 px, ImageNet VGG-16, 80 epochs (the paper's settings)
    python examples/export_model.py --weights vgg16_notop.weights.h5   # offline, with a local weights file

Without ``--out`` the results go to a new temporary folder, printed at the end.
The SavedModel goes to ``OUT/savedmodel/<version>``, a new version number each
run, as TensorFlow Serving expects. The ``--quick`` model's accuracy means
nothing. cxrclassify is not a diagnostic device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import cxrclassify
from cxrclassify.models import export_savedmodel, export_tflite, read_export_metadata, savedmodel_predict, tflite_predict


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny run: 32 px images, 2 epochs, random weights (unless --weights is given)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--arch", default="vgg16", help="base architecture (default: vgg16)")
    parser.add_argument("--weights", default=None,
                        help="'imagenet' (default without --quick), 'none', or the path of a .weights.h5 file "
                             "of the base without its top")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default: 0)")
    return parser.parse_args()


def next_version_folder(root: Path) -> Path:
    """``root/<n>`` for the first unused version number n (TensorFlow Serving's layout)."""
    versions = [int(path.name) for path in root.glob("*") if path.is_dir() and path.name.isdigit()]
    return root / str(max(versions, default=0) + 1)


def plot_differences(differences: dict[str, float], path: Path) -> Path:
    """A bar chart of the largest absolute difference of each export from the Keras model."""
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axes = figure.add_subplot()
    names, values = list(differences), list(differences.values())
    bars = axes.bar(names, values, color=["#4c72b0", "#55a868", "#c44e52"][: len(names)])
    axes.bar_label(bars, labels=[f"{value:.1e}" for value in values], padding=2)
    axes.set_ylabel("max |p(export) - p(Keras)|")
    axes.set_title("Probabilities of each export vs the Keras model (test images)")
    axes.set_ylim(0, max(max(values) * 1.3, 1e-6))
    figure.savefig(path, dpi=120)
    return path


def main() -> int:
    arguments = parse_arguments()
    image_size, epochs = (32, 2) if arguments.quick else (237, 80)
    weights = arguments.weights or ("none" if arguments.quick else "imagenet")
    weights = None if weights.lower() == "none" else weights
    out = arguments.out or Path(tempfile.mkdtemp(prefix="cxrclassify-export-"))
    out.mkdir(parents=True, exist_ok=True)
    progress = not arguments.quick

    # Train on the bundled sample (split by patient).
    data = cxrclassify.load_datasets("sample", image_size=image_size, seed=arguments.seed, progress=progress)
    try:
        model = cxrclassify.build_model(arguments.arch, num_classes=len(data.class_names), weights=weights,
                                        class_names=data.class_names, image_size=image_size)
    except cxrclassify.WeightsUnavailableError as error:
        print(f"{error}\nRun with --weights none or --weights PATH, or --quick.", file=sys.stderr)
        return 1
    cxrclassify.train(model, data, epochs=epochs, seed=arguments.seed, progress=progress)
    print(f"trained {model.arch} ({model.metadata['base_weights']}) for {epochs} epochs at {image_size} px")

    # Export: a SavedModel folder, a float TFLite file and a quantised one (made from the SavedModel).
    savedmodel = export_savedmodel(model, next_version_folder(out / "savedmodel"))
    tflite_float = export_tflite(model, out / "model.tflite")
    tflite_quantized = export_tflite(savedmodel, out / "model_quantized.tflite", quantize=True)
    facts = read_export_metadata(savedmodel)
    (out / "export_metadata.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    print(f"SavedModel {savedmodel}: {facts['arch']}, classes {facts['class_names']}, input {facts['input']}")

    # Reload each export and compare its probabilities with the Keras model's on the test images.
    images = data.test.images.astype("float32")
    expected = model.predict(images, verbose=0)
    exported = {
        "SavedModel": savedmodel_predict(savedmodel, images),
        "TFLite float": tflite_predict(tflite_float, images),
        "TFLite quantised": tflite_predict(tflite_quantized, images),
    }
    differences = {}
    for name, probabilities in exported.items():
        differences[name] = float(np.abs(probabilities - expected).max())
        same_class = int((probabilities.argmax(axis=1) == expected.argmax(axis=1)).sum())
        print(f"{name:17s} max abs difference {differences[name]:.2e}; "
              f"same predicted class for {same_class} of {len(images)} test images")
    sizes = {path.name: path.stat().st_size for path in (tflite_float, tflite_quantized)}
    print("TFLite file sizes: " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sizes.items()))
    (out / "differences.json").write_text(json.dumps({"max_abs_difference": differences, "tflite_bytes": sizes},
                                                     indent=2) + "\n", encoding="utf-8")

    # Figures: the differences, and the Keras model's confusion matrix on the test split.
    plot_differences(differences, out / "export_differences.png")
    evaluation = cxrclassify.evaluate(model, data.test)
    cxrclassify.plot_confusion_matrix(evaluation.confusion_matrix, evaluation.class_names,
                                      out / "confusion_matrix.png")

    print(f"wrote {savedmodel.relative_to(out)}/, {tflite_float.name}, {tflite_quantized.name}, "
          f"export_metadata.json, differences.json, export_differences.png and confusion_matrix.png to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
