"""Inference throughput of ``cxrclassify.predict`` on a folder of real X-rays against a plain loop.

Both include decoding. The plain loop is what a user writes first: for each file, open it with
Pillow, convert to RGB, resize, and call ``model.predict`` on a batch of one. ``predict`` decodes
and classifies in batches. Also reported: where ``predict``'s time goes (decode, resize, forward).

Run::

    python benchmarks/bench_predict.py [--images 64] [--arch vgg16]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import cxrclassify
from cxrclassify.datasets import read_image, resize
from _common import MOBILENET_WEIGHTS, SHARED, VGG16_WEIGHTS, Timer, machine, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--arch", default="vgg16", choices=["vgg16", "mobilenetv2"])
    arguments = parser.parse_args()
    source = sorted((SHARED / "data" / "nih-chestxray14" / "images").glob("*.png"))[: arguments.images // 2]
    source += sorted((SHARED / "data" / "ieee8023-covid-chestxray" / "images").glob("*.jp*g"))[: arguments.images // 2]
    folder = Path(tempfile.mkdtemp(prefix="cxr-bench-"))
    for path in source:
        shutil.copy(path, folder / path.name)
    weights, preprocessing = ((VGG16_WEIGHTS, None) if arguments.arch == "vgg16" else (MOBILENET_WEIGHTS, "torch"))
    model = cxrclassify.build_model(arguments.arch, 3, weights=weights, preprocessing=preprocessing,
                                    class_names=["covid19", "normal", "pneumonia"], image_size=237)
    files = sorted(folder.iterdir())
    cxrclassify.predict(model, files[:2])  # warm-up: graph tracing is not throughput

    with Timer() as ours:
        result = cxrclassify.predict(model, folder, batch_size=16)
    with Timer() as plain:
        plain_probabilities = []
        for path in files:
            image = np.asarray(Image.open(path).convert("RGB").resize((237, 237)), dtype=np.float32)
            plain_probabilities.append(model.predict(image[None], verbose=0)[0])
    with Timer() as decode:
        decoded = [read_image(path) for path in files]
    with Timer() as resizing:
        resized = np.stack([resize(image, 237) for image in decoded]).astype(np.float32)
    with Timer() as forward:
        for start in range(0, len(resized), 16):
            model.predict_on_batch(resized[start:start + 16])
    shutil.rmtree(folder)

    n = len(files)
    report = {
        "what": f"predict() on a folder vs a per-image Pillow + model.predict loop, {arguments.arch}, 237 px",
        "data": f"{n} real X-rays from ../shared/data (NIH PNG and ieee8023 JPEG, up to 512 px)",
        "predict_images_per_s": round(n / ours.seconds, 2),
        "plain_loop_images_per_s": round(n / plain.seconds, 2),
        "speed_up": round(plain.seconds / ours.seconds, 2),
        "breakdown_s": {"decode": round(decode.seconds, 2), "resize": round(resizing.seconds, 2),
                        "forward": round(forward.seconds, 2)},
        # The plain loop resizes with Pillow's default filter, predict() with bilinear: classes may differ.
        "same_class_share": round(float(np.mean(result.class_indices == np.argmax(plain_probabilities, axis=1))), 3),
        "machine": machine(),
        "command": f"python benchmarks/bench_predict.py --images {arguments.images} --arch {arguments.arch}",
    }
    print(write_result(f"predict_{arguments.arch}", report).read_text())


if __name__ == "__main__":
    main()
