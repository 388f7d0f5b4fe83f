"""Training recipes on real X-rays, measured on hospitals and sources the model never saw.

Every image (ieee8023, NIH ChestX-ray14, COVID-CXNet, BIMCV, Kermany; ``../shared/data`` used as a mirror)
is decoded once and brought to 224 x 224 first, whatever its source (BIMCV is 224 px upstream, so every
class gets the same resolution). The lung-field options (``lungs="crop"`` / ``"mask"``) are applied to
those 224-px images with the shipped lung segmenter and the result resized back to 224. The frozen base's
global-average-pooled features are computed once per (base, lungs, image) and cached on disk
(``$BENCH_RECIPES_CACHE``, default ``/tmp/bench_recipes_cache``), so that every variant and fold reuses
them.

Evaluations (95% CIs on every number: Wilson for proportions, patient bootstrap for macro F1):

* ``a``: the adult composite (ieee8023 COVID-19 + NIH normal/pneumonia), split by patient 70/10/20,
  seed 0, as ``bench_adult.py``. Multi-source variants add COVID-CXNet, BIMCV and ieee8023's own
  non-COVID frontal images (No Finding -> normal, other pneumonias -> pneumonia) to training only.
* ``b1-cxnet``: trained without COVID-CXNet, tested on its COVID-19 images and the ``a`` test split's
  NIH controls.
* ``b2-<site>``: trained without one ieee8023 site (any source's images of that site left out of
  training), tested on that site's ieee8023 COVID-19 images and the ``a`` test split's NIH controls;
  per fold and pooled.
* ``c-soares2020``: the paper's composite (375 images, its own patient split 80/10/10, seed 0), at 224 px.

Patients are joined across every source by near-identical pictures (``join_duplicate_groups``); no
training or validation image shares a joined patient with a test image. Variants: ``linear[-crop|-mask]
[-multisource][-sitebalanced]`` (``fit_linear_head`` on pooled features, class-balanced, C by validation
log-loss, optionally ``balancing_weights(..., sites=...)``), ``gap-recommended`` (``cxrclassify.train(...,
recipe="recommended")``, a Keras GAP head; MobileNetV2, a/b1/c) and ``finetune`` (``train_two_stage``,
top 2 blocks; MobileNetV2). Each linear variant also gets OOD columns: ``MahalanobisOOD`` fitted on the training
features and a nearest-neighbour score (k = 1 and 10), each threshold the 95th percentile of the validation
scores; the Keras variants report their own (Mahalanobis) flag.

* ``d-kermany`` / ``d-ieee8023`` / ``d-nih``: normal X-rays of a hospital the model never saw a normal from
  (Kermany's children and ieee8023's own No Finding adults for the ``a`` model, NIH's adults for the ``c``
  model): the share called normal, and the share right or flagged out of distribution.

Results are merged into ``benchmarks/results/recipes_seed0.json`` (one entry per base and variant, each
with its command and wall time), so that runs can be split (whole images first, lungs when the segmenter
exists, VGG16 last).

Run::

    python benchmarks/bench_recipes.py [--bases mobilenetv2,vgg16] [--variants NAME,...] [--quick]
    python benchmarks/bench_recipes.py --table        # print the markdown tables from the JSON
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import MOBILENET_WEIGHTS, REPO_ROOT, SHARED, VGG16_WEIGHTS, Timer, machine

CACHE = Path(os.environ.get("BENCH_RECIPES_CACHE", "/tmp/bench_recipes_cache"))
RESULTS = REPO_ROOT / "benchmarks" / "results" / "recipes_seed0.json"
SIZE = 224
SEED = 0
CLASSES = ["covid19", "normal", "pneumonia"]
#: ieee8023 findings taken as "pneumonia" controls (other infections; ARDS and lipoid pneumonia left out).
IEEE_PNEUMONIAS = ("SARS", "Streptococcus", "Pneumocystis", "Pneumonia", "Klebsiella", "E.Coli",
                   "Mycoplasma Bacterial Pneumonia", "Legionella", "Bacterial", "Influenza")

BASES = {
    "mobilenetv2": {"arch": "mobilenetv2", "weights": MOBILENET_WEIGHTS, "preprocessing": "torch",
                    "described": "torchvision ImageNet MobileNetV2"},
    "vgg16": {"arch": "vgg16", "weights": VGG16_WEIGHTS, "preprocessing": None,
              "described": "near-ImageNet VGG16"},
}


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "linear" | "gap-recommended" | "finetune"
    lungs: str | None = None
    multisource: bool = False
    site_balanced: bool = False
    experiments: tuple[str, ...] = ("a", "b1", "b2", "c")

    @property
    def described(self) -> str:
        if self.kind == "gap-recommended":
            return ("cxrclassify.train(recipe='recommended'): Keras GAP head, balanced class weights, early "
                    "stopping 10, 80 epochs, Adam 1e-3, batch 15; whole images, ieee8023 + NIH")
        if self.kind == "finetune":
            return ("train_two_stage: the recommended GAP head (80 epochs), then the top 2 blocks fine-tuned "
                    "(Adam 1e-5); whole images, ieee8023 + NIH")
        parts = ["fit_linear_head on pooled features, class-balanced, C by validation log-loss"]
        parts.append({None: "whole image", "crop": "lungs='crop'", "mask": "lungs='mask'"}[self.lungs])
        parts.append("COVID-19 from ieee8023 + CXNet + BIMCV, controls NIH + ieee8023 non-COVID" if self.multisource
                     else "ieee8023 COVID-19 + NIH controls")
        if self.site_balanced:
            parts.append("site-balanced weights (balancing_weights(..., sites=...))")
        return "; ".join(parts)


def _variants() -> dict[str, Variant]:
    found: dict[str, Variant] = {}
    for lungs in (None, "crop", "mask"):
        for multisource in (False, True):
            for site_balanced in (False, True):
                name = "linear" + (f"-{lungs}" if lungs else "") + ("-multisource" if multisource else "") + (
                    "-sitebalanced" if site_balanced else "")
                experiments = ("a", "b1", "b2", "d") + (() if multisource or site_balanced else ("c",))
                found[name] = Variant(name, "linear", lungs, multisource, site_balanced, experiments)
    found["gap-recommended"] = Variant("gap-recommended", "gap-recommended", experiments=("a", "b1", "b2", "c", "d"))
    found["finetune"] = Variant("finetune", "finetune", experiments=("a", "b1", "b2", "d"))
    return found


VARIANTS = _variants()
KERAS_BASES = ("mobilenetv2",)  # the Keras-head variants are measured on MobileNetV2 only


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------------------------- data


def _adult_row(row: dict) -> bool:
    from cxrclassify.datasets import parse_age

    age = parse_age(row.get("age", ""))
    return age is None or age >= 18


def gather_records(quick: bool, bimcv_n: int | None) -> dict[str, list]:
    """The records of every pool, from ../shared/data used as a mirror."""
    from cxrclassify.datasets import (
        adult_controls_records,
        bimcv_records,
        cxnet_records,
        ieee8023_records,
        soares2020_records,
    )
    from cxrclassify.datasets.ieee8023 import (
        fetch_ieee8023_metadata,
        finding_terms,
        read_ieee8023_metadata,
        select_ieee8023_rows,
    )

    if not (SHARED / "data").is_dir():
        raise SystemExit(f"{SHARED / 'data'} is absent: this benchmark needs the real X-rays of ../shared")
    options = {"mirror": SHARED / "data", "verify": False, "data_home": CACHE / "home", "progress": False}
    small = {"n_covid19": 60, "n_normal": 30, "n_pneumonia": 30} if quick else {}
    adult = adult_controls_records(seed=SEED, **small, **options)
    rows = read_ieee8023_metadata(fetch_ieee8023_metadata(**options))
    normal_rows = [row for row in select_ieee8023_rows(rows, findings=("No Finding",)) if _adult_row(row)]
    pneumonia_rows = [row for row in select_ieee8023_rows(rows, findings=IEEE_PNEUMONIAS)
                      if "COVID-19" not in finding_terms(row.get("finding", "")) and _adult_row(row)]
    ieee_other = (ieee8023_records(rows=normal_rows, label="normal", **options)
                  + ieee8023_records(rows=pneumonia_rows, label="pneumonia", **options))
    cxnet = cxnet_records(**options)
    bimcv = bimcv_records(n=40 if quick else bimcv_n, seed=SEED, **options)
    soares = soares2020_records(seed=SEED, **({"n_covid19": 40, "n_normal": 20, "n_pneumonia": 20} if quick else {}),
                                **options)
    if quick:
        cxnet = cxnet[:40]
    return {"adult": adult, "ieee_other": ieee_other, "cxnet": cxnet, "bimcv": bimcv, "soares2020": soares}


def decode_all(paths: list[str]) -> np.ndarray:
    """Each image read once and resized to SIZE x SIZE (bilinear, as load_datasets)."""
    from cxrclassify.datasets import read_image, resize

    images = np.empty((len(paths), SIZE, SIZE, 3), dtype=np.uint8)
    for index, path in enumerate(paths):
        images[index] = resize(read_image(path), SIZE)
    return images


def _key(parts: list[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def joined_groups(records: list, images: np.ndarray) -> tuple[list[str], int]:
    """join_duplicate_groups over these records (their groups; ungrouped images are their own group)."""
    from cxrclassify.datasets import join_duplicate_groups

    groups = [record.group if record.group is not None else f"image:{record.path}" for record in records]
    joined, joins = join_duplicate_groups(groups, images, [record.path for record in records])
    return joined, len(joins)


def patient_split(records: list, images: np.ndarray, validation: float, test: float) -> tuple[list[list[str]], int]:
    """load_datasets' split of these records (joins, then stratified_group_split), as path lists."""
    from cxrclassify.datasets import stratified_group_split

    groups, n_joins = joined_groups(records, images)
    labels = np.array([CLASSES.index(record.label) for record in records])
    parts = stratified_group_split(labels, groups, validation_fraction=validation, test_fraction=test, seed=SEED)
    return [[records[index].path for index in part] for part in parts], n_joins


