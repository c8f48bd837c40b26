"""The MLflow service (:mod:`pipeline.tracking_remote`): one process records the stages of a whole run, stops when
idle and is started again on demand (also over a stale socket file), and a service that dies mid-stage costs
the stage one warning line, never its outputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sys
import time
import uuid

import pytest

from pipeline.tracking import stage_run
from pipeline.tracking_remote import service_socket
from tests.test_tracking import runs_of, store  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def own_service(store, monkeypatch):  # noqa: F811 - the fixture
    """A service of this test alone (an ``MLFLOW_*`` variable is part of the service's key), stopping after 2 idle s."""
    monkeypatch.setenv("MLFLOW_PROTOSCENE_TEST_KEY", uuid.uuid4().hex)
    monkeypatch.setenv("PROTOSCENE_MLFLOW_IDLE_S", "2")
    monkeypatch.setenv("DVC_EXP_NAME", "svc")
    path = service_socket()
    yield store, path
    for pid in _service_pids(path):
        _kill(pid)


def _service_pids(path) -> list[int]:
    log = path.with_suffix(".log")
    return [int(p) for p in re.findall(r"listening on .* \(pid (\d+)\)", log.read_text())] if log.exists() else []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_one_service_records_consecutive_stages(own_service):
    root, path = own_service
    for stage in ("pointclouds", "frames"):
        with stage_run(stage, root / "reports" / stage) as run:
            run.log_metrics({"frames": 3})
            run.log_step("train", 0, {"loss": 1.0})
    assert len(_service_pids(path)) == 1
    _, _, runs = runs_of(root)
    stages = {r.info.run_name: r for r in runs if r.data.tags.get("dvc.role") == "stage"}
    assert set(stages) == {"svc/pointclouds", "svc/frames"}
    assert all(r.info.status == "FINISHED" and r.data.metrics["frames"] == 3.0
               and r.data.metrics["train/loss"] == 1.0 for r in stages.values())
    assert {r.data.tags["mlflow.source.name"] for r in stages.values()} == {"stages/pointclouds.py", "stages/frames.py"}


def test_idle_service_stops_and_a_new_one_starts_over_a_stale_socket(own_service):
    root, path = own_service
    with stage_run("pointclouds", root / "reports/pointclouds") as run:
        run.log_metrics({"points": 1})
    _wait_for(lambda: not path.exists())  # stopped after 2 idle seconds, socket removed
    assert "idle for 2 s, stopped" in path.with_suffix(".log").read_text()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a socket file nothing listens on
    stale.bind(str(path))
    stale.close()
    with stage_run("frames", root / "reports/frames") as run:
        run.log_metrics({"points": 2})
    assert len(_service_pids(path)) == 2
    _, _, runs = runs_of(root)
    finished = {r.info.run_name for r in runs if r.info.status == "FINISHED"}
    assert {"svc/pointclouds", "svc/frames"} <= finished


def test_service_killed_mid_stage_costs_one_warning_not_the_outputs(own_service, caplog):
    root, path = own_service
    with stage_run("laq", root / "reports/laq") as run:
        run.log_step("train", 0, {"loss": 2.0})
        _wait_for(lambda: _service_pids(path))
        _kill(_service_pids(path)[0])
        _wait_for(lambda: not _alive(_service_pids(path)[0]))
        for step in range(1, 200):  # sends fail once the socket is gone
            run.log_step("train", step, {"loss": 1.0})
        run.log_metrics({"probe": {"r2": 0.5}})
    assert json.loads((root / "reports/laq/metrics.json").read_text()) == {"probe": {"r2": 0.5}}
    assert len((root / "reports/laq/train.csv").read_text().splitlines()) == 201
    warnings = [r.getMessage() for r in caplog.records if "tracking failed" in r.getMessage()]
    assert len(warnings) == 1 and "relog" in warnings[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a killed child of this process stays a zombie until reaped
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_connections_that_vanish_do_not_stop_the_service(own_service):
    """Clients that hang up before the greeting, or in the middle of a session, cost the service nothing."""
    root, path = own_service
    with stage_run("pointclouds", root / "reports/pointclouds") as run:
        run.log_metrics({"points": 1})
    for message in (b"", b'{"open": {"stage": "frames"'):  # gone at once; gone mid-line
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        client.sendall(message)
        client.close()
    with stage_run("frames", root / "reports/frames") as run:
        run.log_metrics({"points": 2})
    assert len(_service_pids(path)) == 1
    _, _, runs = runs_of(root)
    assert {"svc/pointclouds", "svc/frames"} <= {r.info.run_name for r in runs if r.info.status == "FINISHED"}


def test_a_store_deleted_between_stages_is_created_again(own_service):
    """The service outlives stages; a store removed in between (``rm mlflow.db``) must not swallow the next runs."""
    root, path = own_service
    with stage_run("pointclouds", root / "reports/pointclouds") as run:
        run.log_metrics({"points": 1})
    (root / "mlflow.db").unlink()
    with stage_run("frames", root / "reports/frames") as run:
        run.log_metrics({"points": 2})
    assert len(_service_pids(path)) == 1
    _, _, runs = runs_of(root)
    assert {r.info.run_name for r in runs} == {"svc", "svc/frames"}


def test_a_service_that_cannot_start_means_inline_tracking_at_once(own_service, monkeypatch, caplog):
    """No wait for a service that died at start (here: an interpreter that exits at once): the stage says so in
    one info line and records its run from its own process."""
    root, _ = own_service
    monkeypatch.setattr(sys, "executable", shutil.which("false"))
    # A start-up deadline far beyond what the inline fallback takes even on a loaded machine (~20 s seen): the
    # bound below fails only if the stage waited for the deadline instead of noticing the service had exited.
    monkeypatch.setattr("pipeline.tracking_remote.CONNECT_TIMEOUT_S", 240.0)
    caplog.set_level("INFO", logger="pipeline.tracking")
    start = time.monotonic()
    with stage_run("pointclouds", root / "reports/pointclouds") as run:
        run.log_metrics({"points": 4})
    assert time.monotonic() - start < 120  # not the start-up deadline
    assert any("tracking service is not reachable" in r.getMessage() for r in caplog.records)
    _, _, runs = runs_of(root)
    assert [r.data.metrics["points"] for r in runs if r.info.run_name == "svc/pointclouds"] == [4.0]


def test_a_socket_path_too_long_means_inline_tracking_at_once(own_service, monkeypatch, tmp_path, caplog):
    """A temporary folder too deep for a Unix socket name: inline tracking, said in one info line, no wait."""
    root, _ = own_service
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr("tempfile.tempdir", str(deep))
    caplog.set_level("INFO", logger="pipeline.tracking")
    with stage_run("frames", root / "reports/frames") as run:
        run.log_metrics({"points": 5})
    assert any("too long for a Unix socket" in r.getMessage() for r in caplog.records)
    _, _, runs = runs_of(root)
    assert [r.data.metrics["points"] for r in runs if r.info.run_name == "svc/frames"] == [5.0]
