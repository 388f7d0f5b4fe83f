"""The docs build without warnings and the example scripts run, so neither drifts from the code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.py"))


def test_sphinx_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install '.[docs]'")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
               str(REPO_ROOT / "docs"), str(tmp_path / "html")]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert (tmp_path / "html" / "api.html").is_file()


def test_there_are_examples():
    assert {path.name for path in EXAMPLES} >= {"quickstart.py", "train_your_own_folder.py", "explain_folder.py"}


def test_every_built_in_architecture_has_an_example():
    import ast

    import cxrclassify
    from cxrclassify.models import get_spec

    shown = {}
    for path in REPO_ROOT.glob("examples/arch_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{path.name} has no module docstring"
        arch = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                    and [getattr(target, "id", None) for target in node.targets] == ["ARCH"])
        shown[arch] = path.name
    built_in = {name for name in cxrclassify.list_models()
                if get_spec(name).constructor.__module__.startswith("keras")}
    assert built_in <= set(shown), f"no examples/arch_*.py for {sorted(built_in - set(shown))}"
    assert set(shown) <= set(cxrclassify.list_models())


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs_in_quick_mode(script, tmp_path):
    environment = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path / "out")],
                               capture_output=True, text=True, timeout=600, env=environment, cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    assert any((tmp_path / "out").rglob("*.png")), "the example wrote no figure"
