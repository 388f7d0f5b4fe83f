"""Xception: build first, load at ``model.image_size``, train, evaluate, predict, Grad-CAM.

Shows, on Xception (``"xception"``), the order that works for every
architecture: build the model first, then load the data with
``load_datasets(..., image_size=model.image_size)``, so that each X-ray is
resized once, from its file, to what the base takes. ``train`` and ``evaluate``
resize data loaded at another size themselves (an INFO log line says so), but
that resizes every image twice and costs time.

Xception's defaults (``cxrclassify.models.get_spec("xception")``): 237 x 237
pixels (at least 71) and ``"tf"`` preprocessing: values scaled to [-1, 1], as
its ImageNet weights expect. The preprocessing is built into the model: always
feed it raw 0-255 RGB images, never preprocess them yourself. Xception is one
of the seed paper's three architectures, at its 237 x 237 input; it takes
nothing smaller than 71 x 71 (so ``--quick`` runs at 71 px), and its ImageNet
weights were trained at 299 px.

Run it once cxrclassify is installed::

    python examples/arch_xception.py --quick           # random weights, 71 px, 1 epoch: seconds on a CPU
    python examples/arch_xception.py --out results     # ImageNet weights, 237 px, 80 epochs
    python examples/arch_xception.py --image-size 299  # any size from 71 up: the data follow the model
    python examples/arch_xception.py --weights PATH    # offline: a .weights.h5 file of the base without its top

The steps are those of ``examples/architecture_walkthrough.py``, which runs them
on any registered architecture. Without ``--out`` the results go to a new
temporary folder. The ``--quick`` model's accuracy means nothing, and the 48
bundled X-rays cannot show that any model works. cxrclassify is not a
diagnostic device.
"""

from __future__ import annotations

import sys

from architecture_walkthrough import main

ARCH = "xception"

if __name__ == "__main__":
    sys.exit(main(ARCH, __doc__))
