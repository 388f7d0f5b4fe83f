"""Reproduce Soares & Soares (2020) end to end and write the report (HTML and Markdown).

Calls ``cxrclassify.report.reproduce``: builds the paper's ``soares2020``
composite (175 COVID-19 X-rays from ieee8023, 100 normal and 100 pneumonia
X-rays from Kermany's pediatric set), splits it by patient, trains VGG-16,
ResNet50 and Xception with the paper's settings on the same split, evaluates
each on the same test images, and writes ``report.html``, ``report.md``,
``metrics.json``, ``split_manifest.csv`` and ``figures/<arch>/`` to the output
folder.

Run it once cxrclassify is installed::

    python examples/reproduce_paper.py --out paper-run               # fetches the data (Kermany: about 1.2 GB)
    python examples/reproduce_paper.py --out paper-run --mirror /data/cxr-mirror --no-verify
    python examples/reproduce_paper.py --quick                        # a smoke run on a tiny mirror, offline

``--quick`` trains only VGG-16, from random weights, at 32 px for 2 epochs on
16 COVID-19, 8 normal and 8 pneumonia images. Without ``--mirror`` it first
builds a tiny mirror from the X-rays bundled with cxrclassify (their ieee8023
and Kermany images, under the layout of the real sources: a ``metadata.csv``
and ``images/`` for ieee8023, a ``ChestXRay2017.zip`` for Kermany) in a
temporary folder, and keeps the files it fetches from it in ``OUT/cache``
rather than in your cache folder. It checks that everything runs, nothing more.

Without ``--out`` the results go to a new temporary folder, printed at the end.
A score on this composite is no evidence of clinical performance (its classes
differ by age and hospital as well as disease); cxrclassify is not a
diagnostic device.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from cxrclassify.datasets import sample_records
from cxrclassify.report import reproduce

#: Columns of the tiny mirror's ieee8023 ``metadata.csv`` (a subset of the real file's).
METADATA_COLUMNS = ["patientid", "offset", "sex", "age", "finding", "view", "modality", "folder", "filename"]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: vgg16 only, random weights, 32 px, 2 epochs, 16/8/8 images, on a tiny "
                             "mirror made from the bundled sample unless --mirror is given")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--mirror", default=None,
                        help="base URL or folder laid out like the upstream sources (see the Datasets docs)")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not verify checksums (a mirror of modified, e.g. downscaled, files)")
    parser.add_argument("--data-home", type=Path, default=None, help="cache folder (default: cxrclassify's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw, the split and the training")
    return parser.parse_args()


def build_tiny_mirror(root: Path) -> Path:
    """Lay out the bundled sample's ieee8023 and Kermany X-rays as a mirror of the two sources under ``root``.

    ``root/ieee8023-covid-chestxray/metadata.csv`` and ``images/<file>`` hold
    the sample's COVID-19 X-rays; ``root/kermany-pediatric-cxr/ChestXRay2017.zip``
    holds its Kermany X-rays under ``chest_xray/train/{NORMAL,PNEUMONIA}/`` with
    their original names (the patient and the pneumonia subtype are read from them).
    """
    records = sample_records()
    ieee8023 = root / "ieee8023-covid-chestxray"
    (ieee8023 / "images").mkdir(parents=True)
    with open(ieee8023 / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        for record in records:
            if record.source != "ieee8023" or record.label != "covid19":
                continue
            name = Path(record.path).name
            shutil.copyfile(record.path, ieee8023 / "images" / name)
            writer.writerow({
                "patientid": record.group.split(":", 1)[1], "offset": "", "sex": record.sex or "",
                "age": "" if record.age is None else f"{record.age:g}", "finding": "COVID-19",
                "view": record.view or "PA", "modality": "X-ray", "folder": "images", "filename": name,
            })
    kermany = root / "kermany-pediatric-cxr"
    kermany.mkdir(parents=True)
    with zipfile.ZipFile(kermany / "ChestXRay2017.zip", "w") as archive:
        for record in records:
            if record.source == "kermany":
                archive.write(record.path, f"chest_xray/train/{record.label.upper()}/{Path(record.path).name}")
    return root


def main() -> int:
    arguments = parse_arguments()
    out = arguments.out or Path(tempfile.mkdtemp(prefix="cxrclassify-reproduce-"))
    out.mkdir(parents=True, exist_ok=True)
    mirror, verify, data_home = arguments.mirror, not arguments.no_verify, arguments.data_home
    options = {}
    if arguments.quick:
        options = dict(archs=["vgg16"], weights=None, epochs=2, image_size=32, progress=False,
                       counts={"n_covid19": 16, "n_normal": 8, "n_pneumonia": 8})  # all the tiny mirror holds

    with tempfile.TemporaryDirectory(prefix="cxrclassify-tiny-mirror-") as folder:
        if arguments.quick and mirror is None:
            # The tiny mirror's files are not the originals: they cannot verify, and they must not end up in
            # the cache a real run uses (a tiny ChestXRay2017.zip there would be taken for the real one).
            mirror, verify = build_tiny_mirror(Path(folder)), False
            data_home = data_home or out / "cache"
            print(f"built a tiny mirror of the two sources from the bundled sample in {mirror}")
        report = reproduce(out, mirror=mirror, verify=verify, data_home=data_home, seed=arguments.seed, **options)

    figures = sorted(path.relative_to(out).as_posix() for path in (out / "figures").rglob("*.png"))
    print(f"wrote {report.name}, {report.with_suffix('.md').name}, metrics.json, split_manifest.csv and "
          f"{len(figures)} PNG figures ({', '.join(figures)}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
