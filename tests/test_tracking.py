"""MLflow tracking: safe on a fresh store under parallel experiments, never fatal, headline metrics on
the parent run, portable store (moved checkout), all read back through the MLflow client; quality metrics
(``metrics.json``, a DVC metric) kept apart from run facts (``run.json``: timings, memory, device, host);
the logged training curves kept for the training steps' figure."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.tracking import RUN_FACT_KEYS, split_run_facts, stage_run

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


def empty_project(root: Path) -> Path:
    """An empty project root (``dvc.yaml`` only): a fresh MLflow store once a stage logs there."""
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    return root


def clear_tracking_env(monkeypatch) -> None:
    """No DVC_, MLFLOW_ or PROTOSCENE_ variable of the calling environment reaches the test."""
    for key in [k for k in os.environ if k.startswith(("DVC_", "MLFLOW_", "PROTOSCENE_"))]:
        monkeypatch.delenv(key)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty project root (dvc.yaml only) used as ``$DVC_ROOT``: a fresh MLflow store."""
    root = empty_project(tmp_path / "project")
    clear_tracking_env(monkeypatch)
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


@pytest.mark.parametrize("mode", ["on", "inline"])
def test_tracking_failure_does_not_fail_the_stage(store, monkeypatch, caplog, capfd, mode):
    """A store that cannot be opened (not a database): one warning naming the metrics file (from the helper
    process by default, else from the stage's); outputs written."""
    from pipeline.tracking import stage_run

    monkeypatch.setenv("PROTOSCENE_MLFLOW", mode)
    (store / "mlflow.db").write_bytes(b"not a database" * 100)
    with stage_run("pointclouds", store / "reports/pointclouds") as run:
        run.log_metrics({"points": 3})
        run.log_step("train", 0, {"loss": 1.0})
    assert json.loads((store / "reports/pointclouds/metrics.json").read_text()) == {"points": 3}
    assert (store / "reports/pointclouds/train.csv").read_text().splitlines() == ["step,loss", "0,1.0"]
    lines = [r.getMessage() for r in caplog.records] + capfd.readouterr().err.splitlines()
    warnings = [line for line in lines if "tracking failed" in line]
    assert len(warnings) == 1 and "reports/pointclouds/metrics.json" in warnings[0] and "relog" in warnings[0]


def test_failure_while_logging_is_not_fatal_and_relog_recovers(store, monkeypatch, caplog):
    """MLflow breaks mid-stage: the stage still completes, warns once; `relog` logs the reports afterwards."""
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import relog, stage_run

    monkeypatch.setenv("DVC_EXP_NAME", "broken")
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "inline")  # the patched client is this process's
    log_batch = MlflowClient.log_batch

    def locked(self, run_id, metrics=(), **kwargs):
        if metrics:
            raise RuntimeError("database is locked")
        return log_batch(self, run_id, metrics=metrics, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "log_batch", locked)
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
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "inline")  # RUNNING is checked from inside the stage: no helper delay

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

# What a run fact looks like by name, independent of RUN_FACT_KEYS: time, rate, memory, where it ran.
TIMING_LIKE = re.compile(r"(second|_per_s$|_s$|rss|memory|_mb$|_gb$|device|threads|world_size|host|resumed|this_run)")


def test_split_keeps_nesting_and_moves_only_run_facts():
    metrics = {"train": {"steps": 3, "train_seconds": 1.5, "frames_per_s": 2.0, "device": "cpu",
                         "final_train": {"chamfer_m": 0.2}},
               "probe": {"r2": 0.1}, "peak_rss_mb": 800.0, "timing": {"seconds": 4.0}}
    quality, facts = split_run_facts(metrics)
    assert quality == {"train": {"steps": 3, "final_train": {"chamfer_m": 0.2}}, "probe": {"r2": 0.1}}
    assert facts == {"train": {"train_seconds": 1.5, "frames_per_s": 2.0, "device": "cpu"}, "peak_rss_mb": 800.0,
                     "timing": {"seconds": 4.0}}


def test_every_run_fact_key_looks_like_a_run_fact():
    assert all(TIMING_LIKE.search(key) for key in RUN_FACT_KEYS)


