"""Train on your own folder of X-rays, evaluate, save the model and reload it.

The folder is laid out ``ROOT/<class name>/<image>`` (PNG, JPEG or DICOM, any depth
below the class folder); each class folder's name is a class. Without
``--data`` the script uses the images bundled with cxrclassify
(``cxrclassify.datasets.sample_dir() / "images"``). The script splits the
images 80/10/10, trains the paper's classifier, evaluates it on the test split,
writes the figures, saves the model as ``model.keras``, reloads it with
``keras.models.load_model`` and checks that the reloaded model predicts the
same probabilities.

A folder says nothing about patients, so each image is its own group: if your
folder holds several images of one patient, they may land in different splits
and inflate the test score. Build records with a patient instead (see the
"Datasets" page of the documentation).

Run it once cxrclassify is installed::

    python examples/train_your_own_folder.py --quick                  # the bundled sample, 64 px, 2 epochs
    python examples/train_your_own_folder.py --data xrays --out run1  # 237 px, 80 epochs, ImageNet weights
    python examples/train_your_own_folder.py --data xrays --weights none

Without ``--out`` the results go to a new temporary folder, printed at the end.
cxrclassify is not a diagnostic device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import cxrclassify
from cxrclassify.datasets import sample_dir


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="folder laid out ROOT/<class>/<image> (default: the bundled sample's images)")
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
    root = arguments.data or sample_dir() / "images"
    out = arguments.out or Path(tempfile.mkdtemp(prefix="cxrclassify-folder-"))
    out.mkdir(parents=True, exist_ok=True)
    progress = not arguments.quick

    try:
        data = cxrclassify.load_datasets(root, image_size=image_size, seed=arguments.seed, progress=progress)
    except cxrclassify.DataError as error:
        print(f"Cannot use {root}: {error}", file=sys.stderr)
        return 1
    print(f"{root}: classes {data.class_names}; "
          + ", ".join(f"{name} {len(split)} {split.class_counts()}" for name, split in data.items()))
    data.write_manifest(out / "split_manifest.csv")

    try:
        model = cxrclassify.build_model("vgg16", num_classes=len(data.class_names), weights=weights,
                                        image_size=image_size)
    except cxrclassify.WeightsUnavailableError as error:
        print(f"{error}\nRun with --weights none or --weights PATH, or --quick.", file=sys.stderr)
        return 1
    history = cxrclassify.train(model, data, epochs=epochs, seed=arguments.seed, progress=progress)

    evaluation = cxrclassify.evaluate(model, data)
    print(evaluation.summary())
    (out / "metrics.json").write_text(json.dumps(evaluation.to_dict(), indent=2), encoding="utf-8")
    cxrclassify.plot_history(history, out / "training_curves.png")
    cxrclassify.plot_confusion_matrix(evaluation.confusion_matrix, evaluation.class_names,
                                      out / "confusion_matrix.png")

    # Save, reload (importing cxrclassify registered its classes with Keras) and compare.
    model_path = out / "model.keras"
    model.save(model_path)
    reloaded = keras.models.load_model(model_path)
    before = cxrclassify.predict(model, data.test)
    after = cxrclassify.predict(reloaded, data.test)
    same = np.allclose(before.probabilities, after.probabilities, atol=1e-5) and before.labels == after.labels
    print(f"saved {model_path} ({reloaded.arch}, {reloaded.image_size} px, classes {reloaded.class_names}); "
          f"reloaded predictions {'match' if same else 'DIFFER'} on {len(after)} test images")
    if not same:
        return 1
    print(f"wrote model.keras, metrics.json, training_curves.png, confusion_matrix.png and split_manifest.csv "
          f"to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
