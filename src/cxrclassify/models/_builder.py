"""Models from pretrained records, and records from saved models (timm's ``_builder`` layer).

:mod:`~cxrclassify.models.pretrained` holds the records and imports no model code;
this module sits above it and above the classifier: :func:`load_pretrained` builds or
loads a classifier from a record, :func:`pretrained_cfg_from_file` and
:func:`write_bundled_record` write a record from a saved classifier.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from .._cache import file_sha256
from .._io import write_json
from ..exceptions import ArgumentTypeError, ModelError
from .classifier import build_model
from .io import load_model
from .pretrained import PretrainedCfg, fetch_pretrained, get_pretrained_cfg, register_pretrained

__all__ = ["load_pretrained", "pretrained_cfg_from_file", "write_bundled_record"]


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
    bundled: str | None = None,
    card: Mapping[str, Any] | None = None,
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
    path = Path(path)
    model = load_model(path)
    if name.split(".", 1)[0] != model.arch:
        message = f"Expected a name starting with the model's architecture {model.arch!r}. Received: name={name!r}"
        raise ModelError(message)
    return PretrainedCfg(
        name=name, kind="classifier", url=url, filename=path.name, input_size=model.image_size,
        preprocessing=model.preprocessing, training_data=training_data, license=license, citation=citation,
        sha256=file_sha256(path), size=path.stat().st_size, class_names=tuple(model.class_names or ()),
        metrics=dict(metrics or {}), bundled=bundled, card=dict(card or {}),
    )


def write_bundled_record(
    path: str | os.PathLike[str],
    name: str,
    *,
    card: Mapping[str, Any],
    license: str,
    citation: str,
    url: str | None = None,
) -> PretrainedCfg:
    """Write the JSON record of a classifier to bundle, beside its file, and register it.

    The record's sha256 and size are the file's; its training data and metrics come from
    the card (``card["sources"]`` and ``card["test_metrics"]``).

    Examples
    --------
    >>> from cxrclassify.models import write_bundled_record
    >>> cfg = write_bundled_record("out/m.keras", "mobilenetv2.mine", card={}, license="CC BY 4.0",
    ...                            citation="me")  # doctest: +SKIP
    """
    path = Path(path)
    cfg = pretrained_cfg_from_file(path, name, url=url or "", training_data=_training_data_line(card),
                                   license=license, citation=citation, metrics=_headline_metrics(card.get("test_metrics") or {}),
                                   bundled=path.name, card=card)
    write_json(path.with_name(path.name[: -len(path.suffix)] + ".json"), cfg.to_dict())
    return register_pretrained(cfg, overwrite=True)


def _headline_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("n_images", "n_correct", "accuracy", "accuracy_ci", "balanced_accuracy", "balanced_accuracy_ci",
            "macro_f1", "macro_f1_ci", "macro_roc_auc", "macro_roc_auc_ci")
    return {key: metrics[key] for key in keys if key in metrics}


def _training_data_line(card: Mapping[str, Any]) -> str:
    sources = card.get("sources") or {}
    parts = [f"{name} ({sum(dict(values.get('images', {})).values())} images; {values.get('licence', '?')})"
             for name, values in sources.items()]
    return "; ".join(parts) or "see the model card"
