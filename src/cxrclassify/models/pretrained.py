"""Pretrained checkpoints: one verifiable record each, fetched through the library's cache.

Two kinds of record:

* ``"base"``: ImageNet weights of a base network without its top, at the
  official Keras URL with the hash Keras itself records for the file (MD5 for
  these files). :func:`build_model` with ``weights="imagenet"`` uses them through
  this registry whenever a weights mirror is set (``weights_mirror=`` or the
  ``CXRCLASSIFY_WEIGHTS_MIRROR`` environment variable), and Keras's own download
  otherwise.
* ``"classifier"``: a whole classifier saved by the library (``.keras``), such as
  the checkpoints ``reproduce`` trains; :func:`~cxrclassify.models.pretrained_cfg_from_file`
  writes the record from the file, with a model card.

This module holds the records only (as timm's ``_pretrained``): it imports nothing
that builds or loads a model, so the classifier can use it without an import cycle.
Building from a record (:func:`~cxrclassify.models.load_pretrained`) and writing a
record from a saved model are in :mod:`cxrclassify.models._builder`.

A record may name a **bundled** copy shipped inside the package
(``cxrclassify/pretrained/``): :func:`fetch_pretrained` then verifies that file
against the record's sha256 and size, exactly as a download would be, and
returns it without touching the network. The chest X-ray classifier
``mobilenetv2.covid3-v1`` ships this way; its record is the JSON file beside it.

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

from .._cache import file_sha256
from .._download import FetchOptions, RemoteFile, _given, _resolve_fetch_options, fetch
from ..exceptions import ArgumentError, ChecksumError, MissingFileError, ModelError
from ._registry import get_spec

__all__ = [
    "WEIGHTS_MIRROR_ENV",
    "PretrainedCfg",
    "register_pretrained",
    "list_pretrained",
    "get_pretrained_cfg",
    "fetch_pretrained",
    "bundled_dir",
    "verified_bundled_copy",
    "read_bundled_record",
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
    bundled : str, optional
        File name of a copy shipped in the package's ``pretrained/`` folder:
        verified and used instead of a download. A bundled record may have no ``url``.
    card : dict
        The model card: intended use, training data and licences, per-source
        metrics, held-out-source results, failure modes (bundled classifiers).

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
    bundled: str | None = None
    card: dict[str, Any] = field(default_factory=dict)

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
        if not (self.url or self.bundled):
            message = f"A pretrained record needs a url or a bundled copy. Received: neither for {self.name!r}"
            raise ArgumentError(message)
        if self.bundled and not self.sha256:
            message = f"A bundled record needs a sha256 to verify its copy. Received: none for {self.name!r}"
            raise ArgumentError(message)

    @property
    def arch(self) -> str:
        """The architecture, the part of ``name`` before the first dot."""
        return self.name.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-serialisable types (what :func:`read_bundled_record` reads back)."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values["class_names"] = list(self.class_names)
        return values

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
    fetch_options: FetchOptions | None = None,
    **fetch_keywords: Any,
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
    fetch_options : FetchOptions, optional
        ``data_home``, ``mirror``, ``progress``, ``verify`` and ``known_hashes``
        in one object (see :class:`~cxrclassify.datasets.FetchOptions`); the
        keywords above must then keep their defaults. Its ``mirror`` also
        defaults to ``CXRCLASSIFY_WEIGHTS_MIRROR``.
    **fetch_keywords
        Passed to :func:`cxrclassify.datasets.fetch` (``verify``, ``known_hashes``,
        ``retries``, ``timeout``...).

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
    if cfg.bundled:
        return verified_bundled_copy(cfg)
    keywords = dict(fetch_keywords)
    fields = {key: keywords.pop(key) for key in ("verify", "known_hashes") if key in keywords}
    if fetch_options is None:
        fields.update(data_home=data_home, mirror=mirror, progress=progress)
    else:
        fields.update(_given(data_home=data_home, mirror=mirror, progress=progress))
    options = _resolve_fetch_options(fetch_options, fields, caller="fetch_pretrained")
    if options.mirror is None and os.environ.get(WEIGHTS_MIRROR_ENV):
        options = options.replace(mirror=os.environ[WEIGHTS_MIRROR_ENV])
    return fetch(cfg.remote_file(), options=options, **keywords)


def bundled_dir() -> Path:
    """The package folder holding the bundled checkpoints and their records.

    Examples
    --------
    >>> from cxrclassify.models.pretrained import bundled_dir
    >>> bundled_dir().name
    'pretrained'
    """
    return Path(__file__).resolve().parents[1] / "pretrained"


def verified_bundled_copy(cfg: PretrainedCfg) -> Path:
    """The bundled file of ``cfg``, after checking its size and sha256 against the record.

    Raises
    ------
    cxrclassify.exceptions.MissingFileError
        If the package holds no such file (an incomplete install).
    cxrclassify.exceptions.ChecksumError
        If the file differs from the record (a damaged or replaced copy).

    Examples
    --------
    >>> from cxrclassify.models.pretrained import get_pretrained_cfg, verified_bundled_copy
    >>> verified_bundled_copy(get_pretrained_cfg("mobilenetv2.covid3-v1")).suffix
    '.keras'
    """
    path = bundled_dir() / str(cfg.bundled)
    if not path.is_file():
        message = (f"The bundled checkpoint of {cfg.name!r} is missing: expected the file {str(path)!r} in the "
                   "installed package. Reinstall cxrclassify.")
        raise MissingFileError(message)
    size = path.stat().st_size
    if cfg.size is not None and size != cfg.size:
        message = (f"The bundled checkpoint {str(path)!r} has {size} bytes; its record {cfg.name!r} expects "
                   f"{cfg.size}. The file is damaged or was replaced: reinstall cxrclassify.")
        raise ChecksumError(message)
    digest = file_sha256(path)
    if digest != cfg.sha256:
        message = (f"The bundled checkpoint {str(path)!r} has sha256 {digest}; its record {cfg.name!r} expects "
                   f"{cfg.sha256}. The file is damaged or was replaced: reinstall cxrclassify.")
        raise ChecksumError(message)
    logger.debug("Verified the bundled checkpoint %s (sha256 %s)", path, digest)
    return path


def read_bundled_record(path: str | os.PathLike[str]) -> PretrainedCfg:
    """The record stored as JSON beside a bundled checkpoint.

    Examples
    --------
    >>> from cxrclassify.models.pretrained import bundled_dir, read_bundled_record
    >>> read_bundled_record(bundled_dir() / "mobilenetv2.covid3-v1.json").kind
    'classifier'
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        message = f"Expected a pretrained record as JSON. Received: {str(path)!r} ({error})"
        raise ModelError(message) from error
    if not isinstance(values, dict):
        message = f"Expected a pretrained record as a JSON object. Received: {type(values).__name__} in {str(path)!r}"
        raise ModelError(message)
    values["class_names"] = tuple(values.get("class_names", ()))
    known = set(PretrainedCfg.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        message = f"Unknown fields {unknown} in the pretrained record {str(path)!r}. Expected only {sorted(known)}"
        raise ModelError(message)
    return PretrainedCfg(**values)


def _register_bundled() -> None:
    """Register the records of the checkpoints shipped in the package (their JSON files)."""
    folder = bundled_dir()
    for record in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if record.name.endswith(".sample_predictions.json"):
            continue
        register_pretrained(read_bundled_record(record), overwrite=True)


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
        f"- URL: {cfg.url}" if cfg.url else f"- URL: none; bundled in the package as pretrained/{cfg.bundled}",
        f"- License: {cfg.license}",
        f"- Cite: {cfg.citation}",
    ]
    if cfg.card:
        lines += _card_sections(cfg.card)
    elif cfg.metrics:
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


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _with_ci(value: Any, interval: Any, *, percent: bool = True) -> str:
    if value is None:
        return "n/a"
    shown = _percent if percent else (lambda number: f"{float(number):.3f}")
    if not interval or None in interval:
        return shown(value)
    return f"{shown(value)} ({shown(interval[0])} to {shown(interval[1])})"


