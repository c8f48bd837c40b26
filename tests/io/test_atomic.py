"""Atomic writes leave either the old or the complete new content, never a partial one."""

from __future__ import annotations

import pytest

from pipeline.io import atomic


def test_failed_file_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic.write_with(target, boom)
    assert list(tmp_path.iterdir()) == []


def test_failed_dir_build_keeps_old_content(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]


def test_dir_swap(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic.atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_stale_partials_of_crashed_runs_are_removed_and_only_those(tmp_path):
    """kill -9 leaves hidden partials; the next write into that folder removes them, nothing else."""
    import fcntl
    import os
    import time

    stale_dir = tmp_path / ".pointclouds.ab12cd_9.tmp"
    stale_dir.mkdir()
    (stale_dir / "points.parquet").write_bytes(b"")
    stale_old = tmp_path / ".pointclouds.zz99yy00.old"
    stale_old.mkdir()
    stale_file = tmp_path / ".model.pt.k3j4h5g6.tmp.pt"
    stale_file.write_bytes(b"half")
    keep = [tmp_path / ".pointclouds-notes", tmp_path / ".config.tmp", tmp_path / "pointclouds.ab12cd_9.tmp",
            tmp_path / "notes.old"]
    for path in keep:
        path.write_text("not ours")
    for path in (stale_dir, stale_old, stale_file):  # a crashed run's: older than a live writer's instant
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / ".pointclouds.fresh000.tmp"  # a live writer's, created but not yet locked
    fresh.mkdir()
    held = tmp_path / ".pointclouds.held0000.tmp"  # a live writer's partial: locked
    held.mkdir()
    os.utime(held, (time.time() - 3600, time.time() - 3600))
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with atomic.atomic_dir(tmp_path / "pointclouds") as tmp:
            (tmp / "new.txt").write_text("new")
        atomic.write_text(tmp_path / "model.pt", "weights")
        assert not stale_dir.exists() and not stale_old.exists() and not stale_file.exists()
        assert all(path.exists() for path in keep) and held.is_dir() and fresh.is_dir()
    finally:
        os.close(fd)
    assert (tmp_path / "pointclouds/new.txt").read_text() == "new"


def test_outputs_get_the_usual_umask_modes(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        with atomic.atomic_dir(tmp_path / "data") as tmp:
            (tmp / "a.txt").write_text("a")
        atomic.write_text(tmp_path / "b.txt", "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644


def test_transaction_renames_all_outputs_only_if_all_succeed(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/old.txt").write_text("old")
    atomic.write_text(tmp_path / "metrics.json", "{}")
    with pytest.raises(RuntimeError), atomic.transaction():
        with atomic.atomic_dir(tmp_path / "data") as tmp:
            (tmp / "new.txt").write_text("new")
        assert not (tmp_path / "data/new.txt").exists()  # staged, not yet renamed
        assert atomic.current_path(tmp_path / "data/new.txt").read_text() == "new"
        raise RuntimeError("the report could not be written")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "metrics.json"]  # no partial left
    with atomic.transaction():
        with atomic.atomic_dir(tmp_path / "data") as tmp:
            (tmp / "new.txt").write_text("new")
            atomic.write_text(tmp / "inner.json", "1")  # inside a staged folder: written directly
        atomic.write_text(tmp_path / "metrics.json", '{"a": 1}')
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["inner.json", "new.txt"]
    assert (tmp_path / "metrics.json").read_text() == '{"a": 1}'


def test_atomic_dir_keeps_the_named_files_of_the_old_folder(tmp_path):
    """A stage that owns a whole folder must not delete the .gitignore DVC wrote there (it lists the outputs)."""
    target = tmp_path / "drives"
    target.mkdir()
    (target / ".gitignore").write_text("/points\n")
    (target / "old.txt").write_text("old")
    with atomic.atomic_dir(target, keep=(".gitignore",)) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == [".gitignore", "new.txt"]
    assert (target / ".gitignore").read_text() == "/points\n"
