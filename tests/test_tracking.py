"""MLflow tracking: safe on a fresh store under parallel experiments, never fatal, headline metrics on
the parent run, portable store (moved checkout), all read back through the MLflow client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]

STAGE_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pipeline.tracking import stage_run
    import mlflow  # imported before the start signal, so both processes reach the store together
    start = float(sys.argv[1])
    time.sleep(max(0.0, start - time.time()))
    with stage_run("pointclouds", Path(sys.argv[2])) as run:
        run.log_metrics({"points": 7, "frames": 3})
        run.log_step("train", 1, {"loss": 0.5})
""")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty project root (dvc.yaml only) used as ``$DVC_ROOT``: a fresh MLflow store."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    for key in [k for k in os.environ if k.startswith(("DVC_", "MLFLOW_", "PROTOSCENE_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DVC_ROOT", str(root))
    monkeypatch.chdir(root)
    return root


def client_for(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def runs_of(root: Path):
    client = client_for(root)
    experiment = client.get_experiment_by_name("protoscene")
    return client, experiment, client.search_runs([experiment.experiment_id])


def test_parallel_stage_runs_on_a_fresh_store(store):
    """Two processes open their first stage run at the same moment against a store that does not exist."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.time() + 8.0  # after both have imported mlflow
    procs = [subprocess.Popen([sys.executable, "-c", STAGE_SCRIPT, str(start), str(store / "reports" / name)],
                              env={**env, "DVC_EXP_NAME": name}, stderr=subprocess.PIPE, text=True)
             for name in ("exp-a", "exp-b")]
    errors = [proc.communicate(timeout=240)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    assert not any("tracking failed" in e for e in errors), errors
    _, _, runs = runs_of(store)
    stage_runs = {r.data.tags["dvc.exp_name"]: r for r in runs if r.data.tags.get("dvc.role") == "stage"}
    parents = {r.data.tags["dvc.exp_name"]: r for r in runs if r.data.tags.get("dvc.role") == "parent"}
    assert set(stage_runs) == set(parents) == {"exp-a", "exp-b"}
    for name, run in stage_runs.items():
        assert run.info.run_name == f"{name}/pointclouds"
        assert run.data.metrics["points"] == 7 and run.data.metrics["train/loss"] == 0.5
        assert run.data.tags["mlflow.parentRunId"] == parents[name].info.run_id


def test_tracking_failure_does_not_fail_the_stage(store, monkeypatch, caplog):
    """A store that cannot be opened (not a database): one warning naming the metrics file; outputs written."""
    from pipeline.tracking import stage_run

    (store / "mlflow.db").write_bytes(b"not a database" * 100)
    with stage_run("pointclouds", store / "reports/pointclouds") as run:
        run.log_metrics({"points": 3})
        run.log_step("train", 0, {"loss": 1.0})
    assert json.loads((store / "reports/pointclouds/metrics.json").read_text()) == {"points": 3}
    assert (store / "reports/pointclouds/train.csv").read_text().splitlines() == ["step,loss", "0,1.0"]
    warnings = [r.getMessage() for r in caplog.records if "tracking failed" in r.getMessage()]
    assert len(warnings) == 1 and "reports/pointclouds/metrics.json" in warnings[0] and "relog" in warnings[0]


def test_failure_while_logging_is_not_fatal_and_relog_recovers(store, monkeypatch, caplog):
    """MLflow breaks mid-stage: the stage still completes, warns once; `relog` logs the reports afterwards."""
    import mlflow

    from pipeline.tracking import relog, stage_run

    monkeypatch.setenv("DVC_EXP_NAME", "broken")

    def locked(*args, **kwargs):
        raise RuntimeError("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(mlflow, "log_metrics", locked)
        with stage_run("laq", store / "reports/laq") as run:
            run.log_step("train", 1, {"loss": 2.0})
            run.log_step("train", 2, {"loss": 1.5})
            run.log_metrics({"probe": {"r2": 0.25}})
    assert json.loads((store / "reports/laq/metrics.json").read_text()) == {"probe": {"r2": 0.25}}
    assert sum("tracking failed" in r.getMessage() for r in caplog.records) == 1
    assert relog("laq", store / "reports/laq") == 2
    client, _, runs = runs_of(store)
    relogged = [r for r in runs if r.data.tags.get("protoscene.relogged") == "true"]
    assert len(relogged) == 1 and relogged[0].data.metrics["probe.r2"] == 0.25
    assert [m.value for m in client.get_metric_history(relogged[0].info.run_id, "train/loss")] == [2.0, 1.5]


def test_headline_metrics_and_true_status_on_the_parent_run(store, monkeypatch):
    """Headline metrics reach the parent as each stage finishes; the parent is RUNNING during a stage and
    FINISHED at the last stage's end; the experiment opens in the model-training view."""
    from pipeline.headline import HEADLINE
    from pipeline.tracking import stage_run

    monkeypatch.setenv("DVC_EXP_NAME", "exp-h")

    def parent():
        _, _, runs = runs_of(store)
        return next(r for r in runs if r.data.tags.get("dvc.role") == "parent")

    with stage_run("laq", store / "reports/laq") as run:
        run.log_metrics({"probe": {"r2": 0.4, "r2_shuffled_labels": -0.1}, "other": 3})
    assert parent().info.status == "FINISHED"
    with stage_run("evaluate", store / "reports/evaluate") as run:
        assert parent().info.status == "RUNNING" and parent().info.end_time is None
        run.log_metrics({"dataset": {"frames": 9}}, mlflow_group="stats")
        run.log_metrics({"phase1": {"model_refined": {"acc_m": 0.125, "fg_ari": 0.5}}})
    client, experiment, runs = runs_of(store)
    top = parent()
    assert top.info.status == "FINISHED"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    expected = {"headline/" + HEADLINE["laq"]["probe.r2"]: 0.4,
                "headline/" + HEADLINE["laq"]["probe.r2_shuffled_labels"]: -0.1,
                "headline/" + HEADLINE["evaluate"]["phase1.model_refined.acc_m"]: 0.125,
                "headline/" + HEADLINE["evaluate"]["phase1.model_refined.fg_ari"]: 0.5}
    assert top.data.metrics == expected
    evaluate = next(r for r in runs if r.info.run_name == "exp-h/evaluate")
    assert top.info.end_time >= evaluate.info.end_time > top.info.start_time
    keys = sorted(evaluate.data.metrics)  # compare view: headline rows before the dataset statistics
    assert keys.index("stats/dataset.frames") > max(keys.index(k) for k in keys if k.startswith("headline/"))
    assert evaluate.data.metrics["stats/dataset.frames"] == 9


def test_failed_stage_marks_parent_failed(store, monkeypatch):
    from pipeline.tracking import stage_run

    monkeypatch.setenv("DVC_EXP_NAME", "exp-f")
    with pytest.raises(ValueError), stage_run("evaluate", store / "reports/evaluate"):
        raise ValueError("bad input")
    _, _, runs = runs_of(store)
    assert {r.data.tags["dvc.role"]: r.info.status for r in runs} == {"parent": "FAILED", "stage": "FAILED"}


def test_store_follows_a_moved_checkout(tmp_path, store, monkeypatch):
    """Move the checkout with its store: old runs' artifacts are found, new ones land in the new folder."""
    from pipeline.tracking import stage_run

    monkeypatch.setenv("DVC_EXP_NAME", "before")
    figure = store / "figure.txt"
    figure.write_text("figure")
    with stage_run("evaluate", store / "reports/evaluate") as run:
        run.log_artifact(figure, "figures")
    moved = tmp_path / "moved"
    monkeypatch.chdir(tmp_path)
    shutil.move(store, moved)
    monkeypatch.setenv("DVC_ROOT", str(moved))
    monkeypatch.chdir(moved)
    monkeypatch.setenv("DVC_EXP_NAME", "after")
    with stage_run("evaluate", moved / "reports/evaluate") as run:
        run.log_artifact(moved / "figure.txt", "figures")
    client, experiment, runs = runs_of(moved)
    assert experiment.artifact_location == (moved / "mlartifacts").as_uri()
    assert len([r for r in runs if r.data.tags["dvc.role"] == "stage"]) == 2
    for run in runs:
        if run.data.tags["dvc.role"] == "stage":
            assert run.info.artifact_uri.startswith((moved / "mlartifacts").as_uri())
            local = Path(client.download_artifacts(run.info.run_id, "figures/figure.txt", str(tmp_path / run.info.run_id)))
            assert local.read_text() == "figure"
    assert not (store / "mlartifacts").exists()  # nothing written into the old location
