"""Class activation maps (Grad-CAM, Grad-CAM++, Score-CAM) through the nested frozen base; overlays; grid; CLI."""

from __future__ import annotations

import csv
import functools

import keras
import numpy as np
import pytest
from PIL import Image

import cxrclassify
from cxrclassify.cli import main
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.explain import (
    CAM_METHODS,
    cam,
    class_activation_maps,
    explain_images,
    overlay_heatmap,
)
from cxrclassify.plots import plot_cam_grid

ZOO = [("vgg16", 32), ("resnet50", 32), ("xception", 71), ("mobilenetv2", 32), ("densenet121", 32),
       ("efficientnetb0", 32)]


@functools.cache
def _zoo_model(arch: str, size: int) -> cxrclassify.CxrClassifier:
    keras.utils.set_random_seed(0)
    return cxrclassify.build_model(arch, 3, weights=None, image_size=size)


@pytest.fixture(scope="module", autouse=True)
def _release_zoo_models():
    yield
    _zoo_model.cache_clear()


def _tiny_model(size: int = 16, **kwargs) -> cxrclassify.CxrClassifier:
    keras.utils.set_random_seed(0)
    return cxrclassify.build_model("tinycnn", 3, weights=None, image_size=size, **kwargs)


@pytest.mark.parametrize("arch, size", [("vgg16", 32), ("resnet50", 32), ("xception", 71)])
def test_heatmap_through_nested_frozen_base(arch, size):
    """No 'graph disconnected' error, no None gradient, a map in [0, 1] at the image's own size."""
    model = _zoo_model(arch, size)
    image = np.random.default_rng(0).integers(0, 255, (90, 120), dtype=np.uint8)
    for class_index in (None, 0, 2):
        heatmap = cxrclassify.grad_cam(model, image, class_index)
        assert heatmap.shape == (90, 120) and heatmap.dtype == np.float32
        assert np.isfinite(heatmap).all() and heatmap.min() >= 0 and heatmap.max() <= 1


@pytest.mark.parametrize("method", CAM_METHODS)
@pytest.mark.parametrize("arch, size", ZOO)
def test_every_architecture_and_method(arch, size, method):
    model = _zoo_model(arch, size)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (37, 45), dtype=np.uint8), rng.integers(0, 255, (50, 30, 3), dtype=np.uint8)]
    heatmaps = cxrclassify.grad_cam(model, images, method=method, max_channels=4)
    assert isinstance(heatmaps, list) and [heatmap.shape for heatmap in heatmaps] == [(37, 45), (50, 30)]
    for heatmap in heatmaps:
        assert heatmap.dtype == np.float32 and np.isfinite(heatmap).all()
        assert heatmap.min() >= 0 and heatmap.max() <= 1


def _quadrant_data(rng, n=60, size=32):
    """Class 'marked' has a bright square in the top-left quadrant; 'plain' does not."""
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    labels = np.arange(n) % 2
    for image, label in zip(images, labels):
        if label:
            top, left = rng.integers(2, size // 2 - 8, 2)
            image[top:top + 6, left:left + 6] = 255
    records = [Sample(f"q{i}.png", ["plain", "marked"][label], f"p{i}") for i, label in enumerate(labels)]
    return ImageSet(images, labels, records, ["plain", "marked"])


@pytest.fixture(scope="module")
def quadrant():
    """A tiny model trained once whose decision depends only on the top-left quadrant, and its data."""
    keras.utils.set_random_seed(0)
    data = _quadrant_data(np.random.default_rng(0))
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=32, head="gap", freeze_base=False)
    cxrclassify.train(model, (data, None), epochs=30, batch_size=10, learning_rate=3e-3, progress=False)
    assert cxrclassify.evaluate(model, data).accuracy > 0.9
    return model, data


