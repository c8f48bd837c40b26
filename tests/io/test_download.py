"""Tests for pipeline.io.download against a loopback HTTP server (tests/io/conftest.py).

Nothing leaves 127.0.0.1. Sequence archives are real RAR5 files (store mode) written by
tests/io/rar5_writer.py, served under the SYNTHIA names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from pathlib import Path

import pytest

from pipeline.io.archive import ArchiveError, UnsafeArchiveError
from pipeline.io.download import (
    LICENCE_NOTICE,
    MARKER_NAME,
    ChecksumError,
    DownloadError,
    download_file,
    download_sequences,
    load_checksums,
    record_checksum,
)
from pipeline.io.synthia import list_sequences
from rar5_writer import REDIR_UNIX_SYMLINK, RarEntry, write_rar5

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = dict(retries=3, backoff=0.01, timeout=5, progress=False)


def serve(srv, path: str, data: bytes) -> str:
    srv.state.files[path] = data
    return srv.url(path)


# ------------------------------------------------------------------ download_file


def test_normal_download(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    dest = tmp_path / "d" / "f.bin"
    assert download_file(url, dest, SHA, len(PAYLOAD), **FAST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_suffix(".bin.part").exists()
    assert http_server.gets("/f.bin") == [None]


def test_resume_after_dropped_connection(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    http_server.state.drop_after, http_server.state.drop_times = 100_000, 1
    dest = tmp_path / "f.bin"
    download_file(url, dest, SHA, len(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.gets("/f.bin") == [None, "bytes=100000-"]


def test_resume_from_existing_part_file(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:123_456])
    download_file(url, dest, SHA, None, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.gets("/f.bin") == ["bytes=123456-"]


def test_read_timeout_is_retried_with_range(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    http_server.state.stall_after, http_server.state.stall_seconds = 70_000, 10.0
    dest = tmp_path / "f.bin"
    download_file(url, dest, SHA, len(PAYLOAD), retries=2, backoff=0.0, timeout=0.5, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.gets("/f.bin") == [None, "bytes=70000-"]


def test_server_ignoring_range_restarts_from_zero(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    http_server.state.ignore_range = True
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:50_000])
    download_file(url, dest, SHA, len(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD  # not 50 000 duplicated bytes + the full file
    assert http_server.gets("/f.bin") == ["bytes=50000-"]


def test_stale_oversized_part_gets_416_then_restarts(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"x" * (len(PAYLOAD) + 10))
    download_file(url, dest, SHA, None, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.gets("/f.bin") == [f"bytes={len(PAYLOAD) + 10}-", None]


def test_complete_part_gets_416_and_is_accepted(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    download_file(url, dest, SHA, None, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.gets("/f.bin") == [f"bytes={len(PAYLOAD)}-"]


def test_wrong_checksum_raises_and_leaves_no_file(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    http_server.state.wrong_content = bytes(len(PAYLOAD))  # same size, other bytes
    dest = tmp_path / "f.bin"
    with pytest.raises(ChecksumError, match="sha256 mismatch") as err:
        download_file(url, dest, SHA, len(PAYLOAD), **FAST)
    assert url in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_raises_before_writing(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    with pytest.raises(ChecksumError, match="size mismatch"):
        download_file(url, tmp_path / "f.bin", None, len(PAYLOAD) + 1, **FAST)
    assert not (tmp_path / "f.bin").exists()


def test_transient_5xx_is_retried(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    http_server.state.fail_times = 2
    download_file(url, tmp_path / "f.bin", SHA, None, **FAST)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert len(http_server.gets("/f.bin")) == 3


def test_persistent_5xx_gives_up_with_one_line_error(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    http_server.state.fail_times = 100
    with pytest.raises(DownloadError, match="after 2 retries") as err:
        download_file(url, tmp_path / "f.bin", None, None, retries=2, backoff=0.0, timeout=5,
                      progress=False)
    assert url in str(err.value) and "\n" not in str(err.value)
    assert len(http_server.gets("/f.bin")) == 3


def test_404_is_not_retried(http_server, tmp_path):
    url = http_server.url("/missing.bin")
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(url, tmp_path / "m.bin", None, None, **FAST)
    assert len(http_server.gets("/missing.bin")) == 1


def test_connection_refused_is_retried_then_fails(tmp_path):
    with socket.socket() as s:  # find a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="after 1 retries"):
        download_file(f"http://127.0.0.1:{port}/x", tmp_path / "x", None, None, retries=1,
                      backoff=0.0, timeout=2, progress=False)


def test_existing_verified_file_needs_no_request(http_server, tmp_path):
    url = serve(http_server, "/f.bin", PAYLOAD)
    dest = tmp_path / "f.bin"
    dest.write_bytes(PAYLOAD)
    download_file(url, dest, SHA, len(PAYLOAD), **FAST)
    assert http_server.gets("/f.bin") == []


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="sha256"):
        download_file("http://127.0.0.1:1/x", tmp_path / "x", "abc", None, progress=False)


# ------------------------------------------------------------------ checksums file


def test_checksums_file_roundtrip_sorted_and_enforced(tmp_path):
    path = tmp_path / "checksums.sha256"
    assert load_checksums(path) == {}
    b, a = "b" * 64, "a" * 64
    record_checksum(path, "SYNTHIA-SEQS-02-FOG.rar", 20, b)
    record_checksum(path, "SYNTHIA-SEQS-01-FOG.rar", 10, a)
    record_checksum(path, "SYNTHIA-SEQS-01-FOG.rar", 10, a)  # identical: no-op
    assert load_checksums(path) == {"SYNTHIA-SEQS-01-FOG.rar": (10, a),
                                    "SYNTHIA-SEQS-02-FOG.rar": (20, b)}
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert lines == [f"{a}  10  SYNTHIA-SEQS-01-FOG.rar", f"{b}  20  SYNTHIA-SEQS-02-FOG.rar"]
    with pytest.raises(ValueError, match="different checksum"):
        record_checksum(path, "SYNTHIA-SEQS-01-FOG.rar", 10, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checksums.sha256"]  # no temp files


def test_malformed_checksums_file(tmp_path):
    path = tmp_path / "c.sha256"
    path.write_text("nothex  10  x.rar\n")
    with pytest.raises(ValueError, match=r"c.sha256:1"):
        load_checksums(path)


# ------------------------------------------------------------------ download_sequences

NAME = "SYNTHIA-SEQS-01-SPRING"
CAMS = ["Stereo_Left/Omni_F", "Stereo_Left/Omni_B", "Stereo_Right/Omni_F"]
KINDS = [("RGB", "png"), ("Depth", "png"), ("GT/COLOR", "png"), ("GT/LABELS", "png"),
         ("CameraParams", "txt")]
N_FRAMES = 5


def sequence_files(name: str = NAME) -> dict[str, bytes]:
    """A SYNTHIA-SEQS-like tree (paths relative to the archive root) with distinct contents."""
    files = {f"{name}/README.txt": b"SYNTHIA readme\n",
             f"{name}/CameraParams/intrinsics.txt": b"532.7403520000000\n\n640\n\n380\n\n0.8\n"}
    for kind, ext in KINDS:
        for cam in CAMS:
            for i in range(N_FRAMES):
                rel = f"{name}/{kind}/{cam}/{i:06d}.{ext}"
                files[rel] = hashlib.sha256(rel.encode()).digest() * 10
    return files


def serve_sequence(srv, files: dict[str, bytes], tmp_path: Path, name: str = NAME,
                   extra: list[RarEntry] = ()) -> bytes:
    arc = write_rar5(tmp_path / "built.rar",
                     [RarEntry(n, d) for n, d in files.items()] + list(extra))
    data = arc.read_bytes()
    arc.unlink()
    srv.state.files[f"/seqs/{name}.rar"] = data
    return data


def fetch(srv, tmp_path, names=(NAME,), cameras=None, frame_limit=None):
    return download_sequences(
        list(names), srv.url("/seqs/"), tmp_path / "data", tmp_path / "checksums.sha256",
        cameras, frame_limit, tmp_path / "cache", progress=False, retries=2, backoff=0.0, timeout=5,
    )


def test_sequence_subset_download_and_skip(http_server, tmp_path, capsys, caplog):
    files = sequence_files()
    data = serve_sequence(http_server, files, tmp_path)
    with caplog.at_level(logging.WARNING, logger="pipeline.io.download"):
        (seq,) = fetch(http_server, tmp_path, cameras=["Stereo_Left/Omni_F"], frame_limit=3)
    assert seq == tmp_path / "data" / NAME
    # independent expectation: brute-force filter of the generated listing
    want = {}
    for rel, content in files.items():
        inner = rel[len(NAME) + 1:]
        if inner in ("README.txt", "CameraParams/intrinsics.txt"):
            want[inner] = content
        elif "/Stereo_Left/Omni_F/" in inner and int(inner[-10:-4]) < 3:
            want[inner] = content
    assert len(want) == 2 + len(KINDS) * 3
    got = {p.relative_to(seq).as_posix(): p.read_bytes() for p in seq.rglob("*") if p.is_file()}
    marker = got.pop(MARKER_NAME)
    assert got == want
    assert json.loads(marker)["frame_limit"] == 3
    # the dataset's own layout helper sees exactly the requested subset
    (layout,) = list_sequences(tmp_path / "data")
    assert layout.root == seq and layout.cameras() == ["Stereo_Left/Omni_F"]
    assert layout.frames("Stereo_Left/Omni_F") == [0, 1, 2] and layout.intrinsics.is_file()
    # checksum recorded on first use, and logged
    sums = load_checksums(tmp_path / "checksums.sha256")
    assert sums == {f"{NAME}.rar": (len(data), hashlib.sha256(data).hexdigest())}
    assert any("recorded sha256" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "cache" / f"{NAME}.rar").read_bytes() == data  # archive kept
    assert capsys.readouterr().out.count(LICENCE_NOTICE) == 1
    # second call: complete marker -> no request, notice printed once again
    fetch(http_server, tmp_path, cameras=["Stereo_Left/Omni_F"], frame_limit=3)
    assert len(http_server.gets(f"/seqs/{NAME}.rar")) == 1
    assert capsys.readouterr().out.count(LICENCE_NOTICE) == 1
    # a wider selection re-extracts from the cached archive, without a new request
    fetch(http_server, tmp_path)
    assert len(http_server.gets(f"/seqs/{NAME}.rar")) == 1
    n_all = sum(1 for p in seq.rglob("*") if p.is_file()) - 1
    assert n_all == len(files)
    assert [p.name for p in (tmp_path / "data").iterdir()] == [NAME]  # no partial folders


def test_enforced_checksum_mismatch(http_server, tmp_path):
    data = serve_sequence(http_server, sequence_files(), tmp_path)
    record_checksum(tmp_path / "checksums.sha256", f"{NAME}.rar", len(data), "0" * 64)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        fetch(http_server, tmp_path)
    assert not (tmp_path / "data" / NAME).exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_truncated_archive_leaves_no_sequence(http_server, tmp_path):
    data = serve_sequence(http_server, sequence_files(), tmp_path)
    http_server.state.files[f"/seqs/{NAME}.rar"] = data[: len(data) // 2]
    with pytest.raises(ArchiveError):
        fetch(http_server, tmp_path)
    assert list((tmp_path / "data").iterdir()) == []
    assert not (tmp_path / "checksums.sha256").exists()  # a broken archive is never recorded
    assert list((tmp_path / "cache").iterdir()) == []


def test_malicious_sequence_archive(http_server, tmp_path):
    evil = [RarEntry(f"{NAME}/RGB/link", b"", mode=0o120777,
                     redirect=(REDIR_UNIX_SYMLINK, "../../../../etc"))]
    serve_sequence(http_server, sequence_files(), tmp_path, extra=evil)
    with pytest.raises(UnsafeArchiveError):
        fetch(http_server, tmp_path)
    assert list((tmp_path / "data").iterdir()) == []
    assert not (tmp_path / "checksums.sha256").exists()


def test_resumed_sequence_download(http_server, tmp_path):
    data = serve_sequence(http_server, sequence_files(), tmp_path)
    http_server.state.drop_after, http_server.state.drop_times = len(data) // 3, 1
    (seq,) = fetch(http_server, tmp_path, cameras=["Stereo_Right/Omni_F"], frame_limit=1)
    assert http_server.gets(f"/seqs/{NAME}.rar") == [None, f"bytes={len(data) // 3}-"]
    assert (seq / "Depth/Stereo_Right/Omni_F/000000.png").is_file()
    assert not (seq / "Depth/Stereo_Right/Omni_F/000001.png").exists()


def test_wrong_top_folder_or_missing_camera(http_server, tmp_path):
    files = {k.replace(NAME, "SOMETHING-ELSE", 1): v for k, v in sequence_files().items()}
    serve_sequence(http_server, files, tmp_path)
    with pytest.raises(ArchiveError, match="no file entries under"):
        fetch(http_server, tmp_path)
    serve_sequence(http_server, sequence_files(), tmp_path)
    with pytest.raises(ValueError, match="Stereo_Right/Omni_L"):
        fetch(http_server, tmp_path, cameras=["Stereo_Right/Omni_L"])
    assert not (tmp_path / "data" / NAME).exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(names=["SYNTHIA-SEQS-1-SPRING"]), "invalid SYNTHIA sequence name"),
    (dict(names=["../SYNTHIA-SEQS-01-SPRING"]), "invalid SYNTHIA sequence name"),
    (dict(cameras=["Left/F"]), "invalid cameras"),
    (dict(frame_limit=0), "frame_limit"),
])
def test_bad_sequence_arguments_make_no_request(http_server, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fetch(http_server, tmp_path, **kwargs)
    assert http_server.state.requests == []

