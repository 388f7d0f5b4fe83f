"""Every architecture family runs the README's five calls, on data loaded at another size than the model's.

``train``, ``evaluate`` and ``calibrate`` resize splits loaded at another size
to ``model.image_size`` (``training._images_at_model_size``), log it once, and
otherwise behave as on the resized splits; splits already at the model's size
go through untouched.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

import cxrclassify
from cxrclassify.datasets import ImageSet, Sample, resize
from cxrclassify.features import FeatureCache
from cxrclassify.models import get_spec
from cxrclassify.training import _images_at_model_size

#: Architecture families, by the start of their registry names; one representative each.
FAMILIES = ("vgg", "resnet", "xception", "mobilenet", "densenet", "efficientnet")
#: The size the data are loaded at: none of the models below takes it.
LOADED_SIZE = 48


def _representatives() -> list[str]:
    names = cxrclassify.list_models()
    return [next((name for name in names if name.startswith(family)), f"<no {family} model>") for family in FAMILIES]


def _model_size(arch: str) -> int:
    return max(32, get_spec(arch).min_input_size)


def _resize_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.INFO and record.getMessage().startswith("Resized ")]


@pytest.fixture(scope="module")
def data():
    return cxrclassify.load_datasets("sample", image_size=LOADED_SIZE, progress=False)


def test_every_family_is_registered():
    assert not [name for name in _representatives() if name.startswith("<")], cxrclassify.list_models()
    assert all(_model_size(arch) != LOADED_SIZE for arch in _representatives())


@pytest.mark.parametrize("arch", _representatives())
def test_the_five_calls_run_on_data_loaded_at_another_size(arch, data, caplog):
    model = cxrclassify.build_model(arch, num_classes=len(data.class_names), weights=None,
                                    image_size=_model_size(arch))
    assert model.image_size != data.train.images.shape[1]
    before = data.train.images
    with caplog.at_level(logging.INFO, logger="cxrclassify"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 test images: AUC intervals lack resamples
        history = cxrclassify.train(model, data, epochs=1, progress=False)
        result = cxrclassify.predict(model, data.test.paths)
        heatmap = cxrclassify.grad_cam(model, data.test.paths[0])
        summary = cxrclassify.evaluate(model, data.test, n_bootstrap=20).summary()
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])
    assert result.probabilities.shape == (len(data.test), len(data.class_names))
    assert heatmap.ndim == 2 and np.isfinite(heatmap).all()
    assert "accuracy" in summary
    assert model.metadata["ood"]["fitted"] is True
    messages = _resize_messages(caplog)
    assert len(messages) == 2, messages  # one for train (both splits), one for evaluate
    assert f"to the model's {model.image_size} x {model.image_size} input" in messages[0]
    assert f"load_datasets(..., image_size={model.image_size})" in messages[0]
    assert data.train.images is before and before.shape[1:3] == (LOADED_SIZE, LOADED_SIZE)  # not mutated


def test_the_helper_resizes_as_load_datasets_does_and_copies(data):
    model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32)
    train_set, missing = _images_at_model_size([data.train, None], model)
    assert missing is None
    assert train_set is not data.train and train_set.images.shape == (len(data.train), 32, 32, 3)
    assert train_set.images.dtype == np.uint8
    np.testing.assert_array_equal(train_set.images, np.stack([resize(image, 32) for image in data.train.images]))
    assert train_set.records == data.train.records and train_set.class_names == data.train.class_names
    np.testing.assert_array_equal(train_set.labels, data.train.labels)
    assert train_set.lungs == data.train.lungs
    assert data.train.images.shape[1:3] == (LOADED_SIZE, LOADED_SIZE)
    # A second resizing is not a resizing of the files: close to loading at 32 px, not equal.
    at_32 = cxrclassify.load_datasets("sample", image_size=32, progress=False)
    difference = np.abs(at_32.train.images.astype(int) - train_set.images.astype(int))
    assert 0 < difference.mean() < 2


def test_splits_at_the_model_size_go_through_untouched(data, caplog):
    model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=LOADED_SIZE)
    with caplog.at_level(logging.INFO, logger="cxrclassify"):
        splits = _images_at_model_size([data.train, data.validation, None], model)
    assert splits[0] is data.train and splits[1] is data.validation and splits[2] is None
    assert _resize_messages(caplog) == []


def test_train_on_another_size_equals_train_on_the_resized_splits(data, tmp_path):
    def trained(splits, cache):
        model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32)
        history = cxrclassify.train(model, splits, epochs=2, progress=False, cache_dir=cache)
        return model, history

    cache = tmp_path / "features"
    model, history = trained(data, cache)
    entries = {entry["key"] for entry in FeatureCache(cache).entries()}
    resized = tuple(_images_at_model_size([data.train, data.validation], model))
    same_model, same_history = trained(resized, cache)
    assert same_history == history
    for left, right in zip(model.get_weights(), same_model.get_weights()):
        np.testing.assert_allclose(left, right, rtol=0, atol=0)
    # The cache is keyed by the resized images: the second run reused the first run's features.
    assert {entry["key"] for entry in FeatureCache(cache).entries()} == entries
    assert model.metadata["training"]["data_manifest_sha256"] == same_model.metadata["training"][
        "data_manifest_sha256"]
    assert model.metadata["ood"]["threshold"] == same_model.metadata["ood"]["threshold"]


def test_evaluate_and_calibrate_on_another_size_equal_them_on_the_resized_split(data):
    model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32)
    cxrclassify.train(model, data, epochs=1, progress=False, fit_ood=False)
    test_set, validation_set = _images_at_model_size([data.test, data.validation], model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = cxrclassify.evaluate(model, data.test, n_bootstrap=20)
        expected = cxrclassify.evaluate(model, test_set, n_bootstrap=20)
        temperature = cxrclassify.fit_temperature(model, data)
        expected_temperature = cxrclassify.fit_temperature(model, validation_set)
    np.testing.assert_array_equal(evaluation.predictions.probabilities, expected.predictions.probabilities)
    assert evaluation.summary() == expected.summary()
    assert temperature == expected_temperature


def test_train_two_stage_resizes_once(data, caplog):
    from cxrclassify.training import train_two_stage

    model = cxrclassify.build_model("vgg16", num_classes=3, weights=None, image_size=32)
    with caplog.at_level(logging.INFO, logger="cxrclassify"):
        history = train_two_stage(model, data, head_epochs=1, fine_tune_epochs=1, fine_tune_blocks=1,
                                  progress=False, fit_ood=False)
    assert history["stage"] == ["head", "fine_tune"]
    assert len(_resize_messages(caplog)) == 1


def test_images_that_cannot_be_resized_say_how_to_load():
    model = cxrclassify.build_model("vgg16", num_classes=2, weights=None, image_size=32)
    split = ImageSet(np.zeros((2, 40, 40, 3), np.float32), np.array([0, 1]),
                     [Sample("a.png", "a"), Sample("b.png", "b")], ["a", "b"])
    with pytest.raises(ValueError, match=r"image_size=32"):
        cxrclassify.train(model, (split, None), epochs=1, progress=False)