@pytest.mark.parametrize("method", CAM_METHODS)
def test_heatmap_mass_lies_where_the_evidence_is(quadrant, method):
    model, data = quadrant
    marked = data.images[data.labels == 1][:10]
    heatmaps = cxrclassify.grad_cam(model, marked, class_index=1, method=method)
    shares = heatmaps[:, :16, :16].sum(axis=(1, 2)) / np.maximum(heatmaps.sum(axis=(1, 2)), 1e-9)
    assert np.median(shares) > 0.5  # a quarter of the image holds most of the map


@pytest.mark.parametrize("method", CAM_METHODS)
def test_batched_and_one_by_one_maps_agree(quadrant, method):
    model, data = quadrant
    images = data.images[:6]
    classes = [0, 1, 1, 0, 1, 0]
    batched = cxrclassify.grad_cam(model, images, class_index=classes, method=method, batch_size=4)
    single = np.stack([cxrclassify.grad_cam(model, image, class_index=index, method=method)
                       for image, index in zip(images, classes)])
    assert batched.shape == (6, 32, 32)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    at_input_size = class_activation_maps(model, images, classes, method=method)
    np.testing.assert_allclose(at_input_size, batched, atol=1e-5)


def test_class_index_per_image_and_for_all(quadrant):
    model, data = quadrant
    images = data.images[data.labels == 1][:3]
    for_marked = cxrclassify.grad_cam(model, images, class_index=1)
    mixed = cxrclassify.grad_cam(model, images, class_index=[1, 0, 1])
    np.testing.assert_allclose(mixed[[0, 2]], for_marked[[0, 2]], atol=1e-6)
    assert not np.allclose(mixed[1], for_marked[1], atol=1e-3)
    predicted = cxrclassify.predict(model, images).class_indices
    np.testing.assert_allclose(cxrclassify.grad_cam(model, images), cxrclassify.grad_cam(model, images, predicted),
                               atol=1e-6)


class _CountingModel:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_one_forward_and_backward_pass_per_batch(monkeypatch, method):
    model = _tiny_model()
    counters = []
    original = cam._cam_model

    def counting(model, layer):
        counters.append(_CountingModel(original(model, layer)))
        return counters[-1]

    monkeypatch.setattr(cam, "_cam_model", counting)
    images = np.random.default_rng(0).integers(0, 255, (5, 20, 24, 1), dtype=np.uint8)
    assert cxrclassify.grad_cam(model, images, method=method, batch_size=2, max_channels=3).shape == (5, 20, 24)
    assert sum(counter.calls for counter in counters) == 3  # batches of 2, 2 and 1
    counters.clear()
    cxrclassify.grad_cam(model, images, method=method, batch_size=16, max_channels=3)
    assert sum(counter.calls for counter in counters) == 1


def test_scorecam_scores_masked_images_in_chunks(monkeypatch):
    model = _tiny_model()
    calls = []
    original = cam._score_function(model)

    def counting(model):
        return lambda images, index, low: calls.append(len(index)) or original(images, index, low)

    monkeypatch.setattr(cam, "_score_function", counting)
    class_activation_maps(model, np.zeros((3, 16, 16, 3), np.uint8), method="scorecam", max_channels=4,
                          score_batch_size=5)
    assert calls == [1, 5, 5, 2]  # the black baseline, then 3 images x 4 channels, 5 at a time
    # Compiled once: the smaller chunks (the baseline, the last) run the same graph.
    assert original.experimental_get_tracing_count() == 1


def test_map_with_no_evidence_stays_zero():
    model = _tiny_model()
    for weights in model.head.weights:
        weights.assign(np.zeros(weights.shape, np.float32))
    image = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    for method in CAM_METHODS:
        heatmap = cxrclassify.grad_cam(model, image, method=method)
        assert np.isfinite(heatmap).all() and not heatmap.any(), method


