"""Tests for pipeline.io.archive: safe, filtered, atomic extraction of ZIP, TAR and RAR.

RAR fixtures are written by tests/io/rar5_writer.py (store mode, RAR 5.0 layout); the writer is
cross-checked against `lsar`/`bsdtar` when those programs are installed.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from pipeline.io.archive import (
    ArchiveError,
    UnsafeArchiveError,
    list_entries,
    normalise_name,
    rar_backend,
    safe_extract,
)
from rar5_writer import REDIR_HARD_LINK, REDIR_UNIX_SYMLINK, RarEntry, write_rar5

FILES = {
    "SEQ/README.txt": b"readme\n",
    "SEQ/RGB/Stereo_Left/Omni_F/000000.png": bytes(range(256)) * 40,
    "SEQ/RGB/Stereo_Left/Omni_F/000001.png": b"\x00\xff" * 3000,
    "SEQ/Depth/Stereo_Left/Omni_F/000000.png": b"depth0",
    "SEQ/CameraParams/intrinsics.txt": b"532.7403520000000\n\n640\n\n380\n\n0.8\n",
    "SEQ/empty.bin": b"",
}


# ------------------------------------------------------------------ archive builders


def make_zip(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def make_tar(path: Path, files: dict[str, bytes], specials: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in specials:
            tf.addfile(info)
    return path


def make_rar(path: Path, files: dict[str, bytes], extra: list[RarEntry] = (), solid=False) -> Path:
    entries = [RarEntry(n, d) for n, d in files.items()] + list(extra)
    return write_rar5(path, entries, solid=solid)


BUILDERS = {"zip": make_zip, "tar": make_tar, "rar": make_rar}


def tree(root: Path) -> dict[str, bytes]:
    """All regular files below root as {relative posix path: bytes}."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    """Hidden temporary siblings (atomic_dir's .<name>.XXXX.tmp/.old) left in parent."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    "raw, want",
    [("a/b/c.png", "a/b/c.png"), ("a\\b\\c.png", "a/b/c.png"), ("./a//b/", "a/b"), ("a/./b", "a/b")],
)
def test_normalise_name_accepts(raw, want):
    assert normalise_name(raw) == want


@pytest.mark.parametrize("raw", ["../x", "a/../../x", "..\\x", "a\\..\\..\\x", "/etc/passwd",
                                 "\\abs", "C:\\x", "c:x", "a\x00b"])
def test_normalise_name_refuses(raw):
    with pytest.raises(UnsafeArchiveError):
        normalise_name(raw)


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("fmt", ["zip", "tar", "rar"])
def test_roundtrip_with_root_and_filter(tmp_path, fmt):
    arc = BUILDERS[fmt](tmp_path / f"a.{fmt}", FILES)
    target = tmp_path / "out" / "SEQ"
    keep = lambda rel: not rel.startswith("Depth/")  # noqa: E731
    written = safe_extract(arc, target, root="SEQ", keep=keep)
    want = {k[len("SEQ/"):]: v for k, v in FILES.items() if keep(k[len("SEQ/"):])}
    assert tree(target) == want
    assert written == sorted(want)
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("fmt", ["zip", "tar", "rar"])
def test_backslash_names_become_folders(tmp_path, fmt):
    files = {"SEQ\\RGB\\Stereo_Left\\Omni_F\\000000.png": b"abc", "SEQ/README.txt": b"r"}
    arc = BUILDERS[fmt](tmp_path / f"a.{fmt}", files)
    target = tmp_path / "SEQ"
    safe_extract(arc, target, root="SEQ")
    assert tree(target) == {"RGB/Stereo_Left/Omni_F/000000.png": b"abc", "README.txt": b"r"}


def test_entries_outside_root_are_ignored_and_empty_selection_fails(tmp_path):
    arc = make_zip(tmp_path / "a.zip", {"SEQ/a.txt": b"a", "OTHER/b.txt": b"b", "top.txt": b"t"})
    target = tmp_path / "SEQ"
    assert safe_extract(arc, target, root="SEQ") == ["a.txt"]
    with pytest.raises(ArchiveError, match="no file entries"):
        safe_extract(arc, tmp_path / "X", root="MISSING")
    assert not (tmp_path / "X").exists()


def test_existing_target_needs_overwrite(tmp_path):
    arc = make_zip(tmp_path / "a.zip", {"SEQ/a.txt": b"new"})
    target = tmp_path / "SEQ"
    target.mkdir()
    (target / "old.txt").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        safe_extract(arc, target, root="SEQ")
    assert tree(target) == {"old.txt": b"old"}
    safe_extract(arc, target, root="SEQ", overwrite=True)
    assert tree(target) == {"a.txt": b"new"}
    assert leftovers(tmp_path) == []


def test_stale_partial_folder_is_removed(tmp_path):
    stale = tmp_path / ".SEQ.abc123.tmp"  # as left by a killed run (an hour ago)
    (stale / "RGB").mkdir(parents=True)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    arc = make_zip(tmp_path / "a.zip", {"SEQ/a.txt": b"a"})
    safe_extract(arc, tmp_path / "SEQ", root="SEQ")
    assert not stale.exists()


