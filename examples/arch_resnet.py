"""ResNet50: build first, load at ``model.image_size``, train, evaluate, predict, Grad-CAM.

Shows, on ResNet50 (``"resnet50"``), the order that works for every
architecture: build the model first, then load the data with
``load_datasets(..., image_size=model.image_size)``, so that each X-ray is
resized once, from its file, to what the base takes. ``train`` and ``evaluate``
resize data loaded at another size themselves (an INFO log line says so), but
that resizes every image twice and costs time.

ResNet50's defaults (``cxrclassify.models.get_spec("resnet50")``): 237 x 237
pixels (at least 32) and ``"caffe"`` preprocessing: RGB to BGR, then the
ImageNet mean subtracted per channel, as its ImageNet weights expect. The
preprocessing is built into the model: always feed it raw 0-255 RGB images,
never preprocess them yourself. ResNet50 is one of the seed paper's three
architectures, at its 237 x 237 input; its ImageNet weights were trained at 224
px.

Run it once cxrclassify is installed::

    python examples/arch_resnet.py --quick           # random weights, 32 px, 1 epoch: seconds on a CPU
    python examples/arch_resnet.py --out results     # ImageNet weights, 237 px, 80 epochs
    python examples/arch_resnet.py --image-size 224  # any size from 32 up: the data follow the model
    python examples/arch_resnet.py --weights PATH    # offline: a .weights.h5 file of the base without its top

The steps are those of ``examples/architecture_walkthrough.py``, which runs them
on any registered architecture. Without ``--out`` the results go to a new
temporary folder. The ``--quick`` model's accuracy means nothing, and the 48
bundled X-rays cannot show that any model works. cxrclassify is not a
diagnostic device.
"""

from __future__ import annotations

import sys

from architecture_walkthrough import main

ARCH = "resnet50"

if __name__ == "__main__":
    sys.exit(main(ARCH, __doc__))