def test_input_kinds_give_one_map_an_array_or_a_list(tmp_path, rng):
    model = _tiny_model()
    folder = tmp_path / "images"
    folder.mkdir()
    for index, size in enumerate([(20, 30), (25, 18)]):
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(folder / f"x{index}.png")
    assert cxrclassify.grad_cam(model, folder / "x0.png").shape == (20, 30)
    assert cxrclassify.grad_cam(model, Image.open(folder / "x1.png")).shape == (25, 18)
    assert cxrclassify.grad_cam(model, np.zeros((12, 14, 3), np.uint8)).shape == (12, 14)
    assert cxrclassify.grad_cam(model, np.zeros((2, 12, 14, 3), np.uint8)).shape == (2, 12, 14)
    from_folder = cxrclassify.grad_cam(model, folder)
    assert [heatmap.shape for heatmap in from_folder] == [(20, 30), (25, 18)]
    data = ImageSet(np.zeros((2, 16, 16, 3), np.uint8), np.array([0, 1]), [Sample("a.png", "a"), Sample("b.png", "b")],
                    ["a", "b", "c"])
    assert len(cxrclassify.grad_cam(model, data)) == 2


def test_unknown_method_lists_the_valid_ones():
    model = _tiny_model()
    with pytest.raises(ValueError, match=r"Expected one of \['gradcam', 'gradcam\+\+', 'scorecam'\]. "
                                         r"Received: method='lime'"):
        cxrclassify.grad_cam(model, np.zeros((16, 16)), method="lime")


def test_batch_size_and_max_channels_must_be_positive():
    model = _tiny_model()
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        cxrclassify.grad_cam(model, np.zeros((2, 16, 16, 1)), batch_size=0)
    with pytest.raises(ValueError, match="Received: max_channels=0"):
        cxrclassify.grad_cam(model, np.zeros((16, 16)), method="scorecam", max_channels=0)


def test_class_index_out_of_range():
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    with pytest.raises(ValueError, match="class_index between 0 and 1"):
        cxrclassify.grad_cam(model, np.zeros((16, 16)), class_index=2)
    with pytest.raises(ValueError, match=r"one integer class index per image \(2\)"):
        cxrclassify.grad_cam(model, np.zeros((2, 16, 16, 1)), class_index=[0, 1, 1])
    with pytest.raises(ValueError, match="class_indices between 0 and 1"):
        class_activation_maps(model, np.zeros((1, 16, 16, 3)), [-1])


def test_batch_at_another_size_is_refused():
    model = _tiny_model()
    with pytest.raises(ValueError, match=r"Expected a batch of shape \(N, 16, 16, 3\).*\(2, 20, 20, 3\)"):
        class_activation_maps(model, np.zeros((2, 20, 20, 3)))


def test_unknown_layer_names_candidates():
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    with pytest.raises(ValueError, match="Layer 'block99' is not in the 'tinycnn' base"):
        cxrclassify.grad_cam(model, np.zeros((16, 16)), layer="block99")


def test_named_layer_is_used():
    model = cxrclassify.build_model("tinycnn", 2, weights=None, image_size=16)
    default = cxrclassify.grad_cam(model, np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8))
    first = cxrclassify.grad_cam(model, np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8),
                                 layer="conv1")
    assert first.shape == (16, 16) and not np.allclose(first, default)


def test_overlay_png(tmp_path):
    image = np.tile(np.arange(40, dtype=np.uint8), (30, 1))
    heatmap = np.zeros((3, 4), np.float32)
    heatmap[0, 0] = 1.0
    path = cxrclassify.save_gradcam_overlay(image, heatmap, tmp_path / "sub" / "overlay.png", alpha=0.5)
    written = np.asarray(Image.open(path))
    assert written.shape == (30, 40, 3)
    assert written[0, 0, 0] > written[0, 0, 2]  # hot corner is red in "jet"
    np.testing.assert_array_equal(overlay_heatmap(image, heatmap, alpha=0.0)[..., 0], image)
    with pytest.raises(ValueError, match="alpha between 0 and 1"):
        overlay_heatmap(image, heatmap, alpha=2)
    with pytest.raises(ValueError, match="name of a matplotlib colormap.*Received: colormap='hot-pink'"):
        overlay_heatmap(image, heatmap, colormap="hot-pink")


