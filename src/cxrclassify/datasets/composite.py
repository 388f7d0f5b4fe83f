"""Named composites of several sources, such as the seed paper's ``soares2020``.

Every recipe is a function returning records; it is registered under its name,
so ``load_datasets("soares2020", mirror=...)`` builds it, splits it by patient
and decodes it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import defaultdict
from typing import Mapping

import numpy as np

from ..exceptions import DataError
from ._load import register_recipe
from ._records import Sample
from .ieee8023 import IEEE8023_COMMIT, fetch_ieee8023_metadata, ieee8023_records, read_ieee8023_metadata, select_ieee8023_rows
from .kermany import kermany_archive, kermany_index, kermany_records

__all__ = ["soares2020_records", "warn_if_sources_confound"]

logger = logging.getLogger(__name__)


@register_recipe("soares2020")
def soares2020_records(
    *,
    n_covid19: int = 175,
    n_normal: int = 100,
    n_pneumonia: int = 100,
    seed: int = 0,
    data_home: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    verify: bool = True,
    known_hashes: Mapping[str, str] | None = None,
    kermany_path: str | os.PathLike[str] | None = None,
    kermany_sha256: str | None = None,
    commit: str = IEEE8023_COMMIT,
    progress: bool = True,
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
    data_home, mirror, verify, known_hashes, progress
        As in :func:`cxrclassify.datasets.ieee8023_records`.
    kermany_path : path, optional
        A ``ChestXRay2017.zip`` or extracted folder already on disk.
    kermany_sha256 : str, optional
        A known sha256 to pin the Kermany archive to.
    commit : str
        ieee8023 commit (the pinned one by default).

    Returns
    -------
    list of Sample
        Labels ``covid19``, ``normal`` and ``pneumonia``.

    Examples
    --------
    >>> import cxrclassify
    >>> data = cxrclassify.load_datasets("soares2020", mirror="../shared/data", verify=False)  # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    options = dict(data_home=data_home, mirror=mirror, verify=verify, known_hashes=known_hashes, progress=progress)
    metadata = fetch_ieee8023_metadata(commit=commit, **options)
    covid_rows = select_ieee8023_rows(read_ieee8023_metadata(metadata), findings=("COVID-19",))
    chosen_rows = [covid_rows[i] for i in sorted(_draw(rng, len(covid_rows), n_covid19, "ieee8023 COVID-19"))]
    covid = ieee8023_records(rows=chosen_rows, label="covid19", commit=commit, **options)

    archive = kermany_archive(path=kermany_path, sha256=kermany_sha256, **options)
    index = [image for image in kermany_index(archive) if image.split == "train"]
    normal_pool = [image for image in index if image.label == "normal"]
    normal = [normal_pool[i] for i in sorted(_draw(rng, len(normal_pool), n_normal, "Kermany normal"))]
    pneumonia = _draw_balanced_subtypes(rng, [image for image in index if image.label == "pneumonia"], n_pneumonia)
    controls = kermany_records(normal + pneumonia, path=archive if kermany_path else None,
                               sha256=kermany_sha256, **options)
    records = covid + controls
    warn_if_sources_confound(records)
    return records


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


def warn_if_sources_confound(records: list[Sample]) -> None:
    """Warn when the classes come from different sources: a model can learn the source instead.

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
    sources_per_label: dict[str, set[str]] = defaultdict(set)
    for record in records:
        sources_per_label[record.label].add(record.source or "unknown")
    shared = set.intersection(*sources_per_label.values()) if sources_per_label else set()
    if len(sources_per_label) > 1 and not shared:
        described = ", ".join(f"{label}: {sorted(sources)}" for label, sources in sorted(sources_per_label.items()))
        warnings.warn(
            f"Every class comes from different sources ({described}): a model can tell the classes apart by "
            "source (age, hospital, scanner, processing) instead of disease, and a high test score on this "
            "data is no evidence that it recognises the disease.",
            UserWarning,
            stacklevel=2,
        )
