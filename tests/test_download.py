"""The download machinery (fetch, the cache, mirrors, extract_archive), all against a loopback server."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import threading
import time
import warnings
import zipfile
from pathlib import Path

import pytest
from loopback_server import LoopbackServer

from cxrclassify import _cache, _download
from cxrclassify._download import (
    RemoteFile,
    cache_info,
    checked_archive_members,
    clear_data_home,
    extract_archive,
    fetch,
    file_sha256,
    get_data_home,
    git_blob_sha1,
)
from cxrclassify.exceptions import ChecksumError, DataError, DownloadError, UnverifiedDownloadWarning

FAST = {"progress": False, "backoff": 0.01, "timeout": 5.0}
NAME = "source/v1/images/scan 1.bin"
PATH = "/files/scan 1.bin"
#: No server listens here: a record's URL that must never be used.
DEAD_URL = "http://127.0.0.1:9/never-used.bin"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_sha1(data: bytes) -> str:
    """Git's blob hash by its formula, as ``git hash-object`` computes it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("CXRCLASSIFY_HOME", str(folder))
    return folder


@pytest.fixture
def content() -> bytes:
    return os.urandom(300_000)


@pytest.fixture
def served(tmp_path, content):
    """A server of tmp_path/www holding files/scan 1.bin (300 kB of random bytes)."""
    root = tmp_path / "www"
    (root / "files").mkdir(parents=True)
    (root / "files" / "scan 1.bin").write_bytes(content)
    with LoopbackServer(root) as server:
        yield server


def remote_for(server, content: bytes, **fields) -> RemoteFile:
    defaults = {"name": NAME, "url": server.url + "/files/scan%201.bin", "size": len(content),
                "sha256": sha256(content)}
    defaults.update(fields)
    return RemoteFile(**defaults)


def dest_of(home: Path, name: str = NAME) -> Path:
    return home.joinpath(*name.split("/"))


def leftovers(home: Path, name: str = NAME) -> list[str]:
    folder = dest_of(home, name).parent
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


# --------------------------------------------------------------------------- fetch over HTTP


def test_fetch_downloads_verifies_and_writes_sidecar(home, served, content):
    path = fetch(remote_for(served, content), **FAST)
    assert path == dest_of(home)
    assert path.read_bytes() == content
    meta = json.loads(Path(str(path) + ".meta.json").read_text())
    assert meta["size"] == len(content) and meta["sha256"] == sha256(content)
    assert meta["mtime_ns"] == path.stat().st_mtime_ns
    assert meta["verified_against"] == f"sha256:{sha256(content)}"
    assert meta["url"].endswith("/files/scan%201.bin")
    assert leftovers(home) == ["scan 1.bin", "scan 1.bin.meta.json"]
    assert served.requests_for(PATH) == [None]


def test_progress_bar_does_not_break_the_download(home, served, content):
    path = fetch(remote_for(served, content), progress=True, backoff=0.01)
    assert path.read_bytes() == content


def test_cache_hit_makes_no_request_and_no_rehash(home, served, content, monkeypatch):
    remote = remote_for(served, content)
    fetch(remote, **FAST)

    def no_hashing(*args, **kwargs):
        raise AssertionError("a cache hit with a matching sidecar must not re-hash")

    monkeypatch.setattr(_download, "_digests", no_hashing)
    assert fetch(remote, **FAST).read_bytes() == content
    assert len(served.requests) == 1


def test_cache_without_sidecar_is_rehashed_not_refetched(home, served, content):
    remote = remote_for(served, content)
    path = fetch(remote, **FAST)
    Path(str(path) + ".meta.json").unlink()
    assert fetch(remote, **FAST) == path
    assert len(served.requests) == 1
    assert Path(str(path) + ".meta.json").is_file()


def test_resume_after_connection_dropped_mid_file(home, served, content):
    served.drop_after(PATH, 150_000)
    path = fetch(remote_for(served, content), **FAST)
    assert path.read_bytes() == content
    ranges = served.requests_for(PATH)
    assert len(ranges) == 2 and ranges[0] is None
    assert ranges[1] is not None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    assert int(ranges[1][len("bytes="):-1]) > 0
    assert leftovers(home) == ["scan 1.bin", "scan 1.bin.meta.json"]


