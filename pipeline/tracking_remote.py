"""The MLflow service: one long-lived process per checkout that makes the MLflow calls of every stage, so that
importing MLflow and opening its store (~4.5 s of CPU on a 2-core machine) is paid once per ``dvc repro``, not
once per stage.

A stage (:func:`pipeline.tracking.stage_run`) connects to the service's Unix socket, starting the service if none
answers, and sends its calls as JSON lines (:class:`RemoteTracker`): first the session (:func:`pipeline.tracking.stage_session`:
store URI, experiment name, tags), then one line per MLflow call, then ``close``. The service reads each connection
in its own thread at once (a stage never blocks on a full socket), records the stage run exactly as an in-process
tracker would (:class:`pipeline.tracking._Tracker`, the same lock, parent run and tags), and answers ``close``
with ``done`` and the warnings the session raised; the stage waits for that answer, so the MLflow record is
complete when the stage's process exits, and prints the warnings itself. Tracking stays never-fatal: a service
that dies is one warning line in the stage, and a stage killed before closing (the connection just ends) leaves
its runs FAILED.

The service listens on ``$TMPDIR/protoscene-<uid>/mlflow-<key>.sock`` (a folder only the user can enter), where
``<key>`` hashes the Python interpreter, this checkout's code folder, the tracking code itself and the ``MLFLOW_*``
environment but the store URI (which each session names): a different checkout, an edited tracker or other MLflow
settings (credentials, say) get their own service. It writes its log next to the socket
(``.log``) and exits after ``$PROTOSCENE_MLFLOW_IDLE_S`` seconds (default 60) without a connected stage. Starting
and stopping are serialized by a lock file beside the socket, so two stages never start two services and a stage
never connects to one that is stopping.

Files given to ``log_artifact`` are copied into a spool folder first (a stage may delete or replace them right
after the call); the stage removes the folder once the service has answered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.io import locks, user_sockets

log = logging.getLogger("pipeline.tracking")

CODE_ROOT = Path(__file__).resolve().parents[1]
TRACKING_CODE = ("pipeline/tracking.py", "pipeline/tracking_remote.py", "pipeline/headline.py")
CONNECT_TIMEOUT_S = 30.0


def tracking_failed(stage: str, err: BaseException) -> None:
    """One warning line: what failed, that the outputs are fine, and how to log the run again."""
    reason = (str(err).strip().splitlines() or [""])[0][:300]
    log.warning("mlflow tracking failed for stage %s (%s: %s); the stage outputs are fine; its metrics are in "
                "reports/%s/metrics.json; log them again with `protoscene relog %s`", stage, type(err).__name__,
                reason, stage, stage)


def _json_value(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    return value.item() if getattr(value, "ndim", None) == 0 else value.tolist()


def service_socket() -> Path:
    """Where this checkout's MLflow service listens (see the module docstring for the key). OSError if the
    folder for it cannot be made, is not the user's own, or the path is too long."""
    mlflow_settings = sorted(f"{k}={v}" for k, v in os.environ.items()
                             if k.startswith("MLFLOW_") and k != "MLFLOW_TRACKING_URI")
    code = [(CODE_ROOT / name).read_bytes() for name in TRACKING_CODE]
    return user_sockets.socket_path("mlflow", [sys.executable, str(CODE_ROOT), *mlflow_settings, *code])


def connect_service() -> socket.socket:
    """A connection to this checkout's MLflow service, started first if none answers. OSError if it cannot be."""
    if not user_sockets.available():
        raise OSError("Unix sockets are not available on this platform")
    path = service_socket()
    with locks.exclusive(user_sockets.lock_file(path)):  # one stage at a time starts a service or connects to one
        with contextlib.suppress(OSError):
            return user_sockets.connect_greeted(path, CONNECT_TIMEOUT_S)
        path.unlink(missing_ok=True)  # a service that died without cleaning up
        pid = user_sockets.spawn_service("pipeline.tracking", path, CODE_ROOT)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            try:
                return user_sockets.connect_greeted(path, CONNECT_TIMEOUT_S)
            except OSError:
                if user_sockets.exited(pid) or time.monotonic() > deadline:  # a service that exited will not answer
                    raise OSError(f"the MLflow service did not start (see {path.with_suffix('.log')})") from None
                time.sleep(0.05)


class _Calls:
    """Stands in for the ``mlflow`` calls inside :class:`pipeline.tracking.StageRun`: ``calls.<method>(*args,
    **kwargs)`` sends the call to the service and returns at once."""

    def __init__(self, tracker: RemoteTracker):
        self._tracker = tracker

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> None:
            if method == "log_artifact":  # the file may change after this call: send a private copy
                args = (self._tracker.spool_copy(Path(args[0])), *args[1:])
            self._tracker.send({"call": method, "args": list(args), "kwargs": kwargs})

        return call


