"""The ``cxrclassify`` command line.

Commands:

* ``cxrclassify predict IMAGES... [--model NAME|PATH] [--cam DIR] [--format csv|json]``:
  probabilities, label and out-of-distribution flag per image, with the bundled
  pretrained classifier by default; ``--cam`` also writes Grad-CAM overlays.
* ``cxrclassify train DATA --arch ARCH --out MODEL.keras [--recipe ...]``: train a
  classifier on a folder ``DATA/<class>/<image>``, a split manifest or a dataset name.
* ``cxrclassify evaluate MODEL DATA --out DIR``: metrics with confidence intervals,
  figures and a self-contained HTML report.
* ``cxrclassify models``: the architectures and the pretrained checkpoints.
* ``cxrclassify explain MODEL IMAGES... --out DIR``: class activation maps (Grad-CAM,
  Grad-CAM++ or Score-CAM) of a saved model.
* ``cxrclassify demo`` and ``cxrclassify reproduce``: train on the bundled sample, or
  reproduce Soares & Soares (2020).

TensorFlow is imported only when a command needs it, so ``--help`` is immediate;
its C++ and absl start-up messages are silenced unless ``--verbose`` is given.

Exit codes: 0 when the command did all it was asked; 1 when ``predict`` or
``explain`` finished but skipped images that could not be decoded (``--on-error
skip``, the default: each is logged and has a row with its ``error``); 2 when it
stopped: a bad command line, a missing model, image or folder, or, with
``--on-error raise``, an unreadable image.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["EXIT_OK", "EXIT_SKIPPED", "EXIT_USAGE", "main", "run_demo"]

#: Exit code of a command that did all it was asked.
EXIT_OK = 0
#: Exit code of ``cxrclassify predict`` or ``explain`` when it skipped images that could not be decoded.
EXIT_SKIPPED = 1
#: Exit code of a bad command line, a missing file or an error that stopped the command (argparse's).
EXIT_USAGE = 2

logger = logging.getLogger("cxrclassify.cli")


#: The classifier ``cxrclassify predict`` uses when no ``--model`` is given (shipped in the package).
DEFAULT_MODEL = "mobilenetv2.covid3-v1"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cxrclassify`` command; returns its exit code (see the module's docstring).

    Examples
    --------
    >>> from cxrclassify.cli import main
    >>> main(["--version"])  # doctest: +SKIP
    """
    parser = _build_parser()
    arguments = parser.parse_args(argv)
    verbose = bool(getattr(arguments, "verbose", False))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    if arguments.command is None:
        parser.print_help()
        return EXIT_USAGE
    import_tensorflow(verbose=verbose)
    return arguments.handler(arguments)


def import_tensorflow(*, verbose: bool = False) -> None:
    """Import TensorFlow, without its C++/absl start-up messages on stderr unless ``verbose``.

    TensorFlow's native code writes to the process's file descriptor 2 before any
    Python logging is set up (``All log messages before absl::InitializeLog()``,
    oneDNN, ``cudart_stub``, ``cpu_feature_guard``, ``cuInit``), and
    ``TF_CPP_MIN_LOG_LEVEL`` no longer hides all of them; so descriptor 2 points
    at the null device while TensorFlow loads and finds its devices. Python
    exceptions still propagate and are shown.

    Examples
    --------
    >>> from cxrclassify.cli import import_tensorflow
    >>> import_tensorflow()  # doctest: +SKIP
    """
    if verbose:
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_descriptor_silenced():
        import tensorflow as tf

        tf.get_logger().setLevel(logging.ERROR)
        tf.config.list_physical_devices()


@contextlib.contextmanager
def _stderr_descriptor_silenced() -> Iterator[None]:
    """Point file descriptor 2 at the null device for the block (native code's messages), then restore it."""
    try:
        descriptor = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced sys.stderr (pytest's capture): nothing to silence
        yield
        return
    sys.stderr.flush()
    saved = os.dup(descriptor)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, descriptor)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, descriptor)
        os.close(saved)
        os.close(null)