@dataclass
class Data:
    records: dict[str, Any]  # path -> Sample
    pools: dict[str, list[str]]  # pool name -> paths
    group: dict[str, str]  # path -> patient after the global joins
    splits: dict[str, list[list[str]]]  # "adult" / "soares2020" -> [train, validation, test]
    info: dict[str, Any]
    paths: list[str] = field(default_factory=list)
    images: np.ndarray | None = None  # decoded whole images, in ``paths`` order
    index: dict[str, int] = field(default_factory=dict)

    def label(self, path: str) -> int:
        return CLASSES.index(self.records[path].label)

    def site(self, path: str) -> str:
        return self.records[path].site or "unknown"

    def image_set(self, paths: list[str]):
        from cxrclassify.datasets import ImageSet

        return ImageSet(self.images[[self.index[p] for p in paths]], np.array([self.label(p) for p in paths]),
                        [self.records[p] for p in paths], list(CLASSES))


def load_data(quick: bool, bimcv_n: int | None) -> Data:
    with Timer() as timer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pools_records = gather_records(quick, bimcv_n)
    log(f"records gathered in {timer.seconds:.0f} s: " + ", ".join(f"{k} {len(v)}" for k, v in pools_records.items()))
    records: dict[str, Any] = {}
    for pool in pools_records.values():
        for record in pool:
            known = records.setdefault(record.path, record)
            if known.label != record.label:
                raise SystemExit(f"{record.path} has two labels: {known.label} and {record.label}")
    paths = sorted(records)
    with Timer() as decoding:
        images = decode_all(paths)
    log(f"decoded {len(paths)} images in {decoding.seconds:.0f} s")
    index = {path: i for i, path in enumerate(paths)}
    pools = {name: [record.path for record in pool] for name, pool in pools_records.items()}

    def images_of(pool_paths: list[str]) -> np.ndarray:
        return images[[index[p] for p in pool_paths]]

    with Timer() as joining:
        all_records = [records[p] for p in paths]
        global_groups, n_global = joined_groups(all_records, images)
        splits, joins = {}, {}
        for name, (validation, test) in (("adult", (0.1, 0.2)), ("soares2020", (0.1, 0.1))):
            pool = pools_records[name]
            splits[name], joins[name] = patient_split(pool, images_of(pools[name]), validation, test)
    log(f"joins: {n_global} joined patients over all sources; split in {joining.seconds:.0f} s")
    group = dict(zip(paths, global_groups))
    info = {
        "pools": {name: _counts([records[p] for p in pool_paths]) for name, pool_paths in pools.items()},
        "n_unique_images": len(paths),
        "decode_seconds": round(decoding.seconds, 1),
        "joined_patients_all_sources": n_global,
        "cross_source_joins": sorted({g for g in global_groups if "|" in g
                                      and len({records[p].source for p, h in zip(paths, global_groups) if h == g}) > 1}),
        "joined_patients_within": joins,
        "splits": {name: {part: len(paths_) for part, paths_ in zip(("train", "validation", "test"), parts)}
                   for name, parts in splits.items()},
    }
    return Data(records, pools, group, splits, info, paths, images, index)


