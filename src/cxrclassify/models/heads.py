"""Classification heads: what sits on the base's feature maps and outputs class logits."""

from __future__ import annotations

import keras

__all__ = ["HEADS", "build_head"]

#: Head kinds: "paper" (flatten, fully connected ReLU layer, dropout, linear
#: output, as in Soares & Soares 2020) and "gap" (global average pooling,
#: dropout, linear output).
HEADS = ("paper", "gap")


def build_head(
    kind: str,
    feature_shape: tuple[int, ...],
    num_classes: int,
    *,
    units: int = 256,
    dropout: float = 0.5,
) -> keras.Sequential:
    """Build a head mapping base feature maps to ``num_classes`` logits.

    The paper describes fully connected layers on the frozen base without
    listing their sizes; ``"paper"`` is Flatten, Dense(``units``, ReLU),
    Dropout(``dropout``), Dense(``num_classes``). The softmax is applied by the
    classifier, so the head's output are logits (what Grad-CAM differentiates).

    Parameters
    ----------
    kind : {"paper", "gap"}
        The head's layout.
    feature_shape : tuple of int
        Shape of one feature map, ``(height, width, channels)``.
    num_classes : int
        Number of outputs.
    units : int, default 256
        Width of the hidden fully connected layer (``"paper"`` only).
    dropout : float, default 0.5
        Dropout rate before the output layer.

    Returns
    -------
    keras.Sequential
        A built model named ``"head"``.

    Examples
    --------
    >>> from cxrclassify.models import build_head
    >>> build_head("gap", (7, 7, 512), 3).output_shape
    (None, 3)
    """
    if kind not in HEADS:
        message = f"Unknown head. Expected one of {HEADS}. Received: head={kind!r}"
        raise ValueError(message)
    layers: list[keras.layers.Layer] = [keras.Input(shape=tuple(feature_shape))]
    if kind == "paper":
        layers += [keras.layers.Flatten(), keras.layers.Dense(units, activation="relu", name="fc")]
    else:
        layers += [keras.layers.GlobalAveragePooling2D()]
    layers += [keras.layers.Dropout(dropout), keras.layers.Dense(num_classes, name="logits")]
    return keras.Sequential(layers, name="head")
