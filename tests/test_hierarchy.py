"""One hierarchy: every error the library raises derives from CxrError, every warning from CxrWarning."""

from __future__ import annotations

import ast
import inspect
import warnings
from pathlib import Path

import pytest

import cxrclassify
from cxrclassify import exceptions

PACKAGE = Path(cxrclassify.__file__).parent
LIBRARY_ERRORS = {name for name, value in vars(exceptions).items()
                  if inspect.isclass(value) and issubclass(value, exceptions.CxrError)}
LIBRARY_WARNINGS = {name for name, value in vars(exceptions).items()
                    if inspect.isclass(value) and issubclass(value, exceptions.CxrWarning)}
#: Raised on purpose and not errors of the library: leaving the command line with its exit code.
ALLOWED = {"SystemExit"}


def _module_getattr_lines() -> set[tuple[str, int]]:
    """(file name, line) of every ``raise`` inside a module-level ``__getattr__`` function."""
    found = set()
    for path in PACKAGE.rglob("__init__.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                found |= {(path.name, inner.lineno) for inner in ast.walk(node) if isinstance(inner, ast.Raise)}
    return found


MODULE_GETATTR_LINES = _module_getattr_lines()


def _modules():
    return sorted(path for path in PACKAGE.rglob("*.py") if path.name != "exceptions.py")


def _raised_names(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name):
                yield node.lineno, target.id
            elif isinstance(target, ast.Attribute):
                yield node.lineno, target.attr


def test_every_raise_is_a_library_error():
    offenders = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, name in _raised_names(tree):
            builtin = isinstance(__builtins__, dict) and name in __builtins__ or hasattr(__builtins__, name)
            if name in ALLOWED or name in LIBRARY_ERRORS or not builtin:
                continue  # a re-raise of a caught error (``raise error``) or a library error
            if name == "AttributeError" and (path.name, line) in MODULE_GETATTR_LINES:
                continue  # PEP 562: a module's __getattr__ must raise AttributeError for an unknown name
            offenders.append(f"{path.relative_to(PACKAGE)}:{line} raise {name}")
    assert offenders == []


def test_every_warning_has_a_library_category():
    offenders = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "warn" and getattr(node.func.value, "id", None) == "warnings"):
                continue
            category = node.args[1] if len(node.args) > 1 else next(
                (keyword.value for keyword in node.keywords if keyword.arg == "category"), None)
            name = getattr(category, "id", getattr(category, "attr", None))
            if name not in LIBRARY_WARNINGS:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} warnings.warn(..., {name})")
    assert offenders == []


@pytest.mark.parametrize("name", sorted(LIBRARY_ERRORS))
def test_library_errors_keep_a_builtin_base(name):
    error = getattr(exceptions, name)
    assert issubclass(error, exceptions.CxrError)
    if error is not exceptions.CxrError:
        assert issubclass(error, (ValueError, TypeError, OSError, LookupError)), name


def test_warning_categories_filter_without_matching_text():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", exceptions.DuplicateImageWarning)
        warnings.warn("kept", exceptions.ConfoundingWarning, stacklevel=1)
        warnings.warn("dropped", exceptions.DuplicateImageWarning, stacklevel=1)
    assert [str(item.message) for item in caught] == ["kept"]
    assert issubclass(exceptions.CxrWarning, UserWarning)


def test_the_public_api_exports_the_hierarchy():
    for name in LIBRARY_ERRORS | LIBRARY_WARNINGS:
        assert getattr(cxrclassify, name) is getattr(exceptions, name)
        assert name in cxrclassify.__all__