def test_grid_figure(tmp_path):
    images = [np.zeros((30, 40), np.uint8), np.full((20, 20, 3), 200, np.uint8), np.zeros((10, 10), np.uint8)]
    heatmaps = [np.eye(3), np.ones((20, 20)), np.zeros((10, 10))]
    figure = plot_cam_grid(images, heatmaps, tmp_path / "grid.png", titles=["a", "b: covid19 (0.93)", "c"],
                           pairs_per_row=3)
    assert (tmp_path / "grid.png").stat().st_size > 1000
    image_axes = [axes for axes in figure.axes if axes.images]
    assert len(image_axes) == 6 and image_axes[2].get_title() == "b: covid19 (0.93)"
    assert len(image_axes[3].images) == 2  # the X-ray and the map over it
    with pytest.raises(ValueError, match="one heatmap per image"):
        plot_cam_grid(images, heatmaps[:2])


def test_explain_images_writes_overlays_maps_grid_and_csv(tmp_path):
    model = _tiny_model(class_names=["a", "b", "c"])
    images = np.random.default_rng(0).integers(0, 255, (3, 20, 24, 1), dtype=np.uint8)
    written = explain_images(model, images, tmp_path / "out", method="gradcam++", class_index=2)
    names = sorted(path.name for path in written)
    assert names == ["0000_array_0_map.npy", "0000_array_0_overlay.png", "0001_array_1_map.npy",
                     "0001_array_1_overlay.png", "0002_array_2_map.npy", "0002_array_2_overlay.png",
                     "cam_grid.png", "predictions.csv"]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "0001_array_1_map.npy"),
                               cxrclassify.grad_cam(model, images[1], 2, method="gradcam++"), atol=1e-6)
    with open(tmp_path / "out" / "predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = cxrclassify.predict(model, images)
    assert [row["label"] for row in rows] == expected.labels
    assert [row["explained"] for row in rows] == ["c", "c", "c"]
    np.testing.assert_allclose([float(row["b"]) for row in rows], expected.probabilities[:, 1], atol=1e-5)


@pytest.fixture
def saved_model(tmp_path):
    model = _tiny_model(class_names=["covid19", "normal", "pneumonia"])
    path = tmp_path / "m.keras"
    model.save(path)
    return path


def test_cli_explain(saved_model, tmp_path, rng):
    folder = tmp_path / "xrays"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (30, 26), dtype=np.uint8)).save(folder / f"x{index}.png")
    out = tmp_path / "out"
    assert main(["explain", str(saved_model), str(folder), "--out", str(out), "--class", "normal",
                 "--method", "scorecam", "--max-channels", "4", "--colormap", "inferno"]) == 0
    assert sorted(path.name for path in out.glob("*_overlay.png")) == [f"000{i}_x{i}_overlay.png" for i in range(3)]
    assert (out / "cam_grid.png").is_file()
    with open(out / "predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["input"] for row in rows] == [str(folder / f"x{i}.png") for i in range(3)]
    assert {row["explained"] for row in rows} == {"normal"}


@pytest.mark.parametrize("arguments, expected", [
    (["--class", "tuberculosis"], "--class must name one of the model's classes"),
    (["--class", "3"], "--class must name one of the model's classes"),
    (["--method", "lime"], "invalid choice: 'lime'"),
    (["--colormap", "hot-pink"], "colormap='hot-pink'"),
    (["--layer", "block99"], "Layer 'block99' is not in the 'tinycnn' base"),
])
def test_cli_explain_errors(saved_model, tmp_path, capsys, arguments, expected):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(image)
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", str(saved_model), str(image), "--out", str(tmp_path / "out"), *arguments])
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_cli_explain_missing_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", str(tmp_path / "absent.keras"), str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "absent.keras' is not a file" in capsys.readouterr().err
