"""Sample records, decoded splits and split manifests.

A :class:`Sample` keeps an image's path next to its label, its patient (the
group key) and its source from the first line of code, so that every split and
every metric can be traced and broken down by source.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..exceptions import DataError

__all__ = [
    "Sample",
    "ImageSet",
    "DatasetSplits",
    "as_samples",
    "check_records",
    "parse_age",
    "read_csv_rows",
    "write_manifest",
    "read_manifest",
]

MANIFEST_COLUMNS = ("path", "label", "patient", "source", "site", "split", "age", "sex", "view", "original_patient")


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
    original_group : str or None
        The group the source gave, when :func:`~cxrclassify.load_datasets`
        joined it with another because they share an identical or
        near-identical image (``group`` is then the joined key); ``None``
        otherwise.
    site : str or None
        Where within the source the image was made or published (a hospital, a
        journal, ``"radiopaedia"``...), where known: finer than ``source``, for
        metrics and leave-one-out by site.

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
    original_group: str | None = None
    site: str | None = None


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

    ``path`` is a string or path; ``label`` a non-empty string (an integer is
    taken as its decimal string); ``group`` and ``source`` strings, where
    ``None`` or ``""`` means none (the image is then its own group).

    Raises
    ------
    DataError
        If a record is not a ``Sample`` or a tuple of 2 to 4 fields, or its path or
        label is missing or empty; the message names the record's position.

    Examples
    --------
    >>> from cxrclassify.datasets import as_samples
    >>> as_samples([("a.png", "normal", "p1")])[0].group
    'p1'
    >>> as_samples([("a.png", None)])
    Traceback (most recent call last):
    ...
    cxrclassify.exceptions.DataError: Expected each record's label to be a non-empty class name. Received: record 0 = ('a.png', None)
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
        samples.append(
            Sample(
                path=_record_path(path, position, record),
                label=_record_label(label, position, record),
                group=_optional_text(rest[0] if len(rest) > 0 else None, "group", position, record),
                source=_optional_text(rest[1] if len(rest) > 1 else None, "source", position, record),
            )
        )
    return samples


def check_records(samples: Sequence[Sample]) -> None:
    """Check that every record has a path and a label, and that no file is listed twice.

    A file listed under two labels would be a sample of both classes; listed
    twice under one label it would weigh double and could land in two splits.

    Raises
    ------
    DataError
        Naming the first offending record(s) and what was expected.

    Examples
    --------
    >>> from cxrclassify.datasets import Sample, check_records
    >>> check_records([Sample("a.png", "normal"), Sample("b.png", "covid19")])
    >>> check_records([Sample("a.png", "normal"), Sample("./a.png", "covid19")])
    Traceback (most recent call last):
    ...
    cxrclassify.exceptions.DataError: Expected each image file to be listed once. Received: 'a.png' listed 2 times, under the labels ['covid19', 'normal']
    """
    seen: dict[str, list[int]] = {}
    for position, sample in enumerate(samples):
        label = sample.label
        if not isinstance(label, str) or not label.strip():
            message = (
                "Expected each record's label to be a non-empty class name. "
                f"Received: record {position} = {sample!r}"
            )
            raise DataError(message)
        if not isinstance(sample.path, str) or not sample.path:
            message = f"Expected each record's path to be a non-empty string. Received: record {position} = {sample!r}"
            raise DataError(message)
        seen.setdefault(os.path.normcase(os.path.abspath(sample.path)), []).append(position)
    repeated = [positions for positions in seen.values() if len(positions) > 1]
    if repeated:
        first = repeated[0]
        labels = sorted({samples[position].label for position in first})
        others = f" ({len(repeated) - 1} more files are listed more than once)" if len(repeated) > 1 else ""
        message = (
            "Expected each image file to be listed once. "
            f"Received: {samples[first[0]].path!r} listed {len(first)} times, under the "
            f"label{'s' if len(labels) > 1 else ''} {labels}{others}"
        )
        raise DataError(message)


def _record_path(path: object, position: int, record: object) -> str:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        message = (
            "Expected each record's path to be a non-empty string or path. "
            f"Received: record {position} = {tuple(record)!r}"
        )
        raise DataError(message)
    return os.fspath(path)


def _record_label(label: object, position: int, record: object) -> str:
    if isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_)):
        return str(int(label))
    if not isinstance(label, str) or not label.strip():
        message = (
            "Expected each record's label to be a non-empty class name. "
            f"Received: record {position} = {tuple(record)!r}"
        )
        raise DataError(message)
    return label


def _optional_text(value: object, field_name: str, position: int, record: object) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (str, int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(value)
    message = (
        f"Expected each record's {field_name} to be a string (or None). "
        f"Received: record {position} = {tuple(record)!r}"
    )
    raise DataError(message)


@dataclass
class ImageSet:
    """One split: decoded images, integer labels and the records they came from.

    Attributes
    ----------
    images : numpy.ndarray or LazyImages
        ``(N, H, W, 3)`` ``uint8`` RGB images, already resized: in memory, or
        (``load_datasets(..., stream=True)``) a
        :class:`~cxrclassify.datasets.stream.LazyImages` that decodes each slice
        when it is read. :meth:`as_dataset` gives either as a ``tf.data`` pipeline.
    labels : numpy.ndarray
        ``(N,)`` integer class indices into ``class_names``.
    records : list of Sample
        The record of each image, in the same order.
    class_names : list of str
        Class names, index ``i`` naming label ``i``.
    lungs : {None, "crop", "mask"}
        The lung-field preprocessing the images had before they were resized
        (``load_datasets(..., lungs=...)``); a model built with another
        ``lungs`` refuses to train on them.

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
    lungs: str | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def sources(self) -> list[str | None]:
        """The source of each image, in order."""
        return [record.source for record in self.records]

    @property
    def sites(self) -> list[str | None]:
        """The site of each image, in order (``None`` where the source names none)."""
        return [record.site for record in self.records]

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

    @property
    def streamed(self) -> bool:
        """Whether the images are decoded on demand (``load_datasets(..., stream=True)``)."""
        from .stream import is_lazy

        return is_lazy(self.images)

    def materialized(self) -> ImageSet:
        """This split with every image decoded into memory (itself when they already are).

        Examples
        --------
        >>> import cxrclassify
        >>> data = cxrclassify.load_datasets("sample", image_size=32, stream=True, progress=False)
        >>> data.test.streamed, data.test.materialized().streamed
        (True, False)
        """
        if not self.streamed:
            return self
        return replace(self, images=np.asarray(self.images))

    def as_dataset(self, batch_size: int | None = 32, *, labels: bool = True, one_hot: bool = True,
                   **options: object):
        """The split as a ``tf.data.Dataset`` of ``(images, labels)`` batches, decoded as it is iterated.

        Parameters
        ----------
        batch_size : int or None, default 32
            Images per element (``None``: single images).
        labels : bool, default True
            Yield ``(images, labels)`` pairs; ``False``: images only.
        one_hot : bool, default True
            One-hot labels (as :meth:`one_hot`); ``False``: integer labels.
        **options
            ``shuffle``, ``seed``, ``repeat``, ``shard=(count, index)``,
            ``num_parallel_calls``, ``decode_in``, ``deterministic``,
            ``prefetch``, ``drop_remainder``: see :meth:`LazyImages.as_dataset
            <cxrclassify.datasets.stream.LazyImages.as_dataset>`. The same options
            give the same images in the same order whether the split is streamed
            or in memory.

        Examples
        --------
        >>> import cxrclassify
        >>> data = cxrclassify.load_datasets("sample", image_size=32, stream=True, progress=False)
        >>> images, labels = next(iter(data.train.as_dataset(batch_size=4)))
        >>> tuple(images.shape), tuple(labels.shape)
        ((4, 32, 32, 3), (4, 3))
        """
        from .stream import array_dataset

        chosen = self.labels if labels else None
        classes = len(self.class_names) if labels and one_hot else None
        if self.streamed:
            return self.images.as_dataset(chosen, batch_size=batch_size, num_classes=classes, **options)
        return array_dataset(self.images, chosen, batch_size=batch_size, num_classes=classes, **options)

    def resized(self, image_size: int) -> ImageSet:
        """This split with its images at ``image_size`` square: itself when they already are.

        Otherwise a new split with the same labels, records, class names and
        ``lungs``, its images resized one at a time with
        :func:`~cxrclassify.datasets.resize` (Pillow's bilinear, as
        :func:`~cxrclassify.load_datasets` resizes the decoded files) into a new
        ``uint8`` array; this split is not changed. Resizing images that were
        already resized is not the same as loading the files at that size once.

        Raises
        ------
        cxrclassify.exceptions.DataError
            If the images are not ``(N, H, W, 3)`` ``uint8`` RGB.

        Examples
        --------
        >>> import numpy as np
        >>> from cxrclassify.datasets import ImageSet, Sample
        >>> split = ImageSet(np.zeros((1, 48, 48, 3), np.uint8), np.array([0]), [Sample("a.png", "a")], ["a"])
        >>> split.resized(32).images.shape, split.resized(48) is split
        ((1, 32, 32, 3), True)
        """
        from ._images import resize

        images = self.images
        if tuple(images.shape[1:3]) == (image_size, image_size):
            return self
        if self.streamed:  # decode the files at the new size: exact, and still lazy
            from .stream import LazyImages

            return replace(self, images=LazyImages(images.samples, image_size, lungs=images.lungs,
                                                   common_resolution=images.common_resolution))
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            message = (f"Expected (N, H, W, 3) uint8 RGB images to resize to {image_size} x {image_size}. Received: "
                       f"images of shape {images.shape} and dtype {images.dtype}; load them with "
                       f"load_datasets(..., image_size={image_size})")
            raise DataError(message)
        resized = np.empty((len(images), image_size, image_size, 3), dtype=np.uint8)
        for index in range(len(images)):
            resized[index] = resize(images[index], image_size)
        return replace(self, images=resized)


