"""``train``: fit a classifier's head (or all of it) with the paper's settings.

While the base is frozen and nothing changes the images between epochs, the
base's output for an image is the same at every epoch. :func:`train` then runs
the base once per image, keeps the feature maps, and fits the head on them: the
paper's 80 epochs cost little more than one forward pass. The head is the
classifier's own head, so the model returned is the full, trained model.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
from tqdm.auto import tqdm

from .datasets import DatasetSplits, ImageSet
from .models import CxrClassifier

__all__ = ["PAPER_SETTINGS", "train", "extract_features"]

logger = logging.getLogger(__name__)

#: The training settings of Soares & Soares (2020).
PAPER_SETTINGS = {"epochs": 80, "batch_size": 15, "learning_rate": 1e-3, "optimizer": "adam",
                  "loss": "categorical cross-entropy"}


def train(
    model: CxrClassifier,
    data: DatasetSplits | tuple[ImageSet, ImageSet | None],
    *,
    epochs: int = 80,
    batch_size: int = 15,
    learning_rate: float = 1e-3,
    cache_features: bool | None = None,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train a classifier with the paper's defaults: 80 epochs, Adam, 0.001, batch 15.

    The loss is categorical cross-entropy. The model is trained in place; its
    ``class_names`` are set from the data when it has none.

    Parameters
    ----------
    model : CxrClassifier
        A model from :func:`~cxrclassify.build_model`.
    data : DatasetSplits or (train, validation)
        What :func:`~cxrclassify.load_datasets` returned, or a pair of
        :class:`~cxrclassify.datasets.ImageSet`; validation may be ``None``.
    epochs : int, default 80
        Passes over the training images.
    batch_size : int, default 15
        Images per gradient step.
    learning_rate : float, default 0.001
        Adam's learning rate.
    cache_features : bool, optional
        Compute the frozen base's output once per image and train the head on
        it. Default: whenever the base is frozen. Must be off when the base is trained.
    seed : int, default 0
        Seeds Python, NumPy and the backend, so that a run can be repeated.
    checkpoint_dir : path, optional
        Where to back up the training state at the end of every epoch. Calling
        :func:`train` again with the same folder after an interruption resumes
        from the last finished epoch; the folder is emptied when training ends.
    callbacks : sequence of keras.callbacks.Callback
        Extra Keras callbacks.
    progress : bool, default True
        Show a progress bar over the epochs (and the feature extraction).

    Returns
    -------
    dict of str to list of float
        Per-epoch ``loss`` and ``accuracy`` on the training images, and
        ``val_loss`` and ``val_accuracy`` when there is a validation split.

    Raises
    ------
    ValueError
        If the data's class names or number of classes do not match the model,
        or its images are not of the model's input size.

    Examples
    --------
    >>> import cxrclassify
    >>> data = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    >>> model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32)
    >>> history = cxrclassify.train(model, data, epochs=2, progress=False)
    >>> sorted(history), len(history["loss"])
    (['accuracy', 'loss', 'val_accuracy', 'val_loss'], 2)
    """
    train_set, validation_set = _training_splits(data)
    _check_data_fits_model(model, train_set, validation_set)
    if model.class_names is None:
        model.class_names = list(train_set.class_names)
    use_cache = (not model.base_trainable) if cache_features is None else bool(cache_features)
    if use_cache and model.base_trainable:
        message = "cache_features=True needs a frozen base. Received: a model whose base is trainable"
        raise ValueError(message)

    keras.utils.set_random_seed(seed)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if use_cache:
        fit_model = model.head
        fit_model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
        train_inputs = extract_features(model, train_set.images, progress=progress)
        validation_inputs = None if validation_set is None else extract_features(
            model, validation_set.images, progress=progress)
    else:
        fit_model = model
        fit_model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
        train_inputs = train_set.images.astype(np.float32)
        validation_inputs = None if validation_set is None else validation_set.images.astype(np.float32)

    validation_data = None if validation_set is None else (validation_inputs, validation_set.one_hot())
    history = fit_model.fit(
        train_inputs,
        train_set.one_hot(),
        validation_data=validation_data,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=_callbacks(callbacks, checkpoint_dir, progress, epochs),
    )
    model.metadata["training"] = {
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "optimizer": "adam",
        "seed": seed, "cached_features": use_cache, "train_images": len(train_set),
        "validation_images": 0 if validation_set is None else len(validation_set),
        "data_manifest_sha256": _manifest_digest(train_set, validation_set),
    }
    logger.info("Trained %s for %d epochs on %d images", model.arch, epochs, len(train_set))
    return {name: [float(value) for value in values] for name, values in history.history.items()}


