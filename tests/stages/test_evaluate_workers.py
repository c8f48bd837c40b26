"""The evaluate stage's forked workers run torch even when the parent process has already used OpenMP."""

from __future__ import annotations

import pytest
import torch

from pipeline.steps.evaluate import _workers


def _parallel_sum(n: int) -> float:
    """Large enough for torch to split it over threads when it may (grain size 32768 elements)."""
    return float(torch.ones(n, dtype=torch.float64).exp().sum())


def test_worker_runs_torch_after_a_parallel_region_in_the_parent():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    pool = _workers(1)
    try:
        _parallel_sum(4_000_000)  # the parent's OpenMP thread team now exists; the fork below copies its state
        future = pool.submit(_parallel_sum, 4_000_000)
        # without the workers' one-thread initializer the child waited forever here for non-existent threads
        assert future.result(timeout=60) == pytest.approx(4_000_000 * 2.718281828459045)
    finally:
        torch.set_num_threads(threads)
        for process in getattr(pool, "_processes", {}).values():  # a hung child must not hang the suite too
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
