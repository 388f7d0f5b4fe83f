"""MobileNetV2: build first, load at ``model.image_size``, train, evaluate, predict, Grad-CAM.

Shows, on MobileNetV2 (``"mobilenetv2"``), the order that works for every
architecture: build the model first, then load the data with
``load_datasets(..., image_size=model.image_size)``, so that each X-ray is
resized once, from its file, to what the base takes. ``train`` and ``evaluate``
resize data loaded at another size themselves (an INFO log line says so), but
that resizes every image twice and costs time.

MobileNetV2's defaults (``cxrclassify.models.get_spec("mobilenetv2")``): 224 x
224 pixels (at least 32) and ``"tf"`` preprocessing: values scaled to [-1, 1],
as its ImageNet weights expect. The preprocessing is built into the model:
always feed it raw 0-255 RGB images, never preprocess them yourself. Loading
the data at the paper's default 237 px instead of 224 is the mistake this
example avoids. Keras records no hash for MobileNetV2's ImageNet files, so a
weights mirror cannot serve them; ``weights="imagenet"`` without a mirror lets
Keras download them.

Run it once cxrclassify is installed::

    python examples/arch_mobilenet.py --quick           # random weights, 32 px, 1 epoch: seconds on a CPU
    python examples/arch_mobilenet.py --out results     # ImageNet weights, 224 px, 80 epochs
    python examples/arch_mobilenet.py --image-size 320  # any size from 32 up: the data follow the model
    python examples/arch_mobilenet.py --weights PATH    # offline: a .weights.h5 file of the base without its top

The steps are those of ``examples/architecture_walkthrough.py``, which runs them
on any registered architecture. Without ``--out`` the results go to a new
temporary folder. The ``--quick`` model's accuracy means nothing, and the 48
bundled X-rays cannot show that any model works. cxrclassify is not a
diagnostic device.
"""

from __future__ import annotations

import sys

from architecture_walkthrough import main

ARCH = "mobilenetv2"

if __name__ == "__main__":
    sys.exit(main(ARCH, __doc__))