@dataclass
class DatasetSplits:
    """The train, validation and test splits of one dataset, and its class names.

    Unpacks as ``train, validation, test, class_names = splits``.

    Attributes
    ----------
    train, validation, test : ImageSet
        The splits.
    class_names : list of str
        Class names, index ``i`` naming label ``i``.
    duplicates : list of DuplicatePair
        Images of one split identical or nearly identical to images of another
        that remain after the joins (a manifest's fixed splits, or images of one
        group).
    manifest_path : pathlib.Path or None
        Where a recipe's split manifest was written.
    merged_groups : list of GroupJoin
        Groups (patients) joined before the split because they share identical
        or near-identical images: one person filed under two ids is one patient.

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
    merged_groups: list = field(default_factory=list)

    def __iter__(self) -> Iterator[object]:
        return iter((self.train, self.validation, self.test, self.class_names))

    def items(self) -> list[tuple[str, ImageSet]]:
        """``(split name, split)`` pairs in train, validation, test order."""
        return [("train", self.train), ("validation", self.validation), ("test", self.test)]

    def manifest(self) -> list[dict[str, str]]:
        """One row per image: path, label, patient, source, site, split, age, sex, view, original_patient.

        ``patient`` is the group the split used (a joined key such as
        ``"ieee8023:178|ieee8023:97"`` where groups were joined) and
        ``original_patient`` the source's own id for joined images.
        """
        return [
            {
                "path": record.path,
                "label": record.label,
                "patient": record.group or "",
                "source": record.source or "",
                "site": record.site or "",
                "split": split_name,
                "age": "" if record.age is None else f"{record.age:g}",
                "sex": record.sex or "",
                "view": record.view or "",
                "original_patient": record.original_group or "",
            }
            for split_name, split in self.items()
            for record in split.records
        ]

    def write_manifest(self, path: str | os.PathLike[str]) -> Path:
        """Write the split manifest as CSV (path, label, patient, source, site, split, age, sex, view, ...).

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
    """Read a manifest CSV written by :func:`write_manifest` (or saved by a spreadsheet).

    A UTF-8 byte order mark (as Excel writes) is skipped, and blank lines are ignored.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify.datasets import read_manifest, write_manifest
    >>> path = write_manifest([{"path": "a.png", "label": "normal"}], pathlib.Path(tempfile.mkdtemp()) / "m.csv")
    >>> read_manifest(path)[0]["label"]
    'normal'
    """
    return read_csv_rows(path, required=("path", "label"))


