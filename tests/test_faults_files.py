"""Damaged files: truncated or corrupt archives (extract_archive, checked_archive_members) and .keras models.

Each test builds tiny files and damages them in one known way; the library must
answer with its own exception (DownloadError for archives, ModelError for models)
naming the file and saying what was found, never with zlib, zipfile, tarfile,
gzip or lzma's raw errors, and must leave nothing half-extracted under a final
name.
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

import cxrclassify
from cxrclassify import _archives
from cxrclassify._download import checked_archive_members, extract_archive
from cxrclassify.exceptions import CxrError, DownloadError, ModelError

FILES = {
    "data/NORMAL/a.jpeg": bytes(range(256)) * 12,
    "data/PNEUMONIA/b.jpeg": os.urandom(5000),
    "data/readme.txt": b"hello",
}
RAW_ERRORS = ("error", "BadZipFile", "EOFError", "ReadError", "BadGzipFile", "LZMAError")


def tar_bytes(mode: str = "w:gz", files: dict[str, bytes] = FILES) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tarred:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes] = FILES) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, data in files.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


def with_bad_crc(data: bytes, member: str) -> bytes:
    """The zip with ``member``'s recorded CRC-32 (local header and central directory) off by one bit."""
    crc = zipfile.ZipFile(io.BytesIO(data)).getinfo(member).CRC
    assert data.count(struct.pack("<I", crc)) == 2
    return data.replace(struct.pack("<I", crc), struct.pack("<I", crc ^ 1))


def extracted(target: Path) -> dict[str, bytes]:
    return {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}


def no_staging(target: Path) -> bool:
    return not target.exists() or not [p for p in target.iterdir() if p.name.startswith(".extracting-")]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def assert_library_error(caught: pytest.ExceptionInfo, path: Path) -> str:
    """The error is a DownloadError naming the archive, with the Expected/Received layout."""
    message = str(caught.value)
    assert isinstance(caught.value, DownloadError) and isinstance(caught.value, CxrError)
    assert str(path) in message and "Expected" in message and "Received:" in message
    return message


# --------------------------------------------------------------------------- damaged archives


TGZ = tar_bytes("w:gz")
ZIP = zip_bytes()

