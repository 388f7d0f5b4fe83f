"""``reproduce``: the seed paper end to end, and its self-contained report (HTML and Markdown).

Builds the ``soares2020`` composite, trains VGG-16, ResNet50 and Xception with
the paper's settings on the same patient-level split, evaluates each on the
same test images and writes a report with the figures, a table of each model's
metrics with confidence intervals beside the paper's number, the split
manifest, and the versions and settings used. Two sections go beyond the paper:
each model tested on adult controls (the ``adult_controls`` composite) beside a
model of the same architecture trained with adult controls, and the shortcut
audit of every model.

``write_evaluation_report`` writes the same kind of report for any one
:class:`~cxrclassify.evaluation.Evaluation`: its figures, metrics with
confidence intervals overall, per class and per source, the confusion matrix and
the facts of the model. Both reports are self-contained: every figure is
embedded in the HTML as a ``data:`` URI and the page loads nothing else. Nothing
imports this module.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cxrclassify as cx
from cxrclassify.crossval import subset
from cxrclassify.evaluation import Evaluation, format_ci, wilson_interval
from cxrclassify.exceptions import ArgumentTypeError

__all__ = ["PAPER_RESULTS", "AdultControlResult", "ModelResult", "reproduce", "write_evaluation_report",
           "write_report"]

logger = logging.getLogger(__name__)

#: What Soares & Soares (2020) report for their best model on their image-level split.
PAPER_RESULTS = {"vgg16": {"accuracy": 0.973, "n_correct": 73, "n_images": 75}}

_CAVEAT = (
    "The composite puts adult COVID-19 X-rays (ieee8023, many hospitals) against pediatric normal and "
    "pneumonia X-rays (Kermany, one hospital in Guangzhou). A model can separate these classes by age, "
    "hospital and image processing without looking at the disease (DeGrave et al., Nature Machine "
    "Intelligence 3:610-619, 2021): a high score here is no evidence of clinical performance. "
    "cxrclassify is not a diagnostic device."
)


@dataclass
class ModelResult:
    """One architecture's run: its settings, history, evaluation and figures."""

    arch: str
    weights: str
    seconds: float
    history: dict[str, list[float]]
    evaluation: Any
    figures: dict[str, Path] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)
    audit: Any = None


@dataclass
class AdultControlResult:
    """One architecture tested on adult controls: the paper-composite model beside an adult-control model."""

    arch: str
    paper_model: Any
    adult_model: Any
    n_left_out: int
    seconds: float