def test_unknown_format_and_missing_file(tmp_path):
    bogus = tmp_path / "x.rar"
    bogus.write_bytes(b"this is not an archive at all")
    with pytest.raises(ArchiveError, match="not a RAR, ZIP or TAR"):
        safe_extract(bogus, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        safe_extract(tmp_path / "nope.rar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ malicious archives


def _tar_special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


# an absolute member path that must never be written (a name no one else uses, e.g. not a clone at /tmp/x)
ABSOLUTE_ENTRY = "/tmp/protoscene-test-absolute-archive-entry"

MALICIOUS = {
    "zip-traversal": lambda p: make_zip(p, {"SEQ/a.txt": b"a", "SEQ/../../x": b"pwned"}),
    "zip-absolute": lambda p: make_zip(p, {"SEQ/a.txt": b"a", ABSOLUTE_ENTRY: b"pwned"}),
    "zip-backslash-traversal": lambda p: make_zip(p, {"SEQ/a.txt": b"a", "SEQ\\..\\..\\x": b"pwned"}),
    "zip-symlink": lambda p: make_zip(p, {"SEQ/a.txt": b"a"}, links={"SEQ/link": "../../"}),
    "tar-traversal": lambda p: make_tar(p, {"SEQ/a.txt": b"a", "../x": b"pwned"}),
    "tar-absolute": lambda p: make_tar(p, {"SEQ/a.txt": b"a", ABSOLUTE_ENTRY: b"pwned"}),
    "tar-symlink-escape": lambda p: make_tar(
        p, {"SEQ/a.txt": b"a"}, [_tar_special("SEQ/link", tarfile.SYMTYPE, "../..")]),
    "tar-hardlink": lambda p: make_tar(
        p, {"SEQ/a.txt": b"a"}, [_tar_special("SEQ/h", tarfile.LNKTYPE, "/etc/passwd")]),
    "tar-chardev": lambda p: make_tar(p, {"SEQ/a.txt": b"a"}, [_tar_special("SEQ/dev", tarfile.CHRTYPE)]),
    "tar-fifo": lambda p: make_tar(p, {"SEQ/a.txt": b"a"}, [_tar_special("SEQ/fifo", tarfile.FIFOTYPE)]),
    "rar-traversal": lambda p: make_rar(p, {"SEQ/a.txt": b"a", "SEQ/../../x": b"pwned"}),
    "rar-absolute": lambda p: make_rar(p, {"SEQ/a.txt": b"a", ABSOLUTE_ENTRY: b"pwned"}),
    "rar-backslash-traversal": lambda p: make_rar(p, {"SEQ/a.txt": b"a", "..\\x": b"pwned"}),
    "rar-symlink": lambda p: make_rar(p, {"SEQ/a.txt": b"a"}, [
        RarEntry("SEQ/link", b"", mode=0o120777, redirect=(REDIR_UNIX_SYMLINK, "../.."))]),
    "rar-hardlink": lambda p: make_rar(p, {"SEQ/a.txt": b"a"}, [
        RarEntry("SEQ/h", b"", redirect=(REDIR_HARD_LINK, "/etc/passwd"))]),
    "rar-chardev": lambda p: make_rar(p, {"SEQ/a.txt": b"a"}, [RarEntry("SEQ/dev", b"", mode=0o020644)]),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archive_is_refused_and_nothing_is_written(tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    arc = MALICIOUS[case](tmp_path / "evil.bin")
    target = work / "dest" / "SEQ"
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UnsafeArchiveError):
        safe_extract(arc, target, root="SEQ")
    with pytest.raises(UnsafeArchiveError):  # also without a root: every entry is validated
        safe_extract(arc, work / "all")
    assert not target.exists() and not (work / "all").exists()
    assert not (work / "dest").exists() or list((work / "dest").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no ../x next to the target
    assert not Path(ABSOLUTE_ENTRY).is_file() or Path(ABSOLUTE_ENTRY).read_bytes() != b"pwned"


def test_safe_entries_are_listed(tmp_path):
    arc = make_rar(tmp_path / "a.rar", {"SEQ/a.txt": b"abc"}, [RarEntry("SEQ/sub", None)])
    got = {(e.name, e.is_dir, e.size) for e in list_entries(arc)}
    assert got == {("SEQ/a.txt", False, 3), ("SEQ/sub", True, 0)}


# ------------------------------------------------------------------ failures mid-way


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_interrupted_extraction_leaves_nothing(tmp_path, exc):
    arc = make_tar(tmp_path / "a.tar.gz", FILES)
    target = tmp_path / "out" / "SEQ"

    def hook(n_done: int) -> None:
        if n_done == 2:
            raise exc

    with pytest.raises(type(exc)):
        safe_extract(arc, target, root="SEQ", _after_file=hook)
    assert not target.exists()
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("fmt", ["zip", "tar", "rar"])
def test_truncated_archive_leaves_nothing(tmp_path, fmt):
    big = dict(FILES, **{"SEQ/zz/big.bin": bytes(range(256)) * 400})
    arc = BUILDERS[fmt](tmp_path / f"a.{fmt}", big)
    data = arc.read_bytes()
    arc.write_bytes(data[: len(data) * 2 // 3])
    target = tmp_path / "out" / "SEQ"
    with pytest.raises(ArchiveError):
        safe_extract(arc, target, root="SEQ")
    assert not target.exists()
    assert leftovers(target.parent) == [] if target.parent.exists() else True


def test_corrupted_rar_data_fails_crc(tmp_path):
    payload = b"A" * 5000
    arc = make_rar(tmp_path / "a.rar", {"SEQ/a.bin": payload, "SEQ/b.bin": b"ok"})
    data = bytearray(arc.read_bytes())
    i = data.index(payload)
    data[i + 100] ^= 0xFF  # flip one byte of the stored data; the header CRC32 stays valid
    arc.write_bytes(bytes(data))
    with pytest.raises(ArchiveError):
        safe_extract(arc, tmp_path / "SEQ", root="SEQ")
    assert not (tmp_path / "SEQ").exists()


# ------------------------------------------------------------------ RAR specifics


def test_rar_writer_agrees_with_independent_readers(tmp_path):
    arc = make_rar(tmp_path / "a.rar", FILES)
    tools = 0
    if shutil.which("lsar"):
        out = subprocess.run(["lsar", str(arc)], capture_output=True, text=True, timeout=20).stdout
        assert all(name in out for name in FILES)
        tools += 1
    if shutil.which("bsdtar"):
        out = subprocess.run(["bsdtar", "-tf", str(arc)], capture_output=True, text=True, timeout=20)
        assert out.returncode == 0 and set(out.stdout.split()) == set(FILES)
        for name, data in FILES.items():
            if not data:  # libarchive 3.6 loops forever on an empty stored RAR5 entry
                continue
            got = subprocess.run(["bsdtar", "-xOf", str(arc), name], capture_output=True, timeout=20)
            assert got.stdout == data
        tools += 1
    if tools == 0:
        pytest.skip("neither lsar (unar) nor bsdtar installed")


NEEDS_UNAR = pytest.mark.skipif(shutil.which("unar") is None,
                                reason="needs the unar program (apt-get install unar)")


@NEEDS_UNAR
@pytest.mark.parametrize("solid", [True, False])
@pytest.mark.parametrize("subset", [True, False])
def test_rar_through_unar(tmp_path, monkeypatch, solid, subset):
    """The unar path (solid archives; compressed members): one call or name batches."""
    import pipeline.io.archive as archive_mod

    monkeypatch.setattr(archive_mod, "_FORCE_UNAR", True)  # our fixtures are stored, not compressed
    monkeypatch.setattr(archive_mod, "_UNAR_BATCH", 2)  # several batches
    files = dict(FILES, **{"SEQ\\GT\\LABELS\\x.png": b"lbl"})  # unar cannot select this by name
    arc = make_rar(tmp_path / "s.rar", files, [RarEntry("OTHER/o.txt", b"o")], solid=solid)
    calls, streamed = [], []
    run_unar, write_stream = archive_mod._run_unar, archive_mod._write_stream
    monkeypatch.setattr(archive_mod, "_run_unar", lambda *a: calls.append(a[3]) or run_unar(*a))
    monkeypatch.setattr(archive_mod, "_write_stream",
                        lambda *a: streamed.append(a[3]) or write_stream(*a))
    target = tmp_path / "SEQ"
    keep = (lambda rel: rel != "README.txt") if subset else None
    written = safe_extract(arc, target, root="SEQ", keep=keep)
    if solid:  # one call for everything, every file comes from unar
        assert calls == [[]] and streamed == []
    else:  # batches of 2 names; unar cannot select the backslash name, rarfile streams it
        raw_of = {k.replace("\\", "/")[len("SEQ/"):]: k for k in files}
        assert [n for batch in calls for n in batch] == [raw_of[rel] for rel in written]
        assert all(len(b) <= 2 for b in calls)
        assert streamed == [f"{arc}:SEQ/GT/LABELS/x.png"]
    want = {k.replace("\\", "/")[len("SEQ/"):]: v for k, v in files.items()}
    if subset:
        want.pop("README.txt")
    assert tree(target) == want  # no scratch folder, filtered file absent, OTHER/ not extracted
    assert leftovers(tmp_path) == []


def test_rar_backend_is_reported():
    backend = rar_backend()
    assert backend is None or Path(backend).name in {"unrar", "unar", "bsdtar"}


@pytest.mark.skipif(rar_backend() is None, reason="no RAR backend program installed")
def test_rar_entries_stream_through_the_backend_program(tmp_path, monkeypatch):
    """Compressed entries are piped through the backend; force that path for stored ones."""
    import rarfile

    monkeypatch.setattr(rarfile, "FORCE_TOOL", True)
    arc = make_rar(tmp_path / "a.rar", FILES)
    target = tmp_path / "SEQ"
    safe_extract(arc, target, root="SEQ")
    assert tree(target) == {k[len("SEQ/"):]: v for k, v in FILES.items()}
