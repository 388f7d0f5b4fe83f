"""Shared fixtures: tiny images written to disk, a tiny registered architecture, ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from cxrclassify.models import ArchSpec, register_model

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXRCLASSIFY_SHARED", REPO_ROOT.parent / "shared"))


def tiny_cnn(include_top=False, weights=None, input_shape=(32, 32, 3)):
    """A two-layer CNN with the keras.applications constructor signature, for fast tests."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    model = keras.Model(inputs, x, name="tiny_cnn")
    if weights is not None:
        model.load_weights(weights)
    return model


register_model(ArchSpec("tinycnn", tiny_cnn, "tf", 32, "last_conv", min_input_size=8), overwrite=True)


def write_image(path: Path, rng: np.random.Generator, *, size=(40, 48), mode="L", brightness=0) -> Path:
    """Write a random image of ``mode`` (L, RGB, RGBA, P, I;16) with a brightness offset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 120, size=(size[1], size[0])) + brightness
    if mode == "I;16":
        image = Image.fromarray((np.clip(base, 0, 255) * 16).astype(np.uint16))
    else:
        grey = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), mode=None)
        image = grey.convert(mode)
    image.save(path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def class_folder(tmp_path: Path, rng: np.random.Generator) -> Path:
    """root/<class>/<image>: 12 images per class, two classes told apart by brightness."""
    root = tmp_path / "xrays"
    modes = ["L", "RGB", "RGBA", "P"]
    for label, brightness in (("covid19", 120), ("normal", 0)):
        for index in range(12):
            suffix = ".jpg" if index % 3 == 0 and modes[index % 4] in ("L", "RGB") else ".png"
            write_image(root / label / f"{label}_{index}{suffix}", rng, mode=modes[index % 4], brightness=brightness)
    return root


@pytest.fixture
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"../shared/data is absent ({data}): the integration test needs the real X-rays")
    return data
