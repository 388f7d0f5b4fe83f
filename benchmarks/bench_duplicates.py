"""Peak memory and time of the duplicate checks: the full similarity matrices of before vs the blockwise search.

For N = 2,000 / 8,000 / 32,000 images split 80/10/10, each measurement runs in its own subprocess:

* ``cross-split full``: the check as it was (``find_cross_split_duplicates`` before the fingerprints):
  the full train x validation, train x test and validation x test similarity matrices, thresholded;
* ``cross-split blockwise``: ``find_cross_split_duplicates`` on precomputed
  :class:`~cxrclassify.datasets.fingerprints.ImageFingerprints` (tiles of ``--block-size``);
* ``join rows``: the patient join as it was (1,024 full rows of the N x N matrix at a time);
* ``join blockwise``: ``join_duplicate_groups`` on fingerprints (tiles above the diagonal only).

The signatures are synthetic (random unit vectors in 1,024 dimensions, 2% of them noisy copies of
another, so that pairs above 0.97 exist); the search costs the same whatever the pictures, and the
fingerprints of real X-rays are what ``tests/test_fingerprints.py`` checks. The thumbnails and digests
are not part of these numbers (their cost, per image, is measured separately: ``fingerprint_images`` on
237 x 237 RGB images). Memory is the peak of ``tracemalloc`` (which sees NumPy's buffers) above the
input signatures, and the process's peak RSS. Both searches must find the same pairs.

Run::

    python benchmarks/bench_duplicates.py [--sizes 2000,8000,32000] [--block-size 1024]

Writes ``benchmarks/results/duplicates.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_result  # noqa: E402

METHODS = ("cross-split full", "cross-split blockwise", "join rows", "join blockwise")
THRESHOLD = 0.97


def synthetic_signatures(n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit float32 vectors, 2% of them noisy copies of an earlier one (built in chunks: no float64 copy)."""
    rng = np.random.default_rng(seed)
    signatures = np.empty((n, 1024), np.float32)
    for start in range(0, n, 4096):
        block = rng.standard_normal((min(4096, n - start), 1024), dtype=np.float32)
        signatures[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    copies = rng.choice(np.arange(1, n), size=n // 50, replace=False)
    for index in copies:
        source = int(rng.integers(0, index))
        noisy = signatures[source] + rng.standard_normal(1024, dtype=np.float32) * 0.005
        signatures[index] = noisy / np.linalg.norm(noisy)
    return signatures


def _splits(n: int) -> list[np.ndarray]:
    order = np.random.default_rng(1).permutation(n)
    return [np.sort(part) for part in np.split(order, [int(0.8 * n), int(0.9 * n)])]


def old_cross_split(signatures: dict[str, np.ndarray], paths: dict[str, list[str]], digests: dict[str, list[str]]):
    """The core of ``find_cross_split_duplicates`` before the fingerprints (full matrices)."""
    from cxrclassify.datasets import DuplicatePair

    names = list(signatures)
    pairs = []
    for first_index, first in enumerate(names):
        for second in names[first_index + 1:]:
            similarity = signatures[first] @ signatures[second].T
            for row, column in zip(*np.nonzero(similarity >= THRESHOLD)):
                pairs.append(DuplicatePair(
                    paths[first][row], first, paths[second][column], second,
                    round(float(similarity[row, column]), 4), digests[first][row] == digests[second][column],
                ))
    return sorted(pairs, key=lambda pair: (-pair.similarity, pair.path_a, pair.path_b))


def old_join_pairs(signatures: np.ndarray, block_size: int = 1024) -> list[tuple[int, int, float]]:
    """The search of ``join_duplicate_groups`` before the fingerprints: full rows, ``block_size`` at a time."""
    found = []
    for start in range(0, len(signatures), block_size):
        block = signatures[start:start + block_size] @ signatures.T
        rows, columns = np.nonzero(block >= THRESHOLD)
        for row, column in zip(rows.tolist(), columns.tolist()):
            if column > start + row:
                found.append((start + row, column, round(float(block[row, column]), 4)))
    return found


def worker(method: str, n: int, block_size: int) -> dict:
    """One measurement, in this process: seconds, peak traced bytes above the input, peak RSS."""
    from cxrclassify.datasets import ImageFingerprints, find_cross_split_duplicates, find_similar_pairs

    signatures = synthetic_signatures(n)
    digests = np.frombuffer(np.random.default_rng(2).bytes(20 * n), dtype="S20").copy()
    paths = [f"{index:06d}.png" for index in range(n)]
    names = ("train", "validation", "test")
    splits = dict(zip(names, _splits(n)))
    fingerprints = ImageFingerprints(signatures, digests)
    if method == "cross-split full":
        inputs = ({name: signatures[split] for name, split in splits.items()},
                  {name: [paths[i] for i in split] for name, split in splits.items()},
                  {name: [digests[i].hex() for i in split] for name, split in splits.items()})
    elif method == "cross-split blockwise":
        inputs = {name: ([paths[i] for i in split], fingerprints[split]) for name, split in splits.items()}
    tracemalloc.start()
    start = time.perf_counter()
    if method == "cross-split full":
        result = [(p.path_a, p.path_b, p.similarity) for p in old_cross_split(*inputs)]
    elif method == "cross-split blockwise":
        result = [(p.path_a, p.path_b, p.similarity)
                  for p in find_cross_split_duplicates(inputs, min_similarity=THRESHOLD, block_size=block_size)]
    elif method == "join rows":
        result = old_join_pairs(signatures)
    elif method == "join blockwise":
        found = find_similar_pairs(fingerprints, min_similarity=THRESHOLD, block_size=block_size)
        result = [(i, j, round(s, 4)) for i, j, s in zip(found.first.tolist(), found.second.tolist(),
                                                         found.similarity.tolist())]
    else:
        raise SystemExit(f"unknown method {method!r}")
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"method": method, "n": n, "seconds": round(seconds, 3), "peak_traced_mib": round(peak / 2**20, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "input_signatures_mib": round(signatures.nbytes / 2**20, 1), "pairs": len(result),
            "result_hash": hashlib.sha1(repr(result).encode()).hexdigest()}


def fingerprint_cost(count: int = 400, size: int = 237) -> dict:
    """Seconds per image of ``fingerprint_images`` (thumbnail + SHA-1) on ``size`` x ``size`` RGB images."""
    from cxrclassify.datasets import fingerprint_images

    images = np.random.default_rng(3).integers(0, 255, (count, size, size, 3), dtype=np.uint8)
    start = time.perf_counter()
    fingerprint_images(images[i:i + 32] for i in range(0, count, 32))
    seconds = time.perf_counter() - start
    return {"image_size": size, "images": count, "ms_per_image": round(1000 * seconds / count, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,8000,32000")
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.block_size)))
        return
    rows = []
    for n in (int(size) for size in args.sizes.split(",")):
        for method in METHODS:
            done = subprocess.run([sys.executable, __file__, "--worker", method, str(n),
                                   "--block-size", str(args.block_size)],
                                  capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps({key: value for key, value in row.items() if key != "result_hash"}), flush=True)
        by_method = {row["method"]: row for row in rows if row["n"] == n}
        for kind in ("cross-split", "join"):
            old, new = (by_method[f"{kind} {name}"] for name in (("full" if kind == "cross-split" else "rows"),
                                                                    "blockwise"))
            if old["result_hash"] != new["result_hash"]:
                raise SystemExit(f"{kind} at N={n}: the blockwise search found other pairs than the old one")
    for row in rows:
        row.pop("result_hash")
    result = {"benchmark": "duplicates", "threshold": THRESHOLD, "block_size": args.block_size,
              "signatures": "synthetic: random unit float32 vectors (1,024), 2% noisy copies; split 80/10/10",
              "memory": "peak tracemalloc above the input signatures; peak RSS of the subprocess",
              "fingerprint_cost": fingerprint_cost(), "machine": machine(), "rows": rows}
    path = write_result("duplicates", result)
    print(json.dumps({"fingerprint_cost": result["fingerprint_cost"], "written": str(path)}))


if __name__ == "__main__":
    main()
