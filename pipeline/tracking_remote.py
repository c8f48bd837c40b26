"""A stage's MLflow calls in a helper process, so that importing MLflow (~3.5 s of CPU on a 2-core machine)
overlaps with the stage's own start-up and work instead of preceding it.

:func:`pipeline.tracking.stage_run` starts ``python -m pipeline.tracking <stage>`` when the stage opens
and hands it every MLflow call as one JSON line on its standard input (:class:`RemoteTracker`); the helper
opens the stage run exactly as an in-process tracker would (:class:`pipeline.tracking._Tracker`, the same lock,
parent run and tags), replays the calls in order, and ends the runs when the stage closes. The stage waits for
the helper at its end, so the MLflow record is complete when the stage's process exits. Tracking stays
never-fatal: an MLflow failure is one warning line from the helper (its standard error is the stage's), and a
stage killed before closing (no ``close`` line: the pipe just ends) leaves its runs FAILED.

Files given to ``log_artifact`` are copied into a spool folder first (a stage may delete or replace them right
after the call); the helper removes the folder when it is done.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO


log = logging.getLogger("pipeline.tracking")


def tracking_failed(stage: str, err: BaseException) -> None:
    """One warning line: what failed, that the outputs are fine, and how to log the run again."""
    reason = (str(err).strip().splitlines() or [""])[0][:300]
    log.warning("mlflow tracking failed for stage %s (%s: %s); the stage outputs are fine; its metrics are in "
                "reports/%s/metrics.json; log them again with `protoscene relog %s`", stage, type(err).__name__,
                reason, stage, stage)


def _json_value(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    return value.item() if getattr(value, "ndim", None) == 0 else value.tolist()


class _Calls:
    """Stands in for the ``mlflow`` module inside :class:`pipeline.tracking.StageRun`: ``calls.<method>(*args,
    **kwargs)`` sends the call to the helper process and returns at once."""

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
    """The helper process of one stage, with the interface of :class:`pipeline.tracking._Tracker`: ``mlflow``
    (the calls) and :meth:`close`."""

    def __init__(self, stage: str):
        self._spool = Path(tempfile.mkdtemp(prefix=f"protoscene-mlflow-{stage}-"))
        self.stage = stage
        code_root = str(Path(__file__).resolve().parents[1])  # the helper runs this process's code, from any cwd
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [code_root, os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen([sys.executable, "-m", "pipeline.tracking", stage, str(self._spool)],
                                         stdin=subprocess.PIPE, text=True, env=env)
        self._files = 0
        self.mlflow = _Calls(self)

    def send(self, message: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(message, default=_json_value) + "\n")

    def spool_copy(self, path: Path) -> str:
        self._files += 1
        copy = self._spool / str(self._files) / path.name
        copy.parent.mkdir()
        shutil.copyfile(path, copy)
        return str(copy)

    def close(self, metrics: dict[str, Any] | None, broken: bool = False) -> None:
        """End the stage run (``metrics is None``: failed; see ``_Tracker.close``) and wait for the helper.
        Never raises: a helper that died has already said why on standard error."""
        try:
            self.send({"close": True, "metrics": metrics, "broken": broken})
            assert self._process.stdin is not None
            self._process.stdin.close()
        except (OSError, ValueError):  # the helper is gone (broken pipe): it warned, nothing to end
            pass
        status = self._process.wait()
        shutil.rmtree(self._spool, ignore_errors=True)
        if status != 0:  # it could not even warn (e.g. it failed to start)
            tracking_failed(self.stage, RuntimeError(f"the MLflow helper process exited with status {status}"))


def _read_lines(stream: TextIO, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)  # end of input


def serve(stage: str, stream: TextIO, open_tracker: Callable[[str], Any]) -> None:
    """The helper: read calls from ``stream`` at once (the stage never blocks on a full pipe), open the stage run
    (``open_tracker``: :func:`pipeline.tracking._open_tracker`), replay the calls, end the runs at ``close`` (or
    FAILED if the input ends without it)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(stream, lines), daemon=True).start()
    tracker = open_tracker(stage)  # imports MLflow: the slow part, while the stage works
    broken = tracker is None
    while (line := lines.get()) is not None:
        message = json.loads(line)
        if "close" in message:
            if tracker is not None:
                tracker.close(message["metrics"], broken=broken or message["broken"])
            return
        if broken:
            continue
        try:
            getattr(tracker.mlflow, message["call"])(*message["args"], **message["kwargs"])
        except Exception as err:  # noqa: BLE001 - tracking must never fail a stage
            broken = True
            tracking_failed(stage, err)
    if tracker is not None:  # the stage died before closing
        tracker.close(None, broken=True)
