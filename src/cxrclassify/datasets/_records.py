"""Sample records, decoded splits and split manifests.

A :class:`Sample` keeps an image's path next to its label, its patient (the
group key) and its source from the first line of code, so that every split and
every metric can be traced and broken down by source.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..exceptions import DataError

__all__ = ["Sample", "ImageSet", "DatasetSplits", "as_samples", "parse_age", "write_manifest", "read_manifest"]

MANIFEST_COLUMNS = ("path", "label", "patient", "source", "split", "age", "sex", "view")


@dataclass(frozen=True)
class Sample:
    """One image: where it is, what it shows, whose it is and where it came from.

    Parameters
    ----------
    path : str
        Path of the image file.
    label : str
        Class name.
    group : str or None
        Group key, normally the patient: no group is ever in two splits.
        ``None`` makes the image its own group.
    source : str or None
        The collection the image came from (``"ieee8023"``, ``"kermany"``, a
        hospital's name...), so that metrics can be broken down by source.
    age : float or None
        Patient age in years, where the source records it.
    sex : str or None
        Patient sex as the source records it (``"M"``, ``"F"``).
    view : str or None
        Projection (``"PA"``, ``"AP"``, ``"AP Supine"``...), where recorded.

    Examples
    --------
    >>> from cxrclassify.datasets import Sample
    >>> Sample("xrays/covid/p1.png", "covid19", group="p1", source="hospital-a").label
    'covid19'
    """

    path: str
    label: str
    group: str | None = None
    source: str | None = None
    age: float | None = None
    sex: str | None = None
    view: str | None = None


def parse_age(value: object) -> float | None:
    """An age in years from a metadata field; ``None`` when blank or not a number (``"1-5"``).

    Examples
    --------
    >>> from cxrclassify.datasets import parse_age
    >>> parse_age("65"), parse_age(""), parse_age("1-5")
    (65.0, None, None)
    """
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def as_samples(records: Iterable[object]) -> list[Sample]:
    """Turn ``Sample`` objects or ``(path, label[, group[, source]])`` tuples into samples.

    Examples
    --------
    >>> from cxrclassify.datasets import as_samples
    >>> as_samples([("a.png", "normal", "p1")])[0].group
    'p1'
    """
    samples = []
    for position, record in enumerate(records):
        if isinstance(record, Sample):
            samples.append(record)
            continue
        if isinstance(record, (str, bytes, os.PathLike)) or not isinstance(record, Sequence):
            message = (
                "Expected each record to be a Sample or a (path, label[, group[, source]]) tuple. "
                f"Received: record {position} = {record!r}"
            )
            raise DataError(message)
        if not 2 <= len(record) <= 4:
            message = (
                "Expected each record to have 2 to 4 fields: (path, label[, group[, source]]). "
                f"Received: record {position} = {tuple(record)!r}"
            )
            raise DataError(message)
        path, label, *rest = record
        group = rest[0] if len(rest) > 0 else None
        source = rest[1] if len(rest) > 1 else None
        samples.append(
            Sample(
                path=os.fspath(path),
                label=str(label),
                group=None if group is None else str(group),
                source=None if source is None else str(source),
            )
        )
    return samples


@dataclass
class ImageSet:
    """One split: decoded images, integer labels and the records they came from.

    Attributes
    ----------
    images : numpy.ndarray
        ``(N, H, W, 3)`` ``uint8`` RGB images, already resized.
    labels : numpy.ndarray
        ``(N,)`` integer class indices into ``class_names``.
    records : list of Sample
        The record of each image, in the same order.
    class_names : list of str
        Class names, index ``i`` naming label ``i``.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets import ImageSet, Sample
    >>> split = ImageSet(np.zeros((1, 8, 8, 3), np.uint8), np.array([0]),
    ...                  [Sample("a.png", "normal")], ["normal", "covid19"])
    >>> len(split), split.one_hot().tolist()
    (1, [[1.0, 0.0]])
    """

    images: np.ndarray
    labels: np.ndarray
    records: list[Sample]
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def sources(self) -> list[str | None]:
        """The source of each image, in order."""
        return [record.source for record in self.records]

    @property
    def groups(self) -> list[str | None]:
        """The group (patient) of each image, in order."""
        return [record.group for record in self.records]

    @property
    def paths(self) -> list[str]:
        """The file path of each image, in order."""
        return [record.path for record in self.records]

    def one_hot(self) -> np.ndarray:
        """Labels as a ``(N, num_classes)`` float32 one-hot matrix."""
        return np.eye(len(self.class_names), dtype=np.float32)[self.labels]

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name."""
        counts = Counter(self.labels.tolist())
        return {name: counts.get(index, 0) for index, name in enumerate(self.class_names)}


@dataclass
class DatasetSplits:
    """The train, validation and test splits of one dataset, and its class names.

    Unpacks as ``train, validation, test, class_names = splits``.

    Examples
    --------
    >>> import cxrclassify
    >>> train, validation, test, class_names = cxrclassify.load_datasets("sample", image_size=32)
    >>> class_names
    ['covid19', 'normal', 'pneumonia']
    """

    train: ImageSet
    validation: ImageSet
    test: ImageSet
    class_names: list[str]
    duplicates: list = field(default_factory=list)
    manifest_path: Path | None = None

    def __iter__(self) -> Iterator[object]:
        return iter((self.train, self.validation, self.test, self.class_names))

    def items(self) -> list[tuple[str, ImageSet]]:
        """``(split name, split)`` pairs in train, validation, test order."""
        return [("train", self.train), ("validation", self.validation), ("test", self.test)]

    def manifest(self) -> list[dict[str, str]]:
        """One row per image: path, label, patient, source, split, age, sex and view."""
        return [
            {
                "path": record.path,
                "label": record.label,
                "patient": record.group or "",
                "source": record.source or "",
                "split": split_name,
                "age": "" if record.age is None else f"{record.age:g}",
                "sex": record.sex or "",
                "view": record.view or "",
            }
            for split_name, split in self.items()
            for record in split.records
        ]

    def write_manifest(self, path: str | os.PathLike[str]) -> Path:
        """Write the split manifest as CSV (path, label, patient, source, split, age, sex, view).

        Image paths are written relative to the manifest's folder, so that the
        manifest and the images can move together; ``load_datasets(path)``
        reloads the same split.
        """
        return write_manifest(self.manifest(), path)


def write_manifest(rows: Iterable[dict[str, str]], path: str | os.PathLike[str]) -> Path:
    """Write manifest rows to a CSV file, image paths relative to its folder, and return its path.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify.datasets import read_manifest, write_manifest
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> out = write_manifest([{"path": str(folder / "x" / "a.png"), "label": "normal"}], folder / "m.csv")
    >>> read_manifest(out)[0]["path"]
    'x/a.png'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for row in rows:
            image = Path(row["path"]).resolve()
            relative = Path(os.path.relpath(image, folder)).as_posix() if image.anchor == folder.anchor else str(image)
            writer.writerow({**{column: row.get(column, "") for column in MANIFEST_COLUMNS}, "path": relative})
    return path


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read a manifest CSV written by :func:`write_manifest`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify.datasets import read_manifest, write_manifest
    >>> path = write_manifest([{"path": "a.png", "label": "normal"}], pathlib.Path(tempfile.mkdtemp()) / "m.csv")
    >>> read_manifest(path)[0]["label"]
    'normal'
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            message = (
                f"Manifest {str(path)!r} lacks the columns {sorted(missing)}: expected at least "
                f"path and label. Received: columns {reader.fieldnames}"
            )
            raise DataError(message)
        return list(reader)
