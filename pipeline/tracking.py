"""Metrics for DVC (JSON/CSV under ``reports/``) and the MLflow run of the current DVC experiment.

The DVC metrics files are the source of truth (small, git-diffable, offline); MLflow is the browse
and compare UI. Every stage opens :func:`stage_run`, which

- points MLflow at one SQLite store for the whole project: ``$MLFLOW_TRACKING_URI`` if set, else
  ``sqlite:///<root>/mlflow.db`` with ``<root>`` = ``$DVC_ROOT`` (the original repo, also for queued
  and ``--temp`` experiments, which run in a copy) or the project root; artifacts go to
  ``<root>/mlartifacts`` (the experiment is created once with that explicit location);
- finds or creates one parent run per DVC experiment, named ``$DVC_EXP_NAME`` (plain ``dvc repro``:
  ``repro-<git short sha>``), and starts a child run named after the stage, tagged with
  ``dvc.stage`` and ``dvc.baseline_rev``;
- writes ``reports/<stage>/metrics.json`` atomically when the stage finishes without error.

Quality metrics and run facts are kept apart: timings, throughput, peak memory, device and host
facts (:data:`RUN_FACT_KEYS`, or anything passed to :meth:`StageRun.log_run_facts`) go to
``reports/<stage>/run.json`` (not a DVC metric, ignored by git) and to MLflow, so two runs with
equal results leave the checkout clean. :attr:`StageRun.curves` hands the logged training curves to
the training steps, which draw them as ``reports/<stage>/figures/curves.png`` (:mod:`pipeline.eval.curve_figures`).

``PROTOSCENE_MLFLOW=off`` disables MLflow (logging only; outputs are unchanged, so it is safe for
DVC). See ``shared/specs/pipeline.md`` §2 for the pitfalls this design avoids.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.config import flatten, project_root
from pipeline.io import atomic

EXPERIMENT = "protoscene"
log = logging.getLogger(__name__)

RUN_FACT_KEYS = frozenset({
    "seconds", "train_seconds", "model_seconds", "seconds_this_run",  # wall-clock seconds
    "frames_per_s", "model_frames_per_s", "points_per_s", "clips_per_s",  # throughput
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


def tracking_root() -> Path:
    return Path(os.environ["DVC_ROOT"]) if os.environ.get("DVC_ROOT") else project_root()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tracking_root() / 'mlflow.db'}"


def run_name() -> str:
    """DVC experiment name, else ``repro-<short sha>`` of the workspace's HEAD."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=project_root()).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        sha = "nogit"
    return f"repro-{sha}"


def mlflow_enabled() -> bool:
    return os.environ.get("PROTOSCENE_MLFLOW", "on").lower() not in {"off", "0", "false", "no"}