def reproduce(
    out: str | os.PathLike[str],
    *,
    archs: Sequence[str] = ("vgg16", "resnet50", "xception"),
    weights: Mapping[str, str | None] | str | None = "imagenet",
    mirror: str | os.PathLike[str] | None = None,
    verify: bool = True,
    data_home: str | os.PathLike[str] | None = None,
    epochs: int = 80,
    batch_size: int = 15,
    learning_rate: float = 1e-3,
    image_size: int = 237,
    seed: int = 0,
    counts: Mapping[str, int] | None = None,
    adult_controls: bool = True,
    adult_counts: Mapping[str, int] | None = None,
    audit: bool = True,
    progress: bool = True,
) -> Path:
    """Reproduce Soares & Soares (2020) and write the report; returns the report's HTML path.

    Parameters
    ----------
    out : path
        Output folder (report.html, report.md, metrics.json, split_manifest.csv, figures/).
    archs : sequence of str, default ("vgg16", "resnet50", "xception")
        The architectures trained, each on the same split.
    weights : "imagenet", None, a path, or a mapping arch -> any of these
        Base weights per architecture; a mapping lets each have its own file (offline).
        Architectures missing from a mapping use random initialisation, and the
        report says so.
    mirror, verify, data_home
        Where the data come from (see :func:`cxrclassify.datasets.load_datasets`).
    epochs, batch_size, learning_rate
        The paper's 80, 15 and 0.001 by default.
    image_size : int, default 237
        The paper's input size.
    seed : int, default 0
        Seed of the draw, the split, the initial weights of every model built
        (``build_model(..., seed=seed)``), the training and the bootstrap: the
        same seed, data and weights files repeat the report's numbers.
    counts : mapping, optional
        ``{"n_covid19": ..., "n_normal": ..., "n_pneumonia": ...}``; the paper's 175/100/100 by default.
    adult_controls : bool, default True
        Also load the ``adult_controls`` composite (COVID-19 from ieee8023, normal and pneumonia
        from NIH ChestX-ray14, all adults), test each paper model on its test split (leaving out
        patients the paper model was trained or validated on), and train a model of the same
        architecture on its training split with the library's recommended settings, tested on
        the same images. Fetches NIH images (see :func:`cxrclassify.datasets.nih_records`). When
        the composite cannot be loaded, the report says why and the rest goes on.
    adult_counts : mapping, optional
        Counts of the ``adult_controls`` composite (its own keyword arguments); all available by default.
    audit : bool, default True
        Audit every model for shortcuts (:func:`cxrclassify.explain.audit`): class-activation
        mass inside the lung region against the borders, and how well the source of an
        image can be read from the model's features.
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    pathlib.Path
        ``out / "report.html"``.

    Examples
    --------
    >>> from cxrclassify.report import reproduce
    >>> reproduce("paper-run", mirror="../shared/data", verify=False,
    ...           weights={"vgg16": "vgg16_notop.weights.h5"})  # doctest: +SKIP
    """
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    data = cx.load_datasets("soares2020", image_size=image_size, seed=seed, mirror=mirror, verify=verify,
                            data_home=data_home, progress=progress, **dict(counts or {}))
    data.write_manifest(out / "split_manifest.csv")
    settings = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "optimizer": "adam",
                "loss": "categorical cross-entropy", "image_size": image_size, "seed": seed,
                "split": "80/10/10 stratified by class, grouped by patient", "counts": dict(counts or {}),
                "mirror": None if mirror is None else os.fspath(mirror), "verify": verify}
    results = [
        _run_architecture(arch, _weights_for(weights, arch), data, out / "figures", epochs=epochs,
                          batch_size=batch_size, learning_rate=learning_rate, seed=seed, progress=progress)
        for arch in archs
    ]
    adult_section = _adult_controls_section(
        results, data, counts=adult_counts, mirror=mirror, verify=verify, data_home=data_home, seed=seed,
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, progress=progress) if adult_controls else None
    if audit:
        for result in results:
            result.audit = _audit(result.model, data, seed)
    return write_report(out, data, results, settings, adult_section=adult_section)


def _weights_for(weights: Mapping[str, str | None] | str | None, arch: str) -> str | None:
    if isinstance(weights, Mapping):
        return weights.get(arch)
    return weights


def _run_architecture(arch, weights, data, figures: Path, *, epochs, batch_size, learning_rate, seed, progress):
    image_size = int(data.train.images.shape[1])
    started = time.perf_counter()
    try:
        model = cx.build_model(arch, len(data.class_names), weights=weights, class_names=data.class_names,
                               image_size=image_size, seed=seed)
        described = "random initialisation" if weights is None else os.fspath(weights)
    except cx.WeightsUnavailableError as error:
        logger.warning("%s: ImageNet weights unavailable (%s); training on a randomly initialised base.", arch, error)
        model = cx.build_model(arch, len(data.class_names), weights=None, class_names=data.class_names,
                               image_size=image_size, seed=seed)
        described = "random initialisation (ImageNet weights unavailable)"
    history = cx.train(model, data, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                       progress=progress, recipe="paper")
    evaluation = cx.evaluate(model, data.test, seed=seed)
    written = cx.save_evaluation_figures(evaluation, figures / arch, history=history, formats=("png", "svg"))
    paths = {path.stem.replace("_", " "): path for path in written if path.suffix == ".png"}
    return ModelResult(arch, described, round(time.perf_counter() - started, 1), history, evaluation, paths,
                       model=model)


