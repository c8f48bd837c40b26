"""The benchmark's plumbing (not its timings): data generator, one in-process worker, verdicts."""

import torch

from pipeline.geometry.bench import _markdown, _summarise, make_clouds, run_worker


def test_make_clouds_shapes_and_layout():
    x, y = make_clouds(2, 500, 5136)
    assert x.shape == (2, 500, 3) and y.shape == (2, 5136, 3) and x.dtype == torch.float32
    assert bool((x[..., 2] <= 4.0 + 1e-6).all()) and abs(float((x[..., 2] == 4.0).double().mean()) - 0.2) < 1e-9


def test_worker_runs_and_reports():
    row = run_worker("ours", batch=1, n_points=256, n_sources=5136, repeats=2, threads=1)
    assert row["status"] == "ok" and len(row["times_ms"]) == 2 and row["median_ms"] > 0
    x, y = make_clouds(1, 256, 5136)
    ref = torch.cdist(x.double(), y.double()).min(-1).values.pow(2).mean()
    assert abs(row["loss"] - float(ref)) < 1e-6 * float(ref)


def test_summarise_ratios_and_targets():
    rows = [
        {"method": "ours", "M": 10, "status": "ok", "median_ms": 2.0, "peak_rss_delta_mb": 5.0},
        {"method": "kdtree", "M": 10, "status": "ok", "median_ms": 1.5, "peak_rss_delta_mb": 5.0},
        {"method": "naive", "M": 10, "status": "ok", "median_ms": 400.0, "peak_rss_delta_mb": 5000.0},
        {"method": "naive", "M": 20, "status": "skipped: est. 30 GB"},
        {"method": "ours", "M": 20, "status": "ok", "median_ms": 3.0, "peak_rss_delta_mb": 2000.0},
    ]
    t = _summarise(rows)
    assert t["10"]["speedup_vs_naive"] == 200.0 and t["10"]["ge_100x_faster_than_naive"] is True
    assert abs(t["10"]["ratio_vs_fastest"] - 2.0 / 1.5) < 1e-12 and t["10"]["within_1.5x_of_fastest"] is True
    assert t["20"]["ge_100x_faster_than_naive"] is None and t["20"]["under_1GB"] is False
    report = {"command": "x", "config": {"batch": 1, "points": 1, "repeats": 1, "naive_repeats": 1, "threads": 1},
              "machine": {"cpu": "c", "nproc": 2, "torch": "t", "faiss": "f", "loadavg_start": [0, 0, 0],
                          "loadavg_end": [0, 0, 0]}, "results": rows, "targets": t}
    md = _markdown(report)
    assert "skipped: est. 30 GB" in md and "| 10 | kdtree | 200 (yes)" in md
