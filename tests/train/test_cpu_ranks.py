"""CPU data parallelism inside one stage (pipeline.distributed.run_cpu_ranks): N forked gloo ranks of one
thread, this process rank 0, collectives that really reduce, and a failed rank that ends the job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from pipeline import distributed

REPO = Path(__file__).parents[2]


def _sum_ranks(out: str) -> float:
    """Each rank contributes rank + 1; every rank writes what the all-reduce gave it and its thread count."""
    info = distributed.init_distributed("cpu")
    total = distributed.all_reduce_sum(torch.tensor([float(info.rank + 1)]))
    record = {"rank": info.rank, "world": info.world_size, "total": float(total), "threads": torch.get_num_threads()}
    Path(out, f"rank{info.rank}.json").write_text(json.dumps(record))
    if info.is_main:
        distributed.leave_cpu_ranks()
        record["threads_after"] = torch.get_num_threads()
        Path(out, "main.json").write_text(json.dumps(record))
    return float(total)


def test_ranks_reduce_together_and_rank_zero_returns(tmp_path):
    threads_before = torch.get_num_threads()
    assert distributed.run_cpu_ranks(_sum_ranks, 3, str(tmp_path)) == 6.0  # 1 + 2 + 3
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(3)]
    assert [r["total"] for r in records] == [6.0, 6.0, 6.0]
    assert {r["world"] for r in records} == {3} and {r["threads"] for r in records} == {1}
    assert json.loads((tmp_path / "main.json").read_text())["threads_after"] == threads_before
    assert torch.get_num_threads() == threads_before and "WORLD_SIZE" not in os.environ
    assert not torch.distributed.is_initialized()


def test_one_rank_runs_in_this_process(tmp_path):
    assert distributed.run_cpu_ranks(_sum_ranks, 1, str(tmp_path)) == 1.0
    assert json.loads((tmp_path / "rank0.json").read_text())["world"] == 1


def test_ranks_only_for_a_cpu_job_outside_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.cpu_ranks_for(2, "cpu") == 2
    monkeypatch.setenv("WORLD_SIZE", "4")  # already a torchrun rank: no ranks of its own
    assert distributed.cpu_ranks_for(2, "cpu") == 1


FAILING = """
import sys, torch
from pipeline import distributed

def target():
    info = distributed.init_distributed("cpu")
    if info.rank == 1:
        raise ValueError("rank one cannot read its input")
    distributed.all_reduce_sum(torch.ones(1))  # rank 0 waits here for a rank that is gone

if __name__ == "__main__":
    distributed.run_cpu_ranks(target, 2)
    print("finished")
"""


def test_a_failed_rank_ends_the_job_with_one_line(tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1 and "finished" not in proc.stdout
    assert "error: rank one cannot read its input" in proc.stderr
    assert "error: CPU rank 1 failed (exit code 1)" in proc.stderr
