#!/usr/bin/env python3
"""Build the small chest X-ray sample shipped inside the ``cxrclassify`` package.

The sample is 48 real chest X-rays (16 per class: ``covid19``, ``normal``,
``pneumonia``) drawn deterministically from the local copy of three public
collections (see ``<shared>/README.md``):

* ``ieee8023-covid-chestxray/``: COVID-19 frontal X-rays whose per-image
  ``license`` is permissive (CC BY / CC BY-SA without NC or ND, Apache 2.0, CC0);
* ``kermany-pediatric-cxr/ChestXRay2017.zip``: pediatric NORMAL and PNEUMONIA
  (bacterial and viral) images, CC BY 4.0, read from inside the zip;
* ``nih-chestxray14/``: adult ``No Finding`` and ``Pneumonia`` images.

Each image is downscaled so that its longer side is at most 320 px (LANCZOS),
keeping its file name, file format (JPEG at quality 90, PNG) and pixel mode.
Resizing is the only modification.  One image per patient, and no patient
appears twice in the whole sample.  Selection: candidates sorted, then a seeded
``random.Random``; where the covid19 and Kermany-bacterial draws held only
grayscale images, the last pick is swapped for the first (sorted) RGB image of
the pool, so that the sample holds more than one pixel mode.

Outputs (under ``--out``, default ``src/cxrclassify/sample``)::

    images/<class>/<file>   (``images/`` is deleted and recreated on every run)
    manifest.csv            path,label,patient,source,license,attribution,age,sex,view
    ATTRIBUTION.md

Usage::

    python tools/make_sample.py [--shared PATH] [--out PATH]

Only the Python standard library and Pillow are used; no network access.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import re
import shutil
import sys
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "src" / "cxrclassify" / "sample"

SEED = 2020
MAX_SIDE = 320
JPEG_QUALITY = 90
MAX_TOTAL_BYTES = 2_500_000

CLASSES = ("covid19", "normal", "pneumonia")
PER_CLASS = 16

IEEE_DIR = "ieee8023-covid-chestxray"
KERMANY_ZIP = "kermany-pediatric-cxr/ChestXRay2017.zip"
NIH_DIR = "nih-chestxray14"

FRONTAL_VIEWS = {"PA", "AP", "AP Supine"}

KERMANY_LICENSE = "CC BY 4.0"
KERMANY_ATTRIBUTION = (
    "Kermany, Zhang & Goldbaum (2018), Mendeley Data, doi:10.17632/rscbjbr9sj.2"
)
NIH_LICENSE = "NIH ChestX-ray14: unrestricted use, citation requested"
NIH_ATTRIBUTION = "Wang et al., ChestX-ray8, CVPR 2017; NIH Clinical Center"

MANIFEST_COLUMNS = (
    "path", "label", "patient", "source", "license", "attribution", "age", "sex", "view",
)


@dataclass
class Item:
    """One candidate image and the manifest fields it will get."""

    label: str
    source: str
    patient: str  # prefixed by source, e.g. "nih:00000061"
    filename: str  # base name kept in the sample
    license: str
    attribution: str
    age: str = ""
    sex: str = ""
    view: str = ""
    # how to read the original bytes: a file path, or (zip path, member name)
    file: Path | None = None
    zip_member: tuple[Path, str] | None = None
    extra: dict = field(default_factory=dict)

    def read_bytes(self) -> bytes:
        if self.file is not None:
            return self.file.read_bytes()
        assert self.zip_member is not None
        zpath, member = self.zip_member
        with zipfile.ZipFile(zpath) as zf:
            return zf.read(member)

    def mode(self) -> str:
        with Image.open(io.BytesIO(self.read_bytes())) as im:
            return im.mode


# --------------------------------------------------------------------------- helpers


def read_text(path: Path) -> str:
    """Decode a CSV that may not be UTF-8 (ieee8023 metadata)."""
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes everything")


def is_permissive(license_text: str) -> bool:
    """CC BY / CC BY-SA (any version) without NC or ND, Apache 2.0, or CC0."""
    lic = license_text.strip()
    upper = lic.upper()
    if upper.startswith("CC BY"):
        # NonCommercial / NoDerivatives: "CC BY-NC-SA 4.0", "CC BY-NC-ND", ...
        return "NC" not in upper and "ND" not in upper
    if upper.startswith("APACHE") and "2.0" in upper:
        return True
    if upper in {"CC0", "CC0 1.0", "CC-0", "PUBLIC DOMAIN (CC0)"} or upper.startswith("CC0"):
        return True
    return False


def pick_patients(
    by_patient: dict[str, list[Item]], k: int, rng: random.Random, exclude: set[str]
) -> list[Item]:
    """Sample k distinct patients (sorted, then seeded), one image each."""
    patients = sorted(p for p in by_patient if p not in exclude)
    if len(patients) < k:
        raise SystemExit(f"only {len(patients)} eligible patients, need {k}")
    chosen = rng.sample(patients, k)
    picked = []
    for p in chosen:
        images = sorted(by_patient[p], key=lambda it: it.filename)
        picked.append(rng.choice(images))
    return picked


def ensure_mode_variety(
    picked: list[Item], by_patient: dict[str, list[Item]], exclude: set[str]
) -> list[Item]:
    """If every picked image is grayscale ("L") but the pool holds another mode,
    swap the last pick for the first (sorted) image of another mode, so that the
    sample exercises more than one decoding path.  Deterministic."""
    if any(it.mode() != "L" for it in picked):
        return picked
    used = {it.patient for it in picked} | exclude
    for p in sorted(by_patient):
        if p in used:
            continue
        for it in sorted(by_patient[p], key=lambda it: it.filename):
            if it.mode() != "L":
                return picked[:-1] + [it]
    return picked


def group(items: list[Item]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        out[it.patient].append(it)
    return out


# --------------------------------------------------------------------------- sources


def ieee8023_candidates(shared: Path) -> list[Item]:
    """Frontal COVID-19 X-rays with a permissive license and an image on disk."""
    base = shared / IEEE_DIR
    rows = csv.DictReader(io.StringIO(read_text(base / "metadata.csv")))
    items = []
    for r in rows:
        if r["finding"].strip() != "COVID-19":
            continue
        if r["modality"].strip() != "X-ray" or r["view"].strip() not in FRONTAL_VIEWS:
            continue
        if not is_permissive(r["license"]):
            continue
        path = base / r["folder"].strip() / r["filename"].strip()
        if not path.is_file():
            path = base / "images" / r["filename"].strip()
        if not path.is_file():
            continue
        doi = r["doi"].strip()
        if doi and not doi.lower().startswith(("doi:", "http")):
            doi = "doi:" + doi
        attribution = "; ".join(x for x in (doi, r["url"].strip()) if x)
        items.append(
            Item(
                label="covid19",
                source="ieee8023",
                patient=f"ieee8023:{r['patientid'].strip()}",
                filename=Path(r["filename"].strip()).name,
                license=r["license"].strip(),
                attribution=attribution,
                age=r["age"].strip(),
                sex=r["sex"].strip(),
                view=r["view"].strip(),
                file=path,
            )
        )
    return items


def kermany_candidates(shared: Path, klass: str) -> list[Item]:
    """Images of chest_xray/train/<NORMAL|PNEUMONIA>/ inside the zip (not extracted)."""
    zpath = shared / KERMANY_ZIP
    prefix = f"chest_xray/train/{klass}/"
    with zipfile.ZipFile(zpath) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/"))
    items = []
    for name in names:
        base = name[len(prefix):]
        stem = Path(base).stem
        if klass == "NORMAL":
            m = re.fullmatch(r"((?:NORMAL2-)?IM-\d+)-\d+", stem)
            if not m:
                continue
            patient, kind = m.group(1), "normal"
        else:
            m = re.fullmatch(r"(person\d+)_(bacteria|virus)_\d+", stem)
            if not m:
                continue
            patient, kind = m.group(1), m.group(2)
        items.append(
            Item(
                label="normal" if klass == "NORMAL" else "pneumonia",
                source="kermany",
                patient=f"kermany:{patient}",
                filename=base,
                license=KERMANY_LICENSE,
                attribution=KERMANY_ATTRIBUTION,
                age="1-5",
                zip_member=(zpath, name),
                extra={"kind": kind},
            )
        )
    return items


def nih_candidates(shared: Path) -> tuple[list[Item], list[Item], list[Item]]:
    """(No Finding, Pneumonia alone, Pneumonia among other findings), images on disk."""
    base = shared / NIH_DIR
    rows = csv.DictReader(io.StringIO(read_text(base / "Data_Entry_2017_v2020.csv")))
    normal, pneu_alone, pneu_other = [], [], []
    for r in rows:
        path = base / "images" / r["Image Index"].strip()
        if not path.is_file():
            continue
        labels = [x.strip() for x in r["Finding Labels"].split("|")]
        it = Item(
            label="",
            source="nih",
            patient=f"nih:{int(r['Patient ID']):08d}",
            filename=path.name,
            license=NIH_LICENSE,
            attribution=NIH_ATTRIBUTION,
            age=r["Patient Age"].strip(),
            sex=r["Patient Gender"].strip(),
            view=r["View Position"].strip(),
            file=path,
        )
        if r["Finding Labels"].strip() == "No Finding":
            it.label = "normal"
            normal.append(it)
        elif labels == ["Pneumonia"]:
            it.label = "pneumonia"
            pneu_alone.append(it)
        elif "Pneumonia" in labels:
            it.label = "pneumonia"
            pneu_other.append(it)
    return normal, pneu_alone, pneu_other


# --------------------------------------------------------------------------- selection


def select(shared: Path) -> list[Item]:
    """Deterministic selection of 16 images per class, one per patient."""
    used: set[str] = set()
    selected: list[Item] = []

    def take(pool: list[Item], k: int, tag: str, variety: bool = False) -> list[Item]:
        rng = random.Random(f"{SEED}:{tag}")
        by_patient = group(pool)
        picked = pick_patients(by_patient, k, rng, used)
        if variety:
            picked = ensure_mode_variety(picked, by_patient, used)
        used.update(it.patient for it in picked)
        selected.extend(picked)
        return picked

    # covid19: 16 ieee8023 patients
    take(ieee8023_candidates(shared), PER_CLASS, "covid19/ieee8023", variety=True)

    # normal: 8 Kermany + 8 NIH "No Finding"
    take(kermany_candidates(shared, "NORMAL"), PER_CLASS // 2, "normal/kermany")
    nih_normal, nih_pneu_alone, nih_pneu_other = nih_candidates(shared)
    take(nih_normal, PER_CLASS // 2, "normal/nih")

    # pneumonia: 4 Kermany bacterial + 4 Kermany viral + 8 NIH
    k_pneu = kermany_candidates(shared, "PNEUMONIA")
    bact = [it for it in k_pneu if it.extra["kind"] == "bacteria"]
    virus = [it for it in k_pneu if it.extra["kind"] == "virus"]
    take(bact, PER_CLASS // 4, "pneumonia/kermany/bacteria", variety=True)
    take(virus, PER_CLASS // 4, "pneumonia/kermany/virus")
    alone_patients = {it.patient for it in nih_pneu_alone} - used
    if len(alone_patients) >= PER_CLASS // 2:
        take(nih_pneu_alone, PER_CLASS // 2, "pneumonia/nih")
    else:  # fall back to Pneumonia among other findings
        take(nih_pneu_alone + nih_pneu_other, PER_CLASS // 2, "pneumonia/nih")

    return selected


# --------------------------------------------------------------------------- writing


def resize_keep(im: Image.Image) -> Image.Image:
    """Longer side at most MAX_SIDE, aspect ratio and mode kept."""
    w, h = im.size
    scale = MAX_SIDE / max(w, h)
    if scale >= 1:
        return im.copy()
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.NEAREST if im.mode in ("1", "P") else Image.LANCZOS
    return im.resize(size, resample)


def write_images(items: list[Item], out: Path) -> None:
    """Delete and recreate out/images, then write every selected image."""
    images_dir = out / "images"
    if images_dir.exists():
        shutil.rmtree(images_dir)
    for klass in CLASSES:
        (images_dir / klass).mkdir(parents=True)
    for it in items:
        dest = images_dir / it.label / it.filename
        if dest.exists():
            raise SystemExit(f"file name collision: {dest}")
        with Image.open(io.BytesIO(it.read_bytes())) as src:
            fmt = src.format
            src.load()
            small = resize_keep(src)
        if fmt == "JPEG":
            small.save(dest, "JPEG", quality=JPEG_QUALITY, optimize=True)
        elif fmt == "PNG":
            small.save(dest, "PNG", optimize=True)
        else:
            raise SystemExit(f"unexpected format {fmt} for {it.filename}")


def write_manifest(items: list[Item], out: Path) -> None:
    rows = sorted(items, key=lambda it: (it.label, it.source, it.filename))
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(MANIFEST_COLUMNS)
        for it in rows:
            w.writerow([
                f"images/{it.label}/{it.filename}", it.label, it.patient, it.source,
                it.license, it.attribution, it.age, it.sex, it.view,
            ])


def write_attribution(items: list[Item], out: Path) -> None:
    per = Counter((it.label, it.source) for it in items)
    ieee_lic = Counter(it.license for it in items if it.source == "ieee8023")
    table = "\n".join(
        f"| {label} | {source} | {n} |" for (label, source), n in sorted(per.items())
    )
    lic_list = ", ".join(f"{lic} ({n})" for lic, n in sorted(ieee_lic.items()))
    text = f"""# cxrclassify sample images: attribution

