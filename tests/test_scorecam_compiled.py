"""Compiled, chunked class activation maps equal a plain eager implementation of their documented formulas.

The references below are written from the definitions in ``docs/explain.rst`` ("Which definitions"),
with eager Keras calls and numpy only, independently of ``cxrclassify.explain.cam``'s compiled passes.
"""

from __future__ import annotations

import functools
import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

import cxrclassify
from cxrclassify.explain import cam, class_activation_maps


@functools.cache
def _model(arch: str) -> cxrclassify.CxrClassifier:
    keras.utils.set_random_seed(0)
    if arch == "vgg16":
        return cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32, seed=0)
    return cxrclassify.build_model("tinycnn", num_classes=3, weights=None, image_size=16, seed=0)


@pytest.fixture(scope="module", autouse=True)
def _release_models():
    yield
    _model.cache_clear()


def _batch(model, count=3, seed=0):
    size = model.image_size
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype(np.uint8)


def _eager_parts(model, images):
    """The layer's feature maps and the logits, from eager calls of an eager sub-model of the base."""
    layer = model.base.get_layer(model.spec.last_conv_layer)
    to_layer = keras.Model(model.base.inputs, layer.output)
    inputs = tf.constant(np.asarray(images, np.float32))
    return to_layer(model.preprocess(inputs)).numpy().astype(np.float64), model.logits(inputs).numpy()


def _upsample(maps, size):
    """Bilinear (half-pixel centres) resize of (N, h, w) maps to (N, size, size)."""
    return tf.image.resize(np.asarray(maps, np.float32)[..., None], (size, size), method="bilinear").numpy()[..., 0]


def _final(low, size):
    """The documented last step: positive part, bilinear upsampling, division by the maximum (zeros stay zeros)."""
    up = np.maximum(_upsample(np.maximum(low, 0.0), size), 0.0)
    peaks = up.max(axis=(1, 2), keepdims=True)
    return np.divide(up, peaks, out=np.zeros_like(up), where=peaks > 0)


def reference_score_cam(model, images, classes=None, max_channels=256):
    """Score-CAM as documented, one masked image at a time, eagerly.

    Channels: the ``max_channels`` with the highest mean activation (stable order). Each one's map,
    bilinearly upsampled and scaled to [0, 1] by its own range (constant: zeros), multiplies the
    image; its weight is max(0, logit_c(masked) - logit_c(black)); the map is the positive part of
    the weighted sum of the selected channels.
    """
    size = model.image_size
    activations, logits = _eager_parts(model, images)
    classes = logits.argmax(axis=1) if classes is None else np.broadcast_to(classes, len(images))
    black = model.logits(np.zeros((1, size, size, 3), np.float32)).numpy()[0]
    low_maps = []
    for image, acts, c in zip(np.asarray(images, np.float32), activations, classes):
        order = np.argsort(-acts.mean(axis=(0, 1)), kind="stable")[:max_channels]
        weighted = np.zeros(acts.shape[:2])
        for k in order:
            mask = _upsample(acts[None, :, :, k], size)[0].astype(np.float64)
            spread = mask.max() - mask.min()
            mask = (mask - mask.min()) / spread if spread > 0 else np.zeros_like(mask)
            masked = (image * mask[..., None]).astype(np.float32)[None]
            score = model.logits(masked).numpy()[0, c] - black[c]
            weighted += max(score, 0.0) * acts[:, :, k]
        low_maps.append(weighted)
    return _final(np.stack(low_maps), size)


def reference_gradient_cam(model, images, classes=None, plus=False):
    """Grad-CAM (mean gradient of the class logit) or Grad-CAM++ (closed-form alphas, no normalisation), eagerly."""
    layer = model.base.get_layer(model.spec.last_conv_layer)
    both = keras.Model(model.base.inputs, [layer.output, model.base.output])
    inputs = tf.constant(np.asarray(images, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        conv, features = both(model.preprocess(inputs))
        logits = model.head(features)
        chosen = tf.argmax(logits, axis=1) if classes is None else tf.constant(np.broadcast_to(classes, len(images)))
        score = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
    g = tape.gradient(score, conv).numpy().astype(np.float64)
    a = conv.numpy().astype(np.float64)
    if plus:
        denominator = 2 * g**2 + a.sum(axis=(1, 2), keepdims=True) * g**3
        alpha = np.divide(g**2, denominator, out=np.zeros_like(g), where=denominator != 0)
        weights = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))
    else:
        weights = g.mean(axis=(1, 2))
    return _final(np.einsum("nhwk,nk->nhw", a, weights), model.image_size)