def _counts(records: list) -> dict[str, Any]:
    return {
        "n_images": len(records),
        "by_class": dict(sorted(Counter(r.label for r in records).items())),
        "by_source_class": {f"{s}/{c}": n for (s, c), n in sorted(Counter((r.source or "unknown", r.label)
                                                                           for r in records).items())},
        "by_site_class": {f"{s}/{c}": n for (s, c), n in sorted(Counter((r.site or "unknown", r.label)
                                                                         for r in records).items())},
        "n_sites": len({r.site or "unknown" for r in records}),
        "n_patients": len({r.group or r.path for r in records}),
    }


# ------------------------------------------------------------------------------------------ experiments


@dataclass
class Experiment:
    name: str
    described: str
    train: list[str]
    extras: list[str]
    validation: list[str]
    test: list[str]
    held_out: list[str]  # the test images of the unseen source or site (empty for a and c)
    site: str | None = None  # a site left out of training (any source)
    dropped: dict[str, int] = field(default_factory=dict)
    #: "classes" (scored by macro F1) or "normals" (an unseen hospital's normal X-rays: right or flagged)
    kind: str = "classes"
    #: for "normals": training images that must not be used when multisource (they are the test)
    exclude_from_extras: tuple[str, ...] = ()

    def training(self, data: Data, multisource: bool) -> list[str]:
        excluded = set(self.exclude_from_extras)
        extras = [p for p in self.extras if p not in excluded] if multisource else []
        return self._filtered(data, self.train + extras, "train" + ("+extras" if multisource else ""))

    def validation_set(self, data: Data) -> list[str]:
        return self._filtered(data, self.validation, "validation", forbid_validation=False)

    def _filtered(self, data: Data, paths: list[str], what: str, forbid_validation: bool = True) -> list[str]:
        forbidden = {data.group[p] for p in self.test}
        if forbid_validation:
            forbidden |= {data.group[p] for p in self.validation}
        kept = [p for p in paths if data.group[p] not in forbidden and (self.site is None or data.site(p) != self.site)]
        self.dropped[what] = len(paths) - len(kept)
        return kept


def build_experiments(data: Data, n_sites: int) -> tuple[dict[str, Experiment], list[str]]:
    train, validation, test = data.splits["adult"]
    adult = train + validation + test
    ieee_covid = [p for p in adult if data.records[p].source == "ieee8023"]
    test_controls = [p for p in test if data.records[p].source == "nih"]
    extras = data.pools["cxnet"] + data.pools["bimcv"] + data.pools["ieee_other"]
    in_test_or_train = set(train) | set(test)
    ieee_covid_set = set(ieee_covid)
    experiments = {
        "a": Experiment("a", "adult composite test split (ieee8023 COVID-19 + NIH), patients 70/10/20, seed 0",
                        train, extras, validation, test, []),
        "b1": Experiment(
            "b1", "trained without COVID-CXNet; tested on its COVID-19 images + the (a) test split's NIH controls",
            train + [p for p in test if p in ieee_covid_set], data.pools["bimcv"] + data.pools["ieee_other"],
            validation, data.pools["cxnet"] + test_controls, list(data.pools["cxnet"])),
    }
    site_counts = Counter(data.site(p) for p in ieee_covid)
    sites = [site for site, _ in site_counts.most_common() if site != "unknown"][:n_sites]
    for site in sites:
        held = [p for p in ieee_covid if data.site(p) == site]
        experiments[f"b2-{site}"] = Experiment(
            f"b2-{site}", f"trained without ieee8023 site {site!r} (that site's images of any source left out); "
            "tested on its ieee8023 COVID-19 images + the (a) test split's NIH controls",
            [p for p in ieee_covid if p in in_test_or_train] + [p for p in train if data.records[p].source == "nih"],
            extras, validation, held + test_controls, held, site=site)
    s_train, s_validation, s_test = data.splits["soares2020"]
    experiments["c"] = Experiment("c", "soares2020 (ieee8023 COVID-19 vs Kermany children), its own patient split "
                                  "80/10/10, seed 0, 224 px", s_train, [], s_validation, s_test, [])
    experiments.update(normals_experiments(data, experiments))
    return experiments, sites


def normals_experiments(data: Data, experiments: dict[str, Experiment]) -> dict[str, Experiment]:
    """(d) normal X-rays of a hospital the model never saw a normal from: right, or flagged OOD.

    * ``d-kermany``: the (a) model (adult) on the soares2020 pool's Kermany normals (Guangzhou, children);
    * ``d-ieee8023``: the (a) model on ieee8023's own adult "No Finding" frontal images (the sites its
      COVID-19 images come from; left out of the multi-source extras, since they are the test);
    * ``d-nih``: the (c) model (the paper's composite) on the (a) test split's NIH normals (adults).
    """
    a, c = experiments["a"], experiments["c"]
    kermany = [p for p in data.pools["soares2020"] if data.records[p].source == "kermany"
               and data.records[p].label == "normal"]
    ieee_normals = [p for p in data.pools["ieee_other"] if data.records[p].label == "normal"]
    nih_normals = [p for p in a.test if data.records[p].source == "nih" and data.records[p].label == "normal"]
    found = {}
    for name, model_of, test, described in (
            ("d-kermany", a, kermany, "the (a) model on Kermany's normals (an unseen hospital; children)"),
            ("d-ieee8023", a, ieee_normals, "the (a) model on ieee8023's adult No Finding images (sites seen only "
             "for COVID-19)"),
            ("d-nih", c, nih_normals, "the (c) model on the (a) test split's NIH normals (an unseen hospital; "
             "adults)")):
        found[name] = Experiment(name, described, model_of.train, model_of.extras, model_of.validation, test,
                                 list(test), kind="normals", exclude_from_extras=tuple(test))
    return found