This folder holds {len(items)} real chest X-rays ({PER_CLASS} per class: `covid19`, `normal`,
`pneumonia`), downscaled so that the longer side is at most {MAX_SIDE} px, for the cxrclassify
demo, documentation and tests. **They are not for clinical use**, and a model trained or tested
on them says nothing about clinical performance.

| class | source | images |
|---|---|---|
{table}

Every image's source, patient, license and attribution are listed in `manifest.csv`
(columns `path,label,patient,source,license,attribution,age,sex,view`). One image per patient;
no patient appears twice.

## Sources and licenses

- **ieee8023 COVID-19 image data collection** (class `covid19`): Joseph Paul Cohen, Paul Morrison,
  Lan Dao, Karsten Roth, Tim Q. Duong, Marzyeh Ghassemi, "COVID-19 image data collection:
  Prospective predictions are the future", arXiv:2006.11988 (2020); and J. P. Cohen, P. Morrison,
  L. Dao, "COVID-19 image data collection", arXiv:2003.11597 (2020);
  https://github.com/ieee8023/covid-chestxray-dataset. Licenses are per image (the collection's
  `license` column); only frontal COVID-19 X-rays under a permissive license (CC BY / CC BY-SA
  without NC or ND, Apache 2.0, CC0) were taken. Licenses here: {lic_list}. The original
  publication of each image (doi and url) is in the `attribution` column of `manifest.csv`.
