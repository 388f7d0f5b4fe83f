"""DICOM input: windowing, rescale, MONOCHROME1, color, errors, folders mixing DICOM, PNG and JPEG."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

import cxrclassify  # noqa: E402
from cxrclassify.datasets import IMAGE_SUFFIXES, read_image, to_rgb_uint8  # noqa: E402
from cxrclassify.datasets import _dicom  # noqa: E402
from cxrclassify.datasets._images import is_image_file  # noqa: E402
from cxrclassify.exceptions import DataError, ImageDecodeError  # noqa: E402

from conftest import write_image  # noqa: E402

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
PYDICOM_3 = int(pydicom.__version__.split(".")[0]) >= 3


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    sop_class: str = DX_IMAGE_STORAGE,
    transfer_syntax: str = ExplicitVRLittleEndian,
    frames: int | None = None,
    **elements,
) -> Path:
    """Write a DICOM Part 10 file holding ``pixels`` (``None``: no pixel data).

    ``pixels`` is ``(rows, columns)``, ``(frames, rows, columns)`` with ``frames``,
    or ``(rows, columns, 3)`` for color; int16 pixels are written as signed.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "anonymous"
    ds.Modality = "SR" if sop_class == BASIC_TEXT_SR else "DX"
    if pixels is not None:
        color = pixels.ndim == 3 and frames is None
        rows, columns = pixels.shape[-3:-1] if color else pixels.shape[-2:]
        ds.Rows, ds.Columns = int(rows), int(columns)
        ds.SamplesPerPixel = 3 if color else 1
        if color:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 8 * pixels.dtype.itemsize
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
        if frames is not None:
            ds.NumberOfFrames = frames
        if transfer_syntax == ExplicitVRLittleEndian:
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
        else:  # encapsulated (compressed) pixel data: garbage fragments
            from pydicom.encaps import encapsulate

            ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not really a codestream " * 4])
            ds["PixelData"].VR = "OB"
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if PYDICOM_3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.4
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


def gradient(low: int = 0, high: int = 4095, *, shape=(4, 256), dtype=np.uint16) -> np.ndarray:
    """A horizontal ramp from ``low`` to ``high``: dark on the left, bright on the right."""
    return np.tile(np.linspace(low, high, shape[1]), (shape[0], 1)).round().astype(dtype)


def is_monotone(row: np.ndarray) -> bool:
    return bool(np.all(np.diff(row.astype(int)) >= 0))


@pytest.fixture(autouse=True)
def _fresh_first_frame_warning(monkeypatch):
    monkeypatch.setattr(_dicom, "_first_frame_warning_shown", False)


# (a) to (e): pixel values --------------------------------------------------------------


def test_monochrome2_twelve_bit_gradient_fills_the_eight_bit_range(tmp_path):
    path = write_dicom(tmp_path / "xray.dcm", gradient())
    rgb = read_image(path)
    assert rgb.shape == (4, 256, 3) and rgb.dtype == np.uint8
    assert rgb.min() == 0 and rgb.max() == 255
    assert is_monotone(rgb[0, :, 0])
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    # linear scaling of the whole 12-bit range, not the top 8 bits
    assert np.abs(rgb[0, :, 0].astype(int) - np.arange(256)).max() <= 1
    assert np.array_equal(to_rgb_uint8(str(path)), rgb)