DAMAGED = {
    # name: (file name, bytes, words the message must hold)
    "truncated-tar.gz": ("a.tar.gz", TGZ[: len(TGZ) // 2], ["gzip-compressed tar", "truncated", "EOFError"]),
    "tar.gz-cut-in-header": ("a.tar.gz", TGZ[:12], ["gzip-compressed tar", "truncated at byte 12"]),
    "tar.gz-without-gzip-trailer": ("a.tar.gz", TGZ[:-4], ["truncated", "3 member(s)"]),
    "tar.gz-garbage-after-header": ("a.tar.gz", TGZ[:10] + bytes(range(256)) * 4, ["gzip-compressed tar", "zlib"]),
    "tar.gz-wrong-crc": ("a.tar.gz", TGZ[:-8] + bytes([TGZ[-8] ^ 1]) + TGZ[-7:], ["corrupt", "CRC check failed"]),
    "tar-cut-mid-member": ("a.tar", tar_bytes("w")[:1000], ["tar archive", "truncated", "data/NORMAL/a.jpeg"]),
    "tar-cut-between-members": ("a.tar", tar_bytes("w")[: 512 * 7], ["end-of-archive marker", "data/NORMAL/a.jpeg"]),
    "truncated-tar.xz": ("a.tar.xz", tar_bytes("w:xz")[:600], ["xz-compressed tar", "truncated"]),
    "truncated-tar.bz2": ("a.tar.bz2", tar_bytes("w:bz2")[:600], ["bzip2-compressed tar", "truncated"]),
    "zip-central-directory-cut": ("a.zip", ZIP[:-40], ["zip archive", "end-of-central-directory", "truncated"]),
    "zip-half": ("a.zip", ZIP[: len(ZIP) // 2], ["zip archive", f"truncated at byte {len(ZIP) // 2}"]),
    "empty-zip": ("a.zip", b"", ["zip archive", "empty file (0 bytes)"]),
    "empty-tar.gz": ("a.tar.gz", b"", ["tar archive (.tar.gz)", "empty file (0 bytes)"]),
    "text-named-zip": ("a.zip", b"PatientID,Finding\n1,COVID-19\n", ["not a zip archive", "PatientID"]),
    "html-named-zip": ("a.zip", b"<!DOCTYPE html><title>503</title>", ["not a zip archive", "web page"]),
    "empty-no-suffix": ("archive", b"", ["zip or tar", "empty file"]),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_archive_is_a_download_error_naming_it(tmp_path, case):
    name, data, words = DAMAGED[case]
    archive = write(tmp_path / name, data)
    target = tmp_path / "out"
    with pytest.raises(DownloadError) as caught:
        extract_archive(archive, target)
    message = assert_library_error(caught, archive)
    for word in words:
        assert word in message, (word, message)
    assert "delete it and download it again" in message  # not a cached download: the user is told how
    assert extracted(target) == {} and no_staging(target)
    assert archive.exists()  # not a cached download: the library leaves the user's file alone
    with pytest.raises(DownloadError) as again:
        checked_archive_members(archive, target)
    assert str(archive) in str(again.value)


@pytest.mark.parametrize("case", ["truncated-tar.gz", "tar.gz-garbage-after-header", "tar-cut-mid-member"])
def test_the_raw_error_is_the_cause_not_what_is_raised(tmp_path, case):
    name, data, _ = DAMAGED[case]
    archive = write(tmp_path / name, data)
    with pytest.raises(DownloadError) as caught:
        extract_archive(archive, tmp_path / "out")
    assert type(caught.value) is DownloadError
    cause = caught.value.__cause__
    assert cause is not None and type(cause).__name__ in RAW_ERRORS
    assert str(cause).split(":")[0] in str(caught.value)  # its text is in the message too


def test_zip_member_with_wrong_crc_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(_archives, "_CHUNK", 512)  # the bad CRC shows only after several chunks are written
    archive = write(tmp_path / "a.zip", with_bad_crc(ZIP, "data/PNEUMONIA/b.jpeg"))
    target = tmp_path / "out"
    with pytest.raises(DownloadError) as caught:
        extract_archive(archive, target)
    message = assert_library_error(caught, archive)
    assert "data/PNEUMONIA/b.jpeg" in message and "Bad CRC-32" in message and "of its 5000 bytes" in message
    assert "1 member(s) were extracted before it" in message
    # What is there is complete; the corrupt member is not under its name (a later call would skip it).
    assert extracted(target) == {"data/NORMAL/a.jpeg": FILES["data/NORMAL/a.jpeg"]}
    assert no_staging(target)
    # The archive repaired, a second call extracts what is missing and skips what is there.
    write(archive, ZIP)
    extract_archive(archive, target)
    assert extracted(target) == FILES


def test_zip_member_with_corrupt_data(tmp_path):
    info = zipfile.ZipFile(io.BytesIO(ZIP)).getinfo("data/NORMAL/a.jpeg")
    damaged = bytearray(ZIP)
    start = info.header_offset + 30 + len(info.filename)
    damaged[start : start + 8] = b"\xff" * 8  # the deflate stream itself
    archive = write(tmp_path / "a.zip", bytes(damaged))
    with pytest.raises(DownloadError) as caught:
        extract_archive(archive, tmp_path / "out", members=["data/NORMAL/a.jpeg"])
    message = assert_library_error(caught, archive)
    assert "member 'data/NORMAL/a.jpeg' is corrupt" in message
    assert not (tmp_path / "out" / "data" / "NORMAL" / "a.jpeg").exists() and no_staging(tmp_path / "out")


def test_complete_archives_still_extract(tmp_path):
    for name, data in (("a.zip", ZIP), ("a.tar.gz", TGZ), ("a.tar", tar_bytes("w")), ("a.tar.xz", tar_bytes("w:xz"))):
        target = tmp_path / f"out-{name}"
        extract_archive(write(tmp_path / name, data), target)
        assert extracted(target) == FILES and no_staging(target)


def test_bytes_after_a_complete_gzip_stream_are_ignored_with_a_warning(tmp_path, caplog):
    archive = write(tmp_path / "a.tar.gz", TGZ + b"trailing junk")
    with caplog.at_level(logging.WARNING, logger="cxrclassify"):
        extract_archive(archive, tmp_path / "out")
    assert extracted(tmp_path / "out") == FILES
    assert any("after the end of its gzip stream" in r.getMessage() for r in caplog.records)


def test_missing_archive_and_folder(tmp_path):
    with pytest.raises(DownloadError, match="not found"):
        extract_archive(tmp_path / "absent.zip", tmp_path / "out")
    with pytest.raises(DownloadError, match="not found"):
        checked_archive_members(tmp_path / "absent.zip", tmp_path / "out")
    with pytest.raises(DownloadError, match="a folder"):
        extract_archive(tmp_path, tmp_path / "out")


def cached(home: Path, name: str, data: bytes, **meta) -> Path:
    """A file as fetch leaves it in the cache: the file and its sidecar."""
    path = home / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    info = path.stat()
    sidecar = {"url": f"http://127.0.0.1:9/{name}", "size": info.st_size, "sha256": "0" * 64,
               "mtime_ns": info.st_mtime_ns, "verified_against": "unpinned", **meta}
    Path(str(path) + ".meta.json").write_text(json.dumps(sidecar))
    return path


def test_damaged_cached_download_is_dropped_from_the_cache(tmp_path, caplog):
    archive = cached(tmp_path / "cache", "nih/images_001.tar.gz", TGZ[: len(TGZ) // 2])
    with caplog.at_level(logging.WARNING, logger="cxrclassify._download"), pytest.raises(DownloadError) as caught:
        checked_archive_members(archive, tmp_path / "out")
    message = assert_library_error(caught, archive)
    assert "deleted from the cache" in message and "http://127.0.0.1:9/nih/images_001.tar.gz" in message
    assert not archive.exists() and not Path(str(archive) + ".meta.json").exists()
    assert any("deleted it from the cache" in r.getMessage() for r in caplog.records)


def test_damaged_pinned_download_says_the_source_may_be_damaged(tmp_path):
    archive = cached(tmp_path / "cache", "kermany/a.zip", ZIP[:-40], verified_against="sha256:" + "1" * 64)
    with pytest.raises(DownloadError, match="source itself holds a damaged archive"):
        extract_archive(archive, tmp_path / "out")
    assert not archive.exists()


def test_unsafe_cached_archive_is_refused_but_not_deleted(tmp_path):
    archive = cached(tmp_path / "cache", "evil.zip", zip_bytes({"ok.txt": b"fine", "../evil": b"pwned"}))
    with pytest.raises(DownloadError, match=r"\.\./evil") as caught:
        extract_archive(archive, tmp_path / "out")
    assert "deleted" not in str(caught.value)
    assert archive.exists()  # a safety refusal is not damage: the file stays for inspection


def test_cached_file_that_is_not_named_as_an_archive_is_kept(tmp_path):
    path = cached(tmp_path / "cache", "demo/metadata.csv", b"PatientID,Finding\n")
    with pytest.raises(DownloadError, match="zip or tar") as caught:
        extract_archive(path, tmp_path / "out")
    assert "metadata.csv.meta.json" in str(caught.value) and path.exists()


# --------------------------------------------------------------------------- damaged .keras files


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    cxrclassify.build_model("tinycnn", num_classes=2, weights=None).save(path)
    return path


def rewritten(source: Path, path: Path, change) -> Path:
    """A copy of the .keras zip with each member passed through ``change(name, data)`` (None drops it)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        for info in original.infolist():
            data = change(info.filename, original.read(info))
            if data is not None:
                copy.writestr(info, data)
    return path


def test_good_model_loads(saved_model):
    model = cxrclassify.load_model(saved_model)
    assert isinstance(model, cxrclassify.CxrClassifier) and model.arch == "tinycnn"


@pytest.mark.parametrize("keep", [0.5, 0.99, 100], ids=["half", "last-bytes-cut", "first-100-bytes"])
def test_truncated_keras_file_is_not_reported_missing(saved_model, tmp_path, keep):
    data = saved_model.read_bytes()
    cut = int(len(data) * keep) if keep < 1 else keep
    path = write(tmp_path / "model.keras", data[:cut])
    with pytest.raises(ModelError) as caught:
        cxrclassify.load_model(path)
    message = str(caught.value)
    assert str(path) in message and "not found" not in message.lower()
    assert "exists" in message and "truncated" in message and f"{cut} bytes" in message
    assert "zipfile: BadZipFile" in message  # the underlying error


def test_missing_keras_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.keras.*not found"):
        cxrclassify.load_model(tmp_path / "absent.keras")


def test_folder_instead_of_keras_file(tmp_path):
    with pytest.raises(ModelError, match="which is a folder"):
        cxrclassify.load_model(tmp_path)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ModelError, match="SavedModel.*savedmodel_predict"):
        cxrclassify.load_model(tmp_path / "export")


def test_empty_keras_file(tmp_path):
    path = write(tmp_path / "model.keras", b"")
    with pytest.raises(ModelError, match=r"model\.keras.*empty file \(0 bytes\)"):
        cxrclassify.load_model(path)


def test_zip_that_is_not_a_keras_model(tmp_path):
    path = write(tmp_path / "model.keras", zip_bytes({"weights.bin": b"x", "notes.txt": b"y"}))
    with pytest.raises(ModelError, match=r"model\.keras.*not a Keras model: it has no config\.json") as caught:
        cxrclassify.load_model(path)
    assert "weights.bin" in str(caught.value)


def test_other_files_named_keras(tmp_path):
    path = write(tmp_path / "model.keras", b"just some text\n")
    with pytest.raises(ModelError, match=r"exists .* not a \.keras \(zip\) archive.*just som"):
        cxrclassify.load_model(path)
    path = write(tmp_path / "old.keras", b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelError, match=r"old\.keras.*HDF5 file.*weights=path"):
        cxrclassify.load_model(path)


def test_keras_archive_with_a_corrupt_member(saved_model, tmp_path):
    data = saved_model.read_bytes()
    with zipfile.ZipFile(saved_model) as original:
        info = original.getinfo("config.json")
    crc = struct.pack("<I", info.CRC)
    path = write(tmp_path / "model.keras", data.replace(crc, struct.pack("<I", info.CRC ^ 1)))
    with pytest.raises(ModelError) as caught:
        cxrclassify.load_model(path)
    message = str(caught.value)
    assert str(path) in message and "damaged" in message and "BadZipFile" in message


def test_keras_archive_with_truncated_weights(saved_model, tmp_path):
    path = rewritten(saved_model, tmp_path / "model.keras",
                     lambda name, data: data[: len(data) // 2] if name.endswith(".h5") else data)
    with pytest.raises(ModelError) as caught:
        cxrclassify.load_model(path)
    message = str(caught.value)
    assert str(path) in message and "weights are cut short" in message and "truncated" in message


def test_keras_archive_without_weights(saved_model, tmp_path):
    path = rewritten(saved_model, tmp_path / "model.keras", lambda name, data: None if name.endswith(".h5") else data)
    with pytest.raises(ModelError, match=r"model\.keras.*could not load.*weights"):
        cxrclassify.load_model(path)


def test_keras_model_under_another_name(saved_model, tmp_path):
    path = write(tmp_path / "model.zip", saved_model.read_bytes())
    with pytest.raises(ModelError, match=r"rename it to end with \.keras"):
        cxrclassify.load_model(path)


def test_safe_mode_still_refuses_a_lambda(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelError, match=r"lambda\.keras.*safe_mode"):
        cxrclassify.load_model(path)
