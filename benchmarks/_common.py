"""Shared set-up of the benchmarks: where ../shared is, and the soares2020 composite from it."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXRCLASSIFY_SHARED", REPO_ROOT.parent / "shared"))
VGG16_WEIGHTS = SHARED / "weights" / "vgg16_notop_near_imagenet_hed.weights.h5"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_notop_imagenet_torchvision.weights.h5"


def load_soares2020(image_size: int = 237, seed: int = 0, data_home: str | None = None):
    """The paper's composite drawn from the local copy of the sources (a mirror of downscaled files)."""
    import cxrclassify

    if not (SHARED / "data").is_dir():
        raise SystemExit(f"{SHARED / 'data'} is absent: these benchmarks need the real X-rays of ../shared")
    return cxrclassify.load_datasets("soares2020", mirror=SHARED / "data", verify=False, image_size=image_size,
                                     seed=seed, data_home=data_home, progress=False)


def machine() -> dict[str, str]:
    import tensorflow

    return {"python": platform.python_version(), "tensorflow": tensorflow.__version__,
            "cpu_count": str(os.cpu_count()), "platform": platform.platform()}


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def write_result(name: str, result: dict) -> Path:
    out = REPO_ROOT / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return out
