"""The ``cxrclassify`` command line.

``cxrclassify demo`` trains the paper's model on the X-ray sample shipped with
the package, evaluates it and writes the training curves, confusion matrices,
Grad-CAM overlays, metrics and the split manifest to an output folder.
``cxrclassify explain MODEL IMAGES... --out DIR`` writes class activation maps
(Grad-CAM, Grad-CAM++ or Score-CAM) of a saved model for images or folders.

Exit codes of ``cxrclassify explain``: 0 when every image was explained; 1 when
it finished but skipped images that could not be decoded (``--on-error skip``,
the default: each is logged and has a row in ``predictions.csv`` with its
``error``); 2 when it stopped with nothing explained: a bad command line, a
missing model or image, or, with ``--on-error raise``, an unreadable image.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["EXIT_OK", "EXIT_SKIPPED", "EXIT_USAGE", "main", "run_demo"]

#: Exit code of a command that did all it was asked.
EXIT_OK = 0
#: Exit code of ``cxrclassify explain`` when it skipped images that could not be decoded.
EXIT_SKIPPED = 1
#: Exit code of a bad command line, a missing file or an error that stopped the command (argparse's).
EXIT_USAGE = 2

logger = logging.getLogger("cxrclassify.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cxrclassify`` command; returns its exit code (see the module's docstring).

    Examples
    --------
    >>> from cxrclassify.cli import main
    >>> main(["--version"])  # doctest: +SKIP
    """
    parser = _build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if arguments.command is None:
        parser.print_help()
        return 2
    return arguments.handler(arguments)


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="cxrclassify",
        description="Chest X-ray classification by transfer learning, explained with Grad-CAM. Not a diagnostic device.",
    )
    parser.add_argument("--version", action="version", version=f"cxrclassify {__version__}")
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser(
        "demo",
        help="train, evaluate and explain on the bundled sample of real X-rays",
        description=(
            "Train the paper's classifier on the 48 real X-rays shipped with the package, evaluate it on "
            "a patient-level test split, and write training curves, confusion matrices, Grad-CAM overlays, "
            "metrics and the split manifest to --out."
        ),
    )
    demo.add_argument("--out", type=Path, default=Path("cxrclassify-demo"), help="output folder (default: %(default)s)")
    demo.add_argument("--arch", default="vgg16", help="base architecture (default: %(default)s)")
    demo.add_argument(
        "--weights", default="imagenet",
        help="'imagenet' (downloaded by Keras; falls back to random initialisation when offline), "
             "'none', or the path of a .weights.h5 file of the base without its top (default: %(default)s)",
    )
    demo.add_argument("--preprocessing", default=None, help="input preprocessing for a weights file: caffe, tf, torch")
    demo.add_argument("--epochs", type=int, default=80, help="training epochs (default: %(default)s, as in the paper)")
    demo.add_argument("--image-size", type=int, default=237, help="input side in pixels (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default: %(default)s)")
    demo.add_argument("--save-model", action="store_true", help="also save the trained model as model.keras")
    demo.set_defaults(handler=_demo_command)

    reproduce = commands.add_parser(
        "reproduce",
        help="reproduce Soares & Soares (2020): soares2020 composite, VGG-16, ResNet50, Xception, report",
        description=(
            "Build the soares2020 composite (fetched from its sources or --mirror), train each architecture with "
            "the paper's settings on the same patient-level split, evaluate each on the same test images and "
            "write report.html / report.md with metrics and confidence intervals beside the paper's numbers."
        ),
    )
    reproduce.add_argument("--out", type=Path, default=Path("cxrclassify-reproduce"), help="output folder")
    reproduce.add_argument("--archs", default="vgg16,resnet50,xception", help="comma-separated architectures")
    reproduce.add_argument(
        "--weights", action="append", default=None, metavar="[ARCH=]WEIGHTS",
        help="'imagenet' (default), 'none', or a .weights.h5 path; ARCH=... sets one architecture's "
             "(repeatable); architectures not named get random initialisation once any ARCH= is given",
    )
    reproduce.add_argument("--mirror", default=None, help="base URL or folder replacing the upstream hosts")
    reproduce.add_argument("--no-verify", action="store_true",
                           help="do not verify checksums (needed for a mirror of modified, e.g. downscaled, files)")
    reproduce.add_argument("--data-home", default=None, help="cache folder (default: CXRCLASSIFY_HOME or user cache)")
    reproduce.add_argument("--epochs", type=int, default=80)
    reproduce.add_argument("--image-size", type=int, default=237)
    reproduce.add_argument("--seed", type=int, default=0)
    reproduce.add_argument("--counts", default=None, metavar="COVID,NORMAL,PNEUMONIA",
                           help="images per class (default: the paper's 175,100,100)")
    reproduce.add_argument("--adult-counts", default=None, metavar="COVID,NORMAL,PNEUMONIA",
                           help="images per class of the adult_controls composite (default: all available)")
    reproduce.add_argument("--no-adult-controls", action="store_true",
                           help="skip testing the models on adult controls (no NIH images fetched)")
    reproduce.add_argument("--no-audit", action="store_true", help="skip the shortcut audit of each model")
    reproduce.set_defaults(handler=_reproduce_command)

    explain = commands.add_parser(
        "explain",
        help="class activation maps (Grad-CAM, Grad-CAM++, Score-CAM) of a saved model for images or folders",
        description=(
            "Classify IMAGES (files or folders) with the saved model MODEL and write, to --out, an overlay PNG "
            "and the raw map (.npy) per image, cam_grid.png (X-rays beside their maps, with the predicted "
            "class and probability) and predictions.csv (one row per image, with its OOD score; an image that "
            "could not be decoded has its reason in the error column). Exit code 0: every image explained; "
            "1: some images skipped (--on-error skip); 2: stopped (bad arguments, missing files, or an "
            "unreadable image with --on-error raise)."
        ),
    )
    explain.add_argument("model", type=Path, metavar="MODEL", help="a classifier saved with model.save('m.keras')")
    explain.add_argument("images", nargs="+", metavar="IMAGES", help="image files (PNG, JPEG, DICOM) or folders")
    explain.add_argument("--out", type=Path, default=Path("cxrclassify-explain"),
                         help="output folder (default: %(default)s)")
    explain.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++", "scorecam"],
                         help="how the map is computed (default: %(default)s)")
    explain.add_argument("--class", dest="class_", default=None, metavar="NAME_OR_INDEX",
                         help="class explained, by name or index (default: each image's predicted class)")
    explain.add_argument("--layer", default=None, help="layer of the base (default: its last convolutional layer)")
    explain.add_argument("--alpha", type=_unit_interval, default=0.4, help="opacity of the map (default: %(default)s)")
    explain.add_argument("--colormap", default="jet", help="matplotlib colormap (default: %(default)s)")
    explain.add_argument("--max-channels", type=int, default=256,
                         help="Score-CAM: channels scored per image (default: %(default)s)")
    explain.add_argument("--on-error", default="skip", choices=["raise", "skip"],
                         help="an image that cannot be decoded: 'skip' it (logged, listed in predictions.csv, "
                              "exit code 1) or 'raise' (stop, exit code 2) (default: %(default)s)")
    explain.set_defaults(handler=_explain_command, parser=explain)
    return parser