def _build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    verbose_help = "debug logging, and TensorFlow's own start-up messages"
    # Given before or after the command; SUPPRESS keeps a command's default from overriding the first.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    parser = argparse.ArgumentParser(
        prog="cxrclassify",
        description="Chest X-ray classification by transfer learning, explained with Grad-CAM. Not a diagnostic device.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", default=False, help=verbose_help)
    parser.add_argument("--version", action="version", version=f"cxrclassify {__version__}")
    commands = parser.add_subparsers(dest="command")
    _add_predict_parser(commands, common)
    _add_train_parser(commands, common)
    _add_evaluate_parser(commands, common)
    _add_models_parser(commands, common)
    demo = commands.add_parser(
        "demo", parents=[common],
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
        "reproduce", parents=[common],
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
        "explain", parents=[common],
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


def _add_predict_parser(commands, common: argparse.ArgumentParser) -> None:
    predict = commands.add_parser(
        "predict", parents=[common],
        help="classify X-rays: probabilities, label, out-of-distribution flag (the bundled model by default)",
        description=(
            "Classify IMAGES (files or folders of PNG, JPEG or DICOM) and write one row per image: the input, the "
            f"predicted label, one probability per class, the out-of-distribution score and flag, and the error "
            f"of a file that could not be decoded. --model is a pretrained name (default: {DEFAULT_MODEL}, shipped "
            "in the package, used offline) or a saved .keras file. --cam DIR also writes a Grad-CAM overlay per "
            "image. Not a diagnostic device. Exit code 0: every image classified; 1: some skipped; 2: stopped."
        ),
    )
    predict.add_argument("images", nargs="*", metavar="IMAGES", help="image files (PNG, JPEG, DICOM) or folders")
    predict.add_argument("--sample", action="store_true",
                         help="also classify the 48 real X-rays shipped with the package (held out from the "
                              "bundled model's training)")
    predict.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                         help="a pretrained name (cxrclassify models) or a saved .keras file (default: %(default)s)")
    predict.add_argument("--cam", type=Path, default=None, metavar="DIR",
                         help="also write Grad-CAM overlays (and raw maps, cam_grid.png) to DIR")
    predict.add_argument("--format", default="csv", choices=["csv", "json"], help="output format (default: %(default)s)")
    predict.add_argument("--out", type=Path, default=None, metavar="FILE", help="write there instead of standard output")
    predict.add_argument("--batch-size", type=_positive_int, default=16, help="images per pass (default: %(default)s)")
    predict.add_argument("--on-error", default="skip", choices=["raise", "skip"],
                         help="an image that cannot be decoded: 'skip' it (a row with its error, exit code 1) or "
                              "'raise' (stop, exit code 2) (default: %(default)s)")
    predict.set_defaults(handler=_predict_command, parser=predict)