def test_stage_writes_metrics_without_timings_and_run_json_with_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    with stage_run("demo", tmp_path) as run:
        run.log_metrics({"train": {"steps": 2, "train_seconds": 9.9, "frames_per_s": 3.3, "world_size": 1},
                         "seconds": 1.0, "peak_rss_mb": 10.0, "acc_m": 0.5})
        run.log_run_facts({"model_seconds": 0.7})
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    facts = json.loads((tmp_path / "run.json").read_text())
    flat = json.dumps(metrics)
    assert not [k for k in re.findall(r'"([^"]+)":', flat) if TIMING_LIKE.search(k)], metrics
    assert metrics == {"train": {"steps": 2}, "acc_m": 0.5}
    assert facts["train"] == {"train_seconds": 9.9, "frames_per_s": 3.3, "world_size": 1}
    assert facts["seconds"] == 1.0 and facts["peak_rss_mb"] == 10.0 and facts["model_seconds"] == 0.7
    assert facts["host"]["cpus"] >= 1


def test_committed_metrics_hold_no_run_facts():
    """The committed ``reports/<stage>/metrics.json`` files (benchmarks under reports/bench excepted)."""
    from pipeline.config import flatten, project_root

    for path in sorted((project_root() / "reports").glob("*/metrics.json")):
        keys = [k.rsplit(".", 1)[-1] for k in flatten(json.loads(path.read_text()))]
        assert not [k for k in keys if k in RUN_FACT_KEYS], path


def test_curves_hold_logged_and_declared_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    with stage_run("demo", tmp_path) as run:
        run.declare_curve("codebook", ["replaced"])
        for step in range(3):
            run.log_step("train", step, {"loss": 10.0 / (step + 1)})
        assert run.curves == {"codebook": [], "train": [{"step": s, "loss": 10.0 / (s + 1)} for s in range(3)]}


def _record(root: Path) -> list[dict]:
    """Every run of the store without ids and times: name, status, tags, params, metric histories, artifacts."""
    client, _, runs = runs_of(root)
    volatile = {"mlflow.parentRunId", "mlflow.user"}  # and the mlflow.source.* tags: where the calls came from
    record = []
    for r in sorted(runs, key=lambda r: r.info.run_name):
        history = {k: [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, k)] for k in r.data.metrics
                   if not k.startswith("run.process.")}  # this process's age and memory
        artifacts = sorted(f.path for f in client.list_artifacts(r.info.run_id, "reports"))
        record.append({"name": r.info.run_name, "status": r.info.status, "params": r.data.params, "metrics": history,
                       "tags": {k: v for k, v in r.data.tags.items() if k not in volatile and not k.startswith("mlflow.source.")},
                       "artifacts": artifacts})
    return record


def test_helper_process_records_what_the_stage_process_would(tmp_path, monkeypatch):
    """The default helper-process tracking leaves the same MLflow record as in-process tracking, for a stage
    that finishes (params, final metrics, run facts, curves, artifacts, headline on the parent) and one that fails."""
    records = {}
    for mode in ("inline", "on"):
        root = empty_project(tmp_path / mode)
        clear_tracking_env(monkeypatch)
        monkeypatch.setenv("DVC_ROOT", str(root))
        monkeypatch.setenv("DVC_EXP_NAME", "exp-same")
        monkeypatch.setenv("PROTOSCENE_MLFLOW", mode)
        monkeypatch.chdir(root)
        with stage_run("laq", root / "reports/laq") as run:
            run.log_params({"laq": {"steps": 3, "lr": 0.1}})
            for step in range(3):
                run.log_step("train", step, {"loss": 1.0 / (step + 1)})
            run.log_metrics({"probe": {"r2": 0.4, "r2_shuffled_labels": -0.1}, "seconds": 2.5})
        with pytest.raises(ValueError), stage_run("evaluate", root / "reports/evaluate") as run:
            run.log_metrics({"phase1": {"model_refined": {"acc_m": 0.125}}})
            raise ValueError("bad input")
        records[mode] = _record(root)
    assert [r["name"] for r in records["on"]] == ["exp-same", "exp-same/evaluate", "exp-same/laq"]
    assert records["on"] == records["inline"]


