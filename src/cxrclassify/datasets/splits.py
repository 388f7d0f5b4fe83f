"""Stratified, group-aware train/validation/test splits.

Images of one patient are never spread over two splits: a model that has seen a
patient's first X-ray recognises the follow-up, which inflates test scores. The
splits are drawn with scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`,
so class proportions are kept as far as whole groups allow.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ..exceptions import ArgumentError, DataError, SplitWarning
from .fingerprints import ImageFingerprints, find_similar_pairs, fingerprint_images, thumbnail_signature

__all__ = [
    "NEAR_DUPLICATE_SIMILARITY",
    "DuplicatePair",
    "GroupJoin",
    "find_cross_split_duplicates",
    "join_duplicate_groups",
    "stratified_group_split",
    "thumbnail_signature",
]

logger = logging.getLogger(__name__)


def stratified_group_split(
    labels: np.ndarray,
    groups: list[str],
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split indices into train, validation and test, stratified by label, grouped by ``groups``.

    The fractions are met as closely as whole groups allow: the test split is one
    fold of ``round(1 / test_fraction)`` stratified group folds, and the validation
    split one fold of the rest, so 0.1 and 0.1 give about 80/10/10.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label of each item.
    groups : list of str
        Group key of each item (the patient). Items of one group land in one split.
    validation_fraction, test_fraction : float
        Wanted shares of the validation and test splits, each in ``[0, 0.5]``;
        ``0`` leaves that split empty.
    seed : int
        Seed of the shuffle; the same seed gives the same split.

    Returns
    -------
    train, validation, test : numpy.ndarray
        Sorted integer indices of each split.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets.splits import stratified_group_split
    >>> labels = np.array([0] * 20 + [1] * 20)
    >>> groups = [f"patient{i // 2}" for i in range(40)]
    >>> train, validation, test = stratified_group_split(labels, groups, seed=1)
    >>> len(train) + len(validation) + len(test)
    40
    """
    labels = np.asarray(labels)
    _check_fraction("validation_fraction", validation_fraction)
    _check_fraction("test_fraction", test_fraction)
    if validation_fraction + test_fraction >= 1:
        message = (
            "Expected validation_fraction + test_fraction < 1. "
            f"Received: validation_fraction={validation_fraction}, test_fraction={test_fraction}"
        )
        raise ArgumentError(message)
    _check_enough_groups(labels, groups, validation_fraction, test_fraction)

    all_indices = np.arange(len(labels))
    rest, test = _hold_out(all_indices, labels, groups, test_fraction, seed)
    kept_fraction = 1.0 - test_fraction
    train, validation = _hold_out(rest, labels, groups, validation_fraction / kept_fraction, seed + 1)
    for name, split in (("validation", validation), ("test", test)):
        _warn_if_classes_missing(name, split, labels)
    return np.sort(train), np.sort(validation), np.sort(test)