def _add_train_parser(commands, common: argparse.ArgumentParser) -> None:
    train = commands.add_parser(
        "train", parents=[common],
        help="train a classifier on a folder DATA/<class>/<image>, a split manifest or a dataset name",
        description=(
            "Build ARCH, load DATA at the model's input size, split it by patient, train with --recipe, fit the "
            "temperature on the validation split, and save MODEL.keras with, beside it, MODEL.split.csv (the split "
            "manifest: evaluate the test split with 'cxrclassify evaluate MODEL.keras MODEL.split.csv') and "
            "MODEL.history.json. A folder names no patient: pass --patients REGEX to group images by patient."
        ),
    )
    train.add_argument("data", metavar="DATA",
                       help="a folder DATA/<class>/<image>, a split manifest CSV, or a dataset name such as 'sample'")
    train.add_argument("--arch", required=True, help="base architecture (see cxrclassify models)")
    train.add_argument("--out", type=Path, required=True, metavar="MODEL.keras", help="where to save the model")
    train.add_argument("--recipe", default="recommended", choices=["recommended", "paper", "linear"],
                       help="training recipe (default: %(default)s; see the Training page of the docs)")
    train.add_argument("--weights", default="imagenet",
                       help="'imagenet', 'none' (random initialisation) or a .weights.h5 file of the base without "
                            "its top (default: %(default)s)")
    train.add_argument("--preprocessing", default=None, help="input preprocessing of a weights file: caffe, tf, torch")
    train.add_argument("--image-size", type=_positive_int, default=None,
                       help="input side in pixels (default: the architecture's)")
    train.add_argument("--head", default=None, help="classifier head (default: the architecture's)")
    train.add_argument("--lungs", default=None, choices=["crop", "mask"],
                       help="train on the segmented lung fields: their box ('crop') or black outside ('mask')")
    train.add_argument("--epochs", type=_positive_int, default=80, help="at most this many epochs (default: %(default)s)")
    train.add_argument("--validation-fraction", type=float, default=0.1, help="default: %(default)s")
    train.add_argument("--test-fraction", type=float, default=0.1, help="default: %(default)s")
    train.add_argument("--patients", default=None, metavar="REGEX",
                       help="regular expression whose first group (or match) in a file name is its patient")
    train.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default: %(default)s)")
    train.add_argument("--overwrite", action="store_true", help="replace MODEL.keras if it exists")
    _add_fetch_arguments(train)
    train.set_defaults(handler=_train_command, parser=train)