- **Kermany pediatric chest X-rays** (classes `normal`, `pneumonia`): Daniel Kermany, Kang Zhang,
  Michael Goldbaum, "Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for
  Classification", Mendeley Data, v2 (2018), doi:10.17632/rscbjbr9sj.2; see also Kermany et al.,
  Cell 172(5):1122-1131 (2018). License: CC BY 4.0. Images from `chest_xray/train/`.
- **NIH ChestX-ray14** (classes `normal`, `pneumonia`): Xiaosong Wang, Yifan Peng, Le Lu, Zhiyong
  Lu, Mohammadhadi Bagheri, Ronald M. Summers, "ChestX-ray8: Hospital-scale Chest X-ray Database
  and Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax Diseases",
  IEEE CVPR 2017; NIH Clinical Center, https://nihcc.app.box.com/v/ChestXray-NIHCC. Released for
  unrestricted use; the NIH Clinical Center asks that the dataset and paper be cited. Labels
  (`No Finding`, `Pneumonia`) were text-mined from radiology reports (about 90% accurate).

## Modifications

The only modification is resizing: each image was downscaled (Pillow, LANCZOS) so that its longer
side is at most {MAX_SIDE} px. File names, file formats (JPEG re-encoded at quality {JPEG_QUALITY},
PNG) and pixel modes (grayscale or RGB) were kept; no cropping, no contrast change.

