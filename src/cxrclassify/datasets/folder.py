"""Records from a folder laid out ``root/<class name>/<image>``."""

from __future__ import annotations

import os
from pathlib import Path

from ..exceptions import DataError
from ._images import IMAGE_SUFFIXES, is_image_file
from ._records import Sample

__all__ = ["records_from_folder"]


def records_from_folder(
    root: str | os.PathLike[str], *, source: str | None = None
) -> list[Sample]:
    """List the images of a class-per-subfolder tree as :class:`Sample` records.

    Each immediate subfolder of ``root`` is a class; every PNG, JPEG or DICOM file below it
    (at any depth) is an image of that class. Without patient information each
    image is its own group.

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
