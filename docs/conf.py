"""Sphinx configuration of the cxrclassify documentation.

Build (offline, warnings as errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Links to the Python, NumPy, scikit-learn, matplotlib and Pillow documentation
(intersphinx) need their inventories from the internet, so they are off by
default and the build works offline. Turn them on with::

    CXR_DOCS_INTERSPHINX=1 python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The package is normally installed (pip install -e ".[docs]"); fall back to the
# source tree so that a plain checkout builds too.
_SRC = Path(__file__).resolve().parent.parent / "src"
try:
    import cxrclassify  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the docs are built
    sys.path.insert(0, str(_SRC))
    import cxrclassify  # noqa: F401

# -- Project information -----------------------------------------------------

project = "cxrclassify"
author = "cxrclassify developers"
copyright = "cxrclassify developers"  # noqa: A001 - Sphinx's name
release = cxrclassify.__version__
version = ".".join(release.split(".")[:2])

# -- General configuration ---------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",  # the pretrained model's card is Markdown, shared with the package (pretrained/MODEL_CARD.md)
]

# Intersphinx fetches inventories over the network: only when asked for.
if os.environ.get("CXR_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "sklearn": ("https://scikit-learn.org/stable/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
        "PIL": ("https://pillow.readthedocs.io/en/stable/", None),
    }
    intersphinx_timeout = 10

templates_path: list[str] = []
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
nitpicky = False
default_role = "py:obj"

# -- autodoc / napoleon ------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
# Keras's own docstrings (call, build, get_config...) are not ours to render.
autodoc_inherit_docstrings = False
autodoc_default_options: dict[str, object] = {}

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = False

# -- HTML output -------------------------------------------------------------

html_theme = "alabaster"
html_theme_options = {
    "description": "Chest X-ray classification by transfer learning, explained with Grad-CAM",
    "fixed_sidebar": True,
}
html_static_path = ["_static"]
html_title = f"cxrclassify {release}"


# -- Re-exported aliases ------------------------------------------------------
#
# The public API is re-exported from ``cxrclassify`` (``cxrclassify.train`` is
# ``cxrclassify.training.train``) and from subpackages
# (``cxrclassify.datasets.ieee8023_records`` is
# ``cxrclassify.datasets.ieee8023.ieee8023_records``), but each object is
# documented once, at one module. Docstrings refer to any of these names; this
# resolves a reference to a name in a module's ``__all__`` to the same object
# documented under another module.


def _resolve_top_level_alias(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    package_name, _, name = target.rpartition(".")
    if not (package_name == "cxrclassify" or package_name.startswith("cxrclassify.")):
        return None
    package = sys.modules.get(package_name)
    if package is None or name not in getattr(package, "__all__", ()):
        return None
    obj = getattr(package, name, None)
    domain = env.get_domain("py")
    for fullname in domain.objects:
        if fullname == target or not fullname.startswith("cxrclassify.") or fullname.rsplit(".", 1)[-1] != name:
            continue
        module_name, _, attribute = fullname.rpartition(".")
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, attribute, None) is obj:
            return domain.resolve_xref(
                env, node.get("refdoc", ""), app.builder, node.get("reftype"), fullname, node, contnode
            )
    return None


# -- Constants re-exported from private modules ----------------------------
#
# ``DEFAULT_IMAGE_SIZE``, ``HEADS``... are documented by a ``#:`` comment where
# they are defined (``cxrclassify.datasets._load``...), but documented under
# their public package, where autodoc finds no comment and would fall back to
# the docstring of ``int`` or ``tuple``. Use the comment of the defining module.


def _attribute_comment(fullname, obj):
    from sphinx.pycode import ModuleAnalyzer, PycodeError

    package, _, attribute = fullname.rpartition(".")
    for module_name in sorted(sys.modules):
        if module_name != package and not module_name.startswith(package + "."):
            continue
        if getattr(sys.modules[module_name], attribute, None) is not obj:
            continue
        try:
            comments = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        except PycodeError:
            continue
        if ("", attribute) in comments:
            return list(comments[("", attribute)])
    return None


def _document_constants(app, what, name, obj, options, lines):
    if what != "data" or not name.startswith("cxrclassify."):
        return
    type_doc = (type(obj).__doc__ or "").strip()
    if lines and "\n".join(lines).strip() != type_doc and not type_doc.startswith(lines[0].strip()):
        return
    comment = _attribute_comment(name, obj)
    lines[:] = comment if comment is not None else []


# -- Keras base classes --------------------------------------------------------
#
# Keras defines its public classes in private modules (keras.Model is
# keras.src.models.model.Model); show the public name in "Bases:".


def _public_keras_bases(app, name, obj, options, bases):
    import keras

    public = {keras.Model: "keras.Model", keras.layers.Layer: "keras.layers.Layer"}
    for index, base in enumerate(bases):
        if base in public:
            bases[index] = f":py:class:`{public[base]}`"


# -- Keras classes' signatures -------------------------------------------------
#
# keras.Model and keras.layers.Layer define ``__new__(cls, *args, **kwargs)``,
# which autodoc would show as the signature of every subclass; show the
# subclass's own ``__init__`` instead.


def _init_signature(app, what, name, obj, options, signature, return_annotation):
    if what != "class" or signature != "(*args, **kwargs)" or "__init__" not in vars(obj):
        return None
    from sphinx.util.inspect import signature as get_signature
    from sphinx.util.inspect import stringify_signature

    init_signature = get_signature(obj.__init__, bound_method=True)
    return stringify_signature(init_signature, show_return_annotation=False), None


def setup(app):
    app.connect("autodoc-process-signature", _init_signature)
    app.connect("missing-reference", _resolve_top_level_alias)
    app.connect("autodoc-process-docstring", _document_constants)
    app.connect("autodoc-process-bases", _public_keras_bases)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