class StageRun:
    """What a stage logs: final metrics (to JSON + MLflow), run facts (``run.json`` + MLflow), step
    metrics (CSV + MLflow), artifacts."""

    def __init__(self, stage: str, report_dir: Path, mlflow_module: Any | None):
        self.stage = stage
        self.report_dir = report_dir
        self.metrics: dict[str, Any] = {}
        self.run_facts: dict[str, Any] = {}
        self._mlflow = mlflow_module
        self._curves: dict[str, list[dict[str, Any]]] = {}
        self._declared: dict[str, list[str]] = {}

    def log_params(self, params: dict[str, Any], prefix: str = "") -> None:
        if self._mlflow is not None:
            flat = flatten(params, prefix)
            self._mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        """Final metrics: nested dicts allowed; numbers go to MLflow flattened with dots. Run facts
        among them (leaf keys in :data:`RUN_FACT_KEYS`) are routed to :meth:`log_run_facts`."""
        metrics, facts = split_run_facts(metrics)
        self.metrics.update(metrics)
        self._log_numbers(metrics)
        if facts:
            self.log_run_facts(facts)

    def log_run_facts(self, facts: dict[str, Any]) -> None:
        """Timings, memory, device, host: written to ``run.json`` (not a DVC metric, not in git) and
        logged to MLflow under the prefix ``run.`` (numbers as metrics, the rest as tags)."""
        self.run_facts.update(facts)
        self._log_numbers(facts, prefix="run.")
        if self._mlflow is not None:
            self._mlflow.set_tags({k: str(v)[:500] for k, v in flatten(facts, "run.").items()
                                   if not isinstance(v, int | float) or isinstance(v, bool)})

    def _log_numbers(self, values: dict[str, Any], prefix: str = "") -> None:
        if self._mlflow is not None:
            numeric = {k: float(v) for k, v in flatten(values, prefix).items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}
            if numeric:
                self._mlflow.log_metrics(numeric)

    def log_step(self, curve: str, step: int, values: dict[str, float]) -> None:
        """One row of a training curve: kept for ``reports/<stage>/<curve>.csv`` and sent to MLflow."""
        self._curves.setdefault(curve, []).append({"step": step, **values})
        if self._mlflow is not None:
            self._mlflow.log_metrics({f"{curve}/{k}": float(v) for k, v in values.items()}, step=step)

    def declare_curve(self, curve: str, columns: list[str]) -> None:
        """Make sure ``reports/<stage>/<curve>.csv`` is written (header only if no row is logged),
        for curves that may legitimately stay empty but are declared as DVC outputs."""
        self._declared[curve] = ["step", *columns]

    @property
    def curves(self) -> dict[str, list[dict[str, Any]]]:
        """Rows logged so far per curve (declared curves included, possibly empty): ``{curve: [{"step": ..}]}``."""
        return {**{curve: [] for curve in self._declared}, **self._curves}

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        if self._mlflow is not None and Path(path).exists():
            self._mlflow.log_artifact(str(path), artifact_path=folder)

    def log_dict(self, obj: dict[str, Any], artifact_file: str) -> None:
        if self._mlflow is not None:
            self._mlflow.log_dict(obj, artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self._mlflow is not None:
            self._mlflow.set_tags(tags)

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
        self.log_run_facts({"host": host_facts()})
        atomic.write_json(self.report_dir / "run.json", self.run_facts)
        self.log_artifact(self.report_dir / "run.json", "reports")


def rank_report_dir(stage: str) -> Path:
    """``reports/<stage>`` on the main process of a torchrun job (or a plain run); other ranks get a
    scratch folder and MLflow off, so only rank 0 writes metrics and logs runs."""
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        return project_root() / "reports" / stage
    os.environ["PROTOSCENE_MLFLOW"] = "off"
    return project_root() / ".cache" / f"rank{rank}" / stage


def _parent_run_id(mlflow, experiment_id: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    found = client.search_runs([experiment_id], filter_string=f"tags.`dvc.exp_name` = '{name}' and tags.`dvc.role` = 'parent'",
                               max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=name, tags={"dvc.exp_name": name, "dvc.role": "parent"})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@contextlib.contextmanager
def stage_run(stage: str, report_dir: Path | None = None) -> Iterator[StageRun]:
    """Open the tracking context of one DVC stage (see module docstring)."""
    report_dir = report_dir or project_root() / "reports" / stage
    report_dir.mkdir(parents=True, exist_ok=True)
    if not mlflow_enabled():
        run = StageRun(stage, report_dir, None)
        yield run
        run._finish()
        return
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        try:
            experiment_id = mlflow.create_experiment(EXPERIMENT, artifact_location=(tracking_root() / "mlartifacts").as_uri())
        except Exception:  # created concurrently by a parallel queue worker
            experiment_id = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    else:
        experiment_id = experiment.experiment_id
    name = run_name()
    parent = _parent_run_id(mlflow, experiment_id, name)
    tags = {"dvc.stage": os.environ.get("DVC_STAGE", stage), "dvc.exp_name": name, "dvc.role": "stage",
            "dvc.baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", "")}
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, parent_run_id=parent, tags=tags):
        run = StageRun(stage, report_dir, mlflow)
        yield run
        run._finish()
        run.log_artifact(report_dir / "metrics.json", "reports")
