"""Fault suite for image decoding: every input decodes as documented, or raises a CxrError.

The property tests restate the rules of :func:`cxrclassify.datasets.to_rgb_uint8`
(see the module docstring of ``cxrclassify.datasets._images``) as a small
reference implementation and compare exactly; the regression tests pin the
reported bugs (decompression bombs, 2-channel arrays, float ranges, 16-bit
scaling, object dtypes, TIFF in folders, ``resize(size=0)``, truncated files).
"""

from __future__ import annotations

import io
import struct
import threading
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageFile

from cxrclassify.datasets import _images, read_image, resize, to_rgb_uint8
from cxrclassify.datasets._images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS_ENV,
    get_max_image_pixels,
    is_image_file,
    set_max_image_pixels,
)
from cxrclassify.exceptions import ArgumentError, CxrError, ImageDecodeError

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILE_PROPERTY = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def library_limit_untouched(monkeypatch):
    """Each test starts from the default limit: no set_max_image_pixels value, no environment variable."""
    monkeypatch.setattr(_images, "_max_pixels_setting", _images._UNSET)
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV, raising=False)


# --------------------------------------------------------------------------------------
# The documented rules, restated independently
# --------------------------------------------------------------------------------------

WIDE = (np.dtype(np.uint16), np.dtype(np.int16))
EIGHT_BIT_RULE = tuple(np.dtype(t) for t in (np.int8, np.int32, np.int64, np.uint32, np.uint64))


def stretch(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - low) * 255.0 / (high - low)).astype(np.uint8)


def expected_rgb(array: np.ndarray) -> np.ndarray | None:
    """What the rules say ``to_rgb_uint8(array)`` gives; ``None`` where they say it is an error."""
    if array.dtype.kind not in "buif":
        return None
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))) or array.size == 0:
        return None
    dtype = array.dtype
    color = array[..., :3] if array.ndim == 3 else array
    if dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            return None
        rgb = np.round(color.astype(np.float64) * 255.0).astype(np.uint8)
    elif dtype == np.uint8:
        rgb = color
    elif dtype == np.bool_:
        rgb = np.where(color, 255, 0).astype(np.uint8)
    elif dtype in WIDE:
        rgb = stretch(color)
    else:
        if int(array.min()) < 0 or int(array.max()) > 255:
            return None
        rgb = color.astype(np.uint8)
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    if array.ndim == 3 and array.shape[-1] == 4:
        alpha = array[..., 3]
        full_scale = {np.dtype(np.uint16): 65535.0, np.dtype(np.int16): 32767.0}.get(dtype, 255.0)
        if dtype.kind == "f" or dtype == np.bool_:
            full_scale = 1.0
        if dtype == np.int16 and alpha.min() < 0:
            return None
        opacity = alpha.astype(np.float64) / full_scale
        rgb = np.round(rgb.astype(np.float64) * opacity[..., None]).astype(np.uint8)
    return rgb


def assert_decodes_as_documented(array: np.ndarray) -> None:
    expected = expected_rgb(array)
    if expected is None:
        with pytest.raises(CxrError):
            to_rgb_uint8(array)
        return
    rgb = to_rgb_uint8(array)
    assert rgb.dtype == np.uint8 and rgb.shape == (*array.shape[:2], 3)
    np.testing.assert_array_equal(rgb, expected)


NUMERIC_DTYPES = st.sampled_from(
    [np.bool_, np.uint8, np.uint16, np.int16, np.int8, np.int32, np.int64, np.uint32, np.uint64,
     np.float16, np.float32, np.float64]
)
VALID_SHAPES = st.tuples(st.integers(1, 5), st.integers(1, 5)).flatmap(
    lambda hw: st.sampled_from([hw, (*hw, 1), (*hw, 3), (*hw, 4)])
)
ANY_SHAPES = st.one_of(VALID_SHAPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))