def _parse_weights(values: Sequence[str] | None) -> dict[str, str | None] | str | None:
    """``["imagenet"]`` -> "imagenet"; ``["vgg16=a.h5", "resnet50=none"]`` -> {"vgg16": "a.h5", "resnet50": None}."""
    if not values:
        return "imagenet"
    per_arch: dict[str, str | None] = {}
    for value in values:
        arch, separator, weights = value.partition("=")
        if not separator:
            return None if value.lower() == "none" else value
        per_arch[arch.strip().lower()] = None if weights.lower() == "none" else weights
    return per_arch


def _reproduce_command(arguments: argparse.Namespace) -> int:
    from .report import reproduce

    report = reproduce(
        arguments.out, archs=[arch.strip() for arch in arguments.archs.split(",") if arch.strip()],
        weights=_parse_weights(arguments.weights), mirror=arguments.mirror, verify=not arguments.no_verify,
        data_home=arguments.data_home, epochs=arguments.epochs, image_size=arguments.image_size,
        seed=arguments.seed, counts=_parse_counts(arguments.counts, "--counts"),
        adult_controls=not arguments.no_adult_controls,
        adult_counts=_parse_counts(arguments.adult_counts, "--adult-counts"), audit=not arguments.no_audit,
    )
    logger.info("Wrote %s and %s", report, report.with_suffix(".md"))
    return 0


