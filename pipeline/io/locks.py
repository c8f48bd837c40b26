"""Inter-process file locks (POSIX ``flock``): one writer at a time for shared files such as ``mlflow.db``.

The lock lives in a small companion file (``<path>.lock``) that is never removed, so every process locks
the same inode. ``flock`` locks are released by the kernel when the holder exits, also on kill -9.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock_file: Path | str, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if missing) for the ``with`` block; yields whether
    it was taken: always when ``blocking`` (waits for it), else only if no other holder has it right now."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
