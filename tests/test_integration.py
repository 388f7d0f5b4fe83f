"""Integration: the paper's pipeline on real X-rays from ../shared, with near-ImageNet VGG16 weights.

COVID-19 frontal X-rays from the ieee8023 collection against Kermany's pediatric
normal and pneumonia X-rays, split by patient. Results on this composite mix the
disease with age and hospital (see the docs); the test checks that the pipeline
learns, not that the model is clinically useful.
"""

from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import Sample

pytestmark = pytest.mark.integration

FRONTAL_VIEWS = {"PA", "AP", "AP Supine"}
VGG16_WEIGHTS = "weights/vgg16_notop_near_imagenet_hed.weights.h5"


def _ieee8023_covid(folder: Path, count: int, rng: np.random.Generator) -> list[Sample]:
    with (folder / "metadata.csv").open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = [row for row in csv.DictReader(handle)
                if row["finding"] == "COVID-19" and row["modality"] == "X-ray" and row["view"] in FRONTAL_VIEWS
                and (folder / "images" / row["filename"]).is_file()]
    chosen = rng.choice(len(rows), size=count, replace=False)
    return [Sample(str(folder / "images" / rows[i]["filename"]), "covid19", f"ieee8023:{rows[i]['patientid']}",
                   "ieee8023") for i in sorted(chosen)]


def _kermany(archive: Path, target: Path, folder: str, label: str, count: int, rng) -> list[Sample]:
    with zipfile.ZipFile(archive) as zipped:
        names = sorted(n for n in zipped.namelist() if n.startswith(f"chest_xray/train/{folder}/") and n.endswith(".jpeg"))
        chosen = [names[i] for i in sorted(rng.choice(len(names), size=count, replace=False))]
        for name in chosen:
            zipped.extract(name, target)
    samples = []
    for name in chosen:
        stem = Path(name).stem
        match = re.match(r"(person\d+)_", stem)
        patient = match.group(1) if match else stem.rsplit("-", 1)[0]
        samples.append(Sample(str(target / name), label, f"kermany:{patient}", "kermany"))
    return samples


def test_frozen_vgg16_learns_the_paper_composite(shared_data, tmp_path):
    weights = shared_data.parent / VGG16_WEIGHTS
    if not weights.is_file():
        pytest.skip(f"{weights} is absent")
    rng = np.random.default_rng(2020)
    archive = shared_data / "kermany-pediatric-cxr" / "ChestXRay2017.zip"
    records = (
        _ieee8023_covid(shared_data / "ieee8023-covid-chestxray", 90, rng)
        + _kermany(archive, tmp_path, "NORMAL", "normal", 45, rng)
        + _kermany(archive, tmp_path, "PNEUMONIA", "pneumonia", 45, rng)
    )
    data = cxrclassify.load_datasets(records, validation_fraction=0.1, test_fraction=0.2, seed=0, progress=False)
    patients = [set(split.groups) for _, split in data.items()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])

    model = cxrclassify.build_model("vgg16", len(data.class_names), weights=weights)
    history = cxrclassify.train(model, data, progress=False, recipe="paper")
    result = cxrclassify.evaluate(model, data.test)

    assert len(history["loss"]) == 80
    assert result.n_images >= 30
    assert result.accuracy >= 0.80, result.summary()
    assert sum(v["n_images"] for v in result.by_source.values()) == result.n_images