@pytest.mark.parametrize("window", [{}, {"WindowCenter": 1500, "WindowWidth": 2000}])
def test_monochrome1_is_inverted(tmp_path, window):
    data = gradient()
    mono2 = read_image(write_dicom(tmp_path / "mono2.dcm", data, **window))
    mono1 = read_image(write_dicom(tmp_path / "mono1.dcm", data, photometric="MONOCHROME1", **window))
    assert np.array_equal(mono1, 255 - mono2)
    assert mono1[0, 0, 0] == 255 and mono1[0, -1, 0] == 0  # low values show white in MONOCHROME1


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    stored = gradient(-512, 511, dtype=np.int16)
    window = {"WindowCenter": -600, "WindowWidth": 800}  # in rescaled units
    rescaled = read_image(
        write_dicom(tmp_path / "rescaled.dcm", stored, RescaleSlope=2, RescaleIntercept=-1024, **window)
    )
    # the same image, stored already rescaled
    equivalent = read_image(write_dicom(tmp_path / "equivalent.dcm", (2 * stored - 1024).astype(np.int16), **window))
    assert np.abs(rescaled.astype(int) - equivalent.astype(int)).max() <= 1
    assert rescaled.min() == 0 and rescaled.max() == 255 and is_monotone(rescaled[0, :, 0])
    # ignoring the rescale would put the window elsewhere
    ignored = read_image(write_dicom(tmp_path / "ignored.dcm", stored, **window))
    assert np.abs(rescaled.astype(int) - ignored.astype(int)).max() > 100


def test_rescale_without_window_keeps_the_full_range(tmp_path):
    stored = gradient(-2048, 2047, dtype=np.int16)
    rgb = read_image(write_dicom(tmp_path / "ct_like.dcm", stored, RescaleSlope=1, RescaleIntercept=-1024))
    assert rgb.min() == 0 and rgb.max() == 255 and is_monotone(rgb[0, :, 0])


def test_window_narrower_than_the_data_clips_outside_and_is_linear_inside(tmp_path):
    data = gradient(0, 4095, shape=(2, 4096))
    center, width = 2048, 1024
    # multi-valued: the first window is used
    rgb = read_image(write_dicom(tmp_path / "window.dcm", data, WindowCenter=[center, 500], WindowWidth=[width, 100]))
    values = data[0].astype(float)
    gray = rgb[0, :, 0].astype(int)
    assert np.all(gray[values <= center - width / 2 - 1] == 0)
    assert np.all(gray[values >= center + width / 2] == 255)
    inside = (values > center - width / 2) & (values < center + width / 2 - 1)
    expected = ((values[inside] - (center - 0.5)) / (width - 1) + 0.5) * 255  # DICOM LINEAR window
    assert np.abs(gray[inside] - expected).max() <= 1
    assert is_monotone(gray) and len(np.unique(gray[inside])) > 200


def test_no_window_clips_nothing(tmp_path):
    data = gradient(100, 3000)  # uses part of the 12-bit range only
    rgb = read_image(write_dicom(tmp_path / "nowindow.dcm", data))
    gray = rgb[..., 0]
    assert gray.min() == 0 and gray.max() == 255 and is_monotone(gray[0])
    # only the darkest and brightest values reach 0 and 255
    assert np.count_nonzero(gray == 0) == np.count_nonzero(data == data.min())
    assert np.count_nonzero(gray == 255) == np.count_nonzero(data == data.max())


def test_unusable_window_falls_back_to_the_full_range(tmp_path):
    path = write_dicom(tmp_path / "zero_width.dcm", gradient(100, 3000), WindowCenter=1000, WindowWidth=0)
    with pytest.warns(UserWarning, match="zero_width.dcm.*full data range"):
        rgb = read_image(path)
    assert rgb.min() == 0 and rgb.max() == 255 and is_monotone(rgb[0, :, 0])


def _voi_lut_item(lut: np.ndarray) -> Dataset:
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [len(lut), 0, 16])
    item.add_new("LUTData", "OW", lut.astype("<u2").tobytes())
    return item


def test_voi_lut_sequence_is_used_without_a_window(tmp_path):
    data = gradient(0, 2047)
    identity = np.arange(4096, dtype=np.uint16)
    path = write_dicom(tmp_path / "voi.dcm", data, VOILUTSequence=[_voi_lut_item(identity)])
    gray = read_image(path)[0, :, 0].astype(int)
    # the LUT's output range (0..4095) maps to 0..255: data up to 2047 stays below 128
    assert gray.min() == 0 and 126 <= gray.max() <= 128 and is_monotone(gray)
    # a window takes precedence over the VOI LUT sequence
    windowed = write_dicom(
        tmp_path / "both.dcm", data, VOILUTSequence=[_voi_lut_item(identity)], WindowCenter=1024, WindowWidth=2048
    )
    assert read_image(windowed)[0, :, 0].max() == 255