def test_user_store_elsewhere_is_used_and_never_relocated(tmp_path, monkeypatch):
    """``$MLFLOW_TRACKING_URI`` names a store outside the project (the results preset's copies log into the
    main checkout's store): every stage run lands there, without a warning, and its experiment keeps its
    artifact folder (nothing is relocated into the copy)."""
    main, copy = empty_project(tmp_path / "main"), empty_project(tmp_path / "copy")
    clear_tracking_env(monkeypatch)
    monkeypatch.chdir(main)
    monkeypatch.setenv("DVC_ROOT", str(main))
    with stage_run("download", main / "reports/download") as run:  # creates the main store
        run.log_metrics({"files": 1})
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(copy))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{main / 'mlflow.db'}")
    monkeypatch.setenv("DVC_EXP_NAME", "results-seed0")
    for stage in ("pointclouds", "frames"):  # the second run comes after the first applied the URI
        with stage_run(stage, copy / "reports" / stage) as run:
            run.log_metrics({"frames": 3})
    assert not (copy / "mlflow.db").exists()
    client, experiment, runs = runs_of(main)
    assert {r.info.run_name for r in runs} >= {"results-seed0/pointclouds", "results-seed0/frames"}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert experiment.artifact_location == (main / "mlartifacts").as_uri()


def test_preset_copies_record_into_the_checkout_even_on_a_fresh_store(tmp_path, monkeypatch):
    """The results preset runs each seed in a temporary copy with ``$PROTOSCENE_TRACKING_ROOT`` = the checkout. When
    the copy's stage is the first MLflow run ever (no ``mlflow.db`` yet), the experiment must still be created with
    the checkout's artifact folder: a copy's folder, deleted after the seed, would receive every later run's
    artifacts (the leftover ``protoscene-results-*`` folders of earlier sessions)."""
    main = empty_project(tmp_path / "main")
    clear_tracking_env(monkeypatch)
    monkeypatch.setenv("PROTOSCENE_TRACKING_ROOT", str(main))
    for seed in (0, 1):
        copy = empty_project(tmp_path / f"copy{seed}")
        monkeypatch.chdir(copy)
        monkeypatch.setenv("DVC_ROOT", str(copy))  # as DVC sets it for the copy's stages
        monkeypatch.setenv("DVC_EXP_NAME", f"results-seed{seed}")
        with stage_run("laq", copy / "reports/laq") as run:
            run.log_metrics({"r2": 0.5})
            (copy / "probe.png").write_bytes(b"png")
            run.log_artifact(copy / "probe.png", "figures")
        assert not (copy / "mlflow.db").exists() and not (copy / "mlartifacts").exists()
        monkeypatch.chdir(tmp_path)
        shutil.rmtree(copy)
    client, experiment, runs = runs_of(main)
    assert experiment.artifact_location == (main / "mlartifacts").as_uri()
    laq_runs = [r for r in runs if r.info.run_name.endswith("/laq")]
    assert len(laq_runs) == 2
    for r in laq_runs:
        assert (main / "mlartifacts" / r.info.run_id / "artifacts/figures/probe.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main"]  # no deleted copy came back


EARLY_SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from pipeline import tracking
    with tracking.early_tracking("pointclouds"):
        if sys.argv[2] == "fail":
            raise SystemExit("bad input before the stage opened its run")
        if os.fork() == 0:  # a forked worker neither adopts nor closes the parent's helper
            assert tracking._adopt_early("pointclouds") is None
            os._exit(0)
        os.wait()
        with tracking.stage_run("pointclouds", Path(sys.argv[1])) as run:
            run.log_metrics({"points": 5})
    assert not tracking._started_early  # nothing left for a later stage_run in this process
""")


@pytest.mark.parametrize("outcome", ["ok", "fail"])
def test_helper_started_early_is_adopted_or_closed(store, outcome):
    """``early_tracking``: the stage run uses the helper started before the stage's imports (a second helper
    would leave a second, FAILED stage run); a stage that fails before opening its run leaves it FAILED, not
    RUNNING, and the block leaves nothing behind for a later stage run of the same process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_EXP_NAME": "early"}
    proc = subprocess.run([sys.executable, "-c", EARLY_SCRIPT, str(store / "reports/pointclouds"), outcome],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == (0 if outcome == "ok" else 1), proc.stderr
    assert "tracking failed" not in proc.stderr
    _, _, runs = runs_of(store)
    stage = [r for r in runs if r.data.tags.get("dvc.role") == "stage"]
    assert len(stage) == 1 and stage[0].info.run_name == "early/pointclouds"
    if outcome == "ok":
        assert stage[0].info.status == "FINISHED" and stage[0].data.metrics["points"] == 5
    else:
        assert stage[0].info.status == "FAILED" and not (store / "reports/pointclouds/metrics.json").exists()
