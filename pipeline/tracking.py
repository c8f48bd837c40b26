"""Metrics for DVC (JSON/CSV under ``reports/``) and the MLflow run of the current DVC experiment.

The DVC metrics files are the source of truth (small, git-diffable, offline); MLflow is the browse
and compare UI. Every stage opens :func:`stage_run`, which

- points MLflow at one SQLite store for the whole project: ``$MLFLOW_TRACKING_URI`` if set, else
  ``sqlite:///<root>/mlflow.db`` with ``<root>`` = ``$PROTOSCENE_TRACKING_ROOT`` (the results preset's copies),
  ``$DVC_ROOT`` (the original repo, also for queued and ``--temp`` experiments, which run in a copy) or the
  project root; artifacts go to
  ``<root>/mlartifacts``, re-resolved on every run (a moved or copied checkout rewrites the folder
  recorded in its store, see :func:`_relocate_artifacts`);
- creates/migrates the store, the experiment (tagged for MLflow's model-training view) and the parent
  run under an exclusive file lock (``<root>/mlflow.db.lock``), so parallel queued experiments are safe;
- finds or creates one parent run per DVC experiment, named ``$DVC_EXP_NAME`` (plain ``dvc repro``:
  ``repro-<git short sha>``), running while a stage runs and finished at the last stage's end, holding
  the experiment's headline metrics (:mod:`pipeline.headline`); and starts a child run named
  ``<experiment>/<stage>``, tagged with ``dvc.stage``, ``dvc.exp_name`` and ``dvc.baseline_rev``;
- writes ``reports/<stage>/metrics.json`` atomically when the stage finishes without error.

The MLflow calls are made by default by one long-lived MLflow service process per checkout
(:mod:`pipeline.tracking_remote`: MLflow is imported and its store opened once per run, not once per stage);
``PROTOSCENE_MLFLOW=inline`` makes them in the stage's own process.

Tracking never fails a stage: any MLflow error is one warning line (the outputs are fine; ``protoscene
relog <stage>`` logs ``reports/<stage>`` again). ``PROTOSCENE_MLFLOW=off`` disables MLflow (logging
only; outputs are unchanged, so it is safe for DVC).

Quality metrics and run facts are kept apart: timings, throughput, peak memory, device and host
facts (:data:`RUN_FACT_KEYS`, or anything passed to :meth:`StageRun.log_run_facts`) go to
``reports/<stage>/run.json`` (not a DVC metric, ignored by git) and to MLflow, so two runs with
equal results leave the checkout clean. :attr:`StageRun.curves` hands the logged training curves to
the training steps, which draw them as ``reports/<stage>/figures/curves.png`` (:mod:`pipeline.eval.curve_figures`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.config import flatten, project_root
from pipeline.headline import headline_metrics
from pipeline.io import atomic, locks
from pipeline.tracking_remote import RemoteTracker, serve_forever, tracking_failed

EXPERIMENT = "protoscene"
log = logging.getLogger(__name__)

RUN_FACT_KEYS = frozenset({
    "seconds", "train_seconds", "model_seconds", "seconds_this_run",  # wall-clock seconds
    "frames_per_s", "model_frames_per_s", "points_per_s", "clips_per_s",  # throughput
    "data_seconds", "compute_seconds",  # training loops: batch building vs the rest of a step
    "peak_rss_mb", "cuda_peak_allocated_mb",  # peak memory, MiB
    "device", "world_size", "torch_threads", "resumed_from_step", "steps_this_run",  # where and how it ran
})
"""Leaf keys that describe how a run went rather than what it produced: never written to metrics.json."""


def split_run_facts(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split nested ``metrics`` into (quality metrics, run facts) by leaf key (:data:`RUN_FACT_KEYS`);
    both keep the nesting, empty sub-dicts are dropped from the facts."""
    quality: dict[str, Any] = {}
    facts: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            q, f = split_run_facts(value)
            if q or not f:  # a group made only of run facts leaves no empty dict behind
                quality[key] = q
            if f:
                facts[key] = f
        elif key in RUN_FACT_KEYS:
            facts[key] = value
        else:
            quality[key] = value
    return quality, facts