def _adult_controls_section(results, data, *, counts, mirror, verify, data_home, seed, epochs, batch_size,
                            learning_rate, progress) -> dict[str, Any]:
    """Each paper model on adult controls, beside a model of its architecture trained with them."""
    image_size = int(data.train.images.shape[1])
    try:
        adults = cx.load_datasets("adult_controls", image_size=image_size, seed=seed, mirror=mirror, verify=verify,
                                  data_home=data_home, progress=progress, **dict(counts or {}))
    except (cx.exceptions.CxrError, OSError) as error:
        logger.warning("The adult-control comparison was skipped: %s", error)
        return {"skipped": f"{type(error).__name__}: {error}", "comparisons": [], "data": None}
    seen = {record.group for split in (data.train, data.validation) for record in split.records}
    keep = [index for index, record in enumerate(adults.test.records) if record.group not in seen]
    adult_test = subset(adults.test, keep)
    comparisons = []
    for result in results:
        started = time.perf_counter()
        adult_model = cx.build_model(result.model.arch, len(adults.class_names), weights=None,
                                     class_names=adults.class_names, image_size=image_size,
                                     preprocessing=result.model.preprocessing, head=result.model.head_kind,
                                     seed=seed)
        adult_model.base.set_weights(result.model.base.get_weights())  # the same pretrained base
        cx.train(adult_model, adults, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                 progress=progress, recipe="recommended")
        comparisons.append(AdultControlResult(
            result.arch, cx.evaluate(result.model, adult_test, seed=seed), cx.evaluate(adult_model, adult_test, seed=seed),
            len(adults.test) - len(adult_test), round(time.perf_counter() - started, 1)))
    return {"skipped": None, "comparisons": comparisons, "data": adults, "n_test": len(adult_test)}


def _audit(model, data, seed=0):
    try:
        return cx.audit(model, data, seed=seed)
    except (cx.exceptions.CxrError, ValueError) as error:
        logger.warning("The shortcut audit of %s failed: %s", model.arch, error)
        return f"not run: {type(error).__name__}: {error}"


