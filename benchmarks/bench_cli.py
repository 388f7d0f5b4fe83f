"""The command line's start-up and the README's first command, timed in fresh processes.

Measures, side by side in one run (each in a fresh Python process, median of ``--repeats``):

* ``cxrclassify --help`` and ``cxrclassify predict --help`` against ``python -c "import tensorflow"``
  (what every ``--help`` cost when the package imported TensorFlow first) and against a bare
  ``python -c pass`` (the interpreter's own start-up);
* the README's first command after the install, ``cxrclassify predict --sample --cam DIR --out FILE``
  (the bundled classifier on the 48 bundled X-rays, with Grad-CAM overlays), once;
* with ``--demo``, also ``cxrclassify demo`` with its defaults (VGG-16, 237 px, at most 80 epochs; offline
  the base is randomly initialised and the summary says so), once.

Targets: ``--help`` under 1 s, and under a tenth of the TensorFlow import; the README's predict
under 60 s on 2 cores.

Usage::

    python benchmarks/bench_cli.py [--repeats 5] [--demo]

Writes ``benchmarks/results/cli.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT, machine

RESULTS = REPO_ROOT / "benchmarks" / "results" / "cli.json"


def cxrclassify_command() -> list[str]:
    found = shutil.which("cxrclassify", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "cxrclassify.cli"]


def timed(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=1800,
                               env={**os.environ, "MPLBACKEND": "Agg"})
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{command} failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    return seconds, completed


def median_seconds(command: list[str], cwd: Path, repeats: int) -> dict[str, float]:
    values = [timed(command, cwd)[0] for _ in range(repeats)]
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--demo", action="store_true", help="also time 'cxrclassify demo' with its defaults")
    arguments = parser.parse_args()
    cli = cxrclassify_command()
    work = Path(tempfile.mkdtemp(prefix="bench_cli_"))
    startup = {
        "python -c pass": median_seconds([sys.executable, "-c", "pass"], work, arguments.repeats),
        "python -c 'import tensorflow'": median_seconds([sys.executable, "-c", "import tensorflow"], work,
                                                        arguments.repeats),
        "cxrclassify --help": median_seconds([*cli, "--help"], work, arguments.repeats),
        "cxrclassify predict --help": median_seconds([*cli, "predict", "--help"], work, arguments.repeats),
    }
    tensorflow_import = startup["python -c 'import tensorflow'"]["median_s"]
    help_ratio = startup["cxrclassify --help"]["median_s"] / tensorflow_import
    seconds, completed = timed([*cli, "predict", "--sample", "--cam", str(work / "gradcam-output"),
                                "--out", str(work / "predictions.csv")], work)
    rows = (work / "predictions.csv").read_text(encoding="utf-8").splitlines()[1:]
    truth = [Path(row.split(",")[0]).parent.name for row in rows]
    predicted = [row.split(",")[1] for row in rows]
    readme = {"command": "cxrclassify predict --sample --cam gradcam-output --out predictions.csv",
              "seconds": round(seconds, 1), "images": len(rows),
              "correct": sum(a == b for a, b in zip(truth, predicted)),
              "overlays": len(list((work / "gradcam-output").glob("*_overlay.png"))),
              "stderr_lines": len(completed.stderr.splitlines())}
    result = {
        "what": "command-line start-up (fresh processes, median) and the README's first command",
        "machine": machine(),
        "startup": startup,
        "help_over_tensorflow_import": round(help_ratio, 3),
        "targets": {"help_under_1s": startup["cxrclassify --help"]["median_s"] < 1.0,
                    "help_under_a_tenth_of_tensorflow_import": help_ratio < 0.1,
                    "readme_predict_under_60s": seconds < 60},
        "readme_first_command": readme,
        "command": "python benchmarks/bench_cli.py" + (" --demo" if arguments.demo else ""),
    }
    if arguments.demo:
        seconds, completed = timed([*cli, "demo", "--out", str(work / "demo-output")], work)
        summary = (work / "demo-output" / "summary.txt").read_text(encoding="utf-8").splitlines()
        result["demo"] = {"command": "cxrclassify demo --out demo-output", "seconds": round(seconds, 1),
                          "summary_first_lines": summary[:2]}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
