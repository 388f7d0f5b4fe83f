"""Training time of the paper protocol: cached frozen-base features against a plain ``model.fit``.

The paper's protocol: soares2020 (375 images), VGG-16 frozen (near-ImageNet weights from ../shared),
80 epochs, batch 15, Adam 0.001. ``cxrclassify.train`` runs the frozen base once per image and fits
the head on the cached features; a plain Keras ``model.fit`` on the same frozen model runs the base
on every image at every epoch. A plain 80-epoch fit takes hours on a 2-core CPU, so the plain fit
runs ``--plain-epochs`` epochs and its per-epoch time is extrapolated to 80 (said so in the output).

Run::

    python benchmarks/bench_training.py [--plain-epochs 2]
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

import cxrclassify
from _common import VGG16_WEIGHTS, Timer, load_soares2020, machine, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plain-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=80)
    arguments = parser.parse_args()

    data = load_soares2020()
    n_train = len(data.train)

    keras.utils.set_random_seed(0)
    cached_model = cxrclassify.build_model("vgg16", 3, weights=VGG16_WEIGHTS)
    with Timer() as features_timer:
        features = cxrclassify.training.extract_features(cached_model, data.train.images, progress=False)
    del features
    with Timer() as cached_timer:
        cxrclassify.train(cached_model, data, epochs=arguments.epochs, progress=False)

    keras.utils.set_random_seed(0)
    plain_model = cxrclassify.build_model("vgg16", 3, weights=VGG16_WEIGHTS)
    plain_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    with Timer() as plain_timer:
        plain_model.fit(data.train.images.astype(np.float32), data.train.one_hot(),
                        validation_data=(data.validation.images.astype(np.float32), data.validation.one_hot()),
                        epochs=arguments.plain_epochs, batch_size=15, verbose=0)
    plain_per_epoch = plain_timer.seconds / arguments.plain_epochs
    plain_extrapolated = plain_per_epoch * arguments.epochs

    result = {
        "what": "train() with cached frozen-base features vs plain model.fit, VGG-16 frozen, 237 px",
        "data": f"soares2020 from ../shared/data: {n_train} training, {len(data.validation)} validation images",
        "weights": "near-ImageNet VGG16 (../shared/weights)",
        "epochs": arguments.epochs,
        "one_forward_pass_over_training_images_s": round(features_timer.seconds, 1),
        "cached_train_total_s": round(cached_timer.seconds, 1),
        "cached_over_one_forward_pass": round(cached_timer.seconds / features_timer.seconds, 2),
        "plain_fit_measured_epochs": arguments.plain_epochs,
        "plain_fit_measured_s": round(plain_timer.seconds, 1),
        "plain_fit_per_epoch_s": round(plain_per_epoch, 1),
        "plain_fit_80_epochs_extrapolated_s": round(plain_extrapolated, 1),
        "speed_up_extrapolated": round(plain_extrapolated / cached_timer.seconds, 1),
        "machine": machine(),
        "command": "python benchmarks/bench_training.py --plain-epochs %d" % arguments.plain_epochs,
    }
    print(write_result("training", result).read_text())


if __name__ == "__main__":
    main()