# ------------------------------------------------------------------------------------------- features


def lung_segmenter_sha() -> str | None:
    from cxrclassify.segmentation import SHIPPED_METADATA

    if not SHIPPED_METADATA.is_file():
        return None
    try:
        metadata = json.loads(SHIPPED_METADATA.read_text())
    except ValueError:
        return None
    weights = SHIPPED_METADATA.parent / metadata.get("weights_file", "lung_unet.weights.h5")
    return metadata.get("sha256") if weights.is_file() else None


_MODELS: dict[str, Any] = {}


def base_model(base: str):
    import cxrclassify

    if base not in _MODELS:
        settings = BASES[base]
        _MODELS[base] = cxrclassify.build_model(settings["arch"], 3, weights=settings["weights"],
                                                preprocessing=settings["preprocessing"], head="gap",
                                                image_size=SIZE, class_names=CLASSES)
    return _MODELS[base]


def prepared_images(data: Data, paths: list[str], lungs: str | None, chunk: int = 64) -> np.ndarray:
    images = data.images[[data.index[p] for p in paths]]
    if lungs is None:
        return images
    from cxrclassify.datasets import resize
    from cxrclassify.segmentation.options import prepare_lung_fields

    out = np.empty_like(images)
    for start in range(0, len(images), chunk):
        prepared, _ = prepare_lung_fields(list(images[start:start + chunk]), lungs)
        for offset, image in enumerate(prepared):
            out[start + offset] = resize(np.ascontiguousarray(image), SIZE)
    return out


class FeatureStore:
    """Pooled base features per image path, for one (base, lungs), cached in one .npz file."""

    def __init__(self, base: str, lungs: str | None):
        tag = "whole" if lungs is None else f"{lungs}-{lung_segmenter_sha()[:12]}"
        self.base, self.lungs = base, lungs
        self.file = CACHE / "features" / f"{base}_{SIZE}_{tag}.npz"
        self.features: dict[str, np.ndarray] = {}
        self.seconds = 0.0
        self.computed = 0
        if self.file.is_file():
            with np.load(self.file, allow_pickle=False) as stored:
                self.features = dict(zip(stored["paths"].tolist(), stored["features"]))

    def get(self, data: Data, paths: list[str]) -> np.ndarray:
        from cxrclassify.models.ood import pooled_features

        missing = sorted({p for p in paths if p not in self.features})
        if missing:
            log(f"features {self.base} lungs={self.lungs}: computing {len(missing)} images")
            with Timer() as timer:
                model = base_model(self.base)
                for start in range(0, len(missing), 128):
                    part = missing[start:start + 128]
                    features = pooled_features(model, prepared_images(data, part, self.lungs), batch_size=32)
                    self.features.update(zip(part, features))
                    self.save()
            self.seconds += timer.seconds
            self.computed += len(missing)
            log(f"features {self.base} lungs={self.lungs}: {len(missing)} images in {timer.seconds:.0f} s "
                f"({len(missing) / max(timer.seconds, 1e-9):.1f} img/s)")
        return np.stack([self.features[p] for p in paths]) if paths else np.zeros((0, 1), np.float32)

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.features)
        temporary = self.file.with_suffix(".tmp.npz")
        np.savez(temporary, paths=np.array(keys), features=np.stack([self.features[k] for k in keys]))
        temporary.replace(self.file)


# ------------------------------------------------------------------------------------------ evaluation


