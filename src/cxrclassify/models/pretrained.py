"""Pretrained checkpoints: one verifiable record each, fetched through the library's cache.

Two kinds of record:

* ``"base"``: ImageNet weights of a base network without its top, at the
  official Keras URL with the hash Keras itself records for the file (MD5 for
  these files). :func:`build_model` with ``weights="imagenet"`` uses them through
  this registry whenever a weights mirror is set (``weights_mirror=`` or the
  ``CXRCLASSIFY_WEIGHTS_MIRROR`` environment variable), and Keras's own download
  otherwise.
* ``"classifier"``: a whole classifier saved by the library (``.keras``), such as
  the checkpoints ``reproduce`` trains; :func:`pretrained_cfg_from_file` writes
  the record from the file, with a model card.

Only real entries are listed: no placeholder URL. MobileNetV2's ImageNet file
is not listed, since Keras records no hash for it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .._download import RemoteFile, fetch, file_sha256
from ..exceptions import ArgumentError, ArgumentTypeError, ModelError
from ._registry import get_spec

__all__ = [
    "WEIGHTS_MIRROR_ENV",
    "PretrainedCfg",
    "register_pretrained",
    "list_pretrained",
    "get_pretrained_cfg",
    "fetch_pretrained",
    "load_pretrained",
    "pretrained_cfg_from_file",
    "model_card",
]

logger = logging.getLogger(__name__)

#: Environment variable naming a weights mirror (base URL or folder holding the files by their names).
WEIGHTS_MIRROR_ENV = "CXRCLASSIFY_WEIGHTS_MIRROR"

_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
_IMAGENET_CITATION = "Deng et al., ImageNet: A Large-Scale Hierarchical Image Database, CVPR 2009"
_KERAS_LICENSE = "Apache 2.0 (Keras Applications); ImageNet terms of access apply to the training data"


@dataclass(frozen=True)
class PretrainedCfg:
    """Everything known about one pretrained checkpoint, as timm's ``PretrainedCfg``.

    Parameters
    ----------
    name : str
        ``"<arch>.<tag>"``, for instance ``"vgg16.imagenet"``.
    kind : {"base", "classifier"}
        Weights of a base without its top (``.weights.h5``), or a whole saved classifier (``.keras``).
    url : str
        Where the file is published.
    filename : str
        The file's name in the cache and under a mirror.
    input_size : int
        Side of the square input the weights were trained at.
    preprocessing : str
        Input preprocessing the weights expect.
    training_data : str
        What the weights were trained on.
    license : str
        License of the weights.
    citation : str
        What to cite.
    sha256, md5 : str, optional
        The file's hash (at least one; MD5 only where that is what the publisher records).
    size : int, optional
        The file's size in bytes, where known.
    class_names : tuple of str
        Output classes (classifiers only).
    metrics : dict
        Test metrics reported for the checkpoint (classifiers only).

    Examples
    --------
    >>> from cxrclassify.models import get_pretrained_cfg
    >>> cfg = get_pretrained_cfg("vgg16.imagenet")
    >>> cfg.kind, cfg.preprocessing, cfg.md5
    ('base', 'caffe', '6d6bbae143d832006294945121d1f1fc')
    """

    name: str
    kind: str
    url: str
    filename: str
    input_size: int
    preprocessing: str
    training_data: str
    license: str
    citation: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    class_names: tuple[str, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("base", "classifier"):
            message = f"Expected kind 'base' or 'classifier'. Received: kind={self.kind!r} for {self.name!r}"
            raise ArgumentError(message)
        if "." not in self.name:
            message = f"Expected a name of the form '<arch>.<tag>'. Received: name={self.name!r}"
            raise ArgumentError(message)
        if not (self.sha256 or self.md5):
            message = f"A pretrained record needs a sha256 or md5 to be verifiable. Received: none for {self.name!r}"
            raise ArgumentError(message)

    @property
    def arch(self) -> str:
        """The architecture, the part of ``name`` before the first dot."""
        return self.name.split(".", 1)[0]

    def remote_file(self) -> RemoteFile:
        """The record the download machinery fetches and verifies."""
        return RemoteFile(name=f"weights/{self.filename}", url=self.url, mirror_path=self.filename,
                          size=self.size, sha256=self.sha256, md5=self.md5)


_PRETRAINED: dict[str, PretrainedCfg] = {}


def register_pretrained(cfg: PretrainedCfg, *, overwrite: bool = False) -> PretrainedCfg:
    """Add a checkpoint record to the registry.

    Examples
    --------
    >>> from cxrclassify.models import PretrainedCfg, register_pretrained, list_pretrained
    >>> cfg = PretrainedCfg("vgg16.doc", "classifier", "https://example.org/m.keras", "m.keras", 237, "caffe",
    ...                     "none", "CC BY 4.0", "none", sha256="0" * 64, class_names=("a", "b"))
    >>> _ = register_pretrained(cfg, overwrite=True)
    >>> "vgg16.doc" in list_pretrained()
    True
    """
    if cfg.name in _PRETRAINED and not overwrite:
        message = f"A pretrained record named {cfg.name!r} exists; pass overwrite=True to replace it."
        raise ArgumentError(message)
    _PRETRAINED[cfg.name] = cfg
    return cfg


def list_pretrained(arch: str | None = None, kind: str | None = None) -> list[str]:
    """Names of the registered checkpoints, optionally of one architecture or kind.

    Examples
    --------
    >>> from cxrclassify.models import list_pretrained
    >>> list_pretrained(kind="base")[:3]
    ['densenet121.imagenet', 'efficientnetb0.imagenet', 'resnet50.imagenet']
    """
    return sorted(name for name, cfg in _PRETRAINED.items()
                  if (arch is None or cfg.arch == arch) and (kind is None or cfg.kind == kind))


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The record named ``name``.

    Examples
    --------
    >>> from cxrclassify.models import get_pretrained_cfg
    >>> get_pretrained_cfg("xception.imagenet").input_size
    299
    """
    try:
        return _PRETRAINED[name]
    except KeyError:
        message = f"Unknown pretrained checkpoint. Expected one of {list_pretrained()}. Received: name={name!r}"
        raise ArgumentError(message) from None