def _parse_counts(value: str | None, option: str) -> dict[str, int] | None:
    """``"20,10,10"`` -> ``{"n_covid19": 20, "n_normal": 10, "n_pneumonia": 10}``."""
    if not value:
        return None
    parts = value.split(",")
    if len(parts) != 3 or not all(part.strip().isdigit() for part in parts):
        message = f"Expected {option} as three whole numbers COVID,NORMAL,PNEUMONIA. Received: {option}={value!r}"
        raise SystemExit(message)
    covid, normal, pneumonia = (int(part) for part in parts)
    return {"n_covid19": covid, "n_normal": normal, "n_pneumonia": pneumonia}


def _unit_interval(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        message = f"expected a number between 0 and 1, received {value!r}"
        raise argparse.ArgumentTypeError(message)
    return number


def _explain_command(arguments: argparse.Namespace) -> int:
    import cxrclassify as cx

    from .explain.cam import _explain_images
    from .plots import _get_colormap

    parser: argparse.ArgumentParser = arguments.parser
    if not arguments.model.is_file():
        parser.error(f"MODEL must be a saved .keras file; {str(arguments.model)!r} is not a file")
    missing = [image for image in arguments.images if not Path(image).exists()]
    if missing:
        parser.error(f"no such image file or folder: {', '.join(repr(image) for image in missing)}")
    try:
        _get_colormap(arguments.colormap)
        model = cx.load_model(arguments.model)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    class_index = None
    if arguments.class_ is not None:
        class_index = _class_index(model, arguments.class_)
        if class_index is None:
            names = list(model.class_names or [])
            parser.error(
                f"--class must name one of the model's classes {names} or be an index from 0 to "
                f"{model.num_classes - 1}; received {arguments.class_!r}"
            )
    try:
        # The same model object, images and pass of the base as cxrclassify.predict: the same probabilities
        # and OOD scores (explain_images without its DataWarning: the skipped images are logged below).
        written, predictions = _explain_images(
            model, arguments.images, arguments.out, method=arguments.method, class_index=class_index,
            layer=arguments.layer, alpha=arguments.alpha, colormap=arguments.colormap, grid=True, grid_size=16,
            batch_size=16, max_channels=arguments.max_channels, on_error=arguments.on_error,
        )
    except cx.DataError as error:  # an empty folder, or an unreadable image with --on-error raise
        parser.error(str(error))
    except ValueError as error:  # a bad --layer or --max-channels: say so without a traceback
        parser.error(str(error))
    logger.info("Wrote %d files to %s (overlays, maps, cam_grid.png, predictions.csv)", len(written), arguments.out)
    if predictions.skipped:
        total = len(predictions) + len(predictions.skipped)
        logger.warning(
            "WARNING: skipped %d of %d images that could not be decoded (their reasons are in the error column of "
            "%s); exit code %d", len(predictions.skipped), total, arguments.out / "predictions.csv", EXIT_SKIPPED,
        )
        return EXIT_SKIPPED
    return EXIT_OK


def _class_index(model, value: str) -> int | None:
    """The index of the class named ``value`` (a name, else an index), or None when the model has no such class."""
    names = list(model.class_names or [])
    if value in names:
        return names.index(value)
    if value.strip().lstrip("-").isdigit() and 0 <= int(value) < model.num_classes:
        return int(value)
    return None


def _demo_command(arguments: argparse.Namespace) -> int:
    weights = None if str(arguments.weights).lower() == "none" else arguments.weights
    summary = run_demo(
        arguments.out, arch=arguments.arch, weights=weights, preprocessing=arguments.preprocessing,
        epochs=arguments.epochs, image_size=arguments.image_size, seed=arguments.seed,
        save_model=arguments.save_model,
    )
    logger.info("\n%s", summary)
    return 0


def run_demo(
    out: str | os.PathLike[str],
    *,
    arch: str = "vgg16",
    weights: str | os.PathLike[str] | None = "imagenet",
    preprocessing: str | None = None,
    epochs: int = 80,
    image_size: int = 237,
    seed: int = 0,
    save_model: bool = False,
) -> str:
    """Run the demo and return a plain-text summary; outputs are written under ``out``.

    Examples
    --------
    >>> from cxrclassify.cli import run_demo
    >>> summary = run_demo("demo-out", weights=None, epochs=2, image_size=32)  # doctest: +SKIP
    """
    import cxrclassify as cx

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = cx.load_datasets("sample", image_size=image_size, validation_fraction=0.125, test_fraction=0.25, seed=seed)
    data.write_manifest(out / "split_manifest.csv")
    logger.info("Sample: %d train, %d validation, %d test images; classes %s",
                len(data.train), len(data.validation), len(data.test), data.class_names)

    model, weights_used = _build_demo_model(cx, arch, weights, preprocessing, data.class_names, image_size, seed)
    history = cx.train(model, data, epochs=epochs, seed=seed)
    evaluation = cx.evaluate(model, data.test)

    figures = cx.save_evaluation_figures(evaluation, out, history=history, formats=("png",))
    overlays = _write_gradcam_overlays(cx, model, data.test, evaluation.predictions, out / "gradcam")
    if save_model:
        model.save(out / "model.keras")

    metrics = {**evaluation.to_dict(), "architecture": arch, "weights": weights_used, "epochs": epochs,
               "image_size": image_size, "seed": seed, "history": history,
               "seconds": round(time.perf_counter() - started, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    summary = "\n".join([
        (f"cxrclassify demo: {arch} ({weights_used}), {epochs} epochs, {image_size} px, "
         f"{metrics['seconds']} s"),
        evaluation.summary(),
        "A 48-image sample cannot show that a model works: see the docs on the age/source shortcut.",
        f"Wrote {out}/: {', '.join(path.name for path in figures)}, "
        f"gradcam/ ({len(overlays)} overlays), metrics.json, split_manifest.csv"
        + (", model.keras" if save_model else ""),
    ])
    (out / "summary.txt").write_text(summary + "\n", encoding="utf-8")
    return summary


def _build_demo_model(cx, arch, weights, preprocessing, class_names, image_size, seed):
    try:
        model = cx.build_model(arch, len(class_names), weights=weights, class_names=class_names,
                               image_size=image_size, preprocessing=preprocessing, seed=seed)
        return model, "random initialisation" if weights is None else str(weights)
    except cx.WeightsUnavailableError as error:
        logger.warning(
            "WARNING: the ImageNet weights could not be downloaded, so the demo goes on with a randomly "
            "initialised base: expect near-chance accuracy. Pass --weights PATH to use a local weights file.\n"
            "(%s)", error,
        )
    model = cx.build_model(arch, len(class_names), weights=None, class_names=class_names,
                           image_size=image_size, preprocessing=preprocessing, seed=seed)
    return model, "random initialisation (ImageNet weights unavailable)"


def _write_gradcam_overlays(cx, model, test_set, predictions, folder: Path, batch_size: int = 16) -> list[Path]:
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    rows = list(zip(test_set.records, predictions.labels, predictions.probabilities.max(axis=1)))
    for start in tqdm(range(0, len(rows), batch_size), desc="Grad-CAM", unit="batch"):
        chunk = rows[start:start + batch_size]
        # One forward and backward pass per batch; the maps come back at each image's own size.
        heatmaps = cx.grad_cam(model, [record.path for record, _, _ in chunk], batch_size=batch_size)
        for (record, label, probability), heatmap in zip(chunk, heatmaps):
            name = f"{Path(record.path).stem}__true-{record.label}__pred-{label}-{probability:.2f}.png"
            written.append(cx.save_gradcam_overlay(record.path, heatmap, folder / name))
    return written


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