def extract_features(
    model: CxrClassifier, images: np.ndarray, *, batch_size: int = 16, progress: bool = True
) -> np.ndarray:
    """Run the model's preprocessing and base over ``images`` and return the feature maps.

    Parameters
    ----------
    model : CxrClassifier
        The classifier whose base is run.
    images : numpy.ndarray
        ``(N, S, S, 3)`` RGB images in ``[0, 255]``.
    batch_size : int, default 16
        Images per forward pass.
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    numpy.ndarray
        ``(N, h, w, c)`` float32 feature maps, the head's input.

    Examples
    --------
    >>> import numpy as np
    >>> import cxrclassify
    >>> from cxrclassify.training import extract_features
    >>> model = cxrclassify.build_model("vgg16", weights=None, image_size=32)
    >>> extract_features(model, np.zeros((3, 32, 32, 3), np.uint8), progress=False).shape
    (3, 1, 1, 512)
    """
    batches = range(0, len(images), batch_size)
    features = [
        keras.ops.convert_to_numpy(model.features(images[start:start + batch_size].astype(np.float32)))
        for start in tqdm(batches, desc=f"Features ({model.arch})", unit="batch", disable=not progress)
    ]
    if not features:
        return np.zeros((0, *model.head.input_shape[1:]), dtype=np.float32)
    return np.concatenate(features).astype(np.float32, copy=False)


def _manifest_digest(train_set: ImageSet, validation_set: ImageSet | None) -> str:
    """sha256 of what the model was trained on: split, path, label, patient and source of every image."""
    digest = hashlib.sha256()
    for split_name, split in (("train", train_set), ("validation", validation_set)):
        for record in split.records if split is not None else ():
            fields = (split_name, record.path, record.label, record.group or "", record.source or "")
            digest.update(("\t".join(fields) + "\n").encode("utf-8"))
    return digest.hexdigest()


def _training_splits(data: DatasetSplits | tuple[ImageSet, ImageSet | None]) -> tuple[ImageSet, ImageSet | None]:
    if isinstance(data, DatasetSplits):
        train_set, validation_set = data.train, data.validation
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], ImageSet):
        train_set, validation_set = data
    else:
        message = (
            "Expected data to be what load_datasets returned, or a (train, validation) pair of ImageSet. "
            f"Received: data of type {type(data).__name__}"
        )
        raise TypeError(message)
    if len(train_set) == 0:
        message = "Expected at least one training image. Received: an empty training split"
        raise ValueError(message)
    if validation_set is not None and len(validation_set) == 0:
        validation_set = None
    return train_set, validation_set


def _check_data_fits_model(model: CxrClassifier, train_set: ImageSet, validation_set: ImageSet | None) -> None:
    class_names = list(train_set.class_names)
    if len(class_names) != model.num_classes:
        message = (
            f"The model has {model.num_classes} outputs but the data has {len(class_names)} classes "
            f"{class_names}. Build the model with num_classes={len(class_names)}. "
            f"Received: num_classes={model.num_classes}"
        )
        raise ValueError(message)
    if model.class_names is not None and list(model.class_names) != class_names:
        message = (
            f"The model's class names {list(model.class_names)} differ from the data's. "
            f"Received: class_names={class_names}"
        )
        raise ValueError(message)
    for split in (train_set, validation_set):
        if split is not None and split.images.shape[1:3] != (model.image_size, model.image_size):
            message = (
                f"The model expects {model.image_size} x {model.image_size} images. Received: images of "
                f"shape {split.images.shape[1:3]}; load them with load_datasets(..., image_size={model.image_size})"
            )
            raise ValueError(message)


def _callbacks(
    extra: Sequence[keras.callbacks.Callback], checkpoint_dir: str | os.PathLike[str] | None,
    progress: bool, epochs: int,
) -> list[keras.callbacks.Callback]:
    callbacks = []
    if checkpoint_dir is not None:
        # First, so that the epoch's state is backed up before any other callback can stop the run.
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.BackupAndRestore(os.fspath(checkpoint_dir)))
    callbacks += list(extra)
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(epochs=epochs, verbose=0, desc="Training"))
    return callbacks
