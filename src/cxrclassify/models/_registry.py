"""The registry of base architectures.

Each :class:`ArchSpec` knows how to construct its Keras base, the input
preprocessing its ImageNet weights expect, its default input size and its last
convolutional layer (where Grad-CAM looks). Users add their own with
:func:`register_model`; everything in the library then works with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from ..exceptions import ArgumentError

__all__ = ["ArchSpec", "PREPROCESSING_MODES", "register_model", "get_spec", "list_models"]

#: Input preprocessing modes: "caffe" (RGB to BGR, ImageNet mean subtracted),
#: "tf" (scaled to [-1, 1]), "torch" (scaled to [0, 1], ImageNet mean and std),
#: "none" (raw 0-255 values).
PREPROCESSING_MODES = ("caffe", "tf", "torch", "none")


@dataclass(frozen=True)
class ArchSpec:
    """What the library needs to know about a base architecture.

    Parameters
    ----------
    name : str
        Registry name, lower case (``"vgg16"``).
    constructor : callable
        Called as ``constructor(include_top=False, weights=weights, input_shape=(S, S, 3))``
        and returning a Keras model with one 4-D feature-map output, as
        :mod:`keras.applications` constructors do.
    preprocessing : str
        One of :data:`PREPROCESSING_MODES`: what its ImageNet weights expect.
    default_input_size : int
        Side of the square input in pixels.
    last_conv_layer : str
        Name of the base's last convolutional layer (or its activation), used by Grad-CAM.
    min_input_size : int
        Smallest input side the architecture accepts.
    citation : str
        Reference of the architecture.
    block_pattern : str
        Regular expression whose first group names the block a layer belongs to
        (``r"^(block\\d+)_"`` for VGG16), used to fine-tune the top blocks; layers
        that do not match belong to the block before them. Empty: the base can
        only be frozen or trained whole.
    """

    name: str
    constructor: Callable[..., keras.Model]
    preprocessing: str
    default_input_size: int
    last_conv_layer: str
    min_input_size: int = 32
    citation: str = ""
    block_pattern: str = ""

    def __post_init__(self) -> None:
        if self.preprocessing not in PREPROCESSING_MODES:
            message = (
                f"Expected preprocessing to be one of {PREPROCESSING_MODES}. "
                f"Received: preprocessing={self.preprocessing!r} for architecture {self.name!r}"
            )
            raise ArgumentError(message)


_REGISTRY: dict[str, ArchSpec] = {}


def register_model(spec: ArchSpec, *, overwrite: bool = False) -> ArchSpec:
    """Add an architecture to the registry, so that ``build_model(spec.name)`` builds it.

    Parameters
    ----------
    spec : ArchSpec
        The architecture's description.
    overwrite : bool, default False
        Replace an existing entry of the same name instead of raising.

    Returns
    -------
    ArchSpec
        ``spec``, unchanged.

    Examples
    --------
    >>> import keras
    >>> from cxrclassify.models import ArchSpec, register_model, list_models
    >>> def tiny_cnn(include_top=False, weights=None, input_shape=(32, 32, 3)):
    ...     inputs = keras.Input(input_shape)
    ...     x = keras.layers.Conv2D(4, 3, activation="relu", name="last_conv")(inputs)
    ...     return keras.Model(inputs, x, name="tiny_cnn")
    >>> _ = register_model(ArchSpec("tiny_cnn_doc", tiny_cnn, "tf", 32, "last_conv"), overwrite=True)
    >>> "tiny_cnn_doc" in list_models()
    True
    """
    name = spec.name.lower()
    if name in _REGISTRY and not overwrite:
        message = f"An architecture named {name!r} is already registered; pass overwrite=True to replace it."
        raise ArgumentError(message)
    _REGISTRY[name] = spec
    return spec


def get_spec(arch: str) -> ArchSpec:
    """Return the registered :class:`ArchSpec` named ``arch`` (case-insensitive).

    Examples
    --------
    >>> from cxrclassify.models import get_spec
    >>> get_spec("VGG16").last_conv_layer
    'block5_conv3'
    """
    spec = _REGISTRY.get(str(arch).lower())
    if spec is None:
        message = f"Unknown architecture. Expected one of {list_models()}. Received: arch={arch!r}"
        raise ArgumentError(message)
    return spec


def list_models() -> list[str]:
    """Names of the registered architectures.

    Examples
    --------
    >>> from cxrclassify.models import list_models
    >>> [name for name in ("vgg16", "resnet50", "xception") if name in list_models()]
    ['vgg16', 'resnet50', 'xception']
    """
    return sorted(_REGISTRY)


register_model(
    ArchSpec(
        name="vgg16",
        constructor=keras.applications.VGG16,
        preprocessing="caffe",
        default_input_size=237,
        last_conv_layer="block5_conv3",
        min_input_size=32,
        block_pattern=r"^(block\d+)_",
        citation="Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015",
    )
)
register_model(
    ArchSpec(
        name="resnet50",
        constructor=keras.applications.ResNet50,
        preprocessing="caffe",
        default_input_size=237,
        last_conv_layer="conv5_block3_out",
        min_input_size=32,
        block_pattern=r"^(conv\d_block\d+)_",
        citation="He et al., Deep Residual Learning for Image Recognition, CVPR 2016",
    )
)
register_model(
    ArchSpec(
        name="xception",
        constructor=keras.applications.Xception,
        preprocessing="tf",
        default_input_size=237,
        last_conv_layer="block14_sepconv2_act",
        min_input_size=71,
        block_pattern=r"^(block\d+)_",
        citation="Chollet, Xception: Deep Learning with Depthwise Separable Convolutions, CVPR 2017",
    )
)
register_model(
    ArchSpec(
        name="mobilenetv2",
        constructor=keras.applications.MobileNetV2,
        preprocessing="tf",
        default_input_size=224,
        last_conv_layer="out_relu",
        min_input_size=32,
        block_pattern=r"^(block_\d+)_",
        citation="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018",
    )
)
register_model(
    ArchSpec(
        name="densenet121",
        constructor=keras.applications.DenseNet121,
        preprocessing="torch",
        default_input_size=224,
        last_conv_layer="relu",
        min_input_size=32,
        block_pattern=r"^(conv\d_block\d+)_",
        citation="Huang et al., Densely Connected Convolutional Networks, CVPR 2017 (CheXNet's base: "
                 "Rajpurkar et al., arXiv:1711.05225)",
    )
)
register_model(
    ArchSpec(
        name="efficientnetb0",
        constructor=keras.applications.EfficientNetB0,
        preprocessing="none",  # Keras's EfficientNet rescales and normalises inside the model
        default_input_size=224,
        last_conv_layer="top_activation",
        min_input_size=32,
        block_pattern=r"^(block\d[a-z])_",
        citation="Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019",
    )
)
