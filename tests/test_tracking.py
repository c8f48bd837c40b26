"""The tracking layer keeps quality metrics (``metrics.json``, a DVC metric) apart from run facts
(``run.json``: timings, memory, device, host) and keeps the logged training curves for the figure of the training steps."""

from __future__ import annotations

import json
import re

from pipeline.tracking import RUN_FACT_KEYS, split_run_facts, stage_run

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
