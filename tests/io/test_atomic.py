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
