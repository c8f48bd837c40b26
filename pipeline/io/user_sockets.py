"""Per-user local services on Unix sockets: where their sockets live, starting one, greeting a client.

Two services use this (the MLflow service, :mod:`pipeline.tracking_remote`, and the stage server,
:mod:`pipeline.stage_server`). Each listens on ``$TMPDIR/protoscene-<uid>/<name>-<key>.sock`` in a folder only the
user can enter; ``<key>`` hashes what would make a running service the wrong one to talk to (its own code, the
interpreter, settings read at start-up), so a changed service gets a new socket instead of answering with stale
code. A service writes its log next to its socket (``.log``) and greets every connection with ``ready``; a client
holds the lock file beside the socket (``.lock``) from connecting until the greeting, and a service stops only
while it holds that lock, so a client never connects to a service that is stopping.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.io import locks

MAX_SOCKET_PATH = 100  # bytes; Linux allows 107 (sockaddr_un), macOS 103
GREETING = b"ready\n"


def available() -> bool:
    """Whether this platform has Unix sockets and ``posix_spawn`` (not Windows)."""
    return hasattr(socket, "AF_UNIX") and hasattr(os, "posix_spawn")


def socket_path(name: str, key_parts: Iterable[str | bytes]) -> Path:
    """``$TMPDIR/protoscene-<uid>/<name>-<16 hex digits of key_parts>.sock``. OSError if the folder cannot be
    made, is not the user's own, or the path is too long for a Unix socket."""
    digest = hashlib.blake2b(digest_size=8)
    for part in key_parts:
        digest.update((part.encode() if isinstance(part, str) else part) + b"\0")
    folder = Path(tempfile.gettempdir()) / f"protoscene-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid():
        raise PermissionError(f"{folder} belongs to another user")
    path = folder / f"{name}-{digest.hexdigest()}.sock"
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise OSError(f"{path}: too long for a Unix socket (set TMPDIR to a shorter folder)")
    return path


def lock_file(path: Path) -> Path:
    """The start/stop lock beside the socket ``path``."""
    return path.with_suffix(".lock")


def spawn_service(module: str, path: Path, code_root: Path, interpreter_flags: Sequence[str] = ()) -> int:
    """``python [interpreter_flags] -m <module> <path>`` in its own session (it outlives its starter), ``code_root``
    first on its ``PYTHONPATH``, stdin from /dev/null, stdout and stderr appended to ``<socket>.log``; returns its
    pid."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(code_root), os.environ.get("PYTHONPATH")]))}
    logfile = str(path.with_suffix(".log"))
    argv = [sys.executable, *interpreter_flags, "-m", module, str(path)]
    log_flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    return os.posix_spawn(sys.executable, argv, env, setsid=True,
                          file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                        (os.POSIX_SPAWN_OPEN, 1, logfile, log_flags, 0o600),
                                        (os.POSIX_SPAWN_DUP2, 1, 2)])


def listen(path: Path) -> socket.socket:
    """A service's listening socket at ``path`` (connections wait in its backlog until the service accepts)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    return listener


def stop_if_unclaimed(listener: socket.socket, path: Path) -> bool:
    """Stop listening (close ``listener``, remove its socket ``path``) unless a client holds the lock file, i.e. is
    connecting right now; whether it stopped."""
    with locks.exclusive(lock_file(path), blocking=False) as stopping:
        if stopping:
            listener.close()
            path.unlink(missing_ok=True)
        return bool(stopping)


def exited(pid: int) -> bool:
    """Whether our child ``pid`` (a service just spawned) has exited (reaped here, or already reaped elsewhere)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def connect_greeted(path: Path, timeout_s: float) -> socket.socket:
    """A blocking connection to the service at ``path`` that has greeted it; OSError if nothing answers there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        if sock.recv(len(GREETING), socket.MSG_WAITALL) != GREETING:
            raise ConnectionResetError(f"the service at {path} closed the connection")
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise
