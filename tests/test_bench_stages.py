"""The per-stage benchmark table (pipeline/bench/stages.py) on hand-written run facts."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from pipeline.bench import stages


def test_table_reads_run_facts_and_limits(tmp_path, monkeypatch):
    shutil.copy(Path(__file__).parents[1] / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "reports/train_phase1").mkdir(parents=True)
    (tmp_path / "reports/train_phase1/run.json").write_text(json.dumps(
        {"train": {"train_seconds": 40.0, "steps": 200, "peak_rss_mb": 900.0, "data_seconds": 10.0,
                   "compute_seconds": 30.0}, "process": {"seconds": 47.5, "peak_rss_mb": 950.0}}))
    (tmp_path / "reports/laq").mkdir(parents=True)  # a resumable loop: steps and seconds of this run
    (tmp_path / "reports/laq/run.json").write_text(json.dumps(
        {"training": {"seconds_this_run": 100.0, "steps_this_run": 600}, "process": {"seconds": 120.0}}))
    (tmp_path / "reports/bench").mkdir()
    (tmp_path / "reports/bench/pointclouds.json").write_text(json.dumps(
        {"decode_only_frames_per_s": 20.0, "stage_vs_decode_only": 0.5}))
    report = stages.table(tmp_path, run=False)
    rows = {r["stage"]: r for r in report["rows"]}
    assert set(rows) == set(stages.yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"])
    phase1 = rows["train_phase1"]
    assert (phase1["wall_s"], phase1["throughput"], phase1["unit"]) == (47.5, 5.0, "steps/s")  # the whole process
    assert (rows["laq"]["throughput"], rows["laq"]["unit"]) == (6.0, "steps/s")
    assert phase1["peak_rss_mb"] == 900.0 and phase1["data_wait_share"] == 0.25
    assert "20.0 frames/s" in rows["pointclouds"]["limit"] and rows["pointclouds"]["source"] == "no run.json"
    assert "| train_phase1 | 47.5 | — | 5 steps/s | 900 | 25 % |" in stages.markdown(report)  # cores: --run only


BURN = """
import multiprocessing as mp, time

def burn():  # 0.5 s of this process's own CPU time
    while time.process_time() < 0.5:
        pass

if __name__ == "__main__":
    child = mp.get_context("fork").Process(target=burn)
    child.start()
    burn()
    child.join()
"""


def test_measured_run_counts_the_cpu_of_waited_for_workers(tmp_path):
    script = tmp_path / "burn.py"
    script.write_text(BURN)
    measured = stages.run_measured(f"{sys.executable} {script}", tmp_path)
    # parent and worker each burn >= 0.5 s of CPU: ~0.5 s would mean the worker was missed
    assert measured["cpu_s"] >= 1.0
    assert measured["wall_s"] > 0 and measured["peak_rss_mb"] > 0