def test_resume_of_a_part_left_by_an_earlier_run(home, served, content):
    part = Path(str(dest_of(home)) + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(content[:100_000])
    path = fetch(remote_for(served, content), **FAST)
    assert path.read_bytes() == content
    assert served.requests_for(PATH) == ["bytes=100000-"]
    assert not part.exists()


def test_corrupt_part_from_earlier_run_is_downloaded_again_from_zero(home, served, content):
    part = Path(str(dest_of(home)) + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # not the start of the file
    path = fetch(remote_for(served, content), **FAST)
    assert path.read_bytes() == content
    assert served.requests_for(PATH) == ["bytes=1000-", None]


def test_server_without_range_support_restarts_cleanly(home, served, content):
    served.disable_range()
    part = Path(str(dest_of(home)) + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(content[:100_000])
    served.drop_after(PATH, 150_000)
    path = fetch(remote_for(served, content), **FAST)
    assert path.read_bytes() == content
    ranges = served.requests_for(PATH)
    assert len(ranges) == 2 and all(r is not None for r in ranges)  # asked to resume, got 200s, truncated


def test_checksum_mismatch_raises_and_leaves_nothing(home, served, content):
    wrong = sha256(b"something else")
    remote = remote_for(served, content, sha256=wrong)
    with pytest.raises(ChecksumError) as caught:
        fetch(remote, **FAST)
    message = str(caught.value)
    assert NAME in message and remote.url in message
    assert wrong in message and sha256(content) in message
    assert "mirror" not in message
    assert leftovers(home) == []


def test_size_mismatch_raises(home, served, content):
    with pytest.raises(ChecksumError, match="Expected 5 bytes"):
        fetch(remote_for(served, content, size=5, sha256=None), **FAST)
    assert leftovers(home) == []


def test_git_blob_sha1_verification(home, served, content, tmp_path):
    expected = blob_sha1(content)
    sample = tmp_path / "sample.bin"
    sample.write_bytes(content)
    assert git_blob_sha1(sample) == expected
    assert file_sha256(sample) == sha256(content)
    if shutil.which("git"):
        printed = subprocess.run(["git", "hash-object", str(sample)], capture_output=True, text=True, check=True)
        assert printed.stdout.strip() == expected
    path = fetch(remote_for(served, content, sha256=None, git_blob_sha1=expected), **FAST)
    assert path.read_bytes() == content
    meta = json.loads(Path(str(path) + ".meta.json").read_text())
    assert meta["verified_against"] == f"git_blob_sha1:{expected}" and meta["sha256"] == sha256(content)

    other = remote_for(served, content, name="other/scan.bin", sha256=None, git_blob_sha1=blob_sha1(b"x"))
    with pytest.raises(ChecksumError, match="git_blob_sha1"):
        fetch(other, **FAST)
    assert leftovers(home, "other/scan.bin") == []


def test_known_hashes_override_the_record_for_a_mirror_of_modified_files(home, tmp_path, content):
    modified = content[:1000] + b"re-encoded"
    mirror = tmp_path / "mirror"
    (mirror / "source" / "images").mkdir(parents=True)
    (mirror / "source" / "images" / "scan.bin").write_bytes(modified)
    with LoopbackServer(mirror) as server:
        remote = RemoteFile(name=NAME, url=DEAD_URL, mirror_path="source/images/scan.bin",
                            size=len(content), sha256=sha256(content))
        with pytest.raises(ChecksumError) as caught:
            fetch(remote, mirror=server.url, **FAST)
        assert "a mirror of modified files needs verify=False or known_hashes" in str(caught.value)
        assert leftovers(home) == []
        path = fetch(remote, mirror=server.url, known_hashes={NAME: sha256(modified)}, **FAST)
        assert path.read_bytes() == modified
        # a later call with the same manifest is a cache hit
        fetch(remote, mirror=server.url, known_hashes={NAME: sha256(modified)}, **FAST)
        assert len(server.requests) == 2
        with pytest.raises(ChecksumError):
            fetch(remote_for(server, content, name="b.bin", url=DEAD_URL, mirror_path="source/images/scan.bin"),
                  mirror=server.url, known_hashes={"b.bin": sha256(b"not it")}, **FAST)


def test_verify_false_warns_and_records_the_sha256(home, served, content):
    remote = remote_for(served, content, sha256=sha256(b"stale record"))
    with pytest.warns(UserWarning, match="verify=False") as record:
        path = fetch(remote, verify=False, **FAST)
    assert len(record) == 1 and record[0].filename == __file__  # stacklevel=2: the caller's line
    assert path.read_bytes() == content
    meta = json.loads(Path(str(path) + ".meta.json").read_text())
    assert meta["sha256"] == sha256(content) and meta["verified_against"] == "unverified"
    with pytest.warns(UserWarning, match="verify=False"):
        fetch(remote, verify=False, **FAST)
    assert len(served.requests) == 1


def test_unknown_hash_warns_then_detects_a_corrupted_cache(home, served, content, caplog):
    remote = remote_for(served, content, sha256=None, size=None)
    with pytest.warns(UserWarning, match="was not verified") as record:
        path = fetch(remote, **FAST)
    message = str(record[0].message)
    assert sha256(content) in message and str(len(content)) in message and "known_hashes" in message
    meta = json.loads(Path(str(path) + ".meta.json").read_text())
    assert meta["sha256"] == sha256(content) and meta["verified_against"] == "unpinned"

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified cache hit is silent
        fetch(remote, **FAST)
    assert len(served.requests) == 1

    corrupted = bytearray(content)
    corrupted[1000] ^= 0xFF
    before = path.stat().st_mtime_ns
    path.write_bytes(bytes(corrupted))
    # Coarse file-system clocks could leave the mtime unchanged within a few ms; a real rewrite moves it.
    os.utime(path, ns=(before + 10**9, before + 10**9))
    with caplog.at_level(logging.WARNING, logger="cxrclassify._download"), pytest.warns(UserWarning):
        again = fetch(remote, **FAST)
    assert again.read_bytes() == content
    assert len(served.requests) == 2
    assert any("fails verification" in r.getMessage() for r in caplog.records)


def test_pinning_with_known_hashes_silences_the_warning(home, served, content):
    remote = remote_for(served, content, sha256=None, size=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fetch(remote, known_hashes={NAME: sha256(content)}, **FAST)


def test_http_404_fails_at_once(home, served, content):
    remote = remote_for(served, content, url=served.url + "/files/missing.bin")
    with pytest.raises(DownloadError, match="404") as caught:
        fetch(remote, **FAST)
    assert remote.url in str(caught.value) and not isinstance(caught.value, ChecksumError)
    assert served.requests == [("/files/missing.bin", None)]
    assert leftovers(home) == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_transient_http_error_is_retried(home, served, content, status):
    served.fail_next(PATH, status=status)
    assert fetch(remote_for(served, content), **FAST).read_bytes() == content
    assert served.requests_for(PATH) == [None, None]


def test_retries_exhausted(home, served, content):
    served.fail_next(PATH, status=502, times=10)
    with pytest.raises(DownloadError, match="HTTP 502") as caught:
        fetch(remote_for(served, content), retries=2, **FAST)
    assert served.url in str(caught.value)
    assert len(served.requests_for(PATH)) == 3
    assert leftovers(home) == []


def test_dropped_connections_exhausting_retries_keep_the_part_for_a_later_call(home, served, content):
    served.drop_after(PATH, 70_000, times=2)
    with pytest.raises(DownloadError):
        fetch(remote_for(served, content), retries=1, **FAST)
    part = Path(str(dest_of(home)) + ".part")
    kept = part.stat().st_size
    assert 0 < kept < len(content) and not dest_of(home).exists()
    assert fetch(remote_for(served, content), **FAST).read_bytes() == content
    assert served.requests_for(PATH)[-1] == f"bytes={kept}-"
    assert not part.exists()


def test_timeout(home, served, content):
    served.delay(PATH, 3.0)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="Timeout"):
        fetch(remote_for(served, content), retries=1, progress=False, backoff=0.01, timeout=0.5)
    assert time.monotonic() - start < 2.5
    assert len(served.requests_for(PATH)) == 2
    assert not dest_of(home).exists()


def test_bad_arguments(home, served, content):
    with pytest.raises(DataError, match="retries"):
        fetch(remote_for(served, content), retries=-1)
    with pytest.raises(DataError, match="mirror"):
        fetch(remote_for(served, content), mirror="ftp://example.org/data")
    with pytest.raises(DataError, match="known_hashes"):
        fetch(remote_for(served, content), known_hashes={NAME: "not-a-hash"})


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape.bin", "a/../../b", "a//b", "a\\b", "", "C:/x"])
def test_remote_file_rejects_unsafe_names(name):
    with pytest.raises(DataError, match="relative POSIX path"):
        RemoteFile(name=name, url=DEAD_URL)


def test_remote_file_normalises_hashes():
    remote = RemoteFile(name="a", url=DEAD_URL, sha256="SHA256:" + "AB" * 32, git_blob_sha1="CD" * 20)
    assert remote.sha256 == "ab" * 32 and remote.git_blob_sha1 == "cd" * 20
    with pytest.raises(DataError, match="sha256"):
        RemoteFile(name="a", url=DEAD_URL, sha256="abc")


# --------------------------------------------------------------------------- mirrors


@pytest.fixture
def mirror_folder(tmp_path, content) -> Path:
    folder = tmp_path / "mirror"
    (folder / "ds-mirror" / "images").mkdir(parents=True)
    (folder / "ds-mirror" / "images" / "a b.bin").write_bytes(content)
    return folder


def test_local_folder_mirror(home, mirror_folder, content):
    remote = RemoteFile(name="ds/v1/images/a b.bin", url=DEAD_URL, mirror_path="ds-mirror/images/a b.bin",
                        size=len(content), sha256=sha256(content))
    path = fetch(remote, mirror=mirror_folder, **FAST)
    assert path == home / "ds" / "v1" / "images" / "a b.bin" and path.read_bytes() == content
    assert json.loads(Path(str(path) + ".meta.json").read_text())["url"] == str(mirror_folder / remote.mirror_path)
    assert fetch(remote, mirror=str(mirror_folder), **FAST) == path


def test_file_url_mirror(home, mirror_folder, content):
    remote = RemoteFile(name="ds/v1/a.bin", url=DEAD_URL, mirror_path="ds-mirror/images/a b.bin",
                        sha256=sha256(content))
    path = fetch(remote, mirror=mirror_folder.as_uri(), **FAST)
    assert path.read_bytes() == content


def test_local_mirror_of_modified_file_needs_verify_false(home, mirror_folder, content):
    remote = RemoteFile(name="ds/v1/a.bin", url=DEAD_URL, mirror_path="ds-mirror/images/a b.bin",
                        sha256=sha256(b"the original"))
    with pytest.raises(ChecksumError, match="a mirror of modified files needs verify=False or known_hashes"):
        fetch(remote, mirror=mirror_folder, **FAST)
    assert leftovers(home, "ds/v1/a.bin") == []
    with pytest.warns(UserWarning, match="verify=False"):
        assert fetch(remote, mirror=mirror_folder, verify=False, **FAST).read_bytes() == content


def test_missing_file_in_local_mirror(home, mirror_folder):
    remote = RemoteFile(name="ds/v1/gone.bin", url=DEAD_URL, mirror_path="ds-mirror/images/gone.bin")
    with pytest.raises(DownloadError, match="gone.bin") as caught:
        fetch(remote, mirror=mirror_folder, **FAST)
    assert str(mirror_folder / "ds-mirror" / "images" / "gone.bin") in str(caught.value)
    assert leftovers(home, "ds/v1/gone.bin") == []


def test_http_mirror_path_composition(home, mirror_folder, content):
    with LoopbackServer(mirror_folder.parent) as server:
        remote = RemoteFile(name="ds/v1/images/a b.bin", url=DEAD_URL, mirror_path="ds-mirror/images/a b.bin",
                            sha256=sha256(content))
        path = fetch(remote, mirror=server.url + "/mirror/", **FAST)
        assert path.read_bytes() == content
        assert server.requests == [("/mirror/ds-mirror/images/a b.bin", None)]
        meta = json.loads(Path(str(path) + ".meta.json").read_text())
        assert meta["url"] == server.url + "/mirror/ds-mirror/images/a%20b.bin"


def test_mirror_path_defaults_to_name(home, tmp_path, content):
    (tmp_path / "m" / "ds").mkdir(parents=True)
    (tmp_path / "m" / "ds" / "x.bin").write_bytes(content)
    with LoopbackServer(tmp_path / "m") as server:
        remote = RemoteFile(name="ds/x.bin", url=DEAD_URL, sha256=sha256(content))
        assert fetch(remote, mirror=server.url, **FAST).read_bytes() == content
        assert server.requests == [("/ds/x.bin", None)]


# --------------------------------------------------------------------------- concurrency


def test_two_threads_fetching_the_same_file(home, served, content):
    served.delay(PATH, 0.3, times=1)  # keep the first download busy while the second one arrives
    remote = remote_for(served, content)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def worker():
        try:
            results.append(fetch(remote, **FAST).read_bytes())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors and results == [content, content]
    assert served.requests_for(PATH) == [None]  # the second one waited for the lock, then hit the cache
    assert leftovers(home) == ["scan 1.bin", "scan 1.bin.meta.json"]


# --------------------------------------------------------------------------- the cache folder


def test_get_data_home_precedence(tmp_path, monkeypatch):
    monkeypatch.setattr(_cache.platformdirs, "user_cache_dir", lambda app: str(tmp_path / "platform" / app))
    monkeypatch.delenv("CXRCLASSIFY_HOME", raising=False)
    assert get_data_home() == tmp_path / "platform" / "cxrclassify"
    monkeypatch.setenv("CXRCLASSIFY_HOME", "")
    assert get_data_home() == tmp_path / "platform" / "cxrclassify"
    monkeypatch.setenv("CXRCLASSIFY_HOME", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    assert get_data_home(tmp_path / "arg" / "nested") == tmp_path / "arg" / "nested"
    assert (tmp_path / "arg" / "nested").is_dir() and (tmp_path / "env").is_dir()
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert get_data_home("~/data") == tmp_path / "user" / "data"


def test_cache_info_and_clear_data_home(home, served, content):
    assert cache_info() == {"path": str(home), "files": 0, "bytes": 0}
    fetch(remote_for(served, content), **FAST)
    info = cache_info()
    assert info["path"] == str(home) and info["files"] == 1 and info["bytes"] >= len(content)
    clear_data_home()
    assert home.is_dir() and list(home.iterdir()) == []
    assert cache_info(home)["files"] == 0
    fetch(remote_for(served, content), **FAST)
    assert len(served.requests) == 2


def test_clear_data_home_refuses_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="home"):
        clear_data_home(tmp_path)
    assert (tmp_path / "keep.txt").exists()


# --------------------------------------------------------------------------- extract_archive


FILES = {"data/NORMAL/a.jpeg": b"a" * 100, "data/PNEUMONIA/b.jpeg": b"b" * 200, "data/readme.txt": b"hello"}


def make_zip(path: Path, files: dict[str, bytes] = FILES) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, data in files.items():
            zipped.writestr(name, data)
    return path


def make_tar(path: Path, files: dict[str, bytes] = FILES, mode: str = "w:gz", extra=()) -> Path:
    with tarfile.open(path, mode) as tarred:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))
        for info in extra:
            tarred.addfile(info)
    return path


def extracted(target: Path) -> dict[str, bytes]:
    return {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}


def test_extract_zip(tmp_path):
    target = extract_archive(make_zip(tmp_path / "a.zip"), tmp_path / "out")
    assert target == tmp_path / "out" and extracted(target) == FILES
    assert [p.name for p in target.iterdir() if p.name.startswith(".")] == []  # no staging folder left


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_extract_tar(tmp_path, mode):
    archive = make_tar(tmp_path / "a.tar.data", mode=mode)  # the format is told by content, not by suffix
    assert extracted(extract_archive(archive, tmp_path / "out")) == FILES


def test_extract_members_subset_and_skip_existing(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "a.zip")
    target = tmp_path / "out"
    target.mkdir()
    (target / "mine.txt").write_text("untouched")
    extract_archive(archive, target, members=["data/PNEUMONIA/b.jpeg"])
    assert extracted(target) == {"data/PNEUMONIA/b.jpeg": FILES["data/PNEUMONIA/b.jpeg"], "mine.txt": b"untouched"}
    written = []
    real_replace = os.replace
    monkeypatch.setattr(_download.os, "replace", lambda a, b: (written.append(b), real_replace(a, b)))
    extract_archive(archive, target)
    assert sorted(Path(p).name for p in written) == ["a.jpeg", "readme.txt"]  # b.jpeg was already there
    assert extracted(target) == {**FILES, "mine.txt": b"untouched"}


def test_extract_unknown_member(tmp_path):
    with pytest.raises(DownloadError, match="data/NORMAL/a.jpeg") as caught:
        extract_archive(make_zip(tmp_path / "a.zip"), tmp_path / "out", members=["nope.jpeg"])
    assert "nope.jpeg" in str(caught.value)
    assert extracted(tmp_path / "out") == {}


def test_extract_not_an_archive(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"just bytes" * 100)
    with pytest.raises(DownloadError, match="zip or tar"):
        extract_archive(tmp_path / "x.bin", tmp_path / "out")


def files_outside(tmp_path: Path, target: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and target not in p.parents
                  and p.suffix not in (".zip", ".gz", ".tar"))


def test_zip_with_parent_traversal_is_refused(tmp_path):
    archive = make_zip(tmp_path / "evil.zip", {"ok.txt": b"fine", "../evil": b"pwned"})
    target = tmp_path / "deep" / "out"
    with pytest.raises(DownloadError, match=r"\.\./evil") as caught:
        extract_archive(archive, target)
    assert "evil.zip" in str(caught.value)
    assert not (tmp_path / "deep" / "evil").exists() and extracted(target) == {}


def test_one_bad_member_refuses_the_whole_archive_even_unselected(tmp_path):
    archive = make_zip(tmp_path / "evil.zip", {"ok.txt": b"fine", "../evil": b"pwned"})
    target = tmp_path / "deep" / "out"
    with pytest.raises(DownloadError, match=r"\.\./evil"):
        extract_archive(archive, target, members=["ok.txt"])
    with pytest.raises(DownloadError, match=r"\.\./evil"):
        checked_archive_members(archive, target)
    assert not target.exists() or extracted(target) == {}
    good = make_zip(tmp_path / "good.zip", {"images/a.png": b"a"})
    assert checked_archive_members(good, target) == {"images/a.png": "file"}


@pytest.mark.parametrize(
    "info_kwargs",
    [
        {"name": "../evil"},
        {"name": "sub/../../evil"},
        {"name": str(Path("/tmp") / "cxrclassify-test-abs-evil")},
        {"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc"},
        {"name": "sub/link", "type": tarfile.SYMTYPE, "linkname": "../../outside"},
        {"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../outside"},
        {"name": "dev", "type": tarfile.CHRTYPE},
        {"name": "fifo", "type": tarfile.FIFOTYPE},
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-etc", "symlink-out", "hardlink-out", "chardev", "fifo"],
)
def test_unsafe_tar_members_are_refused(tmp_path, info_kwargs):
    info = tarfile.TarInfo(info_kwargs["name"])
    info.type = info_kwargs.get("type", tarfile.REGTYPE)
    info.linkname = info_kwargs.get("linkname", "")
    files = {"ok.txt": b"fine"}
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tarred:
        for name, data in files.items():
            ok = tarfile.TarInfo(name)
            ok.size = len(data)
            tarred.addfile(ok, io.BytesIO(data))
        if info.isreg():
            info.size = 5
            tarred.addfile(info, io.BytesIO(b"pwned"))
        else:
            tarred.addfile(info)
    target = tmp_path / "deep" / "out"
    with pytest.raises(DownloadError) as caught:
        extract_archive(tmp_path / "evil.tar.gz", target)
    assert info_kwargs["name"] in str(caught.value) and "evil.tar.gz" in str(caught.value)
    assert extracted(target) == {}  # not even ok.txt: everything is checked first
    assert not Path("/tmp/cxrclassify-test-abs-evil").exists() and not (tmp_path / "deep" / "evil").exists()
    assert not (tmp_path / "outside").exists()


def test_safe_tar_links_are_extracted(tmp_path):
    link = tarfile.TarInfo("data/latest.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "readme.txt"
    hard = tarfile.TarInfo("data/copy.txt")
    hard.type, hard.linkname = tarfile.LNKTYPE, "data/readme.txt"
    target = extract_archive(make_tar(tmp_path / "a.tgz", extra=[link, hard]), tmp_path / "out")
    assert (target / "data" / "latest.txt").is_symlink()
    assert (target / "data" / "latest.txt").read_bytes() == b"hello"
    assert (target / "data" / "copy.txt").read_bytes() == b"hello"


def test_zip_bomb_is_refused_by_ratio(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("zeros.bin", bytes(50 * 2**20))
    assert archive.stat().st_size < 200_000
    with pytest.raises(DownloadError, match="max_ratio"):
        extract_archive(archive, tmp_path / "out")
    assert extracted(tmp_path / "out") == {}


def test_tar_bomb_is_refused_by_ratio(tmp_path):
    archive = make_tar(tmp_path / "bomb.tar.gz", {"zeros.bin": bytes(20 * 2**20)})
    with pytest.raises(DownloadError, match="max_ratio"):
        extract_archive(archive, tmp_path / "out")
    assert extracted(tmp_path / "out") == {}


def test_archive_over_max_total_bytes_is_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip")
    with pytest.raises(DownloadError, match="max_total_bytes=100"):
        extract_archive(archive, tmp_path / "out", max_total_bytes=100)
    assert extracted(tmp_path / "out") == {}
    extract_archive(archive, tmp_path / "out", members=["data/NORMAL/a.jpeg"], max_total_bytes=100)
    assert extracted(tmp_path / "out") == {"data/NORMAL/a.jpeg": FILES["data/NORMAL/a.jpeg"]}


# --------------------------------------------------------------------------- damaged archives, fetched then extracted


def damaged_archive(kind: str, tmp_path: Path) -> tuple[str, bytes, bytes]:
    """``(file name, good bytes, damaged bytes)`` of an archive of FILES."""
    if kind == "tar.gz-truncated":
        good = make_tar(tmp_path / "good.tar.gz").read_bytes()
        return "images_001.tar.gz", good, good[: len(good) // 2]
    good = make_zip(tmp_path / "good.zip").read_bytes()
    if kind == "zip-truncated":
        return "ChestXRay2017.zip", good, good[: len(good) - 60]
    crc = zipfile.ZipFile(io.BytesIO(good)).getinfo("data/PNEUMONIA/b.jpeg").CRC  # kind == "zip-bad-crc"
    return "ChestXRay2017.zip", good, good.replace(crc.to_bytes(4, "little"), (crc ^ 1).to_bytes(4, "little"))


@pytest.mark.parametrize("verify", [True, False], ids=["unpinned", "verify-false"])
@pytest.mark.parametrize("kind", ["zip-truncated", "zip-bad-crc", "tar.gz-truncated"])
def test_damaged_archive_from_the_server_is_reported_and_the_cache_recovers(home, tmp_path, kind, verify):
    name, good, damaged = damaged_archive(kind, tmp_path)
    root = tmp_path / "www"
    (root / "archives").mkdir(parents=True)
    served_file = root / "archives" / name
    served_file.write_bytes(damaged)  # a broken upstream: the full Content-Length of a damaged file
    target = tmp_path / "extracted"
    with LoopbackServer(root) as server:
        # No checksum, as for the NIH archives (NIH publishes none): fetch cannot tell the file is damaged.
        remote = RemoteFile(name=f"demo/{name}", url=f"{server.url}/archives/{name}")
        with pytest.warns(UnverifiedDownloadWarning):
            path = fetch(remote, verify=verify, **FAST)
        assert path.read_bytes() == damaged
        with pytest.raises(DownloadError) as caught:
            if name.endswith(".tar.gz"):  # the NIH loader lists the archive first
                checked_archive_members(path, target)
            extract_archive(path, target)
        message = str(caught.value)
        assert str(path) in message and "Received:" in message
        assert f"{server.url}/archives/{name}" in message and "deleted from the cache" in message
        assert not path.exists() and leftovers(home, f"demo/{name}") == []
        # Nothing half-extracted: at most complete members, no staging folder.
        assert all(FILES[member] == data for member, data in extracted(target).items())
        assert not target.exists() or not [p for p in target.iterdir() if p.name.startswith(".")]

        served_file.write_bytes(good)  # upstream fixed
        with pytest.warns(UnverifiedDownloadWarning):
            again = fetch(remote, verify=verify, **FAST)
        assert again == path and again.read_bytes() == good
        assert len(server.requests_for(f"/archives/{name}")) == 2
    assert extracted(extract_archive(again, target)) == FILES


def test_damaged_archive_with_a_pinned_checksum_never_reaches_the_cache(home, tmp_path):
    name, good, damaged = damaged_archive("zip-truncated", tmp_path)
    root = tmp_path / "www"
    root.mkdir()
    (root / name).write_bytes(damaged)
    with LoopbackServer(root) as server:
        remote = RemoteFile(name=f"demo/{name}", url=f"{server.url}/{name}", sha256=sha256(good), size=len(good))
        with pytest.raises(ChecksumError, match=name):
            fetch(remote, **FAST)
        assert leftovers(home, f"demo/{name}") == []
        (root / name).write_bytes(good)
        assert extracted(extract_archive(fetch(remote, **FAST), tmp_path / "out")) == FILES
