"""Records from a folder laid out ``root/<class name>/<image>``, and naming their patients."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

from ..exceptions import ArgumentTypeError, DataError
from ._images import IMAGE_SUFFIXES, is_image_file
from ._records import Sample, read_csv_rows

__all__ = ["PatientNaming", "assign_patients", "records_from_folder"]

#: How :func:`assign_patients` names patients: a function of the image path, a regular
#: expression searched in the file name, a CSV file of ``path`` and ``patient``, or a
#: ``{path or file name: patient}`` mapping.
PatientNaming = Union[Callable[[str], "str | None"], str, "os.PathLike[str]", Mapping[str, str]]


def records_from_folder(
    root: str | os.PathLike[str], *, source: str | None = None
) -> list[Sample]:
    """List the images of a class-per-subfolder tree as :class:`Sample` records.

    Each immediate subfolder of ``root`` is a class; every PNG, JPEG, TIFF or DICOM file
    below it (at any depth) is an image of that class. A folder says nothing of
    patients: each image is its own group unless :func:`assign_patients` (or
    ``load_datasets(folder, patients=...)``) names them.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding one subfolder per class.
    source : str, optional
        Source recorded for every image; defaults to the folder's name.

    Returns
    -------
    list of Sample
        Sorted by class, then path.

    Raises
    ------
    DataError
        If ``root`` is not a folder, holds no class subfolder, or holds no image.

    Examples
    --------
    >>> from cxrclassify.datasets import records_from_folder, sample_dir
    >>> records = records_from_folder(sample_dir() / "images")
    >>> sorted({record.label for record in records})
    ['covid19', 'normal', 'pneumonia']
    """
    root = Path(root)
    if not root.is_dir():
        message = f"Expected a folder laid out root/<class name>/<image>. Received: {str(root)!r}, which is not a folder"
        raise DataError(message)
    source = source if source is not None else root.resolve().name
    class_dirs = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    records = [
        Sample(path=str(image_path), label=class_dir.name, group=None, source=source)
        for class_dir in class_dirs
        for image_path in sorted(class_dir.rglob("*"))
        if is_image_file(image_path)
    ]
    if not records:
        message = (
            f"Found no image in {str(root)!r}: expected one subfolder per class holding "
            f"{', '.join(IMAGE_SUFFIXES)} files. Received: subfolders {[path.name for path in class_dirs]}"
        )
        raise DataError(message)
    return records


def assign_patients(
    samples: Sequence[Sample], patients: PatientNaming, *, base: str | os.PathLike[str] | None = None
) -> list[Sample]:
    r"""Give every record without a patient (group) one, named from its path.

    Parameters
    ----------
    samples : sequence of Sample
        Records; those that already have a ``group`` keep it.
    patients : callable, str, os.PathLike or mapping
        How to name the patient of an image:

        * a callable ``patients(path) -> str`` (``None`` or ``""`` leaves the image
          its own group);
        * a regular expression (a ``str`` that is not the name of a ``.csv``
          file), searched in the file name: its first group, or the whole match
          when it has none, is the patient (``r"^(\w+?)_"`` takes the part
          before the first underscore); a file it does not match is an error;
        * a ``.csv`` file (``str`` or path) with a ``patient`` column and a
          ``path`` (or ``file``) column, holding paths relative to the CSV's
          folder, absolute paths or bare file names; an image it does not list is
          an error;
        * a mapping ``{path or file name: patient}``, read the same way.
    base : path, optional
        Folder that relative paths of a mapping are relative to (the CSV's own
        folder for a CSV).

    Returns
    -------
    list of Sample
        The records, with ``group`` set.

    Raises
    ------
    DataError
        If the pattern does not match a file name, the CSV or mapping does not
        list an image, or the CSV lacks its columns; the message names the file.
    ArgumentTypeError
        If ``patients`` is none of the above.

    Examples
    --------
    >>> from cxrclassify.datasets import Sample, assign_patients
    >>> records = [Sample("xrays/normal/p7_day1.png", "normal"), Sample("xrays/normal/p7_day9.png", "normal")]
    >>> [record.group for record in assign_patients(records, r"^(p\d+)_")]
    ['p7', 'p7']
    >>> [record.group for record in assign_patients(records, lambda path: path.split("_")[0][-2:])]
    ['p7', 'p7']
    """
    namer = _patient_namer(patients, base)
    named = []
    for sample in samples:
        if sample.group is not None:
            named.append(sample)
            continue
        patient = namer(sample.path)
        if patient is not None and not isinstance(patient, str):
            patient = str(patient)
        named.append(dataclasses.replace(sample, group=patient or None))
    return named


def _patient_namer(patients: PatientNaming, base: str | os.PathLike[str] | None) -> Callable[[str], str | None]:
    if callable(patients):
        return patients
    if isinstance(patients, os.PathLike) or (isinstance(patients, str) and patients.lower().endswith(".csv")):
        csv_path = Path(patients)
        rows = read_csv_rows(csv_path, required=("patient",), either=("path", "file"))
        table = {(row.get("path") or row.get("file") or "").strip(): (row.get("patient") or "").strip() for row in rows}
        return _table_namer(table, csv_path.parent, f"the patient CSV {str(csv_path)!r}")
    if isinstance(patients, Mapping):
        return _table_namer({str(key): str(value) for key, value in patients.items()},
                            Path(base) if base is not None else None, "the patients mapping")
    if isinstance(patients, str):
        try:
            pattern = re.compile(patients)
        except re.error as error:
            message = f"Expected patients to be a valid regular expression. Received: patients={patients!r} ({error})"
            raise DataError(message) from None
        return _regex_namer(pattern)
    message = (
        "Expected patients to be a callable, a regular expression, a .csv file or a mapping. "
        f"Received: patients of type {type(patients).__name__}"
    )
    raise ArgumentTypeError(message)


def _regex_namer(pattern: re.Pattern[str]) -> Callable[[str], str | None]:
    def name_patient(path: str) -> str | None:
        match = pattern.search(Path(path).name)
        if match is None:
            message = (
                f"The patients pattern {pattern.pattern!r} does not match the file name of {path!r}: "
                "expected it to find the patient in every file name."
            )
            raise DataError(message)
        return match.group(1) if pattern.groups else match.group(0)

    return name_patient


def _table_namer(table: Mapping[str, str], base: Path | None, what: str) -> Callable[[str], str | None]:
    by_path = {}
    for key, patient in table.items():
        key_path = Path(key)
        if not key_path.is_absolute() and base is not None:
            key_path = base / key_path
        by_path[os.path.normcase(os.path.abspath(key_path))] = patient
    by_name = {Path(key).name: patient for key, patient in table.items()}

    def name_patient(path: str) -> str | None:
        found = by_path.get(os.path.normcase(os.path.abspath(path)))
        if found is None:
            found = by_name.get(Path(path).name)
        if found is None:
            message = f"{what[0].upper() + what[1:]} does not list the image {path!r}: expected a patient for every image."
            raise DataError(message)
        return found

    return name_patient
