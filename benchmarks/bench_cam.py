"""Class activation maps at the cost of their forward passes: Score-CAM, Grad-CAM, Grad-CAM++ against plain passes.

Measured side by side in one run, on real X-rays of the package sample at 237 px:

* **Score-CAM per image against ``k`` plain forward passes** of the same model, ``k`` being the
  channels used (``max_channels``). The plain passes are a ``tf.function`` of the model's logits on
  a ready batch of ``score_batch_size`` copies of the image: no masks, nothing else. Goal: at most
  1.2x. Library and reference calls alternate, ``--repeats`` times, on different images; the ratio
  reported is the median of the per-repeat ratios (the machine is shared and noisy).
* **Grad-CAM and Grad-CAM++ per image against one forward plus one backward pass**: the reference
  is a ``tf.function`` taking the gradient of the class logit with respect to the input image (a
  full backward pass through the base; Grad-CAM's own backward pass stops at the layer, so it can
  be cheaper). A forward pass alone is reported too. Both in batches of 16 and one image at a time.
* **Peak memory** (``VmHWM`` of a fresh process per measurement, which includes TensorFlow and the
  model) of ``grad_cam`` on 16 files at 237 px, for each method. Goal: under 2 GB. Plus a loop over
  the six architectures in one process, its resident memory after each (growth check).
* **What the definitions do to the maps**: Pearson r between the library's Grad-CAM++ and the same
  gradients with tf-keras-vis's per-channel alpha normalisation and with pytorch-grad-cam's epsilon;
  between the library's Score-CAM weights (logit increase over a black image, ReLU) and
  tf-keras-vis's (softmax probability, no baseline) and pytorch-grad-cam's (softmax over the
  channels of the logits) on the same masked passes.

Run::

    python benchmarks/bench_cam.py            # full: about 10 minutes on 2 cores
    python benchmarks/bench_cam.py --quick    # a smoke run of every part (printed, not written)

The full run writes ``benchmarks/results/cam.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZE = 237
ARCHS = ("mobilenetv2", "vgg16")
ZOO = ("vgg16", "resnet50", "xception", "mobilenetv2", "densenet121", "efficientnetb0")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)  # pragma: no cover - Linux only


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)


def _sample_paths(count: int) -> list[Path]:
    """``count`` real X-rays of the package sample, taken class by class in turn (deterministic)."""
    from cxrclassify.datasets import sample_dir

    by_class = [sorted(path for path in folder.iterdir() if path.is_file())
                for folder in sorted((sample_dir() / "images").iterdir()) if folder.is_dir()]
    paths = [path for group in zip(*by_class) for path in group]
    return paths[:count]


def _build(arch: str, seed: int = 0):
    import cxrclassify
    from _common import MOBILENET_WEIGHTS, VGG16_WEIGHTS

    weights, preprocessing, described = None, None, "random (weights=None)"
    if arch == "mobilenetv2" and MOBILENET_WEIGHTS.is_file():
        weights, preprocessing, described = MOBILENET_WEIGHTS, "torch", "torchvision ImageNet MobileNetV2 (../shared)"
    elif arch == "vgg16" and VGG16_WEIGHTS.is_file():
        weights, described = VGG16_WEIGHTS, "near-ImageNet VGG16 (HED, ../shared)"
    model = cxrclassify.build_model(arch, 3, weights=weights, preprocessing=preprocessing, image_size=SIZE,
                                    class_names=["covid19", "normal", "pneumonia"], seed=seed)
    return model, described + "; head random (seed 0)"


def _inputs(model, count: int) -> np.ndarray:
    from cxrclassify.datasets import read_image
    from cxrclassify.inference import model_inputs

    return model_inputs(model, [read_image(path) for path in _sample_paths(count)])[0]


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _plain_functions(model):
    """Reference passes: the logits (forward), and the gradient of the class logit to the input (forward + backward)."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, model.image_size, model.image_size, 3), tf.float32)
    preprocess, base, head = model.preprocess, model.base, model.head

    @tf.function(input_signature=[spec], autograph=False)
    def forward(images):
        return head(base(preprocess(images), training=False), training=False)

    @tf.function(input_signature=[spec], autograph=False)
    def forward_backward(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = head(base(preprocess(images), training=False), training=False)
            score = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
        return logits, tape.gradient(score, images)

    return forward, forward_backward


def time_arch(arch: str, channels: int, repeats: int, images: int, score_batch_size: int) -> dict:
    """Score-CAM against k plain passes, Grad-CAM(++) against forward (+ backward), in one process."""
    import tensorflow as tf

    from cxrclassify.explain import class_activation_maps

    model, weights = _build(arch)
    batch = _inputs(model, max(images, repeats))
    forward, forward_backward = _plain_functions(model)
    first_call = {method: round(_timed(lambda: class_activation_maps(model, batch[:1], method=method,
                                                                    max_channels=2)), 2)
                  for method in ("gradcam", "gradcam++", "scorecam")}
    forward(tf.constant(batch[:1]))
    forward_backward(tf.constant(batch[:1]))

    # Score-CAM, one image at a time, against k plain passes of the same image in chunks of score_batch_size.
    score_rows = []
    for repeat in range(repeats):
        image = batch[repeat:repeat + 1]
        copies = tf.constant(np.repeat(image, score_batch_size, axis=0))
        remainder = tf.constant(np.repeat(image, channels % score_batch_size, axis=0)) if channels % score_batch_size else None

        def library():
            class_activation_maps(model, image, method="scorecam", max_channels=channels,
                                  score_batch_size=score_batch_size)

        def plain():
            for _ in range(channels // score_batch_size):
                forward(copies).numpy()
            if remainder is not None:
                forward(remainder).numpy()

        first, second = (library, plain) if repeat % 2 == 0 else (plain, library)  # alternate the order
        times = {first: _timed(first), second: _timed(second)}
        score_rows.append({"library_s": round(times[library], 3), "plain_k_passes_s": round(times[plain], 3),
                           "ratio": round(times[library] / times[plain], 3)})

    # Grad-CAM and Grad-CAM++, per image, in one batch and one by one, against the reference passes.
    subset = batch[:images]
    gradient_rows = {key: [] for key in ("gradcam", "gradcam++", "forward", "forward_backward")}
    single_rows = {key: [] for key in gradient_rows}
    calls = {
        "gradcam": lambda x: class_activation_maps(model, x, method="gradcam"),
        "gradcam++": lambda x: class_activation_maps(model, x, method="gradcam++"),
        "forward": lambda x: forward(tf.constant(x)).numpy(),
        "forward_backward": lambda x: [value.numpy() for value in forward_backward(tf.constant(x))],
    }
    for repeat in range(max(1, repeats - 1)):
        order = list(calls) if repeat % 2 == 0 else list(calls)[::-1]
        for key in order:
            gradient_rows[key].append(_timed(lambda: calls[key](subset)) / len(subset))
        for key in order:
            single_rows[key].append(sum(_timed(lambda: calls[key](subset[i:i + 1])) for i in range(len(subset)))
                                    / len(subset))
    batched = {key: round(statistics.median(values), 4) for key, values in gradient_rows.items()}
    single = {key: round(statistics.median(values), 4) for key, values in single_rows.items()}
    return {
        "arch": arch, "weights": weights, "image_size": SIZE, "layer": model.spec.last_conv_layer,
        "layer_channels": int(model.base.get_layer(model.spec.last_conv_layer).output.shape[-1]),
        "first_call_s (tracing included)": first_call,
        "scorecam": {"channels_k": channels, "score_batch_size": score_batch_size, "repeats": score_rows,
                     "median_ratio": round(statistics.median(row["ratio"] for row in score_rows), 3),
                     "library_s_per_image_median": round(statistics.median(row["library_s"] for row in score_rows), 2),
                     "plain_s_per_k_passes_median": round(statistics.median(row["plain_k_passes_s"]
                                                                            for row in score_rows), 2)},
        "gradient_methods_s_per_image": {
            f"batch_of_{len(subset)}": batched, "one_by_one": single,
            "gradcam_over_forward_backward_batched": round(batched["gradcam"] / batched["forward_backward"], 3),
            "gradcam++_over_forward_backward_batched": round(batched["gradcam++"] / batched["forward_backward"], 3),
            "gradcam_over_forward_backward_one_by_one": round(single["gradcam"] / single["forward_backward"], 3),
            "gradcam_batched_speed_up": round(single["gradcam"] / batched["gradcam"], 2),
        },
        "_model": model, "_batch": batch,
    }


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _summary(values: list[float]) -> dict:
    finite = [value for value in values if np.isfinite(value)]
    return {"mean": round(float(np.mean(finite)), 5) if finite else None,
            "min": round(float(np.min(finite)), 5) if finite else None,
            "undefined (a blank map)": len(values) - len(finite)}


def compare_definitions(model, batch: np.ndarray, images: int, channels: int, score_batch_size: int) -> dict:
    """Pearson r of the library's maps against tf-keras-vis's and pytorch-grad-cam's definitions, same passes."""
    import tensorflow as tf

    from cxrclassify.explain import cam

    cam_model = cam._cam_model(model, model.spec.last_conv_layer)
    functions = cam._layer_functions(model, cam_model)
    subset = batch[:images]
    conv_maps, gradients = functions.gradients(tf.constant(subset), tf.constant(np.full(len(subset), -1, np.int32)))
    a, g = conv_maps.numpy().astype(np.float64), gradients.numpy().astype(np.float64)

    def maps(weights, activations=a):
        return cam._upsample_and_scale(np.maximum(np.einsum("nhwk,nk->nhw", activations, weights), 0.0),
                                       model.image_size)

    ours_pp = maps(cam._gradcam_plus_plus_weights(a, g))
    squared, cubed, total = g**2, g**3, a.sum(axis=(1, 2), keepdims=True)
    # tf-keras-vis (gradcam_plus_plus.py): alphas divided by their sum over the positions, per channel.
    denominator = 2 * squared + total * cubed + (squared == 0)
    alphas = squared / denominator
    normaliser = alphas.sum(axis=(1, 2), keepdims=True)
    alphas = alphas / (normaliser + (normaliser == 0))
    keras_vis_pp = maps((np.maximum(g, 0) * alphas).sum(axis=(1, 2)))
    # pytorch-grad-cam (grad_cam_plusplus.py): an absolute epsilon of 1e-6 in the denominator.
    eps_alphas = np.where(g != 0, squared / (2 * squared + total * cubed + 1e-6), 0.0)
    torch_pp = maps((np.maximum(g, 0) * eps_alphas).sum(axis=(1, 2)))
    gradcam = maps(g.mean(axis=(1, 2)))

    # Score-CAM: the library's channels and masks, one set of masked passes, three weightings.
    scores_of = cam._score_function(model)
    kept = min(channels, a.shape[-1])
    order = np.argsort(-a.mean(axis=(1, 2)), axis=-1, kind="stable")[:, :kept]
    selected = np.take_along_axis(a, order[:, None, None, :], axis=-1).astype(np.float32)
    black = scores_of(tf.zeros((1, SIZE, SIZE, 3)), tf.zeros((1,), tf.int32), tf.zeros((1, *a.shape[1:3])))
    black = black.numpy()[0]
    logits = np.zeros((len(subset), kept, model.num_classes))
    images_in = tf.constant(subset.astype(np.float32))
    for index in range(len(subset)):
        for start in range(0, kept, score_batch_size):
            low = np.ascontiguousarray(np.moveaxis(selected[index, :, :, start:start + score_batch_size], -1, 0))
            which = tf.constant(np.full(len(low), index, np.int32))
            logits[index, start:start + len(low)] = scores_of(images_in, which, tf.constant(low)).numpy()
    classes = functions.activations(tf.constant(subset))[1].numpy().argmax(axis=1)
    class_logits = logits[np.arange(len(subset)), :, classes]  # (N, kept)
    ours_weights = np.maximum(class_logits - black[classes][:, None], 0.0)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = probabilities / probabilities.sum(axis=-1, keepdims=True)
    keras_vis_weights = probabilities[np.arange(len(subset)), :, classes]
    over_channels = np.exp(class_logits - class_logits.max(axis=1, keepdims=True))
    torch_weights = over_channels / over_channels.sum(axis=1, keepdims=True)
    ours_sc, keras_vis_sc, torch_sc = (maps(weights, selected.astype(np.float64))
                                       for weights in (ours_weights, keras_vis_weights, torch_weights))

    def rs(left, right):
        return _summary([_pearson(x, y) for x, y in zip(left, right)])

    return {
        "images": len(subset),
        "gradcam++_vs_tf_keras_vis_alpha_normalisation": rs(ours_pp, keras_vis_pp),
        "gradcam++_vs_pytorch_grad_cam_eps_1e-6": rs(ours_pp, torch_pp),
        "gradcam++_vs_gradcam": rs(ours_pp, gradcam),
        "abs_gradient_median": float(np.median(np.abs(g[g != 0]))) if (g != 0).any() else 0.0,
        "sum_A_times_g_abs_median": float(np.median(np.abs(total * g)[g != 0])) if (g != 0).any() else 0.0,
        "scorecam_channels": kept,
        "scorecam_vs_softmax_probability_no_baseline (tf-keras-vis weights)": rs(ours_sc, keras_vis_sc),
        "scorecam_vs_softmax_over_channels_of_logits (pytorch-grad-cam weights)": rs(ours_sc, torch_sc),
        "scorecam_channels_with_positive_weight_share": round(float((ours_weights > 0).mean()), 3),
        "scorecam_blank_maps": int(sum(not m.any() for m in ours_sc)),
    }


def memory_child(arch: str, method: str, images: int, channels: int) -> dict:
    """In a fresh process: grad_cam on ``images`` sample files at 237 px; peak resident memory."""
    import cxrclassify

    model, _ = _build(arch)
    paths = _sample_paths(images)
    before = _status_kb("VmRSS")
    seconds = _timed(lambda: cxrclassify.grad_cam(model, paths, method=method, batch_size=16, max_channels=channels))
    return {"arch": arch, "method": method, "images": len(paths), "max_channels": channels,
            "rss_before_call_mb": _mb(before), "peak_rss_mb": _mb(_status_kb("VmHWM")),
            "rss_after_call_mb": _mb(_status_kb("VmRSS")), "seconds": round(seconds, 1)}


def zoo_child(images: int, channels: int, rounds: int) -> dict:
    """In one fresh process: Score-CAM on ``images`` files with each of the six architectures, ``rounds`` times.

    Random weights; each model is built, explained and dropped. Growth in the second round, once
    every architecture has been seen, is what would accumulate over models.
    """
    import gc

    import cxrclassify

    paths = _sample_paths(images)
    rows = []
    def one(arch: str) -> float:
        model = cxrclassify.build_model(arch, 3, weights=None, image_size=SIZE, seed=0)
        return _timed(lambda: cxrclassify.grad_cam(model, paths, method="scorecam", max_channels=channels))

    for round_index in range(rounds):
        for arch in ZOO:
            seconds = one(arch)  # the model is gone when it returns
            gc.collect()
            rows.append({"round": round_index, "arch": arch, "seconds": round(seconds, 1),
                         "rss_after_mb": _mb(_status_kb("VmRSS")), "peak_rss_so_far_mb": _mb(_status_kb("VmHWM"))})
    ends = [row["rss_after_mb"] for row in rows if row["arch"] == ZOO[-1]]
    return {"images": len(paths), "max_channels": channels, "rounds": rounds, "after_each_arch": rows,
            "rss_after_each_round_mb": ends}


def _run_child(*arguments: str) -> dict:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run([sys.executable, __file__, "--child", *arguments], capture_output=True, text=True,
                               env=environment, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"child {arguments} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer channels, images and repeats: a smoke run")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        kind, *rest = arguments.child
        result = (memory_child(rest[0], rest[1], int(rest[2]), int(rest[3])) if kind == "memory"
                  else zoo_child(int(rest[0]), int(rest[1]), int(rest[2])))
        print(json.dumps(result))
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from _common import machine, write_result

    from cxrclassify.explain.cam import SCORECAM_BATCH_SIZE

    quick = arguments.quick
    channels = {"mobilenetv2": 32 if quick else 256, "vgg16": 8 if quick else 64}
    repeats, images = (1, 4) if quick else (3, 16)
    started = time.perf_counter()
    load = {"start": os.getloadavg()}
    timings, definitions = {}, {}
    for arch in ARCHS:
        print(f"timing {arch} ...", flush=True)
        row = time_arch(arch, channels[arch], repeats, images, SCORECAM_BATCH_SIZE)
        model, batch = row.pop("_model"), row.pop("_batch")
        timings[arch] = row
        print(json.dumps(row["scorecam"]), flush=True)
        print(f"comparing definitions on {arch} ...", flush=True)
        definitions[arch] = compare_definitions(model, batch, 4 if quick else (8 if arch == "mobilenetv2" else 4),
                                                channels[arch], SCORECAM_BATCH_SIZE)
        del model, batch

    memory_images = 4 if quick else 16
    memory_runs = [("mobilenetv2", "gradcam", 256), ("mobilenetv2", "gradcam++", 256),
                   ("mobilenetv2", "scorecam", 16), ("mobilenetv2", "scorecam", 8 if quick else 256),
                   ("vgg16", "gradcam", 256), ("vgg16", "gradcam++", 256), ("vgg16", "scorecam", 4 if quick else 16)]
    memory = []
    for arch, method, max_channels in memory_runs:
        print(f"memory {arch} {method} max_channels={max_channels} ...", flush=True)
        memory.append(_run_child("memory", arch, method, str(memory_images), str(max_channels)))
        print(json.dumps(memory[-1]), flush=True)
    print("six architectures in one process ...", flush=True)
    zoo = _run_child("zoo", "4", "4" if quick else "8", "1" if quick else "3")
    load["end"] = os.getloadavg()

    peak = max(row["peak_rss_mb"] for row in memory)
    score_ratios = {arch: timings[arch]["scorecam"]["median_ratio"] for arch in ARCHS}
    result = {
        "what": "Score-CAM per image vs k plain forward passes; Grad-CAM(++) per image vs forward(+backward); "
                "peak memory of grad_cam on 16 files at 237 px, fresh process each; six architectures in one "
                "process; the maps under tf-keras-vis's and pytorch-grad-cam's definitions",
        "data": "real X-rays of the package sample (cxrclassify.datasets.sample_dir() / 'images'), resized to 237 px",
        "quick": quick,
        "score_batch_size": SCORECAM_BATCH_SIZE,
        "timings": timings,
        "definitions": definitions,
        "memory_16_images" if not quick else "memory_4_images": memory,
        "six_architectures_one_process": zoo,
        "goals": {
            "scorecam_at_most_1.2x_k_plain_passes": {arch: ratio <= 1.2 for arch, ratio in score_ratios.items()},
            "scorecam_median_ratio": score_ratios,
            "peak_memory_under_2_gb": peak < 2048,
            "peak_memory_mb": peak,
        },
        "load_average": load,
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "command": "python benchmarks/bench_cam.py" + (" --quick" if quick else ""),
    }
    if quick:  # a smoke run: printed, not written over the full run's results
        print(json.dumps(result, indent=2, default=str))
    else:
        print(write_result("cam", result).read_text())


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
