"""Regenerate the figures shown in the documentation.

Run from the repository root::

    python docs/make_figures.py

It trains a VGG-16 with random weights (``weights=None``) for 5 epochs at
64 x 64 pixels on the 48-image bundled sample, evaluates it on the sample's
test split and writes the library's own figures into
``docs/_static/figures/``. The figures show what the library draws; the
numbers in them mean nothing about any model's performance.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cxrclassify  # noqa: E402
from PIL import Image  # noqa: E402

OUT = Path(__file__).resolve().parent / "_static" / "figures"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = cxrclassify.load_datasets("sample", image_size=64, progress=False)
    model = cxrclassify.build_model("vgg16", num_classes=len(data.class_names), weights=None, image_size=64)
    history = cxrclassify.train(model, data, epochs=5, seed=0, progress=False)
    evaluation = cxrclassify.evaluate(model, data)

    with tempfile.TemporaryDirectory() as tmp:
        for path in cxrclassify.save_evaluation_figures(evaluation, tmp, history=history, formats=("png",)):
            if path.name != "confusion_matrix_normalized.png":   # not shown in the docs
                shutil.copyfile(path, OUT / path.name)

    # Grad-CAM overlays of two test images: the first two of different classes.
    chosen, seen = [], set()
    for path, label in zip(data.test.paths, data.test.labels):
        if int(label) not in seen:
            chosen.append(path)
            seen.add(int(label))
        if len(chosen) == 2:
            break
    for index, path in enumerate(chosen, start=1):
        heatmap = cxrclassify.grad_cam(model, path)
        written = cxrclassify.save_gradcam_overlay(path, heatmap, OUT / f"gradcam_{index}.png")
        # The overlay is at the image's own size (up to 320 px here); shrink it to keep the docs small.
        with Image.open(written) as overlay:
            overlay.thumbnail((240, 240), Image.Resampling.LANCZOS)
            overlay.save(written, optimize=True)
        print(f"gradcam_{index}.png: {Path(path).relative_to(cxrclassify.datasets.sample_dir())}")

    print(evaluation.summary())
    for path in sorted(OUT.glob("*.png")):
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} kB")


if __name__ == "__main__":
    main()