def fetch_pretrained(
    name: str,
    *,
    data_home: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **fetch_options: Any,
) -> Path:
    """Download (or find in the cache) a checkpoint's file, verified against its record.

    Parameters
    ----------
    name : str
        A name from :func:`list_pretrained`.
    data_home : path, optional
        Cache folder (see :func:`cxrclassify.datasets.get_data_home`).
    mirror : str or path, optional
        Base URL or folder holding the file under its ``filename``; defaults to
        the ``CXRCLASSIFY_WEIGHTS_MIRROR`` environment variable.
    progress : bool, default True
        Show a progress bar.
    **fetch_options
        Passed to :func:`cxrclassify.datasets.fetch` (``retries``, ``timeout``...).

    Returns
    -------
    pathlib.Path
        The verified file in the cache.

    Raises
    ------
    cxrclassify.exceptions.ChecksumError
        If the file does not match its record.

    Examples
    --------
    >>> from cxrclassify.models import fetch_pretrained
    >>> path = fetch_pretrained("vgg16.imagenet", mirror="/srv/weights")  # doctest: +SKIP
    """
    cfg = get_pretrained_cfg(name)
    mirror = mirror if mirror is not None else (os.environ.get(WEIGHTS_MIRROR_ENV) or None)
    return fetch(cfg.remote_file(), data_home=data_home, mirror=mirror, progress=progress, **fetch_options)


def load_pretrained(
    name: str,
    *,
    num_classes: int = 3,
    data_home: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **build_options: Any,
):
    """A classifier from a pretrained checkpoint, downloaded and verified into the cache.

    Parameters
    ----------
    name : str
        A name from :func:`list_pretrained`.
    num_classes : int, default 3
        For ``"base"`` checkpoints: the classes of the new head.
    data_home, mirror, progress
        As in :func:`fetch_pretrained`.
    **build_options
        For ``"base"`` checkpoints: further options of :func:`build_model`
        (``image_size``, ``head``, ``class_names``...).

    Returns
    -------
    CxrClassifier
        A saved classifier as trained, or a new classifier on the pretrained base.

    Examples
    --------
    >>> from cxrclassify.models import load_pretrained
    >>> model = load_pretrained("vgg16.imagenet", num_classes=3, image_size=237)  # doctest: +SKIP
    """
    from .classifier import build_model
    from .io import load_model

    cfg = get_pretrained_cfg(name)
    path = fetch_pretrained(name, data_home=data_home, mirror=mirror, progress=progress)
    if cfg.kind == "classifier":
        if build_options:
            message = f"{name!r} is a trained classifier: it takes no build options. Received: {sorted(build_options)}"
            raise ArgumentTypeError(message)
        return load_model(path)
    options = {"preprocessing": cfg.preprocessing, **build_options}
    return build_model(cfg.arch, num_classes, weights=path, **options)