def host_facts() -> dict[str, Any]:
    """Python, platform and CPU count of this machine (for ``run.json``)."""
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}


def process_facts() -> dict[str, float]:
    """Wall seconds since the ``pipeline`` package was imported (about the stage process's start, imports
    included) and this process's peak RSS in MiB (worker processes not included)."""
    import resource

    import pipeline

    return {"seconds": round(time.perf_counter() - pipeline.STARTED, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def tracking_root() -> Path:
    """The checkout whose ``mlflow.db`` and ``mlartifacts/`` record this run: ``$PROTOSCENE_TRACKING_ROOT`` (the
    results preset runs each seed in a temporary copy and points it back at the checkout it copied), else
    ``$DVC_ROOT``, else the project root."""
    for key in ("PROTOSCENE_TRACKING_ROOT", "DVC_ROOT"):
        if os.environ.get(key):
            return Path(os.environ[key])
    return project_root()


def tracking_uri() -> str:
    """The user's ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tracking_root() / 'mlflow.db'}"


def run_name() -> str:
    """DVC experiment name, else ``repro-<short sha>`` of the workspace's HEAD."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    sha = _git_head()
    return f"repro-{sha[:7] if sha else 'nogit'}"


def _git_head() -> str:
    """The workspace's HEAD commit, or '' outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=project_root()).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return ""


def mlflow_mode() -> str:
    """``$PROTOSCENE_MLFLOW``: ``on`` (default: the MLflow service process makes the calls,
    :mod:`pipeline.tracking_remote`), ``inline`` (this process makes them) or ``off``."""
    value = os.environ.get("PROTOSCENE_MLFLOW", "on").lower()
    return "off" if value in {"off", "0", "false", "no"} else "inline" if value == "inline" else "on"


def mlflow_enabled() -> bool:
    return mlflow_mode() != "off"


def stage_session(stage: str) -> dict[str, Any]:
    """Everything the MLflow side needs to record ``stage`` of this process, as plain JSON values (the service
    process records stages of many processes, each with its own environment): the store URI, the project's
    own store file (``None`` for the user's ``$MLFLOW_TRACKING_URI``), the artifact folder, the DVC experiment
    name and the stage run's tags (DVC's, and MLflow's system tags for the user, the stage script and the
    commit)."""
    root = tracking_root()
    uri = tracking_uri()
    own_store = root / "mlflow.db"
    commit, name = _git_head(), run_name()
    tags = {"dvc.stage": os.environ.get("DVC_STAGE", stage), "dvc.exp_name": name, "dvc.role": "stage",
            "dvc.baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
            "mlflow.user": _user(), "mlflow.source.type": "LOCAL", "mlflow.source.name": f"stages/{stage}.py"}
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return {"stage": stage, "uri": uri, "own_store": str(own_store) if uri == f"sqlite:///{own_store}" else None,
            "artifact_root": (root / "mlartifacts").as_uri(), "lock": str(root / "mlflow.db.lock"),
            "run_name": name, "tags": tags}


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class StageRun:
    """What a stage logs: final metrics (to JSON + MLflow), run facts (``run.json`` + MLflow), step
    metrics (CSV + MLflow), artifacts.

    Every MLflow call is guarded: the first failure (a locked or broken store, a full disk...) is reported
    in one warning line and MLflow is off for the rest of the stage; the DVC outputs are unaffected.
    """

    def __init__(self, stage: str, report_dir: Path, mlflow_module: Any | None):
        self.stage = stage
        self.report_dir = report_dir
        self.metrics: dict[str, Any] = {}
        self.run_facts: dict[str, Any] = {}
        self._mlflow = mlflow_module
        self._curves: dict[str, list[dict[str, Any]]] = {}
        self._declared: dict[str, list[str]] = {}

    def _track(self, method: str, *args: Any, **kwargs: Any) -> None:
        """``mlflow.<method>(*args, **kwargs)`` if MLflow is on; a failure warns once and turns MLflow off."""
        if self._mlflow is None:
            return
        try:
            getattr(self._mlflow, method)(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must never fail a stage
            self._mlflow = None
            tracking_failed(self.stage, err)

    def log_params(self, params: dict[str, Any], prefix: str = "") -> None:
        if self._mlflow is not None:
            flat = flatten(params, prefix)
            self._track("log_params", {k: str(v)[:500] for k, v in flat.items()})

    def log_metrics(self, metrics: dict[str, Any], mlflow_group: str = "") -> None:
        """Final metrics: nested dicts allowed; numbers go to MLflow flattened with dots. Run facts
        among them (leaf keys in :data:`RUN_FACT_KEYS`) are routed to :meth:`log_run_facts`.

        ``mlflow_group`` prefixes the MLflow names (``stats`` -> ``stats/dataset.frames``) so that
        descriptive numbers sort after the headline ones in MLflow's compare view; the JSON keeps the
        plain nesting.
        """
        metrics, facts = split_run_facts(metrics)
        self.metrics.update(metrics)
        self._log_numbers(metrics, prefix=f"{mlflow_group}/" if mlflow_group else "")
        if facts:
            self.log_run_facts(facts)

    def log_run_facts(self, facts: dict[str, Any]) -> None:
        """Timings, memory, device, host: written to ``run.json`` (not a DVC metric, not in git) and
        logged to MLflow under the prefix ``run.`` (numbers as metrics, the rest as tags)."""
        self.run_facts.update(facts)
        self._log_numbers(facts, prefix="run.")
        tags = {k: str(v)[:500] for k, v in flatten(facts, "run.").items()
                if not isinstance(v, int | float) or isinstance(v, bool)}
        if tags:
            self._track("set_tags", tags)

    def _log_numbers(self, values: dict[str, Any], prefix: str = "") -> None:
        numeric = {prefix + k: float(v) for k, v in flatten(values).items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        if numeric:
            self._track("log_metrics", numeric)

    def log_step(self, curve: str, step: int, values: dict[str, float]) -> None:
        """One row of a training curve: kept for ``reports/<stage>/<curve>.csv`` and sent to MLflow."""
        self._curves.setdefault(curve, []).append({"step": step, **values})
        self._track("log_metrics", {f"{curve}/{k}": float(v) for k, v in values.items()}, step=step)

    def declare_curve(self, curve: str, columns: list[str]) -> None:
        """Make sure ``reports/<stage>/<curve>.csv`` is written (header only if no row is logged),
        for curves that may legitimately stay empty but are declared as DVC outputs."""
        self._declared[curve] = ["step", *columns]

    @property
    def curves(self) -> dict[str, list[dict[str, Any]]]:
        """Rows logged so far per curve (declared curves included, possibly empty): ``{curve: [{"step": ..}]}``."""
        return {**{curve: [] for curve in self._declared}, **self._curves}

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Log a file (also one still staged by an open :func:`pipeline.io.atomic.transaction`)."""
        staged = atomic.current_path(path)
        if not staged.is_file():
            return
        if staged == Path(path):
            self._track("log_artifact", str(path), artifact_path=folder)
            return
        with tempfile.TemporaryDirectory() as scratch:  # log the staged file under its final name
            named = Path(scratch) / Path(path).name
            shutil.copyfile(staged, named)
            self._track("log_artifact", str(named), artifact_path=folder)

    def log_dict(self, obj: dict[str, Any], artifact_file: str) -> None:
        self._track("log_dict", obj, artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._track("set_tags", tags)

    def _finish(self) -> None:
        for curve in self._declared:
            self._curves.setdefault(curve, [])
        for curve, rows in self._curves.items():
            buffer = io.StringIO()
            fields = sorted({k for row in rows for k in row} | set(self._declared.get(curve, [])),
                            key=lambda k: (k != "step", k))
            writer = csv.DictWriter(buffer, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
            atomic.write_text(self.report_dir / f"{curve}.csv", buffer.getvalue())
        atomic.write_json(self.report_dir / "metrics.json", self.metrics)
        self.log_run_facts({"host": host_facts(), "process": process_facts()})
        atomic.write_json(self.report_dir / "run.json", self.run_facts)
        self.log_artifact(self.report_dir / "run.json", "reports")
        self._track("log_metrics", headline_metrics(self.stage, self.metrics))


def rank_report_dir(stage: str) -> Path:
    """``reports/<stage>`` on the main process of a torchrun job (or a plain run); other ranks get a
    scratch folder and MLflow off, so only rank 0 writes metrics and logs runs."""
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        return project_root() / "reports" / stage
    os.environ["PROTOSCENE_MLFLOW"] = "off"
    return project_root() / ".cache" / f"rank{rank}" / stage


EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}  # open in the model-training view


def _relocate_artifacts(store: Path, experiment_id: str, old: str, new: str) -> None:
    """Point the experiment and its runs at ``new`` after the checkout (with its store) moved or was copied.

    MLflow keeps absolute artifact URIs in the store; this rewrites the ``old`` prefix in place, so the runs
    of a moved checkout find their artifacts again and new runs write into this checkout's folder.
    """
    with sqlite3.connect(store) as db:
        db.execute("update experiments set artifact_location = ? where experiment_id = ?", (new, int(experiment_id)))
        db.execute("update runs set artifact_uri = ? || substr(artifact_uri, ?) where experiment_id = ? "
                   "and substr(artifact_uri, 1, ?) = ?", (new, len(old) + 1, int(experiment_id), len(old), old))
    log.info("mlflow: artifact folder moved from %s to %s", old, new)


def _experiment_id(client: Any, session: dict[str, Any]) -> str:
    """Find or create the project's experiment (model-training view, this checkout's artifact folder)."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return client.create_experiment(EXPERIMENT, artifact_location=session["artifact_root"], tags=EXPERIMENT_TAGS)
    for key, value in EXPERIMENT_TAGS.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    if session["own_store"] is not None and experiment.artifact_location != session["artifact_root"]:
        _relocate_artifacts(Path(session["own_store"]), experiment.experiment_id, experiment.artifact_location,
                            session["artifact_root"])
    return experiment.experiment_id


def _parent_run_id(client: Any, experiment_id: str, session: dict[str, Any]) -> str:
    """The parent run of the session's DVC experiment (created on its first stage), marked running again."""
    name = session["run_name"]
    found = client.search_runs([experiment_id], filter_string=f"tags.`dvc.exp_name` = '{name}' and tags.`dvc.role` = 'parent'",
                               max_results=1)
    if not found:
        return client.create_run(experiment_id, run_name=name, tags={"dvc.exp_name": name, "dvc.role": "parent"}).info.run_id
    run_id = found[0].info.run_id
    client.update_run(run_id, status="RUNNING")  # the experiment runs again
    if session["own_store"] is not None:  # MLflow's API cannot clear an end time; without it the UI counts the duration on
        with sqlite3.connect(session["own_store"]) as db:
            db.execute("update runs set end_time = null where run_uuid = ?", (run_id,))
    return run_id


class _RunCalls:
    """The calls :class:`StageRun` makes (named as MLflow's fluent API) on one run, by id through an
    ``MlflowClient``: several stage runs can be open at once in one process (the service, :mod:`pipeline.tracking_remote`)."""

    def __init__(self, client: Any, run_id: str):
        self.client, self.run_id = client, run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step or 0) for k, v in metrics.items()])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, path, artifact_path)

    def log_dict(self, obj: dict[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, obj, artifact_file)


_store_files: dict[str, tuple[int, int] | None] = {}  # SQLite store URI -> (device, inode) of its file when last used


def _sqlite_file_id(uri: str) -> tuple[int, int] | None:
    try:
        stat = Path(uri.removeprefix("sqlite:///")).stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _forget_replaced_store(uri: str) -> None:
    """Drop MLflow's cached store objects when the SQLite file behind ``uri`` was deleted or replaced since this
    process last used it (the service outlives stages: after ``rm mlflow.db`` its cached connections would
    otherwise write into the deleted file, and those runs would be lost without a word)."""
    if uri.startswith("sqlite:///") and uri in _store_files and _sqlite_file_id(uri) != _store_files[uri]:
        # MLflow caches one store object and one SQLAlchemy engine per URI (private attributes: if a new MLflow
        # renames them, this raises and the stage's tracking fails with a warning, never silently)
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        _tracking_store_registry._get_store_with_resolved_uri.cache_clear()
        engine = SqlAlchemyStore._engine_map.pop(uri, None)
        if engine is not None:
            engine.dispose()
        log.info("mlflow: %s was replaced; reopened", uri)


class _Tracker:
    """The MLflow side of one stage: its stage run under the experiment's parent run, from a
    :func:`stage_session` (of this process or, in the service, of the stage's).

    Store creation/migration, the experiment and the parent run are set up under an exclusive lock on
    ``<root>/mlflow.db.lock``: parallel queued experiments never create or migrate the SQLite schema at once.
    """

    def __init__(self, session: dict[str, Any]):
        os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        self.stage = session["stage"]
        with locks.exclusive(session["lock"]):
            _forget_replaced_store(session["uri"])
            self.client = MlflowClient(tracking_uri=session["uri"])  # opening the store creates/migrates the schema
            experiment_id = _experiment_id(self.client, session)
            self.parent = _parent_run_id(self.client, experiment_id, session)
            if session["uri"].startswith("sqlite:///"):
                _store_files[session["uri"]] = _sqlite_file_id(session["uri"])
        run = self.client.create_run(experiment_id, run_name=f"{session['run_name']}/{self.stage}",
                                     tags={**session["tags"], "mlflow.parentRunId": self.parent})
        self.mlflow = _RunCalls(self.client, run.info.run_id)

    def close(self, metrics: dict[str, Any] | None, broken: bool = False) -> None:
        """End the stage run (``metrics is None``: failed) and bring the parent run up to date: headline
        metrics added, status FINISHED (or FAILED) with this stage's end time. Never raises.

        ``broken``: tracking already failed during the stage (warned once): end both runs quietly, the
        stage run as FAILED since its MLflow record is incomplete."""
        status = "FAILED" if metrics is None else "FINISHED"
        try:
            self.client.set_terminated(self.mlflow.run_id, "FAILED" if broken else status)
            headline = {} if broken else headline_metrics(self.stage, metrics or {})
            if headline:
                _RunCalls(self.client, self.parent).log_metrics(headline)
            self.client.set_terminated(self.parent, status)
        except Exception as err:  # noqa: BLE001 - tracking must never fail a stage
            if not broken:
                tracking_failed(self.stage, err)


def _open_tracker(session: dict[str, Any]) -> _Tracker | None:
    try:
        return _Tracker(session)
    except Exception as err:  # noqa: BLE001 - tracking must never fail a stage
        tracking_failed(session["stage"], err)
        return None


def _start_tracker(stage: str) -> _Tracker | RemoteTracker | None:
    """The tracker of ``stage`` for :data:`mlflow_mode`: none (off), this process's (inline), or a session with
    the MLflow service (on; this process's when the service cannot be reached, said in one info line)."""
    mode = mlflow_mode()
    if mode == "off":
        return None
    session = stage_session(stage)
    if mode == "on":
        try:
            return RemoteTracker(session)
        except OSError as err:
            log.info("mlflow: the tracking service is not reachable (%s); logging from the stage process", err)
    return _open_tracker(session)


_started_early: dict[str, tuple[int, Any]] = {}  # stage -> (pid of the starting process, its tracker)


@contextlib.contextmanager
def early_tracking(stage: str) -> Iterator[None]:
    """Open ``stage``'s session with the MLflow service now, before the stage imports its libraries (torch, scipy,
    ...), for the duration of the block.

    The service opens the stage run (and, if it has just started, imports MLflow: ~4 s of CPU) beside the
    stage's own imports instead of after a short stage's work. :func:`stage_run` of the same stage in the same
    process, inside the block, adopts it. If the block ends without that (the stage failed on bad input before
    opening its run, say), the session is closed and the stage run recorded as FAILED. A no-op when MLflow calls
    are not made by the service (``PROTOSCENE_MLFLOW`` off/inline) or on a torchrun rank other than 0.
    """
    started = mlflow_mode() == "on" and os.environ.get("RANK", "0") == "0" and stage not in _started_early
    if started:
        _started_early[stage] = (os.getpid(), _start_tracker(stage))
    try:
        yield
    finally:
        if started and (tracker := _adopt_early(stage)) is not None:
            tracker.close(None)


def _adopt_early(stage: str) -> Any:
    """The tracker :func:`early_tracking` started for ``stage`` in this very process (not in a parent before a
    fork), taken out of the registry."""
    pid, tracker = _started_early.get(stage, (None, None))
    if pid != os.getpid():
        return None
    del _started_early[stage]
    return tracker


@contextlib.contextmanager
def stage_run(stage: str, report_dir: Path | None = None) -> Iterator[StageRun]:
    """Open the tracking context of one DVC stage (see module docstring)."""
    report_dir = report_dir or project_root() / "reports" / stage
    report_dir.mkdir(parents=True, exist_ok=True)
    started_here = _started_early.get(stage, (None, None))[0] == os.getpid()  # by early_tracking, not before a fork
    tracker = _adopt_early(stage) if started_here else _start_tracker(stage)
    run = StageRun(stage, report_dir, tracker.mlflow if tracker is not None else None)
    try:
        yield run
    except BaseException:
        if tracker is not None:
            tracker.close(None, broken=run._mlflow is None)
        raise
    run._finish()
    run.log_artifact(report_dir / "metrics.json", "reports")
    if tracker is not None:
        tracker.close(run.metrics, broken=run._mlflow is None)


def relog(stage: str, report_dir: Path | None = None) -> int:
    """Log ``reports/<stage>`` (metrics.json and its curve CSVs) as a new run of ``stage`` under the current
    experiment's parent run, e.g. after a tracking failure. Files are only read. Returns the rows logged."""
    report_dir = report_dir or project_root() / "reports" / stage
    path = report_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    tracker = _Tracker(stage_session(stage))
    run = StageRun(stage, report_dir, tracker.mlflow)
    run.set_tags({"protoscene.relogged": "true"})
    run.log_metrics(metrics)
    run.log_metrics(headline_metrics(stage, metrics))
    rows = 0
    for curve in sorted(report_dir.glob("*.csv")):
        with curve.open(newline="") as handle:
            for row in csv.DictReader(handle):
                step = int(row.pop("step"))
                run._track("log_metrics", {f"{curve.stem}/{k}": float(v) for k, v in row.items() if v not in ("", None)},
                           step=step)
                rows += 1
    run.log_artifact(path, "reports")
    tracker.close(metrics)
    return rows


def _serve_main() -> None:
    """Entry point of the MLflow service process (``python -m pipeline.tracking SOCKET``, started by
    :class:`pipeline.tracking_remote.RemoteTracker` when no service answers): serve stage sessions until idle."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_forever(Path(sys.argv[1]), _open_tracker)


if __name__ == "__main__":
    _serve_main()