def write_report(out: Path, data, results: Sequence[ModelResult], settings: Mapping[str, Any], *,
                 adult_section: Mapping[str, Any] | None = None) -> Path:
    """Write report.md, report.html (figures embedded) and metrics.json under ``out``; return the HTML path.

    Examples
    --------
    >>> from cxrclassify.report import write_report
    >>> html_path = write_report(out_dir, data, results, settings)  # doctest: +SKIP
    """
    versions = _versions()
    metrics = {result.arch: {**result.evaluation.to_dict(), "weights": result.weights, "seconds": result.seconds}
               for result in results}
    record = {"settings": settings, "versions": versions, "models": metrics}
    if adult_section is not None:
        record["adult_controls"] = _adult_metrics(adult_section)
    audits = {result.arch: _audit_dict(result.audit) for result in results if result.audit is not None}
    if audits:
        record["audit"] = audits
    (out / "metrics.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    sections = _sections(data, results, settings, versions)
    if adult_section is not None:
        sections.insert(-2, ("Tested on adult controls", _adult_blocks(adult_section)))
    if audits:
        sections.insert(-2, ("Shortcut audit", _audit_blocks(results)))
    (out / "report.md").write_text(_markdown(sections, out), encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(_html(sections, title=_REPRODUCE_TITLE), encoding="utf-8")
    return html_path


def _percent_ci(value: float, interval: Sequence[float]) -> str:
    return f"{value:.1%} ({interval[0]:.1%} to {interval[1]:.1%})"


def _sections(data, results, settings, versions) -> list[tuple[str, list[Any]]]:
    """The report as (title, blocks); a block is a paragraph, a table (list of rows) or a figure path."""
    counts = {name: int(sum(split.class_counts()[name] for _, split in data.items())) for name in data.class_names}
    split_rows = [["split", *data.class_names, "patients"]] + [
        [name, *(str(split.class_counts()[c]) for c in data.class_names), str(len(set(split.groups)))]
        for name, split in data.items()
    ]
    table = [["model", "base weights", "test accuracy (95% CI)", "correct / images", "paper"]]
    for result in results:
        evaluation = result.evaluation
        paper = PAPER_RESULTS.get(result.arch)
        paper_text = (
            f"{_percent_ci(paper['accuracy'], wilson_interval(paper['n_correct'], paper['n_images']))}, "
            f"{paper['n_correct']} of {paper['n_images']}, image-level split" if paper else "not reported here"
        )
        table.append([result.arch, result.weights, _percent_ci(evaluation.accuracy, evaluation.accuracy_ci),
                      f"{evaluation.n_correct} / {evaluation.n_images}", paper_text])
    per_model = []
    for result in results:
        per_model += [f"### {result.arch}", f"```\n{result.evaluation.summary()}\n```",
                      *result.figures.values()]
    return [
        ("Reproducing Soares & Soares (2020)", [
            "Automatic detection of COVID-19 cases on X-ray images using convolutional neural networks, "
            "Research on Biomedical Engineering (2020), doi:10.1007/s42600-020-00120-5.",
            f"**Caveat.** {_CAVEAT}",
        ]),
        ("Results on the same patient-level test split", [table]),
        ("Data", [
            f"The soares2020 composite: {counts}. Every patient is in one split only; the split manifest is "
            "`split_manifest.csv` (path, label, patient, source, split).", split_rows,
        ]),
        ("Models", per_model),
        ("Settings", [f"```\n{json.dumps(dict(settings), indent=2, default=str)}\n```"]),
        ("Versions", [f"```\n{json.dumps(versions, indent=2)}\n```"]),
    ]


def _adult_metrics(section: Mapping[str, Any]) -> dict[str, Any]:
    if section["skipped"]:
        return {"skipped": section["skipped"]}
    return {"n_test": section["n_test"], "models": {
        comparison.arch: {"paper_composite_model": comparison.paper_model.to_dict(),
                          "adult_control_model": comparison.adult_model.to_dict(),
                          "n_left_out": comparison.n_left_out, "seconds": comparison.seconds}
        for comparison in section["comparisons"]}}


def _called_covid(evaluation, label: str) -> str:
    """Share of the ``label`` test images called COVID-19, as "k of n (p%)"."""
    names = list(evaluation.class_names)
    if label not in names or "covid19" not in names:
        return "n/a"
    row = evaluation.confusion_matrix[names.index(label)]
    total = int(row.sum())
    called = int(row[names.index("covid19")])
    return f"{called} of {total} ({called / total:.0%})" if total else "none in the test split"


def _adult_blocks(section: Mapping[str, Any]) -> list[Any]:
    if section["skipped"]:
        return [f"Not run: the adult_controls composite could not be loaded ({section['skipped']})."]
    adults = section["data"]
    counts = {name: int(sum(split.class_counts()[name] for _, split in adults.items())) for name in adults.class_names}
    n_left_out = section["comparisons"][0].n_left_out if section["comparisons"] else 0
    table = [["model", "trained on", "adult test accuracy (95% CI)", "macro F1 (95% CI)",
              "adult normals called COVID-19", "adult pneumonias called COVID-19"]]
    for comparison in section["comparisons"]:
        for trained_on, evaluation in (("soares2020 (paper composite)", comparison.paper_model),
                                       ("adult_controls (recommended settings)", comparison.adult_model)):
            table.append([comparison.arch, trained_on, _percent_ci(evaluation.accuracy, evaluation.accuracy_ci),
                          format_ci(evaluation.macro_f1, evaluation.macro_f1_ci, percent=False),
                          _called_covid(evaluation, "normal"), _called_covid(evaluation, "pneumonia")])
    introduction = (
        "The paper's composite confounds the disease with age and hospital. Here each paper model is tested on "
        "the test split of the adult_controls composite (COVID-19 from ieee8023; normal and pneumonia from NIH "
        f"ChestX-ray14, all adults; {counts} in all), leaving out {n_left_out} "
        "test images of patients the paper models were trained or validated on, "
        f"so {section['n_test']} test images remain. Beside it, a model of the same architecture and pretrained "
        "base trained on the adult composite's training split. A model that learned age calls adult X-rays "
        "COVID-19 whatever they show.")
    return [introduction, table]


def _audit_dict(audit: Any) -> Any:
    return audit.to_dict() if hasattr(audit, "to_dict") else str(audit)


def _audit_blocks(results: Sequence[ModelResult]) -> list[Any]:
    blocks: list[Any] = [(
        "For each paper model on its test split: the share of its class-activation mass inside the central lung "
        "region against the borders and corners (where text, markers and collimation edges sit), and the accuracy "
        "of a simple probe that predicts each image's source from the model's features: near 100% means the source "
        "is trivially visible to the model, and the classes of this composite are its sources.")]
    for result in results:
        if result.audit is None:
            continue
        text = result.audit.summary() if hasattr(result.audit, "summary") else str(result.audit)
        blocks += [f"### {result.arch}", f"```\n{text}\n```"]
    return blocks


_NOT_DIAGNOSTIC = (
    "cxrclassify is research software, not a diagnostic device. These numbers describe this model on these test "
    "images only and are no evidence of clinical performance: a model can score well by reading the hospital, "
    "the patients' age or the image processing instead of the disease (DeGrave et al., Nature Machine "
    "Intelligence 3:610-619, 2021). Do not use it to diagnose, triage or treat anyone."
)

#: The figures of an evaluation report, by file stem, in the section that shows them.
_EVALUATION_FIGURES = {
    "confusion": ("confusion_matrix", "confusion_matrix_normalized"),
    "curves": ("roc_curves", "reliability_diagram"),
    "training": ("training_curves",),
}

# Rows of the misclassified-images table, at most.
_MAX_MISCLASSIFIED_ROWS = 50


def write_evaluation_report(
    out: str | os.PathLike[str],
    evaluation: Evaluation,
    *,
    title: str = "cxrclassify evaluation",
    model_info: Mapping[str, Any] | None = None,
    history: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """Write a self-contained report of one evaluation (HTML and Markdown), its figures and metrics.json.

    The report gives the accuracy with its confidence interval and the other
    overall metrics, the per-class and per-source (and, where recorded, per-site
    and per-age-group) metrics with their intervals, the confusion matrix, the
    figures, the model's facts, the misclassified images and the versions used,
    under a note that cxrclassify is not a diagnostic device. ``report.html``
    needs no other file: every figure is embedded as a base64 ``data:`` URI and
    the page links no stylesheet, script, font or image.

    Parameters
    ----------
    out : path
        Output folder, created if needed. Receives ``report.html``,
        ``report.md``, ``metrics.json`` and the PNG figures of
        :func:`~cxrclassify.plots.save_evaluation_figures`
        (``confusion_matrix.png``, ``confusion_matrix_normalized.png``,
        ``roc_curves.png``, ``reliability_diagram.png`` and, with ``history``,
        ``training_curves.png``); existing files of these names are replaced.
    evaluation : Evaluation
        What :func:`~cxrclassify.evaluate` or
        :func:`~cxrclassify.evaluation.evaluate_predictions` returned.
    title : str, default "cxrclassify evaluation"
        The page's title and its top heading.
    model_info : mapping, optional
        Facts about the model, shown in a table in the given order: for
        instance its architecture, base weights, image size, preprocessing and
        the number of epochs that actually ran. Values are shown as text
        (mappings and lists as JSON).
    history : mapping of str to sequence of float, optional
        What :func:`~cxrclassify.train` returned (Keras-style: metric name to
        one value per epoch), for the training curves.

    Returns
    -------
    pathlib.Path
        ``out / "report.html"``.

    Raises
    ------
    ArgumentTypeError
        When ``evaluation`` is not an :class:`~cxrclassify.evaluation.Evaluation`.

    Notes
    -----
    ``metrics.json`` holds :meth:`Evaluation.to_dict() <cxrclassify.evaluation.Evaluation.to_dict>`
    with three more keys: ``"model_info"`` (``model_info``, or ``{}``),
    ``"history"`` (``history`` as lists of floats, or ``null``) and
    ``"versions"`` (cxrclassify, Python, TensorFlow, Keras, NumPy, platform).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from cxrclassify.evaluation import evaluate_predictions
    >>> from cxrclassify.report import write_evaluation_report
    >>> evaluation = evaluate_predictions(
    ...     np.array([0, 0, 1, 1]), np.array([[.9, .1], [.4, .6], [.3, .7], [.2, .8]]),
    ...     ["covid19", "normal"], sources=["ieee8023", "ieee8023", "kermany", "kermany"], n_bootstrap=0)
    >>> path = write_evaluation_report(tempfile.mkdtemp(), evaluation,
    ...                                model_info={"architecture": "vgg16", "epochs run": 2})
    >>> path.name, sorted(p.name for p in path.parent.glob("*.md")), (path.parent / "metrics.json").is_file()
    ('report.html', ['report.md'], True)
    >>> page = path.read_text(encoding="utf-8")
    >>> "75.0% (30.1 to 95.4)" in page, "Not a diagnostic device" in page, "data:image/png;base64," in page
    (True, True, True)

    With a trained model (slow):

    >>> import cxrclassify
    >>> data = cxrclassify.load_datasets("sample", image_size=32)  # doctest: +SKIP
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)  # doctest: +SKIP
    >>> history = cxrclassify.train(model, data, epochs=2)  # doctest: +SKIP
    >>> write_evaluation_report("eval-report", cxrclassify.evaluate(model, data.test), history=history,
    ...                         model_info={"architecture": "vgg16", "epochs run": len(history["loss"])}
    ...                         )  # doctest: +SKIP
    PosixPath('eval-report/report.html')
    """
    if not isinstance(evaluation, Evaluation):
        message = ("Expected evaluation to be a cxrclassify.evaluation.Evaluation (what evaluate() returns). "
                   f"Received: evaluation of type {type(evaluation).__name__}")
        raise ArgumentTypeError(message)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    history_lists = None if history is None else {
        str(key): [float(value) for value in values] for key, values in history.items()}
    written = cx.save_evaluation_figures(evaluation, out, history=history_lists, formats=("png",))
    figures = {path.stem: path for path in written if path.suffix == ".png"}
    versions = _versions()
    record = {**evaluation.to_dict(), "model_info": dict(model_info or {}), "history": history_lists,
              "versions": versions}
    (out / "metrics.json").write_text(json.dumps(record, indent=2, default=_json_default), encoding="utf-8")
    sections = _evaluation_sections(evaluation, model_info, history_lists, figures, versions)
    (out / "report.md").write_text(f"# {title}\n\n" + _markdown(sections, out), encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(_html(sections, title=title, heading=title), encoding="utf-8")
    return html_path


def _json_default(value: Any) -> Any:
    """NumPy scalars and arrays as Python numbers and lists; anything else as its text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _info_text(value: Any) -> str:
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=_json_default)
    return "not recorded" if value is None else str(value)


def _evaluation_sections(evaluation: Evaluation, model_info: Mapping[str, Any] | None,
                         history: Mapping[str, list[float]] | None, figures: Mapping[str, Path],
                         versions: Mapping[str, str]) -> list[tuple[str, list[Any]]]:
    """The evaluation report as (title, blocks), as :func:`_sections` for the reproduce report."""
    ci = f"{evaluation.confidence:.0%} CI"
    sources = ", ".join(evaluation.by_source) or "not recorded"
    sections: list[tuple[str, list[Any]]] = [
        ("Not a diagnostic device", [_NOT_DIAGNOSTIC]),
        ("Model", [
            [["property", "value"]] + [[str(key), _info_text(value)] for key, value in model_info.items()]
            if model_info else "No model information was given."]),
        ("Overall metrics", [
            f"{evaluation.n_images} test images of the classes {', '.join(evaluation.class_names)}; "
            f"image sources: {sources}.", _overall_table(evaluation, ci), _interval_note(evaluation)]),
        ("Per class", [_class_table(evaluation, ci)]),
    ]
    for kind, breakdown in (("source", evaluation.by_source), ("site", evaluation.by_site),
                            ("age group", evaluation.by_age_group)):
        if breakdown:
            sections.append((f"Per {kind}", [_breakdown_table(kind, breakdown, evaluation.class_names, ci)]))
    sections.append(("Confusion matrix", [_confusion_table(evaluation), *_figures(figures, "confusion")]))
    curves = _figures(figures, "curves")
    if curves:
        sections.append(("ROC curves and calibration", curves))
    if history:
        sections.append(("Training", [_history_text(history), *_figures(figures, "training")]))
    misclassified = _misclassified_blocks(evaluation)
    if misclassified:
        sections.append(("Misclassified images", misclassified))
    if evaluation.notes:
        sections.append(("Notes", list(evaluation.notes)))
    sections += [
        ("Summary", [f"```\n{evaluation.summary()}\n```"]),
        ("Versions", [f"```\n{json.dumps(dict(versions), indent=2)}\n```"]),
    ]
    return sections


def _figures(figures: Mapping[str, Path], section: str) -> list[Path]:
    return [figures[stem] for stem in _EVALUATION_FIGURES[section] if stem in figures]


def _overall_table(evaluation: Evaluation, ci: str) -> list[list[str]]:
    temperature = "not recorded" if evaluation.temperature is None else f"{evaluation.temperature:.2f}"
    return [
        ["metric", f"value ({ci})"],
        ["accuracy", f"{format_ci(evaluation.accuracy, evaluation.accuracy_ci)}, "
                     f"{evaluation.n_correct} of {evaluation.n_images} images"],
        ["balanced accuracy", format_ci(evaluation.balanced_accuracy, evaluation.balanced_accuracy_ci)],
        ["macro F1", format_ci(evaluation.macro_f1, evaluation.macro_f1_ci, percent=False)],
        ["macro ROC AUC", format_ci(evaluation.macro_roc_auc, evaluation.macro_roc_auc_ci, percent=False)],
        ["expected calibration error", f"{evaluation.ece:.3f}"],
        ["log loss", f"{evaluation.log_loss:.3f}"],
        ["temperature", temperature],
    ]


def _interval_note(evaluation: Evaluation) -> str:
    patients = evaluation.n_groups - evaluation.n_ungrouped
    return (f"{evaluation.confidence:.0%} intervals: Wilson score intervals for proportions (accuracy, "
            f"sensitivity, specificity, precision); for balanced accuracy, macro F1 and ROC AUC, percentile "
            f"intervals of {evaluation.n_bootstrap} bootstrap resamples of {patients} patients"
            + (f" and {evaluation.n_ungrouped} images without a recorded patient" if evaluation.n_ungrouped else "")
            + " (n/a: not computed or undefined).")


def _class_table(evaluation: Evaluation, ci: str) -> list[list[str]]:
    nan_pair = (float("nan"), float("nan"))
    support = evaluation.confusion_matrix.sum(axis=1)
    rows = [["class", "images", f"sensitivity ({ci})", f"specificity ({ci})", f"precision ({ci})",
             f"ROC AUC ({ci})"]]
    for index, name in enumerate(evaluation.class_names):
        cells = [format_ci(values.get(name, float("nan")), intervals.get(name, nan_pair))
                 for values, intervals in ((evaluation.recall, evaluation.recall_ci),
                                           (evaluation.specificity, evaluation.specificity_ci),
                                           (evaluation.precision, evaluation.precision_ci))]
        auc = format_ci(evaluation.roc_auc.get(name, float("nan")), evaluation.roc_auc_ci.get(name, nan_pair),
                        percent=False)
        rows.append([name, str(int(support[index])), *cells, auc])
    return rows


def _breakdown_table(kind: str, breakdown: Mapping[str, Mapping[str, Any]], class_names: Sequence[str],
                     ci: str) -> list[list[str]]:
    nan_pair = (float("nan"), float("nan"))
    rows = [[kind, "images", "correct", f"accuracy ({ci})", "balanced accuracy", "macro F1",
             *(f"{name} sensitivity ({ci})" for name in class_names)]]
    for key, values in breakdown.items():
        recall, recall_ci = values.get("recall", {}), values.get("recall_ci", {})
        rows.append([str(key), str(values["n_images"]), str(values["n_correct"]),
                     format_ci(values["accuracy"], values["accuracy_ci"]),
                     _plain(values.get("balanced_accuracy", float("nan"))),
                     _plain(values.get("macro_f1", float("nan")), percent=False),
                     *(format_ci(recall.get(name, float("nan")), recall_ci.get(name, nan_pair))
                       for name in class_names)])
    return rows


def _plain(value: float, *, percent: bool = True) -> str:
    """A value without an interval, as :func:`format_ci` writes it."""
    return format_ci(value, (value, value), percent=percent).split(" (")[0]


def _confusion_table(evaluation: Evaluation) -> list[list[str]]:
    matrix = evaluation.confusion_matrix
    rows = [["true class / predicted", *evaluation.class_names, "total"]]
    for index, name in enumerate(evaluation.class_names):
        rows.append([name, *(str(int(count)) for count in matrix[index]), str(int(matrix[index].sum()))])
    return rows


def _history_text(history: Mapping[str, list[float]]) -> str:
    epochs = max((len(values) for values in history.values()), default=0)
    last = ", ".join(f"{key} {values[-1]:.4g}" for key, values in history.items() if values)
    return f"{epochs} epochs ran; at the last one: {last or 'nothing recorded'}."


def _misclassified_blocks(evaluation: Evaluation) -> list[Any]:
    if evaluation.labels is None or evaluation.probabilities is None:
        return []
    labels = [int(label) for label in evaluation.labels]
    predicted = [int(index) for index in evaluation.probabilities.argmax(axis=1)]
    wrong = [index for index, (label, guess) in enumerate(zip(labels, predicted)) if label != guess]
    if not wrong:
        return ["Every test image was classified correctly."]
    inputs = evaluation.predictions.inputs if evaluation.predictions is not None else None
    names = evaluation.class_names
    rows = [["image", "true class", "predicted", "probability of the prediction"]]
    for index in wrong[:_MAX_MISCLASSIFIED_ROWS]:
        image = inputs[index] if inputs is not None and index < len(inputs) else f"image {index}"
        rows.append([str(image), names[labels[index]], names[predicted[index]],
                     f"{float(evaluation.probabilities[index, predicted[index]]):.3f}"])
    shown = (f"the first {_MAX_MISCLASSIFIED_ROWS}" if len(wrong) > _MAX_MISCLASSIFIED_ROWS else "all")
    return [f"{len(wrong)} of {evaluation.n_images} images misclassified ({shown} below).", rows]


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow

    return {"cxrclassify": cx.__version__, "python": platform.python_version(), "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__, "platform": platform.platform()}


_REPRODUCE_TITLE = "cxrclassify: reproducing Soares & Soares (2020)"

# Suffix -> media type of the figures a report embeds.
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp", ".svg": "image/svg+xml"}

_STYLE = ("body{font-family:sans-serif;max-width:980px;margin:auto}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:4px 8px}pre{background:#f6f6f6;padding:8px;overflow-x:auto}")


def _markdown_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(sections, root: Path | None = None) -> str:
    """The sections as Markdown; figures are linked relative to ``root`` (the folder report.md is in)."""
    lines = []
    for title, blocks in sections:
        lines += [f"## {title}", ""]
        for block in blocks:
            if isinstance(block, Path):
                target = (Path(os.path.relpath(block, root)).as_posix() if root is not None
                          else f"figures/{block.parent.name}/{block.name}")
                lines += [f"![{block.stem}]({target})", ""]
            elif isinstance(block, list):
                lines += ["| " + " | ".join(map(_markdown_cell, block[0])) + " |", "|" + "---|" * len(block[0])]
                lines += ["| " + " | ".join(map(_markdown_cell, row)) + " |" for row in block[1:]] + [""]
            else:
                lines += [block, ""]
    return "\n".join(lines)


def _data_uri(path: Path) -> str:
    """The file as a base64 ``data:`` URI, so that the HTML report needs no other file."""
    media_type = _IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _paragraph(text: str) -> str:
    """Escaped text; ``**bold**`` becomes <strong>."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def _html(sections, *, title: str = _REPRODUCE_TITLE, heading: str | None = None) -> str:
    """The sections as one self-contained HTML page: figures embedded, no external resource, all text escaped.

    ``title`` is the page's <title>; ``heading``, when given, an <h1> above the sections.
    """
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body>"]
    if heading is not None:
        parts.append(f"<h1>{html.escape(heading)}</h1>")
    for section_title, blocks in sections:
        parts.append(f"<h2>{html.escape(section_title)}</h2>")
        for block in blocks:
            if isinstance(block, Path):
                parts.append(f"<p><img alt='{html.escape(block.stem)}' style='max-width:100%' "
                             f"src='{_data_uri(block)}'></p>")
            elif isinstance(block, list):
                header = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in block[0])
                rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
                               for row in block[1:])
                parts.append(f"<table><tr>{header}</tr>{rows}</table>")
            elif block.startswith("```"):
                parts.append(f"<pre>{html.escape(block.strip('`').strip())}</pre>")
            elif block.startswith("### "):
                parts.append(f"<h3>{html.escape(block[4:])}</h3>")
            else:
                parts.append(f"<p>{_paragraph(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