def read_csv_rows(
    path: str | os.PathLike[str], *, required: Sequence[str] = (), either: Sequence[str] = ()
) -> list[dict[str, str]]:
    r"""Rows of a UTF-8 CSV file (a byte order mark skipped, column names stripped), columns checked.

    Parameters
    ----------
    path : path
        The CSV file.
    required : sequence of str
        Columns that must all be present.
    either : sequence of str
        Columns of which at least one must be present.

    Raises
    ------
    DataError
        If the file is missing, is not UTF-8, or lacks a column; the message names it.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cxrclassify.datasets import read_csv_rows
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "excel.csv"
    >>> _ = path.write_bytes("\ufeffpath,label\r\na.png,normal\r\n".encode("utf-8"))
    >>> read_csv_rows(path, required=("path", "label"))
    [{'path': 'a.png', 'label': 'normal'}]
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fieldnames = [name.strip() for name in reader.fieldnames or ()]
            reader.fieldnames = fieldnames
            rows = [{key: ("" if value is None else value) for key, value in row.items() if key is not None}
                    for row in reader]
    except UnicodeDecodeError as error:
        message = (
            f"Could not read {str(path)!r}: expected a UTF-8 CSV file. "
            f"Received: a file that is not UTF-8 ({error})"
        )
        raise DataError(message) from None
    except FileNotFoundError:
        message = f"CSV file not found: {str(path)!r}."
        raise DataError(message) from None
    except csv.Error as error:
        message = f"Could not read {str(path)!r}: expected a CSV file. Received: {error}"
        raise DataError(message) from None
    missing = sorted(set(required) - set(fieldnames))
    if either and not set(either) & set(fieldnames):
        missing.append(" or ".join(either))
    if missing:
        message = (
            f"{str(path)!r} lacks the columns {missing}: expected {', '.join([*required, *(' or '.join(either),)] if either else required)}. "
            f"Received: columns {fieldnames}"
        )
        raise DataError(message)
    return rows
