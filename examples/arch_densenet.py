"""DenseNet121: build first, load at ``model.image_size``, train, evaluate, predict, Grad-CAM.

Shows, on DenseNet121 (``"densenet121"``), the order that works for every
architecture: build the model first, then load the data with
``load_datasets(..., image_size=model.image_size)``, so that each X-ray is
resized once, from its file, to what the base takes. ``train`` and ``evaluate``
resize data loaded at another size themselves (an INFO log line says so), but
that resizes every image twice and costs time.

DenseNet121's defaults (``cxrclassify.models.get_spec("densenet121")``): 224 x
224 pixels (at least 32) and ``"torch"`` preprocessing: values scaled to [0,
1], then normalised by the ImageNet mean and standard deviation, as Keras's
DenseNet121 weights expect. The preprocessing is built into the model: always
feed it raw 0-255 RGB images, never preprocess them yourself. DenseNet121 is
CheXNet's base (Rajpurkar et al., arXiv:1711.05225); its ImageNet weights were
trained at 224 px.

Run it once cxrclassify is installed::

    python examples/arch_densenet.py --quick           # random weights, 32 px, 1 epoch: seconds on a CPU
    python examples/arch_densenet.py --out results     # ImageNet weights, 224 px, 80 epochs
    python examples/arch_densenet.py --image-size 320  # any size from 32 up: the data follow the model
    python examples/arch_densenet.py --weights PATH    # offline: a .weights.h5 file of the base without its top

The steps are those of ``examples/architecture_walkthrough.py``, which runs them
on any registered architecture. Without ``--out`` the results go to a new
temporary folder. The ``--quick`` model's accuracy means nothing, and the 48
bundled X-rays cannot show that any model works. cxrclassify is not a
diagnostic device.
"""

from __future__ import annotations

import sys

from architecture_walkthrough import main

ARCH = "densenet121"

if __name__ == "__main__":
    sys.exit(main(ARCH, __doc__))
