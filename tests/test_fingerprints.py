"""Fingerprints for the duplicate checks: blockwise search, exact pairs, the on-disk cache, and
the same pairs and joins as the full-matrix check they replace (on synthetic and real X-rays)."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cxrclassify
from cxrclassify.datasets import (
    DuplicatePair,
    FingerprintCache,
    GroupJoin,
    ImageFingerprints,
    decode_records,
    find_cross_split_duplicates,
    find_similar_pairs,
    fingerprint_images,
    image_key,
    join_duplicate_groups,
)
from cxrclassify.exceptions import ArgumentError

# --------------------------------------------------------------------------------------------------
# The reference: the full-matrix duplicate check and the row-block join as they were before the
# fingerprints (copied from cxrclassify.datasets.splits), to compare the new search with.


def _reference_signature(image: np.ndarray, size: int = 32) -> np.ndarray:
    grey = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("L").resize((size, size), Image.Resampling.BOX)
    values = np.asarray(grey, dtype=np.float32).ravel()
    values -= values.mean()
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 0 else values


def _reference_cross_split(splits, *, min_similarity=0.97):
    names = [name for name in splits if len(splits[name][0])]
    signatures = {name: np.stack([_reference_signature(image) for image in splits[name][1]]) for name in names}
    digests = {name: [hashlib.sha1(image.tobytes()).hexdigest() for image in splits[name][1]] for name in names}
    pairs = []
    for first_index, first in enumerate(names):
        for second in names[first_index + 1:]:
            similarity = signatures[first] @ signatures[second].T
            for row, column in zip(*np.nonzero(similarity >= min_similarity)):
                pairs.append(DuplicatePair(
                    splits[first][0][row], first, splits[second][0][column], second,
                    round(float(similarity[row, column]), 4), digests[first][row] == digests[second][column],
                ))
    return sorted(pairs, key=lambda pair: (-pair.similarity, pair.path_a, pair.path_b))


def _reference_join(groups, images, paths, *, min_similarity=0.97, block_size=1024):
    if len(images) < 2:
        return list(groups), []
    signatures = np.stack([_reference_signature(image) for image in images])
    parent = {group: group for group in groups}

    def root(group):
        while parent[group] != group:
            parent[group] = parent[parent[group]]
            group = parent[group]
        return group

    evidence = []
    group_array = np.asarray(groups, dtype=object)
    for start in range(0, len(images), block_size):
        block = signatures[start:start + block_size] @ signatures.T
        rows, columns = np.nonzero(block >= min_similarity)
        for row, column in zip(rows.tolist(), columns.tolist()):
            first, second = start + row, column
            if second <= first or group_array[first] == group_array[second]:
                continue
            evidence.append((groups[first], paths[first], paths[second], round(float(block[row, column]), 4)))
            a, b = root(groups[first]), root(groups[second])
            if a != b:
                parent[max(a, b)] = min(a, b)
    members = defaultdict(set)
    for group in parent:
        members[root(group)].add(group)
    joined = {"|".join(sorted(found)): tuple(sorted(found)) for found in members.values() if len(found) > 1}
    joined_key = {group: key for key, found in joined.items() for group in found}
    joins = []
    for key in sorted(joined):
        linked = tuple((a, b, similarity) for first_group, a, b, similarity in evidence
                       if joined_key.get(first_group) == key)
        joins.append(GroupJoin(key, joined[key], linked))
    return [joined_key.get(group, group) for group in groups], joins


# --------------------------------------------------------------------------------------------------
# Synthetic data


def _clustered_signatures(n: int, seed: int, *, clusters: int = 6, noise: float = 0.12) -> np.ndarray:
    """Unit vectors around a few centres: many pairs above 0.97, many below."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, 1024))
    vectors = centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, 1024)) * rng.uniform(0, 1, (n, 1))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def _fingerprints(signatures: np.ndarray, seed: int) -> ImageFingerprints:
    digests = np.random.default_rng(seed).bytes(20 * len(signatures))
    return ImageFingerprints(signatures, np.frombuffer(digests, dtype="S20").copy())


