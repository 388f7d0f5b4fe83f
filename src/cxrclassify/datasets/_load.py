"""``load_datasets``: records in, decoded and split train/validation/test out."""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..exceptions import DataError
from ._images import read_image, resize
from ._records import DatasetSplits, ImageSet, Sample, as_samples
from .folder import records_from_folder
from .splits import stratified_group_split

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "load_datasets",
    "decode_records",
    "list_recipes",
    "register_recipe",
    "sample_dir",
    "sample_records",
]

logger = logging.getLogger(__name__)

#: The paper's input size (Soares & Soares, 2020): 237 x 237 RGB.
DEFAULT_IMAGE_SIZE = 237

_RECIPES: dict[str, Callable[[], list[Sample]]] = {}


def register_recipe(name: str) -> Callable[[Callable[[], list[Sample]]], Callable[[], list[Sample]]]:
    """Register a function returning records under a name that :func:`load_datasets` accepts.

    Examples
    --------
    >>> from cxrclassify.datasets import register_recipe, sample_records, list_recipes
    >>> @register_recipe("sample-covid-vs-normal")
    ... def covid_vs_normal():
    ...     return [r for r in sample_records() if r.label in ("covid19", "normal")]
    >>> "sample-covid-vs-normal" in list_recipes()
    True
    """

    def decorator(function: Callable[[], list[Sample]]) -> Callable[[], list[Sample]]:
        _RECIPES[name] = function
        return function

    return decorator


def list_recipes() -> list[str]:
    """Names of the datasets :func:`load_datasets` can build by name.

    Examples
    --------
    >>> from cxrclassify.datasets import list_recipes
    >>> "sample" in list_recipes()
    True
    """
    return sorted(_RECIPES)


def sample_dir() -> Path:
    """The folder of the small real X-ray sample shipped inside the package.

    It holds ``images/<class>/<file>``, ``manifest.csv`` (source, patient,
    license and attribution of every image) and ``ATTRIBUTION.md``.

    Examples
    --------
    >>> from cxrclassify.datasets import sample_dir
    >>> (sample_dir() / "manifest.csv").is_file()
    True
    """
    return Path(str(resources.files("cxrclassify") / "sample"))


@register_recipe("sample")
def sample_records() -> list[Sample]:
    """Records of the bundled sample: 48 X-rays, 16 each of covid19, normal and pneumonia.

    COVID-19 images come from ieee8023 (adults), normal and pneumonia images half
    from Kermany (children) and half from NIH ChestX-ray14 (adults); the source
    and patient of each image are kept in its record.

    Examples
    --------
    >>> from collections import Counter
    >>> from cxrclassify.datasets import sample_records
    >>> sorted(Counter(record.source for record in sample_records()).items())
    [('ieee8023', 16), ('kermany', 16), ('nih', 16)]
    """
    folder = sample_dir()
    with (folder / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Sample(path=str(folder / row["path"]), label=row["label"], group=row["patient"], source=row["source"])
        for row in rows
    ]


