"""Named composites of several sources, such as the seed paper's ``soares2020``.

Every recipe is a function returning records; it is registered under its name,
so ``load_datasets("soares2020", mirror=...)`` builds it, splits it by patient
and decodes it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._download import FetchOptions, _resolve_fetch_options
from ..exceptions import ConfoundingWarning, DataError
from ._load import register_dataset
from ._records import Sample, parse_age
from .ieee8023 import (
    IEEE8023_COMMIT,
    fetch_ieee8023_metadata,
    ieee8023_records,
    read_ieee8023_metadata,
    select_ieee8023_rows,
)
from .kermany import kermany_archive, kermany_index, kermany_records
from .nih import NIH_ARCHIVE_SIZES, NIH_ARCHIVE_URLS, NO_FINDING, nih_records

__all__ = [
    "adult_controls_records",
    "describe_composition",
    "format_composition",
    "soares2020_records",
    "warn_if_confounded",
    "warn_if_sources_confound",
]

logger = logging.getLogger(__name__)


@register_dataset("soares2020")
def soares2020_records(
    *,
    n_covid19: int = 175,
    n_normal: int = 100,
    n_pneumonia: int = 100,
    seed: int = 0,
    kermany_path: str | os.PathLike[str] | None = None,
    kermany_sha256: str | None = None,
    commit: str = IEEE8023_COMMIT,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> list[Sample]:
    """The seed paper's composite: COVID-19 from ieee8023, normal and pneumonia from Kermany.

    175 frontal COVID-19 X-rays from the ieee8023 collection and 100 normal and
    100 other-infection (bacterial and viral pneumonia, half each where
    possible) X-rays from Kermany's archive, drawn with ``seed``. Only the
    images drawn are fetched.

    .. warning::
       The COVID-19 images are of adults from many hospitals, the others of
       children from one hospital: a model can separate the classes by age and
       source. Scores on this composite are not evidence of clinical performance.

    Parameters
    ----------
    n_covid19, n_normal, n_pneumonia : int
        Images per class (the paper's 175, 100 and 100 by default).
    seed : int, default 0
        Seed of the draw.
    kermany_path : path, optional
        A ``ChestXRay2017.zip`` or extracted folder already on disk.
    kermany_sha256 : str, optional
        A known sha256 to pin the Kermany archive to.
    commit : str
        ieee8023 commit (the pinned one by default).
    fetch_options : FetchOptions, optional
        Cache folder, mirror, verification, pins and progress bars, for every
        source: see :class:`~cxrclassify.datasets.FetchOptions`.
    **fetch_keywords
        ``data_home``, ``mirror``, ``verify``, ``known_hashes`` and ``progress``
        one by one instead (not with ``fetch_options``).

    Returns
    -------
    list of Sample
        Labels ``covid19``, ``normal`` and ``pneumonia``.

    Examples
    --------
    >>> import cxrclassify
    >>> data = cxrclassify.load_datasets("soares2020", mirror="../shared/data", verify=False)  # doctest: +SKIP
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="soares2020_records")
    rng = np.random.default_rng(seed)
    covid_rows = _ieee8023_covid_rows(commit, options)
    chosen_rows = [covid_rows[i] for i in sorted(_draw(rng, len(covid_rows), n_covid19, "ieee8023 COVID-19"))]
    covid = ieee8023_records(rows=chosen_rows, label="covid19", commit=commit, fetch_options=options)

    archive = kermany_archive(path=kermany_path, sha256=kermany_sha256, fetch_options=options)
    index = [image for image in kermany_index(archive) if image.split == "train"]
    normal_pool = [image for image in index if image.label == "normal"]
    normal = [normal_pool[i] for i in sorted(_draw(rng, len(normal_pool), n_normal, "Kermany normal"))]
    pneumonia = _draw_balanced_subtypes(rng, [image for image in index if image.label == "pneumonia"], n_pneumonia)
    controls = kermany_records(normal + pneumonia, path=archive if kermany_path else None,
                               sha256=kermany_sha256, fetch_options=options)
    records = covid + controls
    warn_if_confounded(records)
    return records


def _ieee8023_covid_rows(commit: str, options: FetchOptions) -> list[dict[str, str]]:
    """The metadata rows of the ieee8023 frontal COVID-19 X-rays at ``commit``."""
    metadata = fetch_ieee8023_metadata(commit=commit, fetch_options=options)
    return select_ieee8023_rows(read_ieee8023_metadata(metadata), findings=("COVID-19",))