def evaluate(data: Data, paths: list[str], probabilities: np.ndarray, held_out: list[str]) -> dict[str, Any]:
    from cxrclassify.evaluation import evaluate_predictions

    records = [data.records[p] for p in paths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = evaluate_predictions(
            np.array([data.label(p) for p in paths]), probabilities, CLASSES, groups=[data.group[p] for p in paths],
            sources=[r.source for r in records], sites=[r.site for r in records], ages=[r.age for r in records],
            seed=SEED)
    full = evaluation.to_dict()
    covid = full["per_class"]["covid19"]
    summary = {
        "n_images": full["n_images"], "n_correct": full["n_correct"], "n_patients": full["n_groups"],
        "accuracy": full["accuracy"], "accuracy_ci": full["accuracy_ci"],
        "macro_f1": full["macro_f1"], "macro_f1_ci": full["macro_f1_ci"],
        "balanced_accuracy": full["balanced_accuracy"], "balanced_accuracy_ci": full["balanced_accuracy_ci"],
        "covid19_recall": covid["sensitivity"], "covid19_recall_ci": covid["sensitivity_ci"],
        "covid19_specificity": covid["specificity"], "covid19_specificity_ci": covid["specificity_ci"],
        "macro_roc_auc": full["macro_roc_auc"], "log_loss": full["calibration"]["log_loss"],
        "ece": full["calibration"]["ece"], "confusion_matrix": full["confusion_matrix"],
        "per_class": full["per_class"], "by_source": full["by_source"],
        "by_site": {site: {k: v[k] for k in ("n_images", "n_correct", "accuracy", "accuracy_ci") if k in v}
                    for site, v in full["by_site"].items()},
        "notes": full["notes"],
    }
    if held_out:
        held = set(held_out)
        mask = np.array([p in held for p in paths])
        called_covid = probabilities.argmax(axis=1) == 0
        summary["held_out_covid19_recall"] = _proportion(int(called_covid[mask].sum()), int(mask.sum()))
        summary["controls_specificity"] = _proportion(int((~called_covid[~mask]).sum()), int((~mask).sum()))
    return summary


def _proportion(successes: int, trials: int) -> dict[str, Any]:
    from cxrclassify.evaluation import wilson_interval

    return {"value": successes / trials if trials else None, "n": successes, "of": trials,
            "ci": list(wilson_interval(successes, trials))}


class NearestNeighbourOOD:
    """Distance to the k-th nearest training image in cosine terms (Sun et al. 2022, "deep nearest neighbours"):
    the score of ``cxrclassify.models.NearestNeighbourOOD`` (``build_model(..., ood="knn")``) computed in float64
    with every training image kept (the library's layer keeps up to 2,048 in float16), its threshold set the same
    way; measured beside the library's default Mahalanobis score."""

    def __init__(self, k: int):
        self.k = k

    def fit(self, train_x: np.ndarray, validation_x: np.ndarray, quantile: float = 0.95) -> None:
        self.reference = self._normalised(train_x)
        self.threshold = float(np.quantile(self.score(validation_x), quantile))

    @staticmethod
    def _normalised(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def score(self, x: np.ndarray) -> np.ndarray:
        similarities = self._normalised(x) @ self.reference.T
        k = min(self.k, similarities.shape[1])
        return -np.partition(similarities, similarities.shape[1] - k, axis=1)[:, similarities.shape[1] - k]


OOD_METHODS = ("mahalanobis", "knn1", "knn10")


def ood_scores(train_x, train_y, validation_x, test_x) -> dict[str, tuple[np.ndarray, float]]:
    """Each OOD method's test scores and threshold (the 95th percentile of the validation scores)."""
    from cxrclassify.models.ood import MahalanobisOOD

    layer = MahalanobisOOD(len(CLASSES), train_x.shape[1])
    layer.fit(train_x, train_y, validation_x, quantile=0.95)
    found = {"mahalanobis": (layer.score(test_x), layer.threshold)}
    for k in (1, 10):
        neighbours = NearestNeighbourOOD(k)
        neighbours.fit(train_x, validation_x, quantile=0.95)
        found[f"knn{k}"] = (neighbours.score(test_x), neighbours.threshold)
    return found


def ood_flags(scores: dict[str, tuple[np.ndarray, float]], test_paths: list[str], held_out: list[str],
              data: Data) -> dict[str, Any]:
    """The library's flag (Mahalanobis) in full, and each method's shares and held-out-vs-rest AUROC."""
    from sklearn.metrics import roc_auc_score

    held = set(held_out)
    mask = np.array([p in held for p in test_paths], dtype=bool)
    sources = np.array([data.records[p].source or "unknown" for p in test_paths])
    result: dict[str, Any] = {"methods": {}}
    for method, (score, threshold) in scores.items():
        flags = score > threshold
        entry = {"threshold": float(threshold), "test": _proportion(int(flags.sum()), len(flags))}
        if held_out and not mask.all():
            entry["held_out"] = _proportion(int(flags[mask].sum()), int(mask.sum()))
            entry["other_test"] = _proportion(int(flags[~mask].sum()), int((~mask).sum()))
            entry["auroc_held_out_vs_other"] = float(roc_auc_score(mask, score))
        result["methods"][method] = entry
        if method == "mahalanobis":
            result.update({k: v for k, v in entry.items()})
            result["by_source"] = {source: _proportion(int(flags[sources == source].sum()), int((sources == source).sum()))
                                   for source in sorted(set(sources.tolist()))}
            result["_flags"] = flags
    result["_all_flags"] = {method: score > threshold for method, (score, threshold) in scores.items()}
    return result


def normals_result(data: Data, paths: list[str], probabilities: np.ndarray,
                   flags: dict[str, np.ndarray]) -> dict[str, Any]:
    """An unseen hospital's normal X-rays: what they are called, and the share right or flagged per OOD method."""
    called = probabilities.argmax(axis=1)
    right = called == CLASSES.index("normal")
    result = {"n_images": len(paths), "n_patients": len({data.group[p] for p in paths}),
              "sources": dict(Counter(data.records[p].source for p in paths)),
              "called": {name: _proportion(int((called == index).sum()), len(paths)) for index, name in
                         enumerate(CLASSES)},
              "right": _proportion(int(right.sum()), len(paths)),
              "flagged": {m: _proportion(int(f.sum()), len(paths)) for m, f in flags.items()},
              "right_or_flagged": {m: _proportion(int((right | f).sum()), len(paths)) for m, f in flags.items()}}
    return result


# -------------------------------------------------------------------------------------------- variants


def run_linear(variant: Variant, base: str, data: Data, experiments: dict[str, Experiment],
               stores: dict, wanted: list[str]) -> dict[str, Any]:
    from cxrclassify.linear_head import balancing_weights, fit_linear_head

    store = stores[(base, variant.lungs)]
    results: dict[str, Any] = {}
    fold_outputs = []
    for name in wanted:
        experiment = experiments[name]
        train = experiment.training(data, variant.multisource)
        validation = experiment.validation_set(data)
        test = experiment.test
        with Timer() as timer:
            train_x, validation_x, test_x = (store.get(data, part) for part in (train, validation, test))
            train_y = np.array([data.label(p) for p in train])
            validation_y = np.array([data.label(p) for p in validation])
            weights = balancing_weights(train_y, sites=[data.site(p) for p in train] if variant.site_balanced else None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                head = fit_linear_head(train_x, train_y, num_classes=len(CLASSES), sample_weight=weights,
                                       validation=(validation_x, validation_y))
            probabilities = head.predict_proba(test_x)
        with Timer() as ood_timer:
            ood = ood_flags(ood_scores(train_x, train_y, validation_x, test_x), test, experiment.held_out, data)
        all_flags = ood.pop("_all_flags")
        ood.pop("_flags")
        if experiment.kind == "normals":
            result = normals_result(data, test, probabilities, all_flags)
        else:
            result = evaluate(data, test, probabilities, experiment.held_out)
        result.update({"c": head.c, "validation_log_loss": head.validation_log_loss, "ood": ood,
                       "fit_seconds": round(timer.seconds, 2), "ood_seconds": round(ood_timer.seconds, 2),
                       "train_counts": _counts([data.records[p] for p in train]),
                       "validation_counts": _counts([data.records[p] for p in validation]),
                       "test_counts": _counts([data.records[p] for p in test]),
                       "dropped_for_leaks": dict(experiment.dropped)})
        results[name] = result
        if name.startswith("b2-"):
            fold_outputs.append((experiment, probabilities, ood))
        log(f"  {base} {variant.name} {name}: {_brief(result)}")
    if fold_outputs:
        results["b2-pooled"] = pooled_b2(data, fold_outputs)
        log(f"  {base} {variant.name} b2-pooled: {_brief(results['b2-pooled'])}")
    return results


def pooled_b2(data: Data, folds: list) -> dict[str, Any]:
    """Every held-out site's images, each predicted by the model of its fold, plus the NIH test controls once,
    their probabilities averaged over the folds' models."""
    held_paths, held_probabilities = [], []
    control_probabilities: dict[str, list[np.ndarray]] = defaultdict(list)
    ood_held, ood_held_of = 0, 0
    methods: dict[str, list[int]] = {}
    for experiment, probabilities, ood in folds:
        held = set(experiment.held_out)
        for path, row in zip(experiment.test, probabilities):
            if path in held:
                held_paths.append(path)
                held_probabilities.append(row)
            else:
                control_probabilities[path].append(row)
        ood_held += ood["held_out"]["n"]
        ood_held_of += ood["held_out"]["of"]
        for method, entry in ood.get("methods", {}).items():
            counts = methods.setdefault(method, [0, 0])
            counts[0] += entry["held_out"]["n"]
            counts[1] += entry["held_out"]["of"]
    controls = sorted(control_probabilities)
    paths = held_paths + controls
    probabilities = np.stack(held_probabilities + [np.mean(control_probabilities[p], axis=0) for p in controls])
    result = evaluate(data, paths, probabilities, held_paths)
    result["ood"] = {"held_out": _proportion(ood_held, ood_held_of),
                     "methods": {m: {"held_out": _proportion(n, of)} for m, (n, of) in methods.items()}}
    result["folds"] = [experiment.name for experiment, _, _ in folds]
    return result


def run_keras(variant: Variant, base: str, data: Data, experiments: dict[str, Experiment], stores: dict,
              wanted: list[str], finetune_epochs: int) -> dict[str, Any]:
    import keras

    import cxrclassify
    from cxrclassify.training import train_two_stage

    store = stores[(base, None)]
    results: dict[str, Any] = {}
    fold_outputs = []
    trained: dict[tuple, tuple] = {}
    for name in wanted:
        experiment = experiments[name]
        train, validation, test = experiment.training(data, False), experiment.validation_set(data), experiment.test
        trained_key = (tuple(train), tuple(validation))
        if trained_key in trained:  # the (d) tests reuse the (a) and (c) models
            model, history, seconds = trained[trained_key]
            result = _keras_result(variant, data, experiment, model, store, test, history, seconds)
            results[name] = result
            log(f"  {base} {variant.name} {name}: {_brief(result)} (model of an earlier experiment)")
            continue
        keras.utils.set_random_seed(SEED)
        settings = BASES[base]
        model = cxrclassify.build_model(settings["arch"], 3, weights=settings["weights"],
                                        preprocessing=settings["preprocessing"], head="gap", image_size=SIZE,
                                        class_names=CLASSES)
        pair = (data.image_set(train), data.image_set(validation))
        options = {"seed": SEED, "progress": False, "recipe": "recommended"}
        with Timer() as timer, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if variant.kind == "gap-recommended":
                history = cxrclassify.train(model, pair, cache_dir=CACHE / "keras_features", **options)
            else:
                history = train_two_stage(model, pair, head_epochs=80, fine_tune_epochs=finetune_epochs,
                                          fine_tune_blocks=2, cache_dir=CACHE / "keras_features", **options)
        trained[trained_key] = (model, history, timer.seconds)
        result = _keras_result(variant, data, experiment, model, store, test, history, timer.seconds)
        if name.startswith("b2-"):
            fold_outputs.append((experiment, result.pop("_probabilities"), result["ood"]))
        result.pop("_probabilities", None)
        results[name] = result
        log(f"  {base} {variant.name} {name}: {_brief(result)} ({timer.seconds:.0f} s)")
    if fold_outputs:
        results["b2-pooled"] = pooled_b2(data, fold_outputs)
        log(f"  {base} {variant.name} b2-pooled: {_brief(results['b2-pooled'])}")
    return results


def _keras_result(variant: Variant, data: Data, experiment: Experiment, model, store: FeatureStore,
                  test: list[str], history: dict, train_seconds: float) -> dict[str, Any]:
    """A trained Keras classifier's probabilities, OOD flags and evaluation on one experiment's test images."""
    from keras import ops

    from cxrclassify.models.ood import pooled_features

    train = experiment.training(data, False)
    shortcut_error = None
    with Timer() as predicting:
        if variant.kind == "gap-recommended":
            # The base is frozen: its pooled features are the cached ones (the GAP of a 1 x 1 map is itself).
            test_x = store.get(data, test)
            probabilities = ops.convert_to_numpy(model.probabilities_from_features(test_x[:, None, None, :]))
            check = data.image_set(test[:8]).images.astype(np.float32)
            shortcut_error = float(np.abs(ops.convert_to_numpy(model(check)) - probabilities[:8]).max())
        else:
            images = data.image_set(test).images
            probabilities = np.concatenate([ops.convert_to_numpy(model(images[i:i + 32].astype(np.float32)))
                                            for i in range(0, len(images), 32)])
            test_x = pooled_features(model, images, batch_size=32)  # the fine-tuned base's features
    flags = model.ood.is_out_of_distribution(model.ood.score(test_x))  # the model's own OOD flag
    if experiment.kind == "normals":
        result = normals_result(data, test, probabilities, {"mahalanobis": flags})
    else:
        result = evaluate(data, test, probabilities, experiment.held_out)
        held = np.array([p in set(experiment.held_out) for p in test], dtype=bool)
        result["ood"] = {"threshold": model.ood.threshold, "test": _proportion(int(flags.sum()), len(flags))}
        if experiment.held_out:
            result["ood"].update({"held_out": _proportion(int(flags[held].sum()), int(held.sum())),
                                  "other_test": _proportion(int(flags[~held].sum()), int((~held).sum()))})
    result.update({"train_seconds": round(train_seconds, 1), "predict_seconds": round(predicting.seconds, 1),
                   "epochs_run": len(history.get("loss", [])), "stages": history.get("stage"),
                   "max_probability_difference_cached_vs_images": shortcut_error if variant.kind ==
                   "gap-recommended" else None,
                   "train_counts": _counts([data.records[p] for p in train]),
                   "test_counts": _counts([data.records[p] for p in test]),
                   "dropped_for_leaks": dict(experiment.dropped)})
    result["_probabilities"] = probabilities
    return result


def _brief(result: dict[str, Any]) -> str:
    if "right_or_flagged" in result:
        return (f"right {result['right']['value']:.2f}, called COVID-19 {result['called']['covid19']['value']:.2f}, "
                "right or flagged " + ", ".join(f"{m} {p['value']:.2f}" for m, p in result["right_or_flagged"].items()))
    text = f"acc {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f} {_ci(result['macro_f1_ci'])}"
    if "held_out_covid19_recall" in result:
        text += (f", held-out COVID recall {result['held_out_covid19_recall']['value']:.3f}, "
                 f"control spec {result['controls_specificity']['value']:.3f}")
    if "ood" in result and "held_out" in result["ood"]:
        text += f", OOD held-out {result['ood']['held_out']['value']:.2f}"
    return text


def _ci(interval) -> str:
    low, high = interval
    return "(n/a)" if low is None or high is None else f"({low:.3f} to {high:.3f})"


# ------------------------------------------------------------------------------------------------ main


def _load_results(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {}


def _write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=1, default=_jsonable) + "\n")
    temporary.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bases", default="mobilenetv2", help="comma-separated: " + ", ".join(BASES))
    parser.add_argument("--variants", default="all",
                        help="comma-separated names, 'all', 'whole' (no lungs) or 'lungs': " + ", ".join(VARIANTS))
    parser.add_argument("--experiments", default="a,b1,b2,c,d", help="comma-separated subset of a, b1, b2, c, d")
    parser.add_argument("--quick", action="store_true",
                        help="a small draw of every pool (smoke test); writes to the cache folder, not the results")
    parser.add_argument("--sites", type=int, default=5, help="b2 folds: the largest N ieee8023 COVID-19 sites")
    parser.add_argument("--bimcv", type=int, default=600,
                        help="BIMCV images drawn (seeded) for multi-source training; 0 for all 1,652")
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--table", action="store_true", help="print the markdown tables of the results and exit")
    arguments = parser.parse_args()
    output = arguments.output or (CACHE / "recipes_quick.json" if arguments.quick else RESULTS)
    if arguments.table:
        print_tables(_load_results(output))
        print_normals_table(_load_results(output))
        return
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bases = [b.strip() for b in arguments.bases.split(",") if b.strip()]
    if arguments.variants == "all":
        names = list(VARIANTS)
    elif arguments.variants == "whole":
        names = [n for n, v in VARIANTS.items() if v.lungs is None]
    elif arguments.variants == "lungs":
        names = [n for n, v in VARIANTS.items() if v.lungs is not None]
    else:
        names = [n.strip() for n in arguments.variants.split(",") if n.strip()]
    unknown = sorted(set(names) - set(VARIANTS)) + sorted(set(bases) - set(BASES))
    if unknown:
        raise SystemExit(f"unknown variants or bases {unknown}; expected some of {sorted(VARIANTS)} / {sorted(BASES)}")
    wanted_experiments = {e.strip() for e in arguments.experiments.split(",") if e.strip()}
    command = "python benchmarks/bench_recipes.py " + " ".join(sys.argv[1:])
    started = time.perf_counter()
    data = load_data(arguments.quick, arguments.bimcv or None)
    experiments, sites = build_experiments(data, 2 if arguments.quick else arguments.sites)
    results = _load_results(output)
    results.update({
        "what": ("training recipes on real X-rays, on hospitals and sources the model never saw "
                 "(benchmarks/bench_recipes.py)"),
        "machine": machine(), "image_size": SIZE, "seed": SEED, "quick": arguments.quick,
        "bimcv_drawn": arguments.bimcv or "all", "data": data.info, "b2_sites": sites,
        "experiments": {name: {"described": e.described, "n_test": len(e.test), "n_held_out": len(e.held_out),
                               "test_counts": _counts([data.records[p] for p in e.test]),
                               "train_counts": {"ieee8023+nih" if name != "c" else "soares2020":
                                                _counts([data.records[p] for p in e.training(data, False)]),
                                                **({"multisource": _counts([data.records[p] for p in
                                                                           e.training(data, True)])}
                                                   if e.extras else {})},
                               "validation_counts": _counts([data.records[p] for p in e.validation_set(data)]),
                               "dropped_for_leaks": dict(e.dropped)}
                        for name, e in experiments.items()},
    })
    results.setdefault("results", {})
    results.setdefault("features", {})
    segmenter = lung_segmenter_sha()
    results["lung_segmenter_sha256"] = segmenter
    stores: dict = {}
    for base in bases:
        for name in names:
            variant = VARIANTS[name]
            if variant.kind != "linear" and base not in KERAS_BASES:
                log(f"skip {base} {name}: the Keras-head variants are measured on {KERAS_BASES} only")
                continue
            if variant.lungs is not None and segmenter is None:
                log(f"skip {base} {name}: the lung segmenter weights (src/cxrclassify/segmentation/weights) are absent")
                results["results"].setdefault(base, {})[name] = {"skipped": "lung segmenter weights absent"}
                continue
            if (base, variant.lungs) not in stores:
                stores[(base, variant.lungs)] = FeatureStore(base, variant.lungs)
            wanted = [e for e in experiments if e.split("-")[0] in wanted_experiments and e.split("-")[0]
                      in variant.experiments]
            log(f"{base} {name}: {variant.described}")
            with Timer() as timer:
                if variant.kind == "linear":
                    outcome = run_linear(variant, base, data, experiments, stores, wanted)
                else:
                    outcome = run_keras(variant, base, data, experiments, stores, wanted, arguments.finetune_epochs)
            entry = results["results"].setdefault(base, {}).setdefault(name, {})
            entry.setdefault("experiments", {}).update(outcome)
            entry.update({"described": variant.described, "base": BASES[base]["described"], "lungs": variant.lungs,
                          "multisource": variant.multisource, "site_balanced": variant.site_balanced,
                          "kind": variant.kind, "wall_seconds": round(timer.seconds, 1), "command": command})
            for (store_base, lungs), store in stores.items():
                results["features"].setdefault(store_base, {})[str(lungs)] = {
                    "cached_images": len(store.features), "computed_this_run": store.computed,
                    "seconds_this_run": round(store.seconds, 1), "file": str(store.file)}
            results["total_wall_seconds_last_run"] = round(time.perf_counter() - started, 1)
            _write(output, results)
    log(f"done in {time.perf_counter() - started:.0f} s; results in {output}")


# ---------------------------------------------------------------------------------------------- tables


def _pct(p: dict | None) -> str:
    if not p or p.get("value") is None:
        return "n/a"
    low, high = p["ci"]
    return f"{p['value']:.1%} ({low:.1%} to {high:.1%}; {p['n']}/{p['of']})"


def _f1(result: dict) -> str:
    return f"{result['macro_f1']:.3f} {_ci(result['macro_f1_ci'])}"


def _acc(result: dict) -> str:
    low, high = result["accuracy_ci"]
    return f"{result['accuracy']:.1%} ({low:.1%} to {high:.1%})"


def _recall(result: dict, key: str) -> str:
    low, high = result[f"{key}_ci"]
    return f"{result[key]:.1%} ({low:.1%} to {high:.1%})"


def print_tables(results: dict[str, Any]) -> None:
    for base, variants in results.get("results", {}).items():
        print(f"\n### {BASES[base]['described']}\n")
        print("| variant | (a) accuracy | (a) macro F1 | (a) OOD flagged | (c) accuracy | (c) macro F1 |")
        print("|---|---|---|---|---|---|")
        for name, entry in variants.items():
            experiments = entry.get("experiments", {})
            a, c = experiments.get("a"), experiments.get("c")
            print(f"| `{name}` | {_acc(a) if a else ''} | {_f1(a) if a else ''} | "
                  f"{_pct(a['ood']['test']) if a and 'ood' in a else ''} | {_acc(c) if c else ''} | "
                  f"{_f1(c) if c else ''} |")
        print("\n| variant | (b1) CXNet COVID-19 recall | (b1) control specificity | (b1) macro F1 | (b1) CXNet OOD "
              "flagged | (b2 pooled) site COVID-19 recall | (b2 pooled) macro F1 | (b2) site images OOD flagged |")
        print("|---|---|---|---|---|---|---|---|")
        for name, entry in variants.items():
            experiments = entry.get("experiments", {})
            b1, b2 = experiments.get("b1"), experiments.get("b2-pooled")
            cells = ["", "", "", "", "", "", ""]
            if b1:
                cells[:4] = [_pct(b1["held_out_covid19_recall"]), _pct(b1["controls_specificity"]), _f1(b1),
                             _pct(b1["ood"]["held_out"]) if "ood" in b1 else ""]
            if b2:
                cells[4:] = [_pct(b2["held_out_covid19_recall"]), _f1(b2), _pct(b2["ood"]["held_out"])]
            if any(cells):
                print(f"| `{name}` | " + " | ".join(cells) + " |")
        print("\n| variant | " + " | ".join(f"(b2) {s}: COVID-19 recall / macro F1" for s in results.get("b2_sites", []))
              + " |")
        print("|---|" + "---|" * len(results.get("b2_sites", [])))
        for name, entry in variants.items():
            experiments = entry.get("experiments", {})
            cells = []
            for site in results.get("b2_sites", []):
                fold = experiments.get(f"b2-{site}")
                cells.append(f"{_pct(fold['held_out_covid19_recall'])} / {_f1(fold)}" if fold else "")
            if any(cells):
                print(f"| `{name}` | " + " | ".join(cells) + " |")


def print_normals_table(results: dict[str, Any]) -> None:
    """(d): an unseen hospital's normal X-rays, right or flagged, per OOD method."""
    for base, variants in results.get("results", {}).items():
        print(f"\n#### (d) {BASES[base]['described']}: unseen hospitals' normals, right / right or flagged "
              "(Mahalanobis, kNN k=1)\n")
        print("| variant | d-kermany (a model) | d-ieee8023 (a model) | d-nih (c model) |")
        print("|---|---|---|---|")
        for name, entry in variants.items():
            experiments = entry.get("experiments", {})
            cells = []
            for test in ("d-kermany", "d-ieee8023", "d-nih"):
                found = experiments.get(test)
                if not found:
                    cells.append("")
                    continue
                flagged = found["right_or_flagged"]
                cell = f"{_pct(found['right'])} / {_short(flagged['mahalanobis'])}"
                if "knn1" in flagged:
                    cell += f", kNN {_short(flagged['knn1'])}"
                cells.append(cell + f"; called COVID-19 {found['called']['covid19']['value']:.0%}")
            if any(cells):
                print(f"| `{name}` | " + " | ".join(cells) + " |")
        print(f"\n#### OOD methods, {BASES[base]['described']}: held-out images flagged / other test images "
              "flagged, AUROC held-out against the rest\n")
        print("| variant | experiment | " + " | ".join(OOD_METHODS) + " |")
        print("|---|---|" + "---|" * len(OOD_METHODS))
        for name, entry in variants.items():
            for test, found in entry.get("experiments", {}).items():
                methods = found.get("ood", {}).get("methods", {})
                if not test.startswith("b") or test == "b2-pooled" or not methods:
                    continue
                cells = [f"{_short(methods[m]['held_out'])} / {_short(methods[m]['other_test'])}, "
                         f"{methods[m]['auroc_held_out_vs_other']:.2f}" if m in methods else "" for m in OOD_METHODS]
                print(f"| `{name}` | {test} | " + " | ".join(cells) + " |")


def _short(p: dict | None) -> str:
    if not p or p.get("value") is None:
        return "n/a"
    return f"{p['value']:.0%} ({p['n']}/{p['of']})"


if __name__ == "__main__":
    main()