def load_datasets(
    source: str | os.PathLike[str] | Iterable[object],
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
) -> DatasetSplits:
    """Load chest X-rays, decode them to RGB, resize them and split them by patient.

    Parameters
    ----------
    source : str, os.PathLike or iterable of records
        One of:

        * a folder laid out ``root/<class name>/<image>`` (PNG or JPEG), each
          image its own group;
        * a list of :class:`~cxrclassify.datasets.Sample` records or
          ``(path, label[, group[, source]])`` tuples, where ``group`` is the
          patient: no patient is ever in two splits;
        * the name of a registered recipe (see
          :func:`~cxrclassify.datasets.list_recipes`), such as ``"sample"``, the
          48 real X-rays shipped with the package.
    image_size : int, default 237
        Side of the square images, in pixels (the paper's 237 by default; use
        the model's ``image_size``).
    validation_fraction, test_fraction : float, default 0.1
        Shares of the validation and test splits (80/10/10 by default, as in the
        paper), met as closely as whole patients allow.
    seed : int, default 0
        Seed of the split; the same seed gives the same split.
    class_names : sequence of str, optional
        Class names in the order of the model's outputs; by default the sorted
        labels found. Labels not listed raise a :class:`~cxrclassify.exceptions.DataError`.
    progress : bool, default True
        Show a progress bar while decoding.

    Returns
    -------
    DatasetSplits
        ``train``, ``validation`` and ``test`` :class:`~cxrclassify.datasets.ImageSet`
        objects and ``class_names``; unpacks as ``train, validation, test, class_names``.

    Raises
    ------
    DataError
        If there is no image, only one class, a class with too few patients to
        appear in every split, a label outside ``class_names``, or an image that
        cannot be decoded (the message names the file).

    Notes
    -----
    The paper split by image. Splitting by patient is stricter and is the
    default whenever records carry a group: follow-up X-rays of one patient in
    both train and test inflate the test score.

    Examples
    --------
    >>> import cxrclassify
    >>> data = cxrclassify.load_datasets("sample", image_size=64, progress=False)
    >>> data.train.images.shape[1:], data.class_names
    ((64, 64, 3), ['covid19', 'normal', 'pneumonia'])
    >>> len(data.train) + len(data.validation) + len(data.test)
    48
    """
    samples = _resolve_records(source)
    names = _resolve_class_names(samples, class_names)
    labels = np.array([names.index(sample.label) for sample in samples], dtype=np.int64)
    groups = [sample.group if sample.group is not None else f"image:{sample.path}" for sample in samples]
    train_idx, validation_idx, test_idx = stratified_group_split(
        labels, groups, validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed
    )
    images = decode_records(samples, image_size, progress=progress)
    splits = [
        ImageSet(images[indices], labels[indices], [samples[i] for i in indices], list(names))
        for indices in (train_idx, validation_idx, test_idx)
    ]
    logger.info(
        "Loaded %d images of %d classes: %d train, %d validation, %d test",
        len(samples), len(names), *(len(split) for split in splits),
    )
    return DatasetSplits(*splits, class_names=list(names))


def decode_records(samples: Sequence[Sample], image_size: int, *, progress: bool = True) -> np.ndarray:
    """Decode and resize the images of ``samples`` into one ``(N, S, S, 3)`` ``uint8`` array.

    Examples
    --------
    >>> from cxrclassify.datasets import decode_records, sample_records
    >>> decode_records(sample_records()[:2], 32, progress=False).shape
    (2, 32, 32, 3)
    """
    images = np.empty((len(samples), image_size, image_size, 3), dtype=np.uint8)
    for index, sample in enumerate(tqdm(samples, desc="Decoding images", unit="img", disable=not progress)):
        images[index] = resize(read_image(sample.path), image_size)
    return images


def _resolve_records(source: str | os.PathLike[str] | Iterable[object]) -> list[Sample]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return records_from_folder(path)
        if isinstance(source, str) and source in _RECIPES:
            return _RECIPES[source]()
        message = (
            "Expected a folder laid out root/<class name>/<image>, a list of records, or one of "
            f"the dataset names {list_recipes()}. Received: source={os.fspath(source)!r}, which is neither"
        )
        raise DataError(message)
    samples = as_samples(source)
    if not samples:
        message = "Expected at least one record. Received: an empty list of records"
        raise DataError(message)
    return samples


def _resolve_class_names(samples: list[Sample], class_names: Sequence[str] | None) -> list[str]:
    found = Counter(sample.label for sample in samples)
    if class_names is None:
        names = sorted(found)
    else:
        names = list(class_names)
        unknown = sorted(set(found) - set(names))
        if unknown:
            message = f"Found labels {unknown} that are not in class_names. Received: class_names={names}"
            raise DataError(message)
    if len(found) < 2:
        message = (
            "Expected images of at least two classes to train a classifier. "
            f"Received: only the class(es) {sorted(found)} ({sum(found.values())} images)"
        )
        raise DataError(message)
    return names
