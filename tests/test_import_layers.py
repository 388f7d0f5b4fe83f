"""The package's import layers: no cycle inside ``cxrclassify.models`` (timm's layering), TensorFlow-free modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cxrclassify

PACKAGE = Path(cxrclassify.__file__).resolve().parent


def _imported_siblings(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that the file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(package + "."):
            found.add(node.module[len(package) + 1:].split(".")[0])
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for following in sorted(graph.get(node, ())):
            if state.get(following) == 1:
                return stack[stack.index(following):] + [following]
            if following not in state:
                found = visit(following)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_models_modules_import_each_other_without_a_cycle():
    folder = PACKAGE / "models"
    modules = {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}
    graph = {name: _imported_siblings(folder / f"{name}.py", "cxrclassify.models") & modules for name in modules}
    assert _cycle(graph) is None, f"import cycle in cxrclassify.models: {' -> '.join(_cycle(graph))}"
    assert graph["pretrained"] <= {"_registry"}, "the records module must not import model code"


def test_the_records_and_the_cli_parser_do_not_need_tensorflow():
    code = ("import sys\nimport cxrclassify, cxrclassify.datasets, cxrclassify._io, cxrclassify.exceptions\n"
            "from cxrclassify.cli import _build_parser\n_build_parser()\n"
            "print(sorted(name for name in ('tensorflow', 'keras') if name in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