def pretrained_cfg_from_file(
    path: str | os.PathLike[str],
    name: str,
    *,
    url: str,
    training_data: str,
    license: str,
    citation: str,
    metrics: Mapping[str, Any] | None = None,
) -> PretrainedCfg:
    """Write the record of a classifier saved by the library, from the file itself.

    The size and sha256 are computed from the file; the architecture, input
    size, preprocessing and class names are read from the saved model.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import cxrclassify
    >>> from cxrclassify.models import pretrained_cfg_from_file
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32, class_names=["a", "b", "c"])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "vgg16-demo.keras"
    >>> model.save(path)
    >>> cfg = pretrained_cfg_from_file(path, "vgg16.demo", url="https://example.org/vgg16-demo.keras",
    ...                                training_data="none", license="CC BY 4.0", citation="none")
    >>> cfg.class_names, cfg.size == path.stat().st_size
    (('a', 'b', 'c'), True)
    """
    from .io import load_model

    path = Path(path)
    model = load_model(path)
    if name.split(".", 1)[0] != model.arch:
        message = f"Expected a name starting with the model's architecture {model.arch!r}. Received: name={name!r}"
        raise ModelError(message)
    return PretrainedCfg(
        name=name, kind="classifier", url=url, filename=path.name, input_size=model.image_size,
        preprocessing=model.preprocessing, training_data=training_data, license=license, citation=citation,
        sha256=file_sha256(path), size=path.stat().st_size, class_names=tuple(model.class_names or ()),
        metrics=dict(metrics or {}),
    )


def model_card(cfg: PretrainedCfg) -> str:
    """A Markdown model card for a checkpoint record: what it is, what it was trained on, its limits.

    Examples
    --------
    >>> from cxrclassify.models import get_pretrained_cfg, model_card
    >>> print(model_card(get_pretrained_cfg("vgg16.imagenet")).splitlines()[0])
    # vgg16.imagenet
    """
    lines = [
        f"# {cfg.name}",
        "",
        f"- Kind: {cfg.kind} ({'a whole classifier' if cfg.kind == 'classifier' else 'base weights without top'})",
        f"- Architecture: {cfg.arch} ({get_spec(cfg.arch).citation})",
        f"- Input: {cfg.input_size} x {cfg.input_size} RGB, preprocessing '{cfg.preprocessing}'",
        f"- Classes: {', '.join(cfg.class_names) if cfg.class_names else 'none (base weights)'}",
        f"- Training data: {cfg.training_data}",
        f"- File: {cfg.filename} ({cfg.size if cfg.size is not None else 'unknown'} bytes), "
        f"{'sha256 ' + cfg.sha256 if cfg.sha256 else 'md5 ' + str(cfg.md5)}",
        f"- URL: {cfg.url}",
        f"- License: {cfg.license}",
        f"- Cite: {cfg.citation}",
    ]
    if cfg.metrics:
        lines += ["", "## Reported metrics", "", "```json", json.dumps(cfg.metrics, indent=2), "```"]
    if cfg.kind == "classifier":
        lines += [
            "",
            "## Limits",
            "",
            "Not a diagnostic device. Scores on composites whose classes come from different sources (adult",
            "COVID-19 against pediatric controls) measure how well the model tells the sources apart, not the",
            "disease; check the per-source breakdown and adult controls before trusting any number.",
        ]
    return "\n".join(lines) + "\n"


def _register_keras_imagenet() -> None:
    """The Keras ImageNet base weights: official URLs and the MD5 hashes Keras records for them."""
    entries = [
        ("vgg16", "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "6d6bbae143d832006294945121d1f1fc", 224),
        ("resnet50", "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
         "4d473c1dd8becc155b73f8504c6f6626", 224),
        ("xception", "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
         "b0042744bf5b25fce3cb969f33bebb97", 299),
        ("densenet121", "densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
         "30ee3e1110167f948a6b9946edeeb738", 224),
    ]
    for arch, path, md5, size in entries:
        register_pretrained(PretrainedCfg(
            name=f"{arch}.imagenet", kind="base", url=_KERAS_BASE + path, filename=path.rsplit("/", 1)[1],
            input_size=size, preprocessing=get_spec(arch).preprocessing, training_data="ImageNet-1k (ILSVRC 2012)",
            license=_KERAS_LICENSE, citation=f"{get_spec(arch).citation}; {_IMAGENET_CITATION}", md5=md5,
        ))
    register_pretrained(PretrainedCfg(
        name="efficientnetb0.imagenet", kind="base",
        url="https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
        filename="efficientnetb0_notop.h5", input_size=224, preprocessing="none",
        training_data="ImageNet-1k (ILSVRC 2012)", license=_KERAS_LICENSE,
        citation=f"{get_spec('efficientnetb0').citation}; {_IMAGENET_CITATION}",
        md5="50bc09e76180e00e4465e1a485ddc09d",
    ))


_register_keras_imagenet()
