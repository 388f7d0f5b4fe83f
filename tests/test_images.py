"""Decoding every kind of image input to 8-bit RGB."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxrclassify.datasets import read_image, resize, to_rgb_uint8
from cxrclassify.exceptions import DataError, ImageDecodeError


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "1", "CMYK", "I;16", "I", "F"])
def test_every_pil_mode_becomes_rgb_uint8(tmp_path, mode):
    grey = np.tile(np.linspace(0, 255, 30, dtype=np.uint8), (20, 1))
    if mode == "I;16":
        image = Image.fromarray((grey.astype(np.uint16) * 16))
    elif mode in ("I", "F"):
        image = Image.fromarray(grey).convert(mode)
    else:
        image = Image.fromarray(grey).convert(mode)
    rgb = to_rgb_uint8(image)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    if mode not in ("1", "CMYK", "P"):
        # the gradient survives: dark on the left, bright on the right
        assert rgb[:, 0].mean() < 20 and rgb[:, -1].mean() > 200


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    twelve_bit = np.tile(np.linspace(0, 4095, 64), (8, 1)).astype(np.uint16)
    path = tmp_path / "xray16.png"
    Image.fromarray(twelve_bit).save(path)
    rgb = read_image(path)
    assert rgb.dtype == np.uint8 and rgb.min() == 0 and rgb.max() == 255
    assert np.all(np.diff(rgb[0, :, 0].astype(int)) >= 0)  # monotone: nothing clipped or wrapped


def test_rgba_is_composited_on_black():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:2, :, 3] = 255
    rgb = to_rgb_uint8(Image.fromarray(rgba, "RGBA"))
    assert rgb[0, 0].tolist() == [200, 200, 200] and rgb[3, 3].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    "array, expected_max",
    [
        (np.full((5, 6), 0.5, np.float32), 128),  # float in [0, 1]
        (np.full((5, 6, 1), 200, np.uint8), 200),  # (H, W, 1) grayscale
        (np.full((5, 6), 200, np.int64), 200),  # other integers: 0..255 taken as 8-bit
        (np.full((5, 6, 3), 77, np.uint8), 77),
        (np.full((5, 6, 4), 90, np.uint8), 32),  # RGBA: 90 at alpha 90/255 on black
    ],
)
def test_arrays_of_each_layout(array, expected_max):
    rgb = to_rgb_uint8(array)
    assert rgb.shape == (5, 6, 3) and rgb.dtype == np.uint8 and int(rgb.max()) == expected_max


def test_float_array_on_a_0_255_scale_is_refused_with_advice():
    # float arrays are read as [0, 1] only; 0..255 floats are not guessed at
    with pytest.raises(ImageDecodeError, match=r"Cast 0\.\.255 data to uint8.*Received: values from 200 to 200"):
        to_rgb_uint8(np.full((5, 6, 1), 200.0))


def test_bad_array_shape_says_what_was_expected():
    with pytest.raises(ImageDecodeError, match=r"Received: array of shape \(2, 5, 6, 3\)"):
        to_rgb_uint8(np.zeros((2, 5, 6, 3), np.uint8))


def test_nan_array_is_refused():
    with pytest.raises(ImageDecodeError, match="NaN"):
        to_rgb_uint8(np.full((4, 4), np.nan))


def test_corrupt_file_error_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ImageDecodeError, match="broken.png") as caught:
        read_image(path)
    assert isinstance(caught.value, DataError) and isinstance(caught.value, ValueError)


def test_truncated_jpeg_error_names_the_file(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageDecodeError, match="cut.jpg"):
        read_image(path)


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="nowhere.png"):
        read_image(tmp_path / "nowhere.png")


def test_unsupported_input_type():
    with pytest.raises(TypeError, match="Received: image of type int"):
        to_rgb_uint8(3)


def test_resize_to_square_and_rectangle():
    image = np.zeros((50, 80, 3), np.uint8)
    assert resize(image, 32).shape == (32, 32, 3)
    assert resize(image, (20, 10)).shape == (20, 10, 3)