def _add_evaluate_parser(commands, common: argparse.ArgumentParser) -> None:
    evaluate = commands.add_parser(
        "evaluate", parents=[common],
        help="metrics with confidence intervals, figures and an HTML report of a model on labelled X-rays",
        description=(
            "Evaluate MODEL (a pretrained name or a saved .keras file) on DATA: a folder DATA/<class>/<image>, a "
            "split manifest CSV (its test split; --split all for every row) or a dataset name. Writes to --out "
            "report.html (self-contained), report.md, metrics.json, predictions.csv and the figures (confusion "
            "matrix, ROC curves, reliability diagram)."
        ),
    )
    evaluate.add_argument("model", metavar="MODEL", help="a pretrained name or a saved .keras file")
    evaluate.add_argument("data", metavar="DATA", help="a folder DATA/<class>/<image>, a split manifest or a dataset name")
    evaluate.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    evaluate.add_argument("--split", default="test", choices=["test", "validation", "train", "all"],
                          help="for a split manifest: which rows (default: %(default)s)")
    evaluate.add_argument("--patients", default=None, metavar="REGEX",
                          help="regular expression naming the patient in a file name (bootstrap by patient)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=16, help="images per pass (default: %(default)s)")
    _add_fetch_arguments(evaluate)
    evaluate.set_defaults(handler=_evaluate_command, parser=evaluate)


def _add_models_parser(commands, common: argparse.ArgumentParser) -> None:
    models = commands.add_parser(
        "models", parents=[common], help="list the architectures and the pretrained checkpoints",
        description="List the architectures build_model knows and the pretrained checkpoints (base weights and "
                    "trained classifiers), with their input size, preprocessing and where they come from.",
    )
    models.add_argument("--format", default="text", choices=["text", "json"], help="default: %(default)s")
    models.set_defaults(handler=_models_command, parser=models)


def _add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mirror", default=None, help="for a dataset name: base URL or folder replacing the hosts")
    parser.add_argument("--no-verify", action="store_true", help="for a dataset name: do not verify checksums")
    parser.add_argument("--data-home", default=None, help="cache folder (default: CXRCLASSIFY_HOME or user cache)")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        message = f"expected a whole number of at least 1, received {value!r}"
        raise argparse.ArgumentTypeError(message)
    return number


# ------------------------------------------------------------------------------------------ predict


def _predict_command(arguments: argparse.Namespace) -> int:
    import cxrclassify as cx

    parser: argparse.ArgumentParser = arguments.parser
    images = list(arguments.images)
    if arguments.sample:
        from .datasets import sample_dir

        images.append(str(sample_dir() / "images"))
    if not images:
        parser.error("give IMAGES (files or folders), or --sample for the X-rays shipped with the package")
    _check_inputs_exist(parser, images)
    model = _resolve_model(parser, arguments.model)
    try:
        if arguments.cam is not None:
            from .explain.cam import _explain_images

            written, predictions = _explain_images(
                model, images, arguments.cam, method="gradcam", class_index=None, layer=None, alpha=0.4,
                colormap="jet", grid=True, grid_size=16, batch_size=arguments.batch_size, max_channels=256,
                on_error=arguments.on_error,
            )
            logger.info("Wrote %d Grad-CAM files to %s", len(written), arguments.cam)
        else:
            with _library_warnings_logged():
                predictions = cx.predict(model, images, batch_size=arguments.batch_size,
                                         on_error=arguments.on_error)
    except cx.DataError as error:  # an empty folder, or an unreadable image with --on-error raise
        parser.error(str(error))
    text = format_predictions(predictions, arguments.format)
    if arguments.out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(text, encoding="utf-8")
        logger.info("Wrote %d rows to %s", len(predictions) + len(predictions.skipped), arguments.out)
    flagged = int(sum(bool(flag) for flag in predictions.out_of_distribution))
    if flagged:
        logger.warning("%d of %d images are flagged out of distribution: unlike the model's training images, "
                       "their predictions are less reliable", flagged, len(predictions))
    return _skipped_exit_code(predictions)


def format_predictions(predictions, output_format: str = "csv") -> str:
    """The rows of :meth:`~cxrclassify.inference.Predictions.to_rows` as CSV or JSON text.

    Columns: ``input``, ``label``, one probability per class (named after it),
    ``ood_score``, ``out_of_distribution`` and ``error`` (empty, or the reason a
    file could not be decoded). In JSON, a list of objects with the same keys;
    a missing value is ``null``.

    Examples
    --------
    >>> import numpy as np
    >>> from cxrclassify.cli import format_predictions
    >>> from cxrclassify.inference import Predictions
    >>> result = Predictions(np.array([[0.25, 0.75]]), np.array([1]), ["b"], ["a", "b"], ["x.png"])
    >>> print(format_predictions(result, "csv").splitlines()[0])
    input,label,a,b,ood_score,out_of_distribution,error
    """
    from ._io import to_jsonable

    rows = to_jsonable(predictions.to_rows())
    columns = ["input", "label", *predictions.class_names, "ood_score", "out_of_distribution", "error"]
    if output_format == "json":
        return json.dumps(rows, indent=1) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


def _skipped_exit_code(predictions) -> int:
    if not predictions.skipped:
        return EXIT_OK
    total = len(predictions) + len(predictions.skipped)
    logger.warning("WARNING: skipped %d of %d images that could not be decoded (their reasons are in the error "
                   "column); exit code %d", len(predictions.skipped), total, EXIT_SKIPPED)
    return EXIT_SKIPPED


@contextlib.contextmanager
def _library_warnings_logged() -> Iterator[None]:
    """The library's DataWarning about skipped files is said once by the command, not twice."""
    import warnings

    from .exceptions import DataWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        yield


def _check_inputs_exist(parser: argparse.ArgumentParser, images: Sequence[str]) -> None:
    missing = [image for image in images if not Path(image).exists()]
    if missing:
        parser.error(f"no such image file or folder: {', '.join(repr(image) for image in missing)}")


def _resolve_model(parser: argparse.ArgumentParser, value: str):
    """A saved .keras file, else a pretrained checkpoint by name; a clear command-line error otherwise."""
    import cxrclassify as cx

    path = Path(value)
    try:
        if path.is_file():
            return cx.load_model(path)
        classifiers = cx.list_pretrained(kind="classifier")
        if value in classifiers:
            return cx.load_pretrained(value, progress=False)
    except (cx.CxrError, ValueError, OSError) as error:
        parser.error(str(error))
    parser.error(f"MODEL must be a saved .keras file or one of the pretrained classifiers {classifiers}; "
                 f"{value!r} is neither")


# -------------------------------------------------------------------------------------------- train


def _train_command(arguments: argparse.Namespace) -> int:
    import cxrclassify as cx

    parser: argparse.ArgumentParser = arguments.parser
    out: Path = arguments.out
    if out.suffix != ".keras":
        parser.error(f"--out must end in .keras; received {str(out)!r}")
    if out.exists() and not arguments.overwrite:
        parser.error(f"{str(out)!r} exists: pass --overwrite to replace it")
    weights = None if str(arguments.weights).lower() == "none" else arguments.weights
    options = {key: value for key, value in {"head": arguments.head,
                                             "preprocessing": arguments.preprocessing}.items() if value is not None}
    architectures = cx.list_models()
    if arguments.arch.lower() not in architectures:
        parser.error(f"--arch must be one of {architectures}; received {arguments.arch!r}")
    # The model's input size first, so that the images are decoded once, at that size.
    image_size = arguments.image_size or cx.models.get_spec(arguments.arch.lower()).default_input_size
    try:
        data = _load_training_data(arguments, cx, image_size)
        model = cx.build_model(arguments.arch, len(data.class_names), weights=weights, class_names=data.class_names,
                               image_size=image_size, lungs=arguments.lungs, seed=arguments.seed, **options)
    except cx.WeightsUnavailableError as error:
        parser.error(f"{error} Pass --weights PATH (a local .weights.h5 file) or --weights none.")
    except (cx.CxrError, ValueError) as error:
        parser.error(str(error))
    logger.info("%s: %d train, %d validation, %d test images; classes %s", arguments.data, len(data.train),
                len(data.validation), len(data.test), data.class_names)
    history = cx.train(model, data, recipe=arguments.recipe, epochs=arguments.epochs, seed=arguments.seed)
    if len(data.validation):
        cx.calibrate(model, data.validation)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    stem = out.with_suffix("")
    data.write_manifest(stem.with_suffix(".split.csv"))
    stem.with_suffix(".history.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    epochs_run = len(history.get("loss", []))
    logger.info("Trained %s for %d of at most %d epochs; saved %s, %s and %s", arguments.arch, epochs_run,
                arguments.epochs, out, stem.with_suffix(".split.csv"), stem.with_suffix(".history.json"))
    if len(data.test):
        evaluation = cx.evaluate(model, data.test)
        logger.info("Test split:\n%s", evaluation.summary())
    return EXIT_OK


def _load_training_data(arguments: argparse.Namespace, cx, image_size: int):
    source: Any = arguments.data
    if not Path(source).exists() and source not in cx.datasets.list_datasets():
        message = (f"DATA must be a folder DATA/<class>/<image>, a split manifest CSV or one of the dataset names "
                   f"{cx.datasets.list_datasets()}; {source!r} is none of these")
        raise cx.MissingFileError(message)
    fetch = _fetch_options(arguments)
    return cx.load_datasets(source, image_size=image_size, validation_fraction=arguments.validation_fraction,
                            test_fraction=arguments.test_fraction, seed=arguments.seed, lungs=arguments.lungs,
                            patients=arguments.patients, **fetch)


def _fetch_options(arguments: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if arguments.mirror:
        options["mirror"] = arguments.mirror
    if arguments.no_verify:
        options["verify"] = False
    if arguments.data_home:
        options["data_home"] = arguments.data_home
    return options


# ----------------------------------------------------------------------------------------- evaluate


def _evaluate_command(arguments: argparse.Namespace) -> int:
    import cxrclassify as cx
    from .report import write_evaluation_report

    parser: argparse.ArgumentParser = arguments.parser
    model = _resolve_model(parser, arguments.model)
    try:
        images = _evaluation_images(arguments, model, cx)
    except (cx.CxrError, ValueError) as error:
        parser.error(str(error))
    logger.info("Evaluating %s on %d images of %s", arguments.model, len(images), arguments.data)
    evaluation = cx.evaluate(model, images, batch_size=arguments.batch_size)
    model_info = {"model": arguments.model, "architecture": model.arch, "image size": model.image_size,
                  "preprocessing": model.preprocessing, "lungs": model.lungs or "whole image",
                  "base weights": model.metadata.get("base_weights", "unknown"),
                  "epochs run": (model.metadata.get("training") or {}).get("epochs_run", "unknown"),
                  "data": arguments.data, "images": len(images)}
    report = write_evaluation_report(arguments.out, evaluation, title=f"cxrclassify evaluation: {arguments.model}",
                                     model_info=model_info)
    rows = [{"input": record.path, "true_label": record.label, "source": record.source or "", "label": label,
             **dict(zip(evaluation.class_names, map(float, probabilities)))}
            for record, label, probabilities in zip(images.records, evaluation.predictions.labels,
                                                    evaluation.predictions.probabilities)]
    _write_csv(arguments.out / "predictions.csv", rows)
    logger.info("%s\nWrote %s", evaluation.summary(), report)
    return EXIT_OK


def _evaluation_images(arguments: argparse.Namespace, model, cx):
    """The labelled images of DATA as one ImageSet at the model's size and lung preprocessing."""
    from .datasets import ImageSet, decode_records
    from .datasets._load import _call_recipe, _resolve_records, _sample_from_row
    from .datasets._records import read_manifest

    source = Path(arguments.data)
    if source.is_file() and source.suffix.lower() == ".csv":
        rows = read_manifest(source)
        if arguments.split != "all":
            rows = [row for row in rows if (row.get("split") or "") == arguments.split]
            if not rows:
                message = (f"The manifest {str(source)!r} has no row of split {arguments.split!r}: pass --split "
                           "all, or a manifest written by load_datasets(...).write_manifest")
                raise cx.DataError(message)
        samples = [_sample_from_row(row, source.parent) for row in rows]
    elif source.exists():
        samples = _resolve_records(source)
    elif arguments.data in cx.datasets.list_datasets():
        samples = _call_recipe(arguments.data, **_fetch_options(arguments))
    else:
        message = (f"DATA must be a folder DATA/<class>/<image>, a split manifest CSV or one of the dataset names "
                   f"{cx.datasets.list_datasets()}; {arguments.data!r} is none of these")
        raise cx.MissingFileError(message)
    if arguments.patients:
        samples = cx.datasets.assign_patients(samples, arguments.patients)
    names = list(model.class_names or [])
    unknown = sorted({sample.label for sample in samples} - set(names))
    if unknown:
        example = next(sample.path for sample in samples if sample.label in unknown)
        message = (f"The model's classes are {names}; DATA has images labelled {unknown} (for example "
                   f"{example!r}). Expected labels among the model's classes.")
        raise cx.DataError(message)
    images = decode_records(samples, model.image_size, lungs=model.lungs, progress=False)
    labels = [names.index(sample.label) for sample in samples]
    import numpy as np

    return ImageSet(images, np.array(labels, dtype=np.int64), list(samples), names, lungs=model.lungs)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["input"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


# ------------------------------------------------------------------------------------------- models


def _models_command(arguments: argparse.Namespace) -> int:
    listing = list_models_and_checkpoints()
    if arguments.format == "json":
        sys.stdout.write(json.dumps(listing, indent=1) + "\n")
        return EXIT_OK
    lines = ["Architectures (cxrclassify.build_model):", f"  {'name':<16}{'input':>6}  {'preprocessing':<14}cite"]
    for arch in listing["architectures"]:
        lines.append(f"  {arch['name']:<16}{arch['input_size']:>6}  {arch['preprocessing']:<14}{arch['citation']}")
    lines += ["", "Pretrained checkpoints (cxrclassify.load_pretrained):",
              f"  {'name':<26}{'kind':<12}{'input':>6}  {'where':<10}classes / training data"]
    for cfg in listing["pretrained"]:
        where = "bundled" if cfg["bundled"] else "download"
        what = ", ".join(cfg["class_names"]) if cfg["class_names"] else cfg["training_data"]
        lines.append(f"  {cfg['name']:<26}{cfg['kind']:<12}{cfg['input_size']:>6}  {where:<10}{what}")
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def list_models_and_checkpoints() -> dict[str, list[dict[str, Any]]]:
    """The architectures and pretrained records, as plain data (what ``cxrclassify models`` prints).

    Examples
    --------
    >>> from cxrclassify.cli import list_models_and_checkpoints
    >>> listing = list_models_and_checkpoints()
    >>> "mobilenetv2.covid3-v1" in [cfg["name"] for cfg in listing["pretrained"]]
    True
    """
    from .models import get_pretrained_cfg, get_spec, list_models, list_pretrained

    architectures = [{"name": name, "input_size": get_spec(name).default_input_size,
                      "preprocessing": get_spec(name).preprocessing, "citation": get_spec(name).citation}
                     for name in list_models()]
    pretrained = []
    for name in list_pretrained():
        cfg = get_pretrained_cfg(name)
        pretrained.append({"name": cfg.name, "kind": cfg.kind, "input_size": cfg.input_size,
                           "preprocessing": cfg.preprocessing, "class_names": list(cfg.class_names),
                           "bundled": bool(cfg.bundled), "url": cfg.url, "license": cfg.license,
                           "training_data": cfg.training_data})
    return {"architectures": architectures, "pretrained": pretrained}


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
    epochs_run = len(history.get("loss", []))
    random_base = weights_used.startswith("random initialisation")
    caption = demo_caption(arch, weights_used, epochs_run, epochs, len(data.train))

    figures = cx.save_evaluation_figures(evaluation, out, history=history, formats=("png",), caption=caption)
    overlays = _write_gradcam_overlays(cx, model, data.test, evaluation.predictions, out / "gradcam")
    if save_model:
        model.save(out / "model.keras")

    metrics = {**evaluation.to_dict(), "architecture": arch, "weights": weights_used, "random_base": random_base,
               "epochs": epochs, "epochs_run": epochs_run, "image_size": image_size, "seed": seed,
               "history": history, "seconds": round(time.perf_counter() - started, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    summary = "\n".join([
        (f"cxrclassify demo: {arch} ({weights_used}), {epochs_run} of at most {epochs} epochs ran"
         f"{' (early stopping)' if epochs_run < epochs else ''}, {image_size} px, {metrics['seconds']} s"),
        *(["WARNING: the base is randomly initialised, not ImageNet-trained: these numbers show the pipeline "
           "runs, not what transfer learning gives. Pass --weights PATH to a local .weights.h5 file."]
          if random_base else []),
        evaluation.summary(),
        "A 48-image sample cannot show that a model works: see the docs on the age/source shortcut.",
        f"Wrote {out}/: {', '.join(path.name for path in figures)}, "
        f"gradcam/ ({len(overlays)} overlays), metrics.json, split_manifest.csv"
        + (", model.keras" if save_model else ""),
    ])
    (out / "summary.txt").write_text(summary + "\n", encoding="utf-8")
    return summary


def demo_caption(arch: str, weights_used: str, epochs_run: int, max_epochs: int, n_train: int) -> str:
    """The line above each demo figure: the base's weights and the epochs that ran.

    Examples
    --------
    >>> from cxrclassify.cli import demo_caption
    >>> demo_caption("vgg16", "random initialisation", 12, 80, 32)
    'vgg16, RANDOMLY INITIALISED base (not ImageNet): 12 of at most 80 epochs ran on 32 images'
    """
    if weights_used.startswith("random initialisation"):
        base = f"{arch}, RANDOMLY INITIALISED base (not ImageNet)"
    else:
        base = f"{arch}, base weights {Path(weights_used).name}"
    return f"{base}: {epochs_run} of at most {max_epochs} epochs ran on {n_train} images"


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