def _card_sections(card: Mapping[str, Any]) -> list[str]:
    """The Markdown of a model card's contents (see ``tools/train_pretrained.py``)."""
    lines: list[str] = []
    if card.get("summary"):
        lines += ["", card["summary"]]
    if card.get("intended_use"):
        lines += ["", "## Intended use", "", card["intended_use"]]
    sources = card.get("sources") or {}
    if sources:
        lines += ["", "## Training data", "", "| Source | Images (covid19 / normal / pneumonia) | Licence | Selection |",
                  "|---|---|---|---|"]
        for name, values in sources.items():
            counts = " / ".join(str(count) for count in dict(values.get("images", {})).values())
            lines.append(f"| {name} ({values.get('citation', '')}) | {counts} | {values.get('licence', '')} | "
                         f"{values.get('selection', '')} |")
    if card.get("excluded"):
        lines += ["", "Left out: " + "; ".join(card["excluded"]) + "."]
    training = card.get("training") or {}
    if training:
        split = training.get("split", {})
        lines += ["", "## Training", "",
                  f"Recipe {training.get('recipe')!r}: {training.get('epochs_run')} epochs ran (at most "
                  f"{training.get('max_epochs')}); temperature {training.get('temperature', float('nan')):.3f}; "
                  f"split by {split.get('by', 'patient')} (seed {split.get('seed')}): {split.get('train')} train, "
                  f"{split.get('validation')} validation, {split.get('test')} test images. "
                  f"Reproduce with `{training.get('command')}`."]
        ood = training.get("ood") or {}
        if ood:
            lines.append("")
            lines.append(f"Out-of-distribution flag: {ood.get('method')} score, threshold {ood.get('threshold'):.4g} "
                         f"({ood.get('quantile')} quantile of the {ood.get('threshold_from')} images).")
    metrics = card.get("test_metrics") or {}
    if metrics:
        lines += ["", "## Test metrics (held-out patients, 95% CIs by patient bootstrap or Wilson)", "",
                  f"Accuracy {_with_ci(metrics.get('accuracy'), metrics.get('accuracy_ci'))} on "
                  f"{metrics.get('n_images')} images; macro F1 "
                  f"{_with_ci(metrics.get('macro_f1'), metrics.get('macro_f1_ci'), percent=False)}; macro ROC AUC "
                  f"{_with_ci(metrics.get('macro_roc_auc'), metrics.get('macro_roc_auc_ci'), percent=False)}."]
    by_source = card.get("per_source_test") or {}
    if by_source:
        lines += ["", "| Test source | Images | Accuracy (95% CI) |", "|---|---|---|"]
        for name, values in by_source.items():
            lines.append(f"| {name} | {values.get('n_images')} | "
                         f"{_with_ci(values.get('accuracy'), values.get('accuracy_ci'))} |")
    loso = card.get("leave_one_source_out") or {}
    if loso.get("shipped_recipe"):
        lines += ["", "## Leave one source out (this recipe)", "",
                  "A fresh model of this recipe trained on every source but one (the split's train and validation "
                  "patients of the others), tested on every image of the one left out; 95% Wilson intervals. "
                  "'Called covid19': the share of the held-out images the fold's model called COVID-19; 'Flagged "
                  "OOD': the share its out-of-distribution flag caught.", "",
                  "| Held out | Test images | Accuracy | Sensitivity per class | Called covid19 | Flagged OOD |",
                  "|---|---|---|---|---|---|"]
        for fold in loso["shipped_recipe"]:
            sensitivity = "; ".join(f"{name} {_with_ci(value, fold['sensitivity_ci'].get(name))}"
                                    for name, value in fold.get("sensitivity", {}).items())
            flagged = "n/a" if fold.get("ood_flagged") is None else _percent(fold["ood_flagged"])
            called = _percent(fold["called"]["covid19"]) if "covid19" in fold.get("called", {}) else "n/a"
            lines.append(f"| {fold['held_out']} | {fold['n_test']} | "
                         f"{_with_ci(fold['accuracy'], fold['accuracy_ci'])} | {sensitivity} | {called} | {flagged} |")
    if loso.get("variants"):
        # Only the experiments that measured accuracy for at least one variant.
        experiments = {key: described for key, described in loso.get("experiments", {}).items()
                       if any(values["experiments"].get(key, {}).get("accuracy") is not None
                              for values in loso["variants"].values())}
        lines += ["", "## Sources and hospitals never seen in training (recipe benchmark)", "",
                  f"From `{loso.get('from')}` (`{loso.get('command')}`): MobileNetV2 on the same base, trained on "
                  "ieee8023 COVID-19 and NIH controls without the tested source or hospital, then tested on it. "
                  "Accuracy with its 95% Wilson interval.", ""]
        for variant, values in loso["variants"].items():
            lines.append(f"- **{variant}**: {values.get('described', '')}")
        for key, described in experiments.items():
            lines.append(f"- **{key}**: {described}")
        variants = list(loso["variants"])
        lines += ["", "| Experiment | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
        for key in experiments:
            cells = []
            for variant in variants:
                found = loso["variants"][variant]["experiments"].get(key, {})
                cells.append(_with_ci(found.get("accuracy"), found.get("accuracy_ci")) if found else "n/a")
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    if card.get("failure_modes"):
        lines += ["", "## Known failure modes", ""] + [f"- {mode}" for mode in card["failure_modes"]]
    return lines


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
_register_bundled()
