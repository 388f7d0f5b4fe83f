"""Audit a model for shortcuts: where it looks, whether it reads the source, how it carries over.

Trains a model on the bundled sample (whose COVID-19 images all come from one source,
ieee8023, and whose normal and pneumonia images come from Kermany's children and NIH's
adults), then:

1. ``cxrclassify.audit``: the share of each class's Grad-CAM mass inside the central lung
   region against the borders and corners, the least central images, and how well a
   linear probe reads each image's source from the model's features;
2. ``cxrclassify.leave_one_source_out``: a fresh model trained without one source and
   tested on it, for the NIH and Kermany sources;
3. the out-of-distribution flag of ``predict`` on images unlike any X-ray;
4. the Grad-CAM overlays of the test images and their grid figure.

Run it once cxrclassify is installed::

    python examples/audit_shortcuts.py --quick      # 32 px, 2 epochs, random weights: a smoke run
    python examples/audit_shortcuts.py --out audit  # 237 px, ImageNet weights

On the real composites (``load_datasets("soares2020")`` against
``load_datasets("adult_controls")``), the same calls show the age shortcut; see the
"Auditing for shortcuts" page of the documentation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

import cxrclassify


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 px, 2 epochs, random weights: a smoke run")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--weights", default=None,
                        help="'imagenet' (default without --quick), 'none', or a .weights.h5 file of the base")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default: 0)")
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    image_size, epochs = (32, 2) if arguments.quick else (237, 80)
    weights = arguments.weights or ("none" if arguments.quick else "imagenet")
    weights = None if weights.lower() == "none" else weights
    out = arguments.out or Path(tempfile.mkdtemp(prefix="cxrclassify-audit-"))
    out.mkdir(parents=True, exist_ok=True)
    progress = not arguments.quick

    data = cxrclassify.load_datasets("sample", image_size=image_size, seed=arguments.seed, progress=progress)
    try:
        model = cxrclassify.build_model("vgg16", num_classes=len(data.class_names), weights=weights,
                                        image_size=image_size)
    except cxrclassify.WeightsUnavailableError as error:
        print(f"{error}\nRun with --weights none or --weights PATH, or --quick.", file=sys.stderr)
        return 1
    cxrclassify.train(model, data, epochs=epochs, seed=arguments.seed, progress=progress)

    with warnings.catch_warnings():  # the sample's test split is tiny: intervals are wide, and say so
        warnings.simplefilter("ignore")
        audit = cxrclassify.audit(model, data)
        held_out = cxrclassify.leave_one_source_out(
            data, "vgg16", sources=["nih", "kermany"], build_options={"weights": weights},
            train_options={"epochs": epochs, "progress": progress}, seed=arguments.seed)
    print(audit.summary(), "\n")
    print(held_out.summary(), "\n")

    noise = np.random.default_rng(arguments.seed).integers(0, 256, (4, image_size, image_size, 3), dtype=np.uint8)
    flagged = cxrclassify.predict(model, noise).out_of_distribution
    print(f"out-of-distribution flag on 4 images of noise: {int(flagged.sum())} of 4 flagged")

    # The maps behind the audit, as a grid like the paper's Figure 4: look where the heat is.
    cxrclassify.explain_images(model, data.test, out / "maps")
    print(f"wrote the test images' Grad-CAM overlays and grid to {out / 'maps'}")

    record = {"audit": audit.to_dict(), "leave_one_source_out": held_out.to_dict(),
              "noise_flagged": int(flagged.sum())}
    (out / "audit.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    print(f"wrote {out / 'audit.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
