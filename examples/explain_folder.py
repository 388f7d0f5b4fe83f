"""Write a Grad-CAM overlay for every X-ray in a folder.

Classifies every PNG, JPEG and DICOM image below ``--images`` (default: the bundled
sample's images) and writes, for each, a PNG with the class activation map of the
predicted class laid over the X-ray (Grad-CAM, or ``--method gradcam++`` /
``scorecam``) and the raw map, plus ``predictions.csv`` and a grid figure. The model is either one saved with ``model.save(...)``
(``--model model.keras``) or, by default, one trained on the bundled sample
first.

Run it once cxrclassify is installed::

    python examples/explain_folder.py --quick                      # sample images, model trained at 64 px for 2 epochs
    python examples/explain_folder.py --images my_xrays --out cams # model trained at 237 px, 80 epochs, ImageNet weights
    python examples/explain_folder.py --images my_xrays --model run1/model.keras

Without ``--out`` the overlays go to a new temporary folder, printed at the
end. A heatmap shows where the class's score rises, for this model; heat on
text markers, borders or the body's outline is a sign of a shortcut, and a
plausible map is not proof of the opposite. cxrclassify is not a diagnostic
device.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import keras

import cxrclassify
from cxrclassify.datasets import sample_dir


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=None,
                        help="folder of PNG/JPEG X-rays, searched recursively (default: the bundled sample's images)")
    parser.add_argument("--model", type=Path, default=None,
                        help="a model saved with model.save('....keras'); default: train one on the bundled sample")
    parser.add_argument("--quick", action="store_true",
                        help="train the model quickly: 64 px images, 2 epochs, random weights (unless --weights)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--weights", default=None,
                        help="weights of the model trained here: 'imagenet' (default without --quick), 'none', "
                             "or the path of a .weights.h5 file of the base without its top")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default: 0)")
    parser.add_argument("--method", default="gradcam", choices=cxrclassify.explain.CAM_METHODS,
                        help="class activation map method (default: gradcam)")
    return parser.parse_args()


def train_on_sample(arguments: argparse.Namespace) -> cxrclassify.CxrClassifier:
    image_size, epochs = (64, 2) if arguments.quick else (237, 80)
    weights = arguments.weights or ("none" if arguments.quick else "imagenet")
    weights = None if weights.lower() == "none" else weights
    progress = not arguments.quick
    data = cxrclassify.load_datasets("sample", image_size=image_size, seed=arguments.seed, progress=progress)
    model = cxrclassify.build_model("vgg16", num_classes=len(data.class_names), weights=weights,
                                    image_size=image_size)
    cxrclassify.train(model, data, epochs=epochs, seed=arguments.seed, progress=progress)
    print(f"trained vgg16 on the bundled sample ({image_size} px, {epochs} epochs, weights {weights})")
    return model


def main() -> int:
    arguments = parse_arguments()
    images = arguments.images or sample_dir() / "images"
    out = arguments.out or Path(tempfile.mkdtemp(prefix="cxrclassify-gradcam-"))

    if arguments.model is not None:
        model = keras.models.load_model(arguments.model)  # importing cxrclassify registered its classes
        print(f"loaded {arguments.model}: {model.arch}, {model.image_size} px, classes {model.class_names}")
    else:
        try:
            model = train_on_sample(arguments)
        except cxrclassify.WeightsUnavailableError as error:
            print(f"{error}\nRun with --weights none or --weights PATH, or --quick.", file=sys.stderr)
            return 1

    try:
        # One call: predictions, then Grad-CAM in batches; an overlay PNG and the raw map (.npy) per image,
        # predictions.csv (with the out-of-distribution flag) and cam_grid.png (like the paper's Figure 4).
        written = cxrclassify.explain_images(model, images, out, method=arguments.method)
    except cxrclassify.DataError as error:
        print(f"Cannot use {images}: {error}", file=sys.stderr)
        return 1
    overlays = [path for path in written if path.suffix == ".png" and path.name != "cam_grid.png"]
    for path in overlays:
        print(path.name)
    print(f"wrote {len(overlays)} {arguments.method} overlays, predictions.csv and cam_grid.png to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
