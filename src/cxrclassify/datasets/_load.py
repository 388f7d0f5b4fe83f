"""``load_datasets``: records in, decoded and split train/validation/test out."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import warnings
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..exceptions import (
    ArgumentError,
    ArgumentTypeError,
    ConfoundingWarning,
    DataError,
    DuplicateImageWarning,
    SplitWarning,
)
from ._images import read_image, resize
from .._cache import get_data_home
from .._download import FETCH_FIELDS, FetchOptions, _given, _resolve_fetch_options
from ._records import DatasetSplits, ImageSet, Sample, as_samples, check_records, parse_age, read_manifest
from .bimcv import BIMCV_IMAGE_SIZE, TRAINING_ONLY_SOURCES, check_not_training_only, is_training_only
from .fingerprints import FingerprintCache, ImageFingerprints, fingerprint_images, image_key
from .folder import PatientNaming, assign_patients, records_from_folder
from .stream import LazyImages
from .splits import (
    DuplicatePair,
    GroupJoin,
    find_cross_split_duplicates,
    join_duplicate_groups,
    stratified_group_split,
)

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "load_datasets",
    "decode_records",
    "list_datasets",
    "list_recipes",
    "register_dataset",
    "register_recipe",
    "sample_dir",
    "sample_records",
]

logger = logging.getLogger(__name__)

#: The paper's input size (Soares & Soares, 2020): 237 x 237 RGB.
DEFAULT_IMAGE_SIZE = 237

#: The named datasets :func:`load_datasets` builds (``"sample"``, ``"soares2020"``, ...): name -> function.
_DATASETS: dict[str, Callable[[], list[Sample]]] = {}
_RECIPES = _DATASETS  # the registry's older name, for code that reached into it


def register_dataset(name: str) -> Callable[[Callable[[], list[Sample]]], Callable[[], list[Sample]]]:
    """Register a function returning records under a name that :func:`load_datasets` accepts.

    (A training *recipe* is something else: :func:`~cxrclassify.train`'s ``recipe``.)
    :func:`register_recipe` is this function's older name, kept for existing code.

    Examples
    --------
    >>> from cxrclassify.datasets import register_dataset, sample_records, list_datasets
    >>> @register_dataset("sample-covid-vs-normal")
    ... def covid_vs_normal():
    ...     return [r for r in sample_records() if r.label in ("covid19", "normal")]
    >>> "sample-covid-vs-normal" in list_datasets()
    True
    """

    def decorator(function: Callable[[], list[Sample]]) -> Callable[[], list[Sample]]:
        _DATASETS[name] = function
        return function

    return decorator


def list_datasets() -> list[str]:
    """Names of the datasets :func:`load_datasets` can build by name (:func:`list_recipes` is its older name).

    Examples
    --------
    >>> from cxrclassify.datasets import list_datasets
    >>> "sample" in list_datasets()
    True
    """
    return sorted(_DATASETS)


#: Older names of :func:`register_dataset` and :func:`list_datasets`, kept for existing code.
register_recipe = register_dataset
list_recipes = list_datasets


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


@register_dataset("sample")
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
    return [_sample_from_row(row, folder) for row in read_manifest(folder / "manifest.csv")]


def load_datasets(
    source: str | os.PathLike[str] | Iterable[object],
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    split_by: str = "patient",
    patients: PatientNaming | None = None,
    join_duplicates: bool = True,
    lungs: str | None = None,
    common_resolution: int | None = None,
    class_names: Sequence[str] | None = None,
    stream: bool = False,
    data_home: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    verify: bool = True,
    known_hashes: Mapping[str, str] | None = None,
    progress: bool = True,
    fetch_options: FetchOptions | None = None,
    **recipe_options: Any,
) -> DatasetSplits:
    """Load chest X-rays, decode them to RGB, resize them and split them by patient.

    Parameters
    ----------
    source : str, os.PathLike or iterable of records
        One of:

        * a folder laid out ``root/<class name>/<image>`` (PNG, JPEG, TIFF or
          DICOM): a folder names no patient, so each image is its own group
          (split by image, with a :class:`~cxrclassify.exceptions.SplitWarning`)
          unless ``patients`` names them;
        * a list of :class:`~cxrclassify.datasets.Sample` records or
          ``(path, label[, group[, source]])`` tuples, where ``group`` is the
          patient: no patient is ever in two splits;
        * a split manifest CSV written by :meth:`DatasetSplits.write_manifest`:
          the same images in the same splits, nothing redrawn;
        * the name of a registered recipe (see
          :func:`~cxrclassify.datasets.list_datasets`): ``"sample"``, the 48 real
          X-rays shipped with the package, or ``"soares2020"``, the seed paper's
          composite, fetched from its sources (or ``mirror``).
    image_size : int, default 237
        Side of the square images, in pixels (the paper's 237 by default; use
        the model's ``image_size``).
    validation_fraction, test_fraction : float, default 0.1
        Shares of the validation and test splits (80/10/10 by default, as in the
        paper), met as closely as whole patients allow.
    seed : int, default 0
        Seed of the split (and of a recipe's draw); the same seed gives the same split.
    split_by : {"patient", "image"}, default "patient"
        ``"image"`` ignores the patients and splits image by image, as the paper
        did. It is offered only to reproduce the paper: follow-up X-rays of one
        patient then land in both train and test, and the model is scored on
        patients it has seen, which inflates the test score.
    patients : callable, str, os.PathLike or mapping, optional
        Names the patient of every record that has none (a folder's images): a
        callable of the path, a regular expression searched in the file name
        (its first group is the patient), a ``.csv`` file with ``path`` (or
        ``file``) and ``patient`` columns, or a ``{path or file name: patient}``
        mapping. See :func:`~cxrclassify.datasets.assign_patients`.
    join_duplicates : bool, default True
        Before splitting, join the groups of identical or near-identical images
        (thumbnail correlation at least
        :data:`~cxrclassify.datasets.splits.NEAR_DUPLICATE_SIMILARITY`, the
        threshold of the duplicate check): sources file some people under two
        patient ids, and the same picture must not be in train and test. Each
        join is recorded in ``merged_groups`` and in the manifest. Joins apply
        with ``split_by="image"`` too (the same picture is one item).
    lungs : {None, "crop", "mask"}, optional
        Lung-field preprocessing before resizing: crop each image to the box of
        its segmented lung fields, or black out what is not lung (see
        :mod:`cxrclassify.segmentation.options`); use the model's
        ``lungs``. The patient joins look at the whole images.
    stream : bool, default False
        Keep no image in memory: each split's ``images`` is a
        :class:`~cxrclassify.datasets.stream.LazyImages` that decodes the files of
        a slice when it is read, and :meth:`ImageSet.as_dataset
        <cxrclassify.datasets.ImageSet.as_dataset>` streams them through
        ``tf.data`` with parallel decoding. Loading then decodes each file once,
        a chunk at a time, for its fingerprint (the duplicate check and the
        patient joins) and keeps only the fingerprints (about 4 KB per image).
        The images are the same, pixel for pixel, as with ``stream=False``.
    common_resolution : int, optional
        Bring every image to ``common_resolution`` x ``common_resolution``
        first, whatever its source, then to ``image_size``: when one source's
        images are small (BIMCV's are 224 x 224 upstream) and another's large,
        the sharpness of a resized image tells the sources, and so the classes,
        apart. Warned about (:class:`~cxrclassify.exceptions.ConfoundingWarning`)
        when such a source is loaded without it. Pass the same resizing to
        images given to :func:`~cxrclassify.predict` (see :doc:`/datasets`).
    class_names : sequence of str, optional
        Class names in the order of the model's outputs; by default the sorted
        labels found. Labels not listed raise a :class:`~cxrclassify.exceptions.DataError`.
    data_home, mirror, verify, known_hashes
        For recipes that fetch data: the cache folder (also that of the split
        manifest and, with ``stream``, of the fingerprints), a base URL or
        folder replacing the upstream hosts, whether to verify checksums, and a
        ``{name: sha256}`` manifest replacing the recorded hashes: the fields of
        :class:`~cxrclassify.datasets.FetchOptions`, one by one.
    progress : bool, default True
        Show progress bars (with ``fetch_options``, the download bars only when
        ``fetch_options.progress`` is true too).
    fetch_options : FetchOptions, optional
        The four fetch keywords above, and ``progress`` for downloads, in one
        object; those keywords must then keep their defaults.
    **recipe_options
        Further options of the recipe (``n_covid19=...`` for ``"soares2020"``).

    Returns
    -------
    DatasetSplits
        ``train``, ``validation`` and ``test`` :class:`~cxrclassify.datasets.ImageSet`
        objects and ``class_names``; unpacks as ``train, validation, test, class_names``.
        Its ``merged_groups`` lists the groups joined before the split, its
        ``duplicates`` the images of one split that are still identical or nearly
        identical to images of another (also warned about), and for a recipe its
        ``manifest_path`` is the split manifest written to the cache.

    Raises
    ------
    DataError
        If there is no image, only one class, a class with too few patients to
        appear in every split, a label outside ``class_names``, an empty or
        missing label, a file listed twice, or an image that cannot be decoded
        (the message names the file), or a manifest that validates or tests on
        a training-only source (:data:`~cxrclassify.datasets.bimcv.TRAINING_ONLY_SOURCES`).
    ArgumentError
        If ``image_size``, a fraction or ``split_by`` is out of range.
    ArgumentTypeError
        If a recipe is given an option it does not take (``mirror`` for
        ``"sample"``), or ``fetch_options`` together with a fetch keyword.

    Warns
    -----
    SplitWarning
        When records carry no patient and are split image by image.
    DuplicateImageWarning
        When identical or near-identical images remain in two splits.

    Notes
    -----
    The paper split by image. Splitting by patient is stricter and is the
    default whenever records carry a group.

    Examples
    --------
    >>> import cxrclassify
    >>> data = cxrclassify.load_datasets("sample", image_size=64, progress=False)
    >>> data.train.images.shape[1:], data.class_names
    ((64, 64, 3), ['covid19', 'normal', 'pneumonia'])
    >>> len(data.train) + len(data.validation) + len(data.test)
    48

    The fetch options of a recipe can travel in one object:

    >>> from cxrclassify.datasets import FetchOptions
    >>> options = FetchOptions(mirror="/data/cxr-mirror", verify=False)
    >>> data = cxrclassify.load_datasets("soares2020", fetch_options=options)  # doctest: +SKIP
    """
    if split_by not in ("patient", "image"):
        message = f"Expected split_by to be 'patient' or 'image'. Received: split_by={split_by!r}"
        raise ArgumentError(message)
    _check_image_size(image_size)
    given = _given(data_home=data_home, mirror=mirror, verify=verify, known_hashes=known_hashes)
    options = _resolve_fetch_options(fetch_options, given, caller="load_datasets")
    if fetch_options is None:
        options = options.replace(progress=progress)
    elif not progress:
        options = options.replace(progress=False)
    data_home = options.data_home
    recipe = source if isinstance(source, str) and source in _DATASETS and not Path(source).exists() else None
    if recipe is not None:
        samples = _call_recipe(recipe, seed=seed, fetch_options=options, **recipe_options)
    elif recipe_options:
        message = f"Options {sorted(recipe_options)} are only for named recipes. Received: source={source!r}"
        raise ArgumentTypeError(message)
    else:
        samples = _resolve_records(source)
    if patients is not None:
        samples = assign_patients(samples, patients, base=source if isinstance(source, (str, os.PathLike)) else None)
    check_records(samples)
    names = _resolve_class_names(samples, class_names)
    labels = np.array([names.index(sample.label) for sample in samples], dtype=np.int64)
    lungs = _check_lungs(lungs)
    common_resolution = _check_common_resolution(common_resolution)
    _warn_if_resolution_tells_sources(samples, common_resolution)
    assigned = _manifest_splits(source, samples)
    if stream:
        # One pass over the files for the fingerprints of the whole images; the splits decode on demand.
        fingerprints = _streamed_fingerprints(samples, image_size, progress, common_resolution,
                                              cache=FingerprintCache(get_data_home(data_home) / "fingerprints"))
        prepared = LazyImages(samples, image_size, lungs=lungs, common_resolution=common_resolution)
    else:
        images, prepared = _decode(samples, image_size, lungs, progress, common_resolution=common_resolution)
        fingerprints = fingerprint_images(images)
        del images
    joins: list[GroupJoin] = []
    if assigned is None:
        if split_by == "patient":
            _warn_if_split_by_image(samples)
        groups = [
            sample.group if split_by == "patient" and sample.group is not None else f"image:{index}"
            for index, sample in enumerate(samples)
        ]
        if join_duplicates:
            joined_groups, joins = join_duplicate_groups(groups, fingerprints, [sample.path for sample in samples])
            samples = _record_joins(samples, groups, joined_groups)
            groups = joined_groups
        assigned = _split_with_training_only(
            samples, labels, groups, validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed
        )
    else:
        check_not_training_only([samples[index] for indices in assigned[1:] for index in indices],
                                purpose="a manifest's validation and test splits")
    splits = [
        ImageSet(prepared.take(indices) if stream else prepared[indices], labels[indices],
                 [samples[i] for i in indices], list(names), lungs=lungs)
        for indices in assigned
    ]
    data = DatasetSplits(*splits, class_names=list(names))
    data.merged_groups = joins
    data.duplicates = _report_duplicates(data, {name: fingerprints[indices]
                                                for name, indices in zip(("train", "validation", "test"), assigned)})
    if recipe is not None:
        data.manifest_path = data.write_manifest(
            get_data_home(data_home) / "manifests" / f"{recipe}_seed{seed}_by-{split_by}.csv"
        )
    logger.info(
        "Loaded %d images of %d classes: %d train, %d validation, %d test",
        len(samples), len(names), *(len(split) for split in splits),
    )
    return data


def _split_with_training_only(
    samples: Sequence[Sample], labels: np.ndarray, groups: Sequence[str], **split_options: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split by group; the groups of training-only records (:data:`TRAINING_ONLY_SOURCES`) all go to train.

    A group joined with a training-only image (the same picture in BIMCV and
    elsewhere) goes to train too, so that no test image has a copy in training.
    """
    forced = {groups[index] for index, sample in enumerate(samples) if is_training_only(sample)}
    if not forced:
        return stratified_group_split(labels, list(groups), **split_options)
    free = np.array([index for index, group in enumerate(groups) if group not in forced], dtype=np.int64)
    if len(free) == 0:
        message = ("Expected some records that may be validated and tested on. Received: only records of "
                   f"training-only sources {sorted(TRAINING_ONLY_SOURCES)}")
        raise DataError(message)
    train, validation, test = stratified_group_split(labels[free], [groups[index] for index in free],
                                                     **split_options)
    forced_indices = np.array([index for index, group in enumerate(groups) if group in forced], dtype=np.int64)
    logger.info("%d images of training-only sources (and their joined groups) put in train", len(forced_indices))
    return np.sort(np.concatenate([free[train], forced_indices])), free[validation], free[test]


def _check_image_size(image_size: object) -> None:
    if isinstance(image_size, (bool, np.bool_)) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        message = f"Expected image_size to be a positive number of pixels (an int). Received: image_size={image_size!r}"
        raise ArgumentError(message)


def _warn_if_split_by_image(samples: Sequence[Sample]) -> None:
    # Training-only records go to train whatever their group: no leak to warn about.
    ungrouped = [sample.path for sample in samples if sample.group is None and not is_training_only(sample)]
    if not ungrouped:
        return
    warnings.warn(
        f"{len(ungrouped)} of {len(samples)} images carry no patient id (e.g. {ungrouped[0]!r}), so each is its "
        "own group: they are split image by image, and follow-up X-rays of one patient can land in train and "
        "test. Name the patients with patients= (a function of the path, a regular expression on the file name, "
        "or a CSV of path and patient), or pass split_by='image' to say that this is meant.",
        SplitWarning,
        stacklevel=3,
    )


def _record_joins(samples: list[Sample], groups: list[str], joined_groups: list[str]) -> list[Sample]:
    """Give the images of joined groups the joined key as group, keeping the source's own id."""
    records = []
    for sample, group, joined in zip(samples, groups, joined_groups):
        if joined != group and (sample.group is None or sample.group == group):
            records.append(dataclasses.replace(sample, group=joined, original_group=sample.group))
        else:
            records.append(sample)
    return records


def _call_recipe(name: str, *, fetch_options: FetchOptions | None = None, **options: Any) -> list[Sample]:
    """Call a recipe with the options its signature accepts; unknown non-default options are an error.

    ``options`` are ``seed``, the recipe's own options and, unless
    ``fetch_options`` is given, the fetch keywords one by one. A recipe taking
    ``fetch_options`` gets one :class:`FetchOptions` (a ``**fetch_keywords``
    catch-all of it takes nothing else); any other gets those of the five fetch
    fields its signature names (all with a ``**kwargs``), and a field it does not
    take is an error unless left at its default (``progress``, like ``seed``,
    is dropped silently).
    """
    function = _DATASETS[name]
    parameters = inspect.signature(function).parameters
    fetch = _resolve_fetch_options(fetch_options, {key: options.pop(key) for key in FETCH_FIELDS if key in options},
                                   caller="load_datasets")
    # seed and progress go to the recipes that take them; fetch options must not be silently dropped.
    ignorable = {"seed", "progress"}
    accepted, refused = {}, []
    if "fetch_options" in parameters:
        named = {key for key, parameter in parameters.items() if parameter.kind is not inspect.Parameter.VAR_KEYWORD}
        takes_all = any(parameter.kind is inspect.Parameter.VAR_KEYWORD and key != "fetch_keywords"
                        for key, parameter in parameters.items())
        accepted["fetch_options"] = fetch
        for key, value in options.items():
            if takes_all or key in named:
                accepted[key] = value
            elif key not in ignorable:
                refused.append(key)
        received = {**options, **fetch.as_kwargs()}
    else:
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        defaults = FetchOptions()
        received = {**options, **fetch.as_kwargs()}
        for key, value in received.items():
            if takes_all or key in parameters:
                accepted[key] = value
            elif key not in ignorable and (key not in FETCH_FIELDS or value != getattr(defaults, key)):
                refused.append(key)
    if refused:
        message = (
            f"The dataset {name!r} takes no option {sorted(refused)}. "
            f"Expected some of {sorted(parameters)}. Received: {sorted(received)}"
        )
        raise ArgumentTypeError(message)
    samples = function(**accepted)
    if not samples:
        message = f"The dataset {name!r} gave no image. Received: options {accepted}"
        raise DataError(message)
    return samples


def _manifest_splits(source: object, samples: list[Sample]) -> tuple[np.ndarray, ...] | None:
    """For a manifest with a split column, the indices of its train, validation and test rows."""
    if not _is_manifest(source):
        return None
    rows = read_manifest(source)
    if not rows or "split" not in rows[0] or not all(row.get("split") for row in rows):
        return None
    split_names = [row["split"] for row in rows]
    unknown = sorted(set(split_names) - {"train", "validation", "test"})
    if unknown:
        message = (
            f"Manifest {os.fspath(source)!r} names unknown splits {unknown}: expected train, validation "
            "and test."
        )
        raise DataError(message)
    return tuple(
        np.array([index for index, name in enumerate(split_names) if name == wanted], dtype=np.int64)
        for wanted in ("train", "validation", "test")
    )


def _is_manifest(source: object) -> bool:
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".csv" and Path(source).is_file()


def _report_duplicates(data: DatasetSplits, fingerprints: Mapping[str, ImageFingerprints]) -> list[DuplicatePair]:
    duplicates = find_cross_split_duplicates(
        {name: (split.paths, fingerprints[name]) for name, split in data.items()}
    )
    if duplicates:
        shown = "; ".join(f"{pair.path_a} ({pair.split_a}) ~ {pair.path_b} ({pair.split_b})"
                          for pair in duplicates[:3])
        warnings.warn(
            f"{len(duplicates)} image(s) of one split are (near-)identical to images of another, which "
            f"inflates test scores: {shown}{' ...' if len(duplicates) > 3 else ''}. "
            "The full list is in the result's `duplicates`.",
            DuplicateImageWarning,
            stacklevel=3,
        )
    return duplicates


def decode_records(
    samples: Sequence[Sample], image_size: int, *, lungs: str | None = None, progress: bool = True,
    chunk_size: int = 32, common_resolution: int | None = None,
) -> np.ndarray:
    """Decode and resize the images of ``samples`` into one ``(N, S, S, 3)`` ``uint8`` array.

    With ``lungs="crop"`` or ``"mask"``, each image is cropped to its lung box
    or masked outside its lungs before resizing (``chunk_size`` images are
    segmented at a time; see :func:`~cxrclassify.segmentation.options.prepare_lung_fields`).
    With ``common_resolution``, each image is first resized to that square side
    (see :func:`load_datasets`).

    Examples
    --------
    >>> from cxrclassify.datasets import decode_records, sample_records
    >>> decode_records(sample_records()[:2], 32, progress=False).shape
    (2, 32, 32, 3)
    """
    return _decode(samples, image_size, _check_lungs(lungs), progress, chunk_size,
                   common_resolution=_check_common_resolution(common_resolution))[1]


def _check_common_resolution(common_resolution: object) -> int | None:
    if common_resolution is None:
        return None
    if isinstance(common_resolution, bool) or not isinstance(common_resolution, (int, np.integer)) or not (
            8 <= common_resolution <= 4096):
        message = ("Expected common_resolution to be None or a whole number of pixels in 8..4096. "
                   f"Received: common_resolution={common_resolution!r}")
        raise ArgumentError(message)
    return int(common_resolution)


#: Sources whose every image has one small upstream size (side in pixels).
SMALL_SOURCE_RESOLUTION = {source: min(BIMCV_IMAGE_SIZE) for source in TRAINING_ONLY_SOURCES}


def _warn_if_resolution_tells_sources(samples: Sequence[Sample], common_resolution: int | None) -> None:
    small = sorted({sample.source for sample in samples if sample.source in SMALL_SOURCE_RESOLUTION})
    others = {sample.source for sample in samples} - set(small)
    if not small or not others:
        return
    side = min(SMALL_SOURCE_RESOLUTION[source] for source in small)
    if common_resolution is not None and common_resolution <= side:
        return
    warnings.warn(
        f"Sources {small} are {side} x {side} px upstream while {sorted(map(str, others))} are not: resized to one "
        "size, their sharpness tells the sources (and so the classes) apart. Pass "
        f"common_resolution={side} (or lower) to bring every image to the same resolution first. "
        f"Received: common_resolution={common_resolution!r}",
        ConfoundingWarning,
        stacklevel=3,
    )


def _decode(
    samples: Sequence[Sample], image_size: int, lungs: str | None, progress: bool, chunk_size: int = 32,
    *, common_resolution: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The whole images and the ``lungs``-prepared ones (the same array when ``lungs`` is None), each file read once."""
    whole = np.empty((len(samples), image_size, image_size, 3), dtype=np.uint8)
    prepared = whole if lungs is None else np.empty_like(whole)
    description = "Decoding images" if lungs is None else f"Decoding images, lungs={lungs}"
    with tqdm(total=len(samples), desc=description, unit="img", disable=not progress) as bar:
        for start in range(0, len(samples), chunk_size):
            chunk = [read_image(sample.path) for sample in samples[start:start + chunk_size]]
            if common_resolution is not None:
                chunk = [resize(rgb, common_resolution) for rgb in chunk]
            for offset, rgb in enumerate(chunk):
                whole[start + offset] = resize(rgb, image_size)
            if lungs is not None:
                from ..segmentation.options import prepare_lung_fields

                for offset, rgb in enumerate(prepare_lung_fields(chunk, lungs)[0]):
                    prepared[start + offset] = resize(rgb, image_size)
            bar.update(len(chunk))
    return whole, prepared


def _streamed_fingerprints(samples: Sequence[Sample], image_size: int, progress: bool,
                           common_resolution: int | None, *, cache: FingerprintCache | None = None,
                           chunk_size: int = 64) -> ImageFingerprints:
    """Fingerprints of the whole images, decoded a chunk at a time and let go (memory: one chunk).

    With a ``cache``, fingerprints of files already seen (same path, size, modification
    time and decoding) are read back: a second load of the same files decodes nothing.
    """
    def decoded(positions: Sequence[int]):
        whole = LazyImages([samples[int(index)] for index in positions], image_size,
                           common_resolution=common_resolution)
        with tqdm(total=len(whole), desc="Fingerprinting images", unit="img", disable=not progress) as bar:
            for batch in whole.iter_batches(chunk_size):
                bar.update(len(batch))
                yield batch

    if cache is None:
        return fingerprint_images(decoded(range(len(samples))))
    keys = [image_key(sample.path, image_size=image_size, common_resolution=common_resolution) for sample in samples]
    return cache.fingerprints(keys, decoded)


def _check_lungs(lungs: object) -> str | None:
    from ..segmentation.options import check_lungs

    return check_lungs(lungs)


def _resolve_records(source: str | os.PathLike[str] | Iterable[object]) -> list[Sample]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return records_from_folder(path)
        if _is_manifest(path):
            return [_sample_from_row(row, path.parent) for row in read_manifest(path)]
        message = (
            "Expected a folder laid out root/<class name>/<image>, a manifest CSV, a list of records, or one "
            f"of the dataset names {list_datasets()}. Received: source={os.fspath(source)!r}, which is none of these"
        )
        raise DataError(message)
    samples = as_samples(source)
    if not samples:
        message = "Expected at least one record. Received: an empty list of records"
        raise DataError(message)
    return samples


def _sample_from_row(row: Mapping[str, str], base: Path) -> Sample:
    if not (row.get("path") or "").strip():
        message = f"Expected every manifest row to name an image path. Received: a row with an empty path: {dict(row)}"
        raise DataError(message)
    path = Path(row["path"])
    return Sample(
        path=str(path if path.is_absolute() else base / path),
        label=row["label"],
        group=row.get("patient") or None,
        source=row.get("source") or None,
        site=row.get("site") or None,
        age=parse_age(row.get("age", "")),
        sex=row.get("sex") or None,
        view=row.get("view") or None,
        original_group=row.get("original_patient") or None,
    )


def _resolve_class_names(samples: list[Sample], class_names: Sequence[str] | None) -> list[str]:
    found = Counter(sample.label for sample in samples)
    if class_names is None:
        names = sorted(found)
    else:
        names = list(class_names)
        if any(not isinstance(name, str) or not name.strip() for name in names) or len(set(names)) != len(names):
            message = f"Expected class_names to be distinct, non-empty strings. Received: class_names={names!r}"
            raise ArgumentError(message)
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