def _draw(rng: np.random.Generator, available: int, wanted: int, what: str) -> np.ndarray:
    if wanted > available:
        message = f"Asked for {wanted} {what} images but only {available} are available. Received: {wanted}"
        raise DataError(message)
    return rng.choice(available, size=wanted, replace=False)


def _draw_balanced_subtypes(rng: np.random.Generator, pool: list, wanted: int) -> list:
    by_subtype: dict[str | None, list] = defaultdict(list)
    for image in pool:
        by_subtype[image.subtype].append(image)
    subtypes = sorted(by_subtype, key=str)
    shares = {subtype: wanted // len(subtypes) for subtype in subtypes}
    for subtype in subtypes[: wanted % len(subtypes)]:
        shares[subtype] += 1
    chosen = []
    for subtype in subtypes:
        images = by_subtype[subtype]
        take = min(shares[subtype], len(images))
        chosen += [images[i] for i in sorted(rng.choice(len(images), size=take, replace=False))]
    if len(chosen) < wanted:  # one subtype ran short: fill from the rest of the pool
        taken = set(chosen)
        rest = [image for image in pool if image not in taken]
        chosen += [rest[i] for i in sorted(_draw(rng, len(rest), wanted - len(chosen), "Kermany pneumonia"))]
    return sorted(chosen, key=lambda image: image.member)


@register_dataset("adult_controls")
def adult_controls_records(
    *,
    n_covid19: int | None = None,
    n_normal: int | None = None,
    n_pneumonia: int | None = None,
    min_age: float = 18,
    include_kermany: bool = False,
    seed: int = 0,
    nih_label_path: str | os.PathLike[str] | None = None,
    nih_from_archives: bool | None = None,
    nih_archive_urls: Sequence[str] = NIH_ARCHIVE_URLS,
    nih_archive_sizes: Sequence[int] = NIH_ARCHIVE_SIZES,
    kermany_path: str | os.PathLike[str] | None = None,
    kermany_sha256: str | None = None,
    commit: str = IEEE8023_COMMIT,
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
) -> list[Sample]:
    """COVID-19 from ieee8023 against adult normal and pneumonia controls from NIH ChestX-ray14.

    The seed paper's composite (:func:`soares2020_records`) puts adult COVID-19
    X-rays against children's normal and pneumonia X-rays, so that age alone
    separates the classes. Here every class holds adults:

    * ``covid19``: frontal (PA, AP, AP Supine) COVID-19 X-rays of ieee8023 at
      the pinned commit, of patients aged ``min_age`` or more where the age is
      recorded (rows without an age are kept);
    * ``normal``: NIH ``No Finding`` images, PA and AP, aged ``min_age`` or more;
    * ``pneumonia``: NIH images with ``Pneumonia`` among their findings, PA and
      AP, aged ``min_age`` or more;
    * with ``include_kermany=True``, also Kermany's pediatric normal and
      pneumonia images (``train`` folder), so that the controls mix ages.

    COVID-19 still comes from another source than the controls, so the
    confound warning names it (:func:`warn_if_confounded`): a model can still
    learn hospital and processing; read ``Evaluation.by_source``. The
    composition by class and source (ages, views) is logged
    (:func:`describe_composition`).

    Parameters
    ----------
    n_covid19 : int, optional
        COVID-19 images drawn; all that match by default.
    n_normal, n_pneumonia : int, optional
        Normal and pneumonia images drawn from each control source (NIH, and
        Kermany with ``include_kermany``); all by default. Kermany pneumonia
        images are drawn half bacterial, half viral where possible.
    min_age : float, default 18
        Youngest age kept (ieee8023 where recorded, NIH always).
    include_kermany : bool, default False
        Add Kermany's pediatric controls.
    seed : int, default 0
        Seed of the draws.
    nih_label_path, nih_from_archives, nih_archive_urls, nih_archive_sizes
        ``label_path``, ``from_archives``, ``archive_urls`` and ``archive_sizes``
        of :func:`cxrclassify.datasets.nih.nih_records`.
    kermany_path, kermany_sha256, commit
        As in :func:`soares2020_records`.
    fetch_options : FetchOptions, optional
        Cache folder, mirror, verification, pins and progress bars, for every
        source: see :class:`~cxrclassify.datasets.FetchOptions`.
    **fetch_keywords
        ``data_home``, ``mirror``, ``verify``, ``known_hashes`` and ``progress``
        one by one instead (not with ``fetch_options``).

    Returns
    -------
    list of Sample
        Labels ``covid19``, ``normal`` and ``pneumonia``.

    Examples
    --------
    >>> import cxrclassify
    >>> data = cxrclassify.load_datasets("adult_controls", mirror="../shared/data", verify=False)  # doctest: +SKIP
    """
    options = _resolve_fetch_options(fetch_options, fetch_keywords, caller="adult_controls_records")
    rng = np.random.default_rng(seed)
    covid_rows = [row for row in _ieee8023_covid_rows(commit, options)
                  if (age := parse_age(row.get("age", ""))) is None or age >= min_age]
    if n_covid19 is not None:
        covid_rows = [covid_rows[i] for i in sorted(_draw(rng, len(covid_rows), n_covid19, "ieee8023 COVID-19"))]
    records = ieee8023_records(rows=covid_rows, label="covid19", commit=commit, fetch_options=options)
    records += nih_records(
        label_map={"normal": NO_FINDING, "pneumonia": "Pneumonia"}, min_age=min_age,
        n_per_label={"normal": n_normal, "pneumonia": n_pneumonia}, seed=seed, label_path=nih_label_path,
        from_archives=nih_from_archives, archive_urls=nih_archive_urls, archive_sizes=nih_archive_sizes,
        fetch_options=options,
    )
    if include_kermany:
        archive = kermany_archive(path=kermany_path, sha256=kermany_sha256, fetch_options=options)
        index = [image for image in kermany_index(archive) if image.split == "train"]
        normal = [image for image in index if image.label == "normal"]
        pneumonia = [image for image in index if image.label == "pneumonia"]
        if n_normal is not None:
            normal = [normal[i] for i in sorted(_draw(rng, len(normal), n_normal, "Kermany normal"))]
        if n_pneumonia is not None:
            pneumonia = _draw_balanced_subtypes(rng, pneumonia, n_pneumonia)
        records += kermany_records(normal + pneumonia, path=archive if kermany_path else None,
                                   sha256=kermany_sha256, fetch_options=options)
    logger.info("adult_controls composition:\n%s", format_composition(describe_composition(records)))
    warn_if_confounded(records)
    return records


#: Age group of a source's images when a record has no age (Kermany: children of 1 to 5 years).
SOURCE_AGE_GROUPS = {"kermany": "children"}
#: Ages below this are children's.
ADULT_AGE = 18


def _age_group(record: Sample) -> str | None:
    if record.age is not None:
        return "children" if record.age < ADULT_AGE else "adults"
    return SOURCE_AGE_GROUPS.get(record.source or "")


def describe_composition(records: Iterable[Sample]) -> list[dict[str, object]]:
    """Images, patients, ages and views of each class, source by source.

    One row per (label, source), sorted: ``label``, ``source``, ``images``,
    ``patients``, ``age_known`` (images with a recorded age), ``age_min``,
    ``age_median``, ``age_max`` (``None`` without ages), ``children`` and
    ``adults`` (by the recorded age, under or over 18, or, without one, by the
    source's known population: Kermany's are children), and ``views`` (a dict
    of view to images, ``"unknown"`` where not recorded).

    Examples
    --------
    >>> from cxrclassify.datasets import Sample
    >>> from cxrclassify.datasets.composite import describe_composition
    >>> rows = describe_composition([Sample("a", "covid19", "p1", "ieee8023", 60, "M", "PA"),
    ...                              Sample("b", "covid19", "p1", "ieee8023", 62, "M", "AP"),
    ...                              Sample("c", "normal", "k1", "kermany")])
    >>> [(r["label"], r["source"], r["images"], r["patients"], r["age_median"], r["children"]) for r in rows]
    [('covid19', 'ieee8023', 2, 1, 61.0, 0), ('normal', 'kermany', 1, 1, None, 1)]
    """
    by_class: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for record in records:
        by_class[(record.label, record.source or "unknown")].append(record)
    rows = []
    for (label, source), members in sorted(by_class.items()):
        ages = [record.age for record in members if record.age is not None]
        groups = Counter(_age_group(record) for record in members)
        rows.append({
            "label": label,
            "source": source,
            "images": len(members),
            "patients": len({record.group if record.group is not None else record.path for record in members}),
            "age_known": len(ages),
            "age_min": min(ages) if ages else None,
            "age_median": float(np.median(ages)) if ages else None,
            "age_max": max(ages) if ages else None,
            "children": groups.get("children", 0),
            "adults": groups.get("adults", 0),
            "views": dict(sorted(Counter(record.view or "unknown" for record in members).items())),
        })
    return rows


def format_composition(rows: Iterable[Mapping[str, object]]) -> str:
    """A plain-text table of :func:`describe_composition`'s rows (for logs and reports).

    Examples
    --------
    >>> from cxrclassify.datasets import Sample
    >>> from cxrclassify.datasets.composite import describe_composition, format_composition
    >>> print(format_composition(describe_composition([Sample("a", "normal", "p1", "nih", 40, "F", "PA")])))
    label   source  images  patients  age (min/median/max)  children  adults  views
    normal  nih          1         1  40/40/40                     0       1  PA 1
    """

    def number(value: object) -> str:
        return "?" if value is None else f"{value:g}"

    header = ("label", "source", "images", "patients", "age (min/median/max)", "children", "adults", "views")
    table = [header]
    for row in rows:
        ages = "/".join(number(row[key]) for key in ("age_min", "age_median", "age_max"))
        views = ", ".join(f"{view} {count}" for view, count in dict(row["views"]).items())
        table.append((str(row["label"]), str(row["source"]), str(row["images"]), str(row["patients"]), ages,
                      str(row["children"]), str(row["adults"]), views))
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    right = {2, 3, 5, 6}
    lines = [
        "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(line))
        for line in table
    ]
    return "\n".join(line.rstrip() for line in lines)


def _isolated(values_per_label: dict[str, set[str]]) -> list[str]:
    """Labels whose values share nothing with the other labels' (labels without values are skipped)."""
    isolated = []
    for label, values in sorted(values_per_label.items()):
        others = set().union(*(v for other, v in values_per_label.items() if other != label))
        if values and others and not values & others:
            isolated.append(label)
    return isolated


def _describe(values_per_label: dict[str, set[str]]) -> str:
    return "; ".join(f"{label}: {', '.join(sorted(values)) or 'unknown'}" for label, values in sorted(values_per_label.items()))


def warn_if_confounded(records: Iterable[Sample], *, stacklevel: int = 2) -> list[str]:
    """Warn when a class shares no source, or no age group, with the other classes.

    A class whose images all come from sources (or age groups: children under
    18, adults) that no other class has can be told apart by source or age
    instead of disease. One :class:`~cxrclassify.exceptions.ConfoundingWarning` names each such class and the
    sources or ages of every class. Age groups come from the records' ages,
    or, where none is recorded, from the source's known population
    (:data:`SOURCE_AGE_GROUPS`: Kermany's are children); records with neither
    do not count.

    Returns
    -------
    list of str
        The problems found (empty when none, and then nothing is warned).

    Examples
    --------
    >>> import warnings
    >>> from cxrclassify.datasets import Sample
    >>> from cxrclassify.datasets.composite import warn_if_confounded
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     problems = warn_if_confounded([Sample("a", "covid19", source="ieee8023", age=60),
    ...                                    Sample("b", "normal", source="kermany"),
    ...                                    Sample("c", "pneumonia", source="kermany")])
    >>> problems
    ["class 'covid19' shares no source with the other classes", "class 'covid19' shares no age group with the other classes"]
    >>> "different sources" in str(caught[0].message)
    True
    """
    sources: dict[str, set[str]] = defaultdict(set)
    ages: dict[str, set[str]] = defaultdict(set)
    for record in records:
        sources[record.label].add(record.source or "unknown")
        group = _age_group(record)
        ages.setdefault(record.label, set())
        if group is not None:
            ages[record.label].add(group)
    problems = [f"class {label!r} shares no source with the other classes" for label in _isolated(sources)]
    problems += [f"class {label!r} shares no age group with the other classes" for label in _isolated(ages)]
    if not problems:
        return []
    kinds = [kind for kind, word in (("different sources", "source"), ("different age groups", "age group"))
             if any(f"no {word} " in problem for problem in problems)]
    message = f"Classes come from {' and '.join(kinds)}: {'; '.join(problems)}."
    message += f" Sources by class: {_describe(sources)}. Age groups by class: {_describe(ages)}."
    message += (
        " A model can tell such classes apart by source or age (hospital, scanner, processing, anatomy) instead "
        "of disease, and a high test score on this data is no evidence that it recognises the disease; read "
        "the evaluation by source."
    )
    warnings.warn(message, ConfoundingWarning, stacklevel=stacklevel)
    return problems


def warn_if_sources_confound(records: list[Sample]) -> None:
    """Warn when a class comes from different sources (or ages) than the others: :func:`warn_if_confounded`.

    Kept for the code that calls it; it warns as :func:`warn_if_confounded` does.

    Examples
    --------
    >>> import warnings
    >>> from cxrclassify.datasets import Sample
    >>> from cxrclassify.datasets.composite import warn_if_sources_confound
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_if_sources_confound([Sample("a", "covid19", source="adults"), Sample("b", "normal", source="children")])
    >>> "source" in str(caught[0].message)
    True
    """
    warn_if_confounded(records, stacklevel=3)