## How it was made

    python tools/make_sample.py

The script selects images deterministically (candidates sorted, then a fixed random seed,
{SEED}) from local copies of the three sources and rewrites `images/`, `manifest.csv` and this
file. Where a seeded draw held only grayscale images, its last pick was swapped for the first
(sorted) RGB image of the same pool, so that the sample exercises more than one pixel mode.

## Caveat

The sources differ in more than the disease: ieee8023 and NIH are adults from many hospitals (many
ieee8023 images are figures cut from papers), Kermany are children aged 1 to 5 from one hospital in
Guangzhou. A classifier can learn the source (age, hospital, scanner, image processing) instead of
the disease (DeGrave et al., Nature Machine Intelligence 3:610-619, 2021). The adult NIH normal and
pneumonia images are included as a counterweight, but 48 images cannot show that a model works.
"""
    (out / "ATTRIBUTION.md").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- verification


def verify(out: Path) -> int:
    """Re-read the sample: counts, decodability, manifest vs files, patients, size."""
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == MANIFEST_COLUMNS, reader.fieldnames
        rows = list(reader)
    files = sorted(
        p.relative_to(out).as_posix() for p in (out / "images").rglob("*") if p.is_file()
    )
    assert sorted(r["path"] for r in rows) == files, "manifest rows do not match files"
    assert len(files) == len(CLASSES) * PER_CLASS, len(files)
    per_class = Counter(r["label"] for r in rows)
    assert per_class == {c: PER_CLASS for c in CLASSES}, per_class
    patients = Counter(r["patient"] for r in rows)
    dup = [p for p, n in patients.items() if n > 1]
    assert not dup, f"patients repeated: {dup}"
    for r in rows:
        assert r["path"].split("/")[1] == r["label"]
        assert r["source"] in {"ieee8023", "kermany", "nih"}
        assert r["patient"].startswith(r["source"] + ":")
        if r["source"] == "ieee8023":
            assert is_permissive(r["license"]), r

    modes: Counter = Counter()
    for r in rows:
        with Image.open(out / r["path"]) as im:
            im.load()
            assert max(im.size) <= MAX_SIDE, (r["path"], im.size)
            modes[(r["label"], r["source"], im.format, im.mode)] += 1
    print("format/mode per class and source:")
    for key, n in sorted(modes.items()):
        print("  ", *key, n)
    sizes = []
    for r in rows:
        with Image.open(out / r["path"]) as im:
            sizes.append(im.size)
    longer, shorter = [max(s) for s in sizes], [min(s) for s in sizes]
    print(f"image sizes: longer side {min(longer)}-{max(longer)} px, "
          f"shorter side {min(shorter)}-{max(shorter)} px")
    print(f"images per class: {dict(sorted(per_class.items()))}; "
          f"sources: {dict(sorted(Counter(r['source'] for r in rows).items()))}")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"total size of {out}: {total} bytes ({total / 1e6:.2f} MB)")
    assert total < MAX_TOTAL_BYTES, f"sample too large: {total} bytes"
    return total


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                    help=f"folder holding the three sources (default: {DEFAULT_SHARED})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"sample folder to (re)write (default: {DEFAULT_OUT})")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shared, out = args.shared.resolve(), args.out.resolve()
    for sub in (IEEE_DIR, KERMANY_ZIP, NIH_DIR):
        if not (shared / sub).exists():
            raise SystemExit(f"missing {shared / sub}")
    out.mkdir(parents=True, exist_ok=True)
    items = select(shared)
    write_images(items, out)
    write_manifest(items, out)
    write_attribution(items, out)
    verify(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
