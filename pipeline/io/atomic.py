"""Atomic writes: nothing partial is ever left at a final path, and a stage's outputs change together.

Files are written to a hidden temporary name in the same folder and renamed with ``os.replace``
(atomic on POSIX within one filesystem). Folders are built in a hidden sibling and swapped in at
the end; on any exception the temporary is removed and the previous content stays untouched.

- Partials are named ``.<target name>.<random>.tmp<suffix>`` (folders ``.tmp``, replaced
  folders ``.old``) and hold an exclusive ``flock`` while they are written. A run that crashed (kill -9)
  leaves them behind; the next run's first write into that folder removes every such partial that no
  live process holds (:func:`remove_stale_partials`). Nothing else in the folder is touched.
- Files and folders get the usual modes (0666 / 0777 minus the umask), not ``mkstemp``'s 0600/0700.
- :func:`transaction`: inside ``with transaction():`` every atomic write is staged and all of them
  are renamed onto their targets only when the block ends without error (one stage, several outputs:
  a failure in the last one leaves every old output in place). :func:`current_path` tells where a
  staged output is until then.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


PARTIAL = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]+\.(tmp.*|old)$")  # mkstemp/mkdtemp random part
_cleaned: set[Path] = set()  # folders this process has already cleaned (one scan per folder, not per write)
FRESH_S = 60.0  # a partial younger than this may be a live writer's in the instant before it takes its lock


def _lock(path: Path) -> int:
    """Open ``path`` (file or folder) and hold an exclusive flock on it: this partial is in use."""
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def remove_stale_partials(folder: Path | str) -> list[Path]:
    """Remove the partials in ``folder`` left by crashed runs: hidden temporaries of our naming pattern
    (``.<name>.<random>.tmp*`` / ``.old``) that no live process holds and that are older than ``FRESH_S`` (a writer
    creates its temporary, then locks it: between the two, another process, e.g. a parallel worker writing into
    the same folder, must not take it for a crashed run's). Nothing else is touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if not PARTIAL.match(path.name):
            continue
        try:
            if time.time() - path.lstat().st_mtime < FRESH_S:
                continue
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it
            os.close(fd)
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


@dataclass
class _Staged:
    """One output being written: its temporary path, final target, whether a folder, and its lock."""

    tmp: Path
    target: Path
    is_dir: bool
    fd: int

    def discard(self) -> None:
        if self.is_dir:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.tmp.unlink(missing_ok=True)
        os.close(self.fd)

    def commit(self) -> None:
        """Move the temporary onto the target (folders: old one to a trash sibling first, then removed)."""
        if not self.is_dir:
            os.replace(self.tmp, self.target)
            os.close(self.fd)
            return
        trash = None
        if self.target.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".old", dir=self.target.parent))
            os.replace(self.target, trash / "old")
        os.replace(self.tmp, self.target)
        os.close(self.fd)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def _stage(target: Path, is_dir: bool, suffix: str = "") -> _Staged:
    """Create the locked, hidden temporary of ``target`` after clearing stale partials of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = target.parent.resolve()
    if folder not in _cleaned:
        remove_stale_partials(folder)
        _cleaned.add(folder)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        fd = _lock(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs get the usual mode
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + suffix, dir=target.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)  # locked at once, through the descriptor that created it
        tmp = Path(name)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600
    return _Staged(tmp, target, is_dir, fd)


@dataclass
class Transaction:
    """Outputs staged by atomic writes inside ``with transaction():``, renamed together at its end."""

    staged: list[_Staged] = field(default_factory=list)
    building: list[Path] = field(default_factory=list)  # staged folders still being filled

    def inside_building(self, target: Path) -> bool:
        """Whether ``target`` lies in a folder being built (its folder is staged already: write it directly)."""
        return any(folder in target.parents for folder in self.building)

    def resolve(self, path: Path) -> Path:
        """Where ``path`` is now: inside a staged temporary if it (or a parent folder) is staged."""
        path = Path(path)
        for item in reversed(self.staged):
            if path == item.target:
                return item.tmp
            if item.is_dir and item.target in path.parents:
                return item.tmp / path.relative_to(item.target)
        return path


_current: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar("atomic_transaction", default=None)


@contextlib.contextmanager
def transaction() -> Iterator[Transaction]:
    """Stage every atomic write of the block; rename all of them only if the block succeeds."""
    if _current.get() is not None:  # nested: the outer transaction commits
        yield _current.get()
        return
    tx = Transaction()
    token = _current.set(tx)
    try:
        yield tx
    except BaseException:
        for item in tx.staged:
            item.discard()
        raise
    finally:
        _current.reset(token)
    for index, item in enumerate(tx.staged):
        try:
            item.commit()
        except BaseException:
            for rest in tx.staged[index + 1:]:
                rest.discard()
            raise


def current_path(path: Path | str) -> Path:
    """``path``, or its staged temporary inside an open :func:`transaction` (to read back what was written)."""
    tx = _current.get()
    return tx.resolve(Path(path)) if tx is not None else Path(path)


@contextlib.contextmanager
def _staged(target: Path, is_dir: bool, suffix: str = "") -> Iterator[Path]:
    item = _stage(target, is_dir, suffix)
    tx = _current.get()
    if tx is not None and tx.inside_building(target):
        tx = None
    if tx is not None and is_dir:
        tx.building.append(item.tmp)
    try:
        yield item.tmp
    except BaseException:
        item.discard()
        raise
    finally:
        if tx is not None and is_dir:
            tx.building.remove(item.tmp)
    if tx is not None:
        tx.staged.append(item)
    else:
        try:
            item.commit()
        except BaseException:
            item.discard()
            raise


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary file path next to ``target``; rename it onto ``target`` on success."""
    target = Path(target)
    with _staged(target, is_dir=False, suffix=target.suffix) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_dir(target: Path | str, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``target`` (old content removed, but for the files
    named in ``keep`` that the new folder does not write, e.g. the ``.gitignore`` DVC keeps beside its outputs).

    The swap is two renames (old → trash, new → target), so a reader sees either the complete old
    folder or the complete new one; a crash between them leaves the target missing, never partial.
    """
    with _staged(Path(target), is_dir=True) as tmp:
        yield tmp
        for name in keep:
            old = Path(target) / name
            if old.is_file() and not (tmp / name).exists():
                shutil.copy2(old, tmp / name)


def write_bytes(target: Path | str, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: Path | str, text: str) -> None:
    write_bytes(target, text.encode())


def write_json(target: Path | str, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_with(target: Path | str, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)