def _hold_out(
    indices: np.ndarray, labels: np.ndarray, groups: list[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (kept, held out), holding out about ``fraction`` of them."""
    if fraction <= 0 or len(indices) == 0:
        return indices, indices[:0]
    n_splits = max(2, int(round(1.0 / fraction)))
    group_array = np.asarray(groups, dtype=object)[indices]
    n_groups = len(set(group_array.tolist()))
    # scikit-learn refuses more folds than the largest class has members.
    n_splits = min(n_splits, n_groups, int(np.bincount(labels[indices]).max()))
    if n_splits < 2:
        return indices, indices[:0]
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Tiny classes trigger "least populated class has only N members": we
        # check coverage ourselves and warn in terms of the user's splits.
        warnings.filterwarnings("ignore", message=".*least populated class.*", category=UserWarning)
        kept, held_out = next(folds.split(indices, labels[indices], group_array))
    return indices[kept], indices[held_out]


def _check_fraction(name: str, value: float) -> None:
    if not 0 <= value <= 0.5:
        message = f"Expected {name} between 0 and 0.5. Received: {name}={value}"
        raise ArgumentError(message)


def _check_enough_groups(
    labels: np.ndarray, groups: list[str], validation_fraction: float, test_fraction: float
) -> None:
    needed = 1 + int(validation_fraction > 0) + int(test_fraction > 0)
    groups_per_label: dict[int, set[str]] = defaultdict(set)
    for label, group in zip(labels.tolist(), groups):
        groups_per_label[label].add(group)
    too_small = {label: len(found) for label, found in groups_per_label.items() if len(found) < needed}
    if too_small:
        message = (
            f"Each class needs at least {needed} patients (groups) to appear in every split. "
            f"Received: classes with too few patients {too_small} (label index: patient count)"
        )
        raise DataError(message)


def _warn_if_classes_missing(split_name: str, split: np.ndarray, labels: np.ndarray) -> None:
    if len(split) == 0:
        return
    missing = sorted(set(labels.tolist()) - set(labels[split].tolist()))
    if missing:
        warnings.warn(
            f"The {split_name} split has no image of the class indices {missing}: the dataset is "
            "too small for stratified splits by patient; its metrics for those classes are undefined.",
            SplitWarning,
            stacklevel=3,
        )


@dataclass(frozen=True)
class DuplicatePair:
    """Two images in different splits that are identical or nearly so.

    Attributes
    ----------
    path_a, path_b : str
        The two images.
    split_a, split_b : str
        Their splits.
    similarity : float
        Correlation of their 32 x 32 grayscale thumbnails (1.0: the same picture).
    exact : bool
        Whether their decoded, resized pixels are identical.
    """

    path_a: str
    split_a: str
    path_b: str
    split_b: str
    similarity: float
    exact: bool


#: Thumbnail correlation from which two images count as near-duplicates. Measured on
#: 1,600 real X-rays (ieee8023, NIH, Kermany): pairs above 0.97 were the same picture
#: (re-encoded, rescaled or listed twice, some under two patients); X-rays of different
#: patients reached 0.964 at most, follow-ups of one patient 0.970.
NEAR_DUPLICATE_SIMILARITY = 0.97


def _fingerprints(images: np.ndarray | Sequence[np.ndarray] | ImageFingerprints) -> ImageFingerprints:
    """``images`` fingerprinted, or as they are if they already are fingerprints."""
    if isinstance(images, ImageFingerprints):
        return images
    return fingerprint_images(images if isinstance(images, np.ndarray) else list(images))


def find_cross_split_duplicates(
    splits: dict[str, tuple[list[str], np.ndarray | ImageFingerprints]],
    *,
    min_similarity: float = NEAR_DUPLICATE_SIMILARITY,
    block_size: int = 1024,
) -> list[DuplicatePair]:
    """Find images of one split that are identical or near-identical to images of another.

    Each pair of splits is searched blockwise (:func:`~cxrclassify.datasets.fingerprints.find_similar_pairs`):
    memory stays bounded by ``block_size`` whatever the size of the splits.
    Images with identical pixels are always reported, even where the
    thumbnail is constant (their similarity is 1.0).

    Parameters
    ----------
    splits : dict
        ``{split name: (paths, images)}`` with ``images`` an ``(N, H, W, 3)``
        array or their :class:`~cxrclassify.datasets.fingerprints.ImageFingerprints`
        (computed once, for instance while decoding: see
        :func:`~cxrclassify.datasets.fingerprints.fingerprint_images`).
    min_similarity : float, default 0.97
        Smallest thumbnail correlation counted as a near-duplicate.
    block_size : int, default 1024
        Side of the tiles of the similarity matrix computed at a time (rows
        of one split, columns of another): memory grows with
        ``block_size ** 2``, not with the product of the split sizes. The
        result does not depend on it.

    Returns
    -------
    list of DuplicatePair
        Most similar first (then by ``path_a``, ``path_b``); the similarity is
        rounded to 4 decimals.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets.splits import find_cross_split_duplicates
    >>> image = np.random.default_rng(0).integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
    >>> other = np.random.default_rng(1).integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
    >>> pairs = find_cross_split_duplicates({"train": (["a.png"], image), "test": (["b.png", "c.png"], np.concatenate([image, other]))})
    >>> [(pair.path_a, pair.path_b, pair.exact) for pair in pairs]
    [('a.png', 'b.png', True)]

    Fingerprints computed beforehand give the same pairs:

    >>> from cxrclassify.datasets.fingerprints import fingerprint_images
    >>> test = fingerprint_images(np.concatenate([image, other]))
    >>> find_cross_split_duplicates({"train": (["a.png"], fingerprint_images(image)), "test": (["b.png", "c.png"], test)}) == pairs
    True
    """
    names = [name for name in splits if len(splits[name][0])]
    fingerprints = {name: _fingerprints(splits[name][1]) for name in names}
    for name in names:
        if len(fingerprints[name]) != len(splits[name][0]):
            message = (f"Expected one path per image in split {name!r}. "
                       f"Received: {len(splits[name][0])} paths and {len(fingerprints[name])} images")
            raise ArgumentError(message)
    pairs = []
    for first_index, first in enumerate(names):
        for second in names[first_index + 1:]:
            found = find_similar_pairs(fingerprints[first], fingerprints[second],
                                       min_similarity=min_similarity, block_size=block_size)
            for row, column, similarity, exact in zip(found.first.tolist(), found.second.tolist(),
                                                      found.similarity.tolist(), found.exact.tolist()):
                pairs.append(DuplicatePair(
                    splits[first][0][row], first, splits[second][0][column], second, round(similarity, 4), exact,
                ))
    return sorted(pairs, key=lambda pair: (-pair.similarity, pair.path_a, pair.path_b))


@dataclass(frozen=True)
class GroupJoin:
    """Groups (patients) joined into one because they share identical or near-identical images.

    Attributes
    ----------
    group : str
        The joined group key every member image now carries: the member groups,
        sorted, joined by ``"|"``.
    members : tuple of str
        The groups as the records named them (sorted).
    evidence : tuple of tuple
        The image pairs that linked them: ``(path_a, path_b, similarity)``, with
        ``similarity`` the thumbnail correlation (1.0: the same picture).

    Examples
    --------
    >>> from cxrclassify.datasets.splits import GroupJoin
    >>> GroupJoin("a|b", ("a", "b"), (("x.png", "y.png", 1.0),)).members
    ('a', 'b')
    """

    group: str
    members: tuple[str, ...]
    evidence: tuple[tuple[str, str, float], ...]


def join_duplicate_groups(
    groups: list[str],
    images: np.ndarray | ImageFingerprints,
    paths: list[str],
    *,
    min_similarity: float = NEAR_DUPLICATE_SIMILARITY,
    block_size: int = 1024,
) -> tuple[list[str], list[GroupJoin]]:
    """Join the groups of identical or near-identical images, so that one person is one patient.

    Sources file some people under two patient ids (ieee8023's patients 97 and 178
    share four identical pictures); a split by patient id would then put one
    person in train and test. Every pair of images of different groups whose
    thumbnail correlation reaches ``min_similarity`` links their groups, and the
    linked groups are joined (a union of groups: links chain). Constant images
    (a blank frame) have no thumbnail correlation and link nobody, even where
    their pixels are identical: they tell nothing of who the person is.

    Parameters
    ----------
    groups : list of str
        The group (patient) of each image.
    images : numpy.ndarray or ImageFingerprints
        ``(N, H, W, 3)`` ``uint8`` images, in the same order, or their
        :class:`~cxrclassify.datasets.fingerprints.ImageFingerprints` (computed
        once, for instance while decoding).
    paths : list of str
        The path of each image, for the evidence of each join.
    min_similarity : float, default 0.97
        Smallest thumbnail correlation counted as the same picture: the threshold
        of the cross-split duplicate check, :data:`NEAR_DUPLICATE_SIMILARITY`.
    block_size : int, default 1024
        Side of the tiles of the ``N x N`` similarity matrix computed at a time
        (:func:`~cxrclassify.datasets.fingerprints.find_similar_pairs`; only
        those above the diagonal): memory grows with ``block_size ** 2``, not
        ``N * N``. The result does not depend on it.

    Returns
    -------
    groups : list of str
        The group of each image after the joins (unchanged where nothing was joined).
    joins : list of GroupJoin
        One record per joined group, sorted by key.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.datasets.splits import join_duplicate_groups
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    >>> images[2] = images[0]  # the same picture filed under a second patient
    >>> groups, joins = join_duplicate_groups(["p97", "p5", "p178"], images, ["a.png", "b.png", "c.png"])
    >>> groups
    ['p178|p97', 'p5', 'p178|p97']
    >>> joins[0].members, joins[0].evidence
    (('p178', 'p97'), (('a.png', 'c.png', 1.0),))
    """
    if len(groups) != len(images) or len(paths) != len(images):
        message = (
            "Expected one group and one path per image. "
            f"Received: {len(groups)} groups, {len(paths)} paths and {len(images)} images"
        )
        raise ArgumentError(message)
    if len(images) < 2:
        return list(groups), []
    fingerprints = _fingerprints(images)
    pairs = find_similar_pairs(fingerprints, min_similarity=min_similarity, block_size=block_size)
    constant = (~fingerprints.signatures.any(axis=1)).tolist()
    parent = {group: group for group in groups}

    def root(group: str) -> str:
        while parent[group] != group:
            parent[group] = parent[parent[group]]
            group = parent[group]
        return group

    evidence: list[tuple[str, str, str, float]] = []
    for first, second, similarity in zip(pairs.first.tolist(), pairs.second.tolist(), pairs.similarity.tolist()):
        if groups[first] == groups[second] or constant[first] or constant[second]:
            continue
        evidence.append((groups[first], paths[first], paths[second], round(similarity, 4)))
        a, b = root(groups[first]), root(groups[second])
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[str, set[str]] = defaultdict(set)
    for group in parent:
        members[root(group)].add(group)
    joined = {"|".join(sorted(found)): tuple(sorted(found)) for found in members.values() if len(found) > 1}
    joined_key = {group: key for key, found in joined.items() for group in found}
    linked: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    for first_group, a, b, similarity in evidence:
        linked[joined_key[first_group]].append((a, b, similarity))
    joins = [GroupJoin(key, joined[key], tuple(linked[key])) for key in sorted(joined)]
    if joins:
        logger.info("Joined %d groups into %d: they share identical or near-identical images",
                    sum(len(join.members) for join in joins), len(joins))
    return [joined_key.get(group, group) for group in groups], joins