def _near_duplicate_images(n: int, seed: int) -> np.ndarray:
    """Smooth random images, some of them repeated exactly or with noise (re-encoded, rescaled)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (n, 6, 6), dtype=np.uint8)
    images = np.stack([np.asarray(Image.fromarray(c).resize((40, 40), Image.Resampling.BICUBIC)) for c in coarse])
    for index in range(1, n, 3):  # every third image repeats an earlier one
        source = int(rng.integers(0, index))
        images[index] = images[source]
        if index % 2:
            images[index] = np.clip(images[index] + rng.integers(-6, 7, images[index].shape), 0, 255)
    return np.repeat(images[..., None], 3, axis=-1)


def _as_sets(pairs) -> dict[tuple[int, int], float]:
    return {(i, j): s for i, j, s in zip(pairs.first.tolist(), pairs.second.tolist(), pairs.similarity.tolist())}


@pytest.mark.parametrize("block_size", [1, 3, 16, 37, 1000])
def test_blockwise_search_equals_the_full_matrix(block_size):
    pool = _fingerprints(_clustered_signatures(105, 0), 0)  # one set of centres
    a, b = pool[:60], pool[60:]
    full = a.signatures @ b.signatures.T
    expected = {(i, j): full[i, j] for i, j in zip(*np.nonzero(full >= 0.97))}
    assert 30 < len(expected) < 0.9 * full.size  # both sides of the threshold are exercised
    found = find_similar_pairs(a, b, min_similarity=0.97, block_size=block_size)
    assert set(_as_sets(found)) == set(expected)
    assert np.allclose([expected[key] for key in _as_sets(found)], found.similarity, atol=1e-6)
    assert list(zip(found.first.tolist(), found.second.tolist())) == sorted(expected)  # row-major order
    assert not found.exact.any()


@pytest.mark.parametrize("block_size", [1, 4, 25, 1000])
def test_blockwise_search_within_one_set_equals_the_upper_triangle(block_size):
    a = _fingerprints(_clustered_signatures(70, 2), 2)
    full = a.signatures @ a.signatures.T
    expected = {(i, j) for i, j in zip(*np.nonzero(np.triu(full >= 0.97, k=1)))}
    assert len(expected) > 30
    found = find_similar_pairs(a, min_similarity=0.97, block_size=block_size)
    assert list(zip(found.first.tolist(), found.second.tolist())) == sorted(expected)
    assert np.allclose(found.similarity, full[found.first, found.second], atol=1e-6)


def test_empty_sets_and_bad_block_sizes():
    a = _fingerprints(_clustered_signatures(5, 3), 3)
    assert len(find_similar_pairs(a, ImageFingerprints.empty(), min_similarity=0.97)) == 0
    assert len(find_similar_pairs(ImageFingerprints.empty(), min_similarity=0.97)) == 0
    for block_size in (0, -1, 2.5, True):
        with pytest.raises(ArgumentError, match="block_size"):
            find_similar_pairs(a, min_similarity=0.97, block_size=block_size)
    with pytest.raises(ArgumentError, match="one size"):
        find_similar_pairs(a, ImageFingerprints(np.zeros((1, 16), np.float32), np.zeros(1, "S20")),
                           min_similarity=0.97)


def test_exact_duplicates_of_a_constant_image_are_found():
    images = np.zeros((5, 16, 16, 3), np.uint8)
    images[1] = 200  # constant too, but other pixels
    images[3] = 200
    images[4] = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    fingerprints = fingerprint_images(images)
    assert not fingerprints.signatures[:4].any()  # a constant thumbnail has no correlation
    within = find_similar_pairs(fingerprints, min_similarity=0.97, block_size=2)
    assert list(zip(within.first.tolist(), within.second.tolist())) == [(0, 2), (1, 3)]
    assert within.exact.all() and (within.similarity == 1.0).all()
    across = find_similar_pairs(fingerprints[[0, 1]], fingerprints[[2, 3, 4]], min_similarity=0.97)
    assert list(zip(across.first.tolist(), across.second.tolist())) == [(0, 0), (1, 1)]
    pairs = find_cross_split_duplicates({"train": (["a", "b"], images[:2]), "test": (["c", "d", "e"], images[2:])})
    assert [(pair.path_a, pair.path_b, pair.similarity, pair.exact) for pair in pairs] == [
        ("a", "c", 1.0, True), ("b", "d", 1.0, True)]
    # A blank frame tells nothing of who the person is: it joins nobody (as before).
    assert join_duplicate_groups(list("pqrst"), images, list("abcde")) == (list("pqrst"), [])


def test_exact_flag_needs_identical_pixels():
    images = _near_duplicate_images(30, 4)
    fingerprints = fingerprint_images(images)
    found = find_similar_pairs(fingerprints, min_similarity=0.97)
    identical = [bool(np.array_equal(images[i], images[j])) for i, j in zip(found.first, found.second)]
    assert found.exact.tolist() == identical and any(identical) and not all(identical)


def test_fingerprints_batch_by_batch_equal_those_of_the_whole_array():
    images = _near_duplicate_images(20, 5)
    whole = fingerprint_images(images)
    batches = fingerprint_images(images[start:start + 7] for start in range(0, 20, 7))
    singles = fingerprint_images(iter(list(images)))
    for other in (batches, singles):
        assert np.array_equal(other.signatures, whole.signatures)
        assert np.array_equal(other.digests, whole.digests)
    assert np.array_equal(whole.signatures[3], _reference_signature(images[3]))
    assert whole.digests[3] == hashlib.sha1(images[3].tobytes()).digest()
    assert len(fingerprint_images(iter([]))) == 0
    with pytest.raises(ArgumentError):
        fingerprint_images(np.zeros(5, np.uint8))


def test_fingerprints_are_frozen():
    fingerprints = fingerprint_images(_near_duplicate_images(3, 6))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fingerprints.signatures = None
    with pytest.raises(ValueError):
        fingerprints.signatures[0, 0] = 1.0
    with pytest.raises(ValueError):
        fingerprints.digests[0] = b"x" * 20
    assert len(fingerprints[1]) == 1 and len(ImageFingerprints.concatenate([fingerprints, fingerprints])) == 6
    with pytest.raises(ArgumentError, match="float32"):
        ImageFingerprints(np.zeros((2, 4)), np.zeros(2, "S20"))
    with pytest.raises(ArgumentError, match="digest"):
        ImageFingerprints(np.zeros((2, 4), np.float32), np.zeros(3, "S20"))


def test_the_cache_computes_nothing_the_second_time(tmp_path):
    images = _near_duplicate_images(12, 7)
    keys = [f"image{i}.png:100:{i}:64:None:None" for i in range(12)]
    asked = []

    def decode(positions):
        asked.append(positions.tolist())
        return (images[position] for position in positions)

    cache = FingerprintCache(tmp_path / "fingerprints")
    first = cache.fingerprints(keys, decode)
    assert asked == [list(range(12))] and cache.computed == 12
    expected = fingerprint_images(images)
    assert np.array_equal(first.signatures, expected.signatures) and np.array_equal(first.digests, expected.digests)
    for reader in (cache, FingerprintCache(tmp_path / "fingerprints")):  # this object and a fresh one (a new run)
        again = reader.fingerprints(keys[::-1], decode)
        assert asked == [list(range(12))]  # nothing decoded, nothing computed
        assert np.array_equal(again.signatures, expected.signatures[::-1])
        assert np.array_equal(again.digests, expected.digests[::-1])
    fresh = FingerprintCache(tmp_path / "fingerprints")
    more = fresh.fingerprints(keys[:3] + ["new.png:1:1:64:None:None"], np.concatenate([images[:3], images[5:6]]))
    assert fresh.computed == 1 and len(fresh) == 13 and "new.png:1:1:64:None:None" in fresh
    assert np.array_equal(more.signatures[3], expected.signatures[5])
    found = FingerprintCache(tmp_path / "fingerprints").get(["image0.png:100:0:64:None:None", "absent"])[1]
    assert found.tolist() == [True, False]
    with pytest.raises(ArgumentError, match="one key per fingerprint"):
        cache.put(["a"], expected)


def test_the_cache_key_changes_with_the_file_and_the_decoding(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    key = image_key(path, image_size=64)
    assert key == image_key(str(path), image_size=64)
    assert key != image_key(path, image_size=32)
    assert key != image_key(path, image_size=64, lungs="crop")
    assert key != image_key(path, image_size=64, common_resolution=224)
    time.sleep(0.01)
    Image.fromarray(np.ones((8, 9), np.uint8)).save(path)
    assert key != image_key(path, image_size=64)


def _random_splits(n: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.split(order, [int(0.8 * n), int(0.9 * n)])]


def _check_same_as_reference(images, paths, groups, *, min_similarity, seed=0):
    """The new cross-split check and join (from images and from fingerprints) equal the reference."""
    fingerprints = fingerprint_images(images[start:start + 50] for start in range(0, len(images), 50))
    splits = _random_splits(len(images), seed)
    names = ("train", "validation", "test")
    reference_pairs = _reference_cross_split(
        {name: ([paths[i] for i in split], images[split]) for name, split in zip(names, splits)},
        min_similarity=min_similarity)
    for block_size in (1024, 37):
        for given in (images, fingerprints):
            pairs = find_cross_split_duplicates(
                {name: ([paths[i] for i in split], given[split]) for name, split in zip(names, splits)},
                min_similarity=min_similarity, block_size=block_size)
            assert pairs == reference_pairs
    reference_join = _reference_join(groups, images, paths, min_similarity=min_similarity)
    for block_size in (1024, 37):
        for given in (images, fingerprints):
            assert join_duplicate_groups(groups, given, paths, min_similarity=min_similarity,
                                         block_size=block_size) == reference_join
    return reference_pairs, reference_join


@pytest.mark.parametrize("min_similarity", [0.97, 0.9])
def test_same_pairs_and_joins_as_the_full_matrix_on_synthetic_images(min_similarity):
    images = _near_duplicate_images(90, 8)
    paths = [f"{i:03d}.png" for i in range(90)]
    groups = [f"p{i // 2}" for i in range(90)]
    pairs, (_, joins) = _check_same_as_reference(images, paths, groups, min_similarity=min_similarity)
    assert pairs and joins


# --------------------------------------------------------------------------------------------------
# Real X-rays: ieee8023 + COVID-CXNet + NIH from ../shared/data


@pytest.fixture(scope="module")
def real_xrays(tmp_path_factory):
    from conftest import SHARED

    from cxrclassify.datasets import cxnet_records, ieee8023_records, nih_records

    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"../shared/data is absent ({data}): the integration test needs the real X-rays")
    options = {"mirror": data, "verify": False, "data_home": tmp_path_factory.mktemp("home"), "progress": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cxrclassify.UnverifiedDownloadWarning)
        records = (ieee8023_records(**options) + cxnet_records(**options)
                   + nih_records(n_per_label=100, **options))
    images = decode_records(records, 64, progress=False)
    return records, images


@pytest.mark.integration
@pytest.mark.parametrize("min_similarity", [0.97, 0.9])
def test_same_pairs_and_joins_as_the_full_matrix_on_real_xrays(real_xrays, min_similarity):
    records, images = real_xrays
    paths = [record.path for record in records]
    groups = [record.group if record.group is not None else f"image:{i}" for i, record in enumerate(records)]
    assert {record.source for record in records} >= {"ieee8023", "nih"} and len(records) > 700
    found = []
    for seed in (0, 1):  # two random splits by image, so that duplicates land in two splits
        pairs, (_, joins) = _check_same_as_reference(images, paths, groups, min_similarity=min_similarity,
                                                     seed=seed)
        found += pairs
    assert found  # the comparison is not vacuous: cross-split pairs exist
    assert joins  # real sources file some people twice (ieee8023's patients 97 and 178, ...)
    assert any({"ieee8023:178", "ieee8023:97"} <= set(join.members) for join in joins)


@pytest.mark.integration
def test_the_cache_serves_real_xrays_without_computing(real_xrays, tmp_path):
    records, images = real_xrays
    keys = [image_key(record.path, image_size=64) for record in records]
    first = FingerprintCache(tmp_path / "fp").fingerprints(keys, images)
    second_cache = FingerprintCache(tmp_path / "fp")
    second = second_cache.fingerprints(keys, lambda positions: pytest.fail("nothing should be decoded"))
    assert second_cache.computed == 0
    assert np.array_equal(first.signatures, second.signatures) and np.array_equal(first.digests, second.digests)
    assert join_duplicate_groups([r.group or str(i) for i, r in enumerate(records)], second,
                                 [r.path for r in records]) == join_duplicate_groups(
        [r.group or str(i) for i, r in enumerate(records)], images, [r.path for r in records])
    assert sum(path.stat().st_size for path in Path(tmp_path / "fp").iterdir()) < 4200 * len(records) + 100_000