def test_multi_frame_reads_the_first_frame_and_warns_once(tmp_path):
    first = gradient()
    frames = np.stack([first, first[:, ::-1], np.zeros_like(first)])
    path = write_dicom(tmp_path / "cine.dcm", frames, frames=3)
    with pytest.warns(UserWarning, match="only the first frame"):
        rgb = read_image(path)
    assert np.array_equal(rgb, read_image(write_dicom(tmp_path / "single.dcm", first)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(path)  # no second warning


def test_rgb_dicom_comes_out_as_rgb(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(6, 7, 3)).astype(np.uint8)
    path = write_dicom(tmp_path / "photo.dcm", rgb, photometric="RGB", bits_stored=8, sop_class=SECONDARY_CAPTURE)
    assert np.array_equal(read_image(path), rgb)


def test_ybr_full_dicom_is_converted_to_rgb(tmp_path, rng):
    try:
        from pydicom.pixels import convert_color_space
    except ImportError:  # pydicom 2.4
        from pydicom.pixel_data_handlers.util import convert_color_space
    rgb = rng.integers(0, 256, size=(6, 7, 3)).astype(np.uint8)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    path = write_dicom(tmp_path / "ybr.dcm", ybr, photometric="YBR_FULL", bits_stored=8, sop_class=SECONDARY_CAPTURE)
    assert np.abs(read_image(path).astype(int) - rgb.astype(int)).max() <= 2


def test_palette_color_dicom_comes_out_as_rgb(tmp_path):
    indices = np.tile(np.arange(256, dtype=np.uint8), (2, 1))
    ramp = np.linspace(0, 65535, 256).astype("<u2")
    tables = {"Red": ramp, "Green": np.zeros(256, "<u2"), "Blue": ramp[::-1].copy()}
    path = write_dicom(
        tmp_path / "palette.dcm", indices, photometric="PALETTE COLOR", bits_stored=8, sop_class=SECONDARY_CAPTURE
    )
    ds = pydicom.dcmread(path)
    for color, table in tables.items():  # 16-bit lookup tables: red up, blue down
        ds.add_new(f"{color}PaletteColorLookupTableDescriptor", "US", [256, 0, 16])
        ds.add_new(f"{color}PaletteColorLookupTableData", "OW", table.tobytes())
    ds.save_as(path)
    rgb = read_image(path)
    assert rgb.shape == (2, 256, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 255] and rgb[0, -1].tolist() == [255, 0, 0]
    assert np.abs(rgb[0, :, 0].astype(int) - np.arange(256)).max() <= 1


# (f) to (i), (k): errors and detection -------------------------------------------------


def test_file_without_pixel_data_names_the_file(tmp_path):
    path = write_dicom(tmp_path / "report.dcm", None, sop_class=BASIC_TEXT_SR)
    with pytest.raises(ImageDecodeError, match=r"report\.dcm.*has no pixel data \(it may be a structured report") as caught:
        read_image(path)
    assert isinstance(caught.value, DataError)


def test_compressed_transfer_syntax_that_cannot_be_decoded_names_file_and_syntax(tmp_path):
    path = write_dicom(tmp_path / "j2k.dcm", np.zeros((8, 8), np.uint16), transfer_syntax=JPEG2000_LOSSLESS)
    with pytest.raises(ImageDecodeError) as caught:
        read_image(path)
    message = str(caught.value)
    assert "j2k.dcm" in message and JPEG2000_LOSSLESS in message and "JPEG 2000" in message
    assert "pylibjpeg-openjpeg" in message and "python-gdcm" in message


def test_missing_decoder_says_what_to_install(tmp_path):
    if not PYDICOM_3:
        pytest.skip("pydicom 3 reports which decoders are installed")
    from pydicom.pixels import get_decoder

    if get_decoder(JPEG_LS_LOSSLESS).is_available:
        pytest.skip("a JPEG-LS decoder is installed")
    path = write_dicom(tmp_path / "jls.dcm", np.zeros((8, 8), np.uint16), transfer_syntax=JPEG_LS_LOSSLESS)
    with pytest.raises(ImageDecodeError, match=r"jls\.dcm.*JPEG-LS.*1\.2\.840\.10008\.1\.2\.4\.80.*no installed decoder"):
        read_image(path)


def test_non_dicom_file_with_dcm_suffix_names_the_file(tmp_path):
    path = tmp_path / "not_dicom.dcm"
    path.write_bytes(b"this is a text file, not a DICOM file" * 10)
    with pytest.raises(ImageDecodeError, match=r"not_dicom\.dcm.*expected a DICOM file"):
        read_image(path)


def test_truncated_dicom_names_the_file(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", gradient())
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ImageDecodeError, match=r"cut\.dcm"):
        read_image(path)


def test_missing_dicom_file_names_the_file(tmp_path):
    with pytest.raises(ImageDecodeError, match=r"not found.*absent\.dcm"):
        read_image(tmp_path / "absent.dcm")


@pytest.mark.parametrize("name", ["IM000001", "export.img", "mislabelled.png"])
def test_dicom_is_recognised_by_its_preamble_whatever_its_suffix(tmp_path, name):
    path = write_dicom(tmp_path / name, gradient())
    assert _dicom.has_dicom_preamble(path)
    assert np.array_equal(read_image(path), read_image(write_dicom(tmp_path / "same.dcm", gradient())))


def test_without_pydicom_reading_dicom_says_how_to_install_it(tmp_path, monkeypatch):
    with_suffix = write_dicom(tmp_path / "xray.dcm", gradient())
    by_preamble = write_dicom(tmp_path / "IM0001", gradient())
    monkeypatch.setitem(sys.modules, "pydicom", None)
    for path in (with_suffix, by_preamble):
        with pytest.raises(ImageDecodeError, match=r"cxrclassify\[dicom\]") as caught:
            read_image(path)
        assert path.name in str(caught.value)


# (j): folders ------------------------------------------------------------------------


def test_dicom_suffixes_are_scanned(tmp_path):
    assert {".dcm", ".dicom", ".png", ".jpg", ".jpeg"} <= set(IMAGE_SUFFIXES)
    for name in ("a.dcm", "b.DCM", "c.dicom"):
        (tmp_path / name).write_bytes(b"")
        assert is_image_file(tmp_path / name)


def test_load_datasets_reads_a_folder_mixing_dicom_png_and_jpeg(tmp_path, rng):
    root = tmp_path / "hospital"
    for label, offset in (("covid19", 2000), ("normal", 0)):
        folder = root / label
        folder.mkdir(parents=True)
        noise = rng.integers(0, 1500, size=(3, 20, 24))
        write_dicom(folder / f"{label}_0.dcm", (noise[0] + offset).astype(np.uint16))
        write_dicom(folder / f"{label}_1.dicom", (noise[1] + offset).astype(np.uint16), photometric="MONOCHROME1")
        write_dicom(folder / f"{label}_2.DCM", (noise[2] + offset).astype(np.uint16), WindowCenter=1800, WindowWidth=3600)
        write_image(folder / f"{label}_3.png", rng, size=(24, 20), brightness=offset // 20)
        write_image(folder / f"{label}_4.jpg", rng, size=(24, 20), brightness=offset // 20)
    data = cxrclassify.load_datasets(
        root, image_size=16, validation_fraction=0.2, test_fraction=0.2, progress=False
    )
    assert data.class_names == ["covid19", "normal"]
    paths = [path for _, split in data.items() for path in split.paths]
    assert len(paths) == 10
    assert {Path(path).suffix for path in paths} == {".dcm", ".dicom", ".DCM", ".png", ".jpg"}
    for _, split in data.items():
        assert split.images.shape[1:] == (16, 16, 3) and split.images.dtype == np.uint8