@st.composite
def numeric_arrays(draw):
    dtype = np.dtype(draw(NUMERIC_DTYPES))
    shape = draw(ANY_SHAPES)
    in_range = draw(st.booleans())  # half the arrays keep to the range their dtype's rule accepts
    if dtype.kind == "f":
        width = 8 * dtype.itemsize
        elements = st.floats(0, 1, width=width) if in_range else st.floats(width=width)
    elif dtype.kind in "iu" and dtype not in WIDE and dtype != np.uint8:
        info = np.iinfo(dtype)
        elements = st.integers(max(0, info.min), min(255, info.max)) if in_range else st.integers(info.min, info.max)
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@PROPERTY
@given(numeric_arrays())
def test_any_numeric_array_decodes_as_documented_or_raises_a_cxr_error(array):
    assert_decodes_as_documented(array)


@PROPERTY
@given(hnp.arrays(np.uint16, VALID_SHAPES.filter(lambda s: len(s) == 2)), st.integers(0, 60000))
def test_sixteen_bit_scaling_ignores_an_offset(array, offset):
    """One rule for 16-bit data: the image's own range is stretched, wherever it lies."""
    shifted = (array.astype(np.int64) % 5000 + offset).astype(np.uint16)
    rgb = to_rgb_uint8(shifted)
    np.testing.assert_array_equal(rgb, to_rgb_uint8((shifted - shifted.min()).astype(np.uint16)))
    np.testing.assert_array_equal(rgb[..., 0], stretch(shifted))


@PROPERTY
@given(
    st.sampled_from(["I;16", "I", "F"]),
    hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 5)), elements=st.integers(0, 65535)),
)
def test_pillow_wide_modes_follow_the_sixteen_bit_rule(mode, values):
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    image = Image.fromarray(values.astype(dtype))
    assert image.mode == mode
    rgb = to_rgb_uint8(image)
    assert rgb.shape == (*values.shape, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], stretch(values))
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


NON_NUMERIC = st.one_of(
    hnp.arrays(np.dtype(object), VALID_SHAPES, elements=st.one_of(st.none(), st.text(max_size=3), st.integers())),
    hnp.arrays(hnp.unicode_string_dtypes(max_len=4), VALID_SHAPES),
    hnp.arrays(hnp.byte_string_dtypes(max_len=4), VALID_SHAPES),
    hnp.arrays(hnp.complex_number_dtypes(), VALID_SHAPES),
    hnp.arrays(hnp.datetime64_dtypes(), VALID_SHAPES),
    hnp.arrays(np.dtype([("a", np.uint8), ("b", np.float32)]), VALID_SHAPES),
)


@settings(max_examples=50, deadline=None)
@given(NON_NUMERIC)
def test_non_numeric_dtypes_are_an_image_decode_error_naming_the_dtype(array):
    with pytest.raises(ImageDecodeError, match="Received: array of dtype") as caught:
        to_rgb_uint8(array)
    assert str(array.dtype) in str(caught.value)


# --------------------------------------------------------------------------------------
# Files: corrupt, truncated, bombs
# --------------------------------------------------------------------------------------


