"""Classification heads: what sits on the base's feature maps and outputs class logits."""

from __future__ import annotations

import keras

from ..augment import derive_seed
from ..exceptions import ArgumentError

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
    seed: int | None = None,
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
    seed : int, optional
        Seeds each dense layer's kernel initialiser (Glorot uniform, Keras's
        default; biases start at 0) and the dropout with ``derive_seed(seed,
        <layer name>)``: the same seed gives the same initial weights in any
        process. ``None``: Keras's unseeded draws.

    Returns
    -------
    keras.Sequential
        A built model named ``"head"``.

    Examples
    --------
    >>> from cxrclassify.models import build_head
    >>> build_head("gap", (7, 7, 512), 3).output_shape
    (None, 3)
    >>> import numpy as np
    >>> first, second = (build_head("paper", (2, 2, 4), 3, units=8, seed=7) for _ in range(2))
    >>> all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    True
    """
    if kind not in HEADS:
        message = f"Unknown head. Expected one of {HEADS}. Received: head={kind!r}"
        raise ArgumentError(message)

    def seeded(name: str) -> int | None:
        return None if seed is None else derive_seed(seed, name)

    def kernel(name: str) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=seeded(name))

    layers: list[keras.layers.Layer] = [keras.Input(shape=tuple(feature_shape))]
    if kind == "paper":
        layers += [keras.layers.Flatten(),
                   keras.layers.Dense(units, activation="relu", kernel_initializer=kernel("fc"), name="fc")]
    else:
        layers += [keras.layers.GlobalAveragePooling2D()]
    layers += [keras.layers.Dropout(dropout, seed=seeded("dropout")),
               keras.layers.Dense(num_classes, kernel_initializer=kernel("logits"), name="logits")]
    return keras.Sequential(layers, name="head")