class RemoteTracker:
    """One stage's session with the MLflow service, with the interface of :class:`pipeline.tracking._Tracker`:
    ``mlflow`` (the calls) and :meth:`close`. OSError from the constructor if the service cannot be reached."""

    def __init__(self, session: dict[str, Any]):
        self.stage = session["stage"]
        self._socket = connect_service()
        try:
            self.send({"open": session})
        except OSError:
            self._socket.close()
            raise
        self._spool = Path(tempfile.mkdtemp(prefix=f"protoscene-mlflow-{self.stage}-"))
        self._files = 0
        self.mlflow = _Calls(self)

    def send(self, message: dict[str, Any]) -> None:
        self._socket.sendall((json.dumps(message, default=_json_value) + "\n").encode())

    def spool_copy(self, path: Path) -> str:
        self._files += 1
        copy = self._spool / str(self._files) / path.name
        copy.parent.mkdir()
        shutil.copyfile(path, copy)
        return str(copy)

    def close(self, metrics: dict[str, Any] | None, broken: bool = False) -> None:
        """End the stage run (``metrics is None``: failed; see ``_Tracker.close``), wait for the service's answer
        and print the warnings of the session. Never raises."""
        answer: dict[str, Any] = {}
        try:
            self.send({"close": True, "metrics": metrics, "broken": broken})
            self._socket.shutdown(socket.SHUT_WR)
            line = self._socket.makefile("rb").readline()
            answer = json.loads(line) if line else {}
        except (OSError, ValueError) as err:
            if not broken:
                tracking_failed(self.stage, err)
            return
        finally:
            self._socket.close()
            shutil.rmtree(self._spool, ignore_errors=True)
        for warning in answer.get("warnings", []):
            log.warning("%s", warning)
        if not answer.get("done") and not broken:
            tracking_failed(self.stage, ConnectionResetError("the MLflow service ended before recording the stage"))


class _SessionWarnings(logging.Handler):
    """Keeps the warnings logged in a session's thread, for the session's answer."""

    local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        kept = getattr(self.local, "warnings", None)
        if kept is not None and record.levelno >= logging.WARNING:
            kept.append(record.getMessage())


def _read_lines(connection: socket.socket, lines: queue.Queue) -> None:
    with contextlib.suppress(OSError):
        for line in connection.makefile("rb"):
            lines.put(line)
    lines.put(None)  # end of input


def serve_session(connection: socket.socket, open_tracker: Callable[[dict[str, Any]], Any]) -> None:
    """One stage's connection: read its calls at once, open its run (``open_tracker``:
    :func:`pipeline.tracking._open_tracker`), replay the calls, end the runs at ``close`` (or FAILED if the
    connection ends without it) and answer ``done`` with the session's warnings."""
    _SessionWarnings.local.warnings = []
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(connection, lines), daemon=True).start()
    tracker, broken, stage = None, True, "?"
    try:
        while (line := lines.get()) is not None:
            message = json.loads(line)
            if "open" in message:
                stage = message["open"]["stage"]
                tracker = open_tracker(message["open"])
                broken = tracker is None
            elif "close" in message:
                if tracker is not None:
                    tracker.close(message["metrics"], broken=broken or message["broken"])
                    tracker = None
                answer = {"done": True, "warnings": _SessionWarnings.local.warnings}
                connection.sendall((json.dumps(answer) + "\n").encode())
                return
            elif not broken:
                try:
                    getattr(tracker.mlflow, message["call"])(*message["args"], **message["kwargs"])
                except Exception as err:  # noqa: BLE001 - tracking must never fail a stage
                    broken = True
                    tracking_failed(stage, err)
        if tracker is not None:  # the stage died before closing
            tracker.close(None, broken=True)
    except Exception:  # noqa: BLE001 - one broken session must not stop the service
        log.exception("mlflow service: session of stage %s failed", stage)
    finally:
        with contextlib.suppress(OSError):
            connection.close()


def serve_forever(path: Path, open_tracker: Callable[[dict[str, Any]], Any]) -> None:
    """Listen on ``path``, one thread per stage session; exit after ``$PROTOSCENE_MLFLOW_IDLE_S`` seconds with no
    session (taking the start/stop lock, so no stage is connecting at that moment)."""
    idle_s = float(os.environ.get("PROTOSCENE_MLFLOW_IDLE_S", "60"))
    logging.getLogger("pipeline.tracking").addHandler(_SessionWarnings())
    listener = user_sockets.listen(path)
    listener.settimeout(0.5)
    log.info("mlflow service: listening on %s (pid %d)", path, os.getpid())
    sessions: list[threading.Thread] = []
    last_active = time.monotonic()
    while True:
        connection = None
        try:
            connection, _ = listener.accept()
            connection.settimeout(None)
            connection.sendall(user_sockets.GREETING)
        except TimeoutError:
            sessions = [thread for thread in sessions if thread.is_alive()]
            if sessions:
                last_active = time.monotonic()
            elif time.monotonic() - last_active > idle_s and user_sockets.stop_if_unclaimed(listener, path):
                log.info("mlflow service: idle for %.0f s, stopped", idle_s)
                return
            continue
        except OSError as err:  # a stage gone before the greeting, out of file descriptors...: serve on
            log.warning("mlflow service: a connection failed (%s)", err)
            if connection is not None:
                connection.close()
            time.sleep(0.1)
            continue
        thread = threading.Thread(target=serve_session, args=(connection, open_tracker), daemon=True)
        thread.start()
        sessions.append(thread)