@pytest.mark.parametrize("arch, max_channels", [("vgg16", 6), ("tinycnn", 256)])
def test_compiled_score_cam_equals_the_eager_reference(arch, max_channels):
    model = _model(arch)
    images = _batch(model)
    expected = reference_score_cam(model, images, max_channels=max_channels)
    assert expected.any()  # the comparison is not between two blank maps
    for classes in (None, 1):
        if classes is not None:
            expected = reference_score_cam(model, images, classes, max_channels=max_channels)
        maps = class_activation_maps(model, images, classes, method="scorecam", max_channels=max_channels)
        assert maps.dtype == np.float32
        np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("arch", ["vgg16", "tinycnn"])
def test_chunked_score_cam_equals_unchunked(arch):
    model = _model(arch)
    images = _batch(model, count=4, seed=1)
    whole = class_activation_maps(model, images, method="scorecam", max_channels=5, score_batch_size=10_000)
    for score_batch_size in (1, 3, 7):
        chunked = class_activation_maps(model, images, method="scorecam", max_channels=5,
                                        score_batch_size=score_batch_size)
        np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_score_cam_is_traced_once_whatever_the_chunks():
    model = _model("tinycnn")
    cam_model = cam._cam_model(model, model.spec.last_conv_layer)
    for count, score_batch_size in [(3, 4), (5, 2), (1, 16), (2, 5)]:
        class_activation_maps(model, _batch(model, count), method="scorecam", max_channels=3,
                              score_batch_size=score_batch_size)
    assert cam._score_function(model).experimental_get_tracing_count() == 1
    assert cam._layer_functions(model, cam_model).activations.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
@pytest.mark.parametrize("arch", ["vgg16", "tinycnn"])
def test_compiled_gradient_cams_equal_the_eager_reference(arch, method):
    model = _model(arch)
    images = _batch(model, count=4, seed=2)
    for classes in (None, 2):
        expected = reference_gradient_cam(model, images, classes, plus=method == "gradcam++")
        maps = class_activation_maps(model, images, classes, method=method)
        np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=2e-5)
    traced = cam._layer_functions(model, cam._cam_model(model, model.spec.last_conv_layer)).gradients
    assert traced.experimental_get_tracing_count() == 1  # both methods, any batch size: one graph


def test_grad_cam_and_explain_images_pass_score_batch_size_on(tmp_path):
    model = _model("tinycnn")
    images = np.random.default_rng(3).integers(0, 255, (3, 20, 24, 1), dtype=np.uint8)
    default = cxrclassify.grad_cam(model, images, method="scorecam", max_channels=4)
    np.testing.assert_allclose(
        cxrclassify.grad_cam(model, images, method="scorecam", max_channels=4, score_batch_size=3), default,
        rtol=1e-5, atol=1e-6)
    from cxrclassify.explain import explain_images

    explain_images(model, images, tmp_path, method="scorecam", max_channels=4, score_batch_size=2, grid=False)
    np.testing.assert_allclose(np.load(tmp_path / "0001_array_1_map.npy"), default[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Received: score_batch_size=0"):
        cxrclassify.grad_cam(model, images, method="scorecam", score_batch_size=0)
    with pytest.raises(ValueError, match="Received: score_batch_size=0"):
        class_activation_maps(model, _batch(model), method="scorecam", score_batch_size=0)


def test_compiled_passes_do_not_keep_the_classifier_alive():
    keras.utils.set_random_seed(0)
    model = cxrclassify.build_model("tinycnn", num_classes=2, weights=None, image_size=16)
    for method in cam.CAM_METHODS:
        class_activation_maps(model, _batch(model, 2), method=method, max_channels=3)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