def encoded(fmt: str, array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


GRADIENT = np.tile(np.linspace(0, 255, 24).astype(np.uint8), (16, 1))
VALID_FILES = {fmt: encoded(fmt, GRADIENT) for fmt in ("PNG", "JPEG", "TIFF")}
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif"}


@FILE_PROPERTY
@given(
    st.sampled_from(sorted(VALID_FILES)),
    st.integers(0, 10_000),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
)
def test_corrupt_or_truncated_files_decode_or_raise_an_error_naming_the_file(tmp_path, fmt, cut, flips):
    data = bytearray(VALID_FILES[fmt])
    for position, value in flips:
        data[position % len(data)] = value
    data = data[: max(cut % (len(data) + 1), 0)] if cut % 3 else data
    path = tmp_path / f"fuzzed{SUFFIX[fmt]}"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF in TIFFs
        try:
            rgb = read_image(path, max_pixels=10_000)  # a corrupt header may declare a huge size
        except ImageDecodeError as error:
            assert "fuzzed" in str(error)
        else:
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[-1] == 3


def png_with_declared_size(path, width: int, height: int) -> None:
    """A valid 1 x 1 PNG whose IHDR is rewritten to declare ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(encoded("PNG", np.zeros((1, 1), np.uint8)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_decompression_bomb_png_is_refused_from_its_header(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    png_with_declared_size(path, 60000, 60000)
    before = Image.MAX_IMAGE_PIXELS

    def no_decoding(self):
        raise AssertionError("the pixels of a bomb must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)  # refused from the header alone
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no DecompressionBombWarning either
            with pytest.raises(ImageDecodeError) as caught:
                read_image(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "bomb.png" in message and "60000 x 60000" in message and "3,600,000,000" in message
    assert f"{DEFAULT_MAX_IMAGE_PIXELS:,}" in message
    assert "max_pixels" in message and "set_max_image_pixels" in message and MAX_IMAGE_PIXELS_ENV in message
    assert message.rstrip(".").endswith("pixels") and "Received:" in message
    assert elapsed < 1.0 and peak < 20 * 2**20
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's own limit is restored


def test_bomb_in_a_folder_is_a_cxr_error_that_a_scan_can_skip(tmp_path):
    png_with_declared_size(tmp_path / "a_bomb.png", 60000, 60000)
    Image.fromarray(GRADIENT).save(tmp_path / "b_fine.png")
    decoded, skipped = {}, []
    for path in sorted(p for p in tmp_path.iterdir() if is_image_file(p)):
        try:
            decoded[path.name] = read_image(path)
        except CxrError as error:
            skipped.append((path.name, str(error)))
    assert list(decoded) == ["b_fine.png"] and skipped[0][0] == "a_bomb.png"


def test_max_pixels_argument(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(path)
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)
    assert read_image(path, max_pixels=None).shape == (20, 30, 3)
    assert to_rgb_uint8(str(path), max_pixels=600).shape == (20, 30, 3)
    with pytest.raises(ImageDecodeError, match=r"small\.png.*at most 599 pixels.*30 x 20 = 600 pixels"):
        read_image(path, max_pixels=599)
    with pytest.raises(ImageDecodeError, match="small.png"):
        to_rgb_uint8(path, max_pixels=10)
    for bad in (0, -5, 1.5, "100", True):
        with pytest.raises(ArgumentError, match="max_pixels"):
            read_image(path, max_pixels=bad)


def test_set_max_image_pixels_and_the_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(path)
    assert get_max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "100")
    assert get_max_image_pixels() == 100
    with pytest.raises(ImageDecodeError, match=r"at most 100 pixels"):
        read_image(path)
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)  # the argument wins
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, " None ")
    assert get_max_image_pixels() is None and read_image(path).shape == (20, 30, 3)
    for bad in ("lots", "0", "-3", "1.5e6"):
        monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, bad)
        with pytest.raises(ArgumentError, match=MAX_IMAGE_PIXELS_ENV):
            read_image(path)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "100")
    assert set_max_image_pixels(600) == 100  # returns the limit in force before
    assert read_image(path).shape == (20, 30, 3)  # the setting wins over the variable
    assert set_max_image_pixels(None) == 600 and get_max_image_pixels() is None
    for bad in (0, -1, 2.0, "600", False):
        with pytest.raises(ArgumentError, match="max_pixels"):
            set_max_image_pixels(bad)


def test_pillow_limit_neither_fires_first_nor_leaks(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # Pillow would raise DecompressionBombError
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).shape == (20, 30, 3)
        with pytest.raises(ImageDecodeError, match="at most 599 pixels"):
            read_image(path, max_pixels=599)
    assert Image.MAX_IMAGE_PIXELS == 50


def test_pillow_limit_is_restored_after_concurrent_decodes(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(GRADIENT).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1234)
    errors = []

    def work():
        try:
            for _ in range(10):
                read_image(path)
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and Image.MAX_IMAGE_PIXELS == 1234


def test_a_raw_pillow_bomb_error_still_becomes_an_image_decode_error(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    Image.fromarray(GRADIENT).save(path)

    def bomb(*args, **kwargs):
        raise Image.DecompressionBombError("Image size exceeds limit")

    monkeypatch.setattr(Image, "open", bomb)
    with pytest.raises(ImageDecodeError, match=r"x\.png.*DecompressionBombError"):
        read_image(path)


def test_dicom_rows_and_columns_are_checked_before_decoding(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import generate_uid

    dataset = pydicom.Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    dataset.SOPInstanceUID = generate_uid()
    dataset.set_pixel_data(np.zeros((4, 6), np.uint16), "MONOCHROME2", 12)
    small = tmp_path / "small.dcm"
    dataset.save_as(small, enforce_file_format=True)
    with pytest.raises(ImageDecodeError, match=r"small\.dcm.*at most 23 pixels.*6 x 4 \(Columns x Rows\) = 24"):
        read_image(small, max_pixels=23)
    assert read_image(small, max_pixels=24).shape == (4, 6, 3)
    dataset.Rows, dataset.Columns = 60000, 60000  # the header lies; the pixel data is 48 bytes
    bomb = tmp_path / "bomb.dcm"
    dataset.save_as(bomb, enforce_file_format=True)
    with pytest.raises(ImageDecodeError, match=r"bomb\.dcm.*60000 x 60000.*3,600,000,000 pixels"):
        read_image(bomb)
    with pytest.raises(ArgumentError, match="max_pixels"):
        _images.read_dicom(small, max_pixels=0)


def test_truncated_and_corrupt_png_and_jpeg_name_the_file(tmp_path):
    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg")):
        data = VALID_FILES[fmt]
        for name, content in {
            "half": data[: len(data) // 2],
            "header_only": data[:40],
            "garbage": data[:16] + bytes(range(256)) * 4,
        }.items():
            path = tmp_path / f"{name}{suffix}"
            path.write_bytes(content)
            with pytest.raises(ImageDecodeError, match=f"{name}{suffix}"):
                read_image(path)


def test_a_jpeg_cut_by_even_one_byte_is_refused_not_decoded_partially(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(VALID_FILES["JPEG"][:-1])
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg.*truncated"):
        read_image(path)


def test_a_png_without_its_iend_chunk_has_all_its_pixels_and_is_read(tmp_path):
    path = tmp_path / "no_iend.png"
    data = VALID_FILES["PNG"]
    assert data.endswith(b"IEND\xaeB`\x82")
    path.write_bytes(data[:-12])
    np.testing.assert_array_equal(read_image(path)[..., 0], GRADIENT)


# --------------------------------------------------------------------------------------
# Arrays: the reported cases
# --------------------------------------------------------------------------------------


def test_two_channel_array_is_refused_with_the_accepted_shapes():
    with pytest.raises(ImageDecodeError, match=r"\(H, W\), \(H, W, 1\), \(H, W, 3\) or \(H, W, 4\).*\(40, 40, 2\)"):
        to_rgb_uint8(np.zeros((40, 40, 2), np.uint8))


@pytest.mark.parametrize("shape", [(7,), (2, 5, 6, 3), (1, 2, 3, 4, 5), ()])
def test_other_shapes_are_refused(shape):
    with pytest.raises(ImageDecodeError, match="Received: array of shape"):
        to_rgb_uint8(np.zeros(shape, np.uint8))


def test_a_batch_is_pointed_to_predict():
    with pytest.raises(ImageDecodeError, match="predict"):
        to_rgb_uint8(np.zeros((2, 8, 8, 3), np.uint8))


def test_a_channels_first_array_gets_a_hint():
    with pytest.raises(ImageDecodeError, match="moveaxis"):
        to_rgb_uint8(np.zeros((3, 8, 8), np.uint8))


@pytest.mark.parametrize("shape", [(0, 5), (5, 0, 3), (0, 0, 1)])
def test_empty_arrays_are_refused(shape):
    with pytest.raises(ImageDecodeError, match="non-empty"):
        to_rgb_uint8(np.zeros(shape, np.uint8))


def test_a_float_image_is_never_read_on_a_0_255_scale():
    # The old code multiplied a 0..255 float image by 255 when its maximum was 1.0,
    # and read it as 0..255 otherwise. Now floats are [0, 1], always.
    dark = np.array([[0.0, 0.5, 1.0]])
    assert to_rgb_uint8(dark)[0, :, 0].tolist() == [0, 128, 255]  # the documented [0, 1] reading
    with pytest.raises(ImageDecodeError, match=r"Cast 0\.\.255 data to uint8.*Received: values from 0 to 200"):
        to_rgb_uint8(np.array([[0.0, 100.0, 200.0]]))
    assert to_rgb_uint8(np.array([[0.0, 100.0, 200.0]]).astype(np.uint8))[0, :, 0].tolist() == [0, 100, 200]


def test_minus_one_to_one_input_is_refused_not_clipped():
    with pytest.raises(ImageDecodeError, match=r"\(x - lo\) / \(hi - lo\).*Received: values from -1 to 1"):
        to_rgb_uint8(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
    rescaled = (np.linspace(-1, 1, 3) + 1) / 2
    assert to_rgb_uint8(rescaled[None])[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_floats_are_refused(value):
    array = np.full((3, 3), 0.5)
    array[1, 1] = value
    with pytest.raises(ImageDecodeError, match="NaN or infinity"):
        to_rgb_uint8(array)


def test_sixteen_bit_low_and_high_ranges_are_stretched_the_same_way(tmp_path):
    low = np.tile(np.arange(0, 201, 8, dtype=np.uint16), (3, 1))
    high = low + 1000
    for dtype in (np.uint16, np.int16):
        np.testing.assert_array_equal(to_rgb_uint8(low.astype(dtype)), to_rgb_uint8(high.astype(dtype)))
    assert to_rgb_uint8(low)[0, [0, -1], 0].tolist() == [0, 255]  # 0..200 is not kept as if 8-bit
    np.testing.assert_array_equal(to_rgb_uint8(low)[..., 0], stretch(low))
    for suffix in (".png", ".tif"):
        paths = [tmp_path / f"low{suffix}", tmp_path / f"high{suffix}"]
        Image.fromarray(low).save(paths[0])
        Image.fromarray(high).save(paths[1])
        np.testing.assert_array_equal(read_image(paths[0]), read_image(paths[1]))
        np.testing.assert_array_equal(read_image(paths[0]), to_rgb_uint8(low))
    assert to_rgb_uint8(np.full((2, 2), 700, np.uint16)).max() == 0  # constant: all zeros


def test_signed_sixteen_bit_with_negative_values_is_stretched():
    array = np.array([[-1024, 0, 1024]], np.int16)
    assert to_rgb_uint8(array)[0, :, 0].tolist() == [0, 128, 255]


def test_other_integer_dtypes_must_hold_8_bit_values():
    assert to_rgb_uint8(np.array([[0, 128, 255]], np.int64))[0, :, 0].tolist() == [0, 128, 255]
    for dtype in (np.int32, np.int64, np.uint32, np.int8):
        with pytest.raises(ImageDecodeError, match=r"uint16.*uint8.*Received: values from"):
            to_rgb_uint8(np.array([[-1 if dtype == np.int8 else 0, 100 if dtype == np.int8 else 4000]], dtype))


def test_object_and_string_dtypes_are_an_image_decode_error():
    for array in (np.array([[1, 2], [3, 4]], dtype=object), np.array([["a", "b"]]), np.ones((2, 2), complex)):
        with pytest.raises(ImageDecodeError, match=rf"dtype {array.dtype}"):
            to_rgb_uint8(array)


def test_sixteen_bit_rgba_reads_alpha_on_its_full_scale():
    rgba = np.zeros((1, 2, 4), np.uint16)
    rgba[0, :, :3] = [[0, 0, 0], [4000, 4000, 4000]]
    rgba[0, :, 3] = [65535, 65535]
    assert to_rgb_uint8(rgba)[0, :, 0].tolist() == [0, 255]
    rgba[0, :, 3] = 32768
    assert to_rgb_uint8(rgba)[0, :, 0].tolist() == [0, 128]


PIL_MODES = ["1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "LA", "La", "PA",
             "I", "I;16", "I;16B", "I;16L", "I;16N", "F"]


@pytest.mark.parametrize("mode", PIL_MODES)
def test_every_pillow_mode_decodes_or_raises_a_cxr_error(mode):
    try:
        rgb = to_rgb_uint8(Image.new(mode, (5, 4)))
    except CxrError:
        return
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "F"])
def test_an_empty_pil_image_is_refused(mode):
    with pytest.raises(ImageDecodeError, match="non-empty"):
        to_rgb_uint8(Image.new(mode, (0, 3)))


def test_a_nan_in_a_float_tiff_is_refused(tmp_path):
    path = tmp_path / "nan.tif"
    Image.fromarray(np.array([[0.0, np.nan]], np.float32)).save(path)
    with pytest.raises(ImageDecodeError, match=r"nan\.tif.*NaN"):
        read_image(path)


# --------------------------------------------------------------------------------------
# TIFF everywhere
# --------------------------------------------------------------------------------------


def test_tiff_files_are_found_in_a_folder_scan(tmp_path):
    assert {".tif", ".tiff"} <= set(IMAGE_SUFFIXES)
    from cxrclassify.datasets import records_from_folder

    (tmp_path / "normal").mkdir()
    for name in ("a.tif", "b.TIFF", "c.png"):
        Image.fromarray(GRADIENT).save(tmp_path / "normal" / name, format="TIFF" if "tif" in name.lower() else "PNG")
    assert all(is_image_file(path) for path in (tmp_path / "normal").iterdir())
    records = records_from_folder(tmp_path)
    assert sorted(Path(record.path).name for record in records) == ["a.tif", "b.TIFF", "c.png"]
    for record in records:
        np.testing.assert_array_equal(read_image(record.path)[..., 0], GRADIENT)


def test_sixteen_bit_and_float_tiffs_follow_the_stretch_rule(tmp_path):
    values = np.array([[1000, 1100, 1200]], np.uint16)
    for dtype in (np.uint16, np.int32, np.float32):
        path = tmp_path / f"x_{np.dtype(dtype).name}.tiff"
        Image.fromarray(values.astype(dtype)).save(path)
        assert read_image(path)[0, :, 0].tolist() == [0, 128, 255], dtype


def test_multi_frame_tiff_gives_its_first_frame(tmp_path):
    path = tmp_path / "pages.tif"
    frames = [Image.fromarray(np.full((4, 5), value, np.uint8)) for value in (10, 200, 90)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with Image.open(path) as image:
        assert image.n_frames == 3
    rgb = read_image(path)
    assert rgb.shape == (4, 5, 3) and (rgb == 10).all()


# --------------------------------------------------------------------------------------
# resize
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, -3, 1.5, "32", None, True, (0, 5), (5, -1), (5,), (5, 5, 5), (2.0, 3)])
def test_resize_refuses_sizes_that_are_not_positive_ints(size):
    with pytest.raises(ArgumentError, match=r"size.*Received: size="):
        resize(np.zeros((10, 10, 3), np.uint8), size)


def test_resize_refuses_what_is_not_an_rgb_uint8_array():
    for image in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), [[0]]):
        with pytest.raises(ArgumentError, match="image"):
            resize(image, 4)


@PROPERTY
@given(
    VALID_SHAPES.filter(lambda s: len(s) == 2),
    st.one_of(st.integers(1, 9), st.tuples(st.integers(1, 9), st.integers(1, 9))),
)
def test_resize_gives_the_size_asked_for(shape, size):
    rgb = to_rgb_uint8(np.zeros(shape, np.uint8))
    out = resize(rgb, size)
    expected = (size, size) if isinstance(size, int) else size
    assert out.shape == (*expected, 3) and out.dtype == np.uint8
