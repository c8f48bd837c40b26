"""DVC stage `concerto`: point clouds -> cached Concerto (PTv3) features per frame, for LAQ training.

Reads ``data/pointclouds`` or ``data/vggt/points`` (``concerto.points_from``), writes ``data/features``
(``pipeline/data/features_cache.py``) and ``reports/concerto/metrics.json``; see
:mod:`pipeline.models.ptv3.cache_features`. Random weights (the offline default) are announced on stderr,
in the manifest and in the metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pipeline.config import load_params, parse_section
from pipeline.data.params import DataParams
from pipeline.errors import one_line_errors
from pipeline.models.ptv3.params import ConcertoParams

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    out: Path = typer.Option(Path("data/features"), help="Features cache folder to write."),
    reports: Path = typer.Option(Path("reports/concerto"), help="Metrics folder."),
    device: str = typer.Option("auto", help="auto (CUDA if available) | cpu | cuda. Does not change params."),
    progress: bool = typer.Option(True, help="Show a progress bar over frames."),
    threads: int = typer.Option(1, help="torch CPU threads (0 = torch default). 1 is fastest for the tiny preset "
                                        "on a shared 2-core machine; more help larger presets on free cores."),
) -> None:
    params = load_params()
    data = parse_section(params, "data", DataParams)
    p = parse_section(params, "concerto", ConcertoParams)
    from pipeline import runtime
    from pipeline.models.ptv3.cache_features import build_features, input_points, load_model
    from pipeline.io import atomic
    from pipeline.tracking import stage_run

    points_root = input_points(p)
    torch_device = runtime.stage_device(device)
    runtime.tame_heap()
    runtime.set_torch_threads(threads)
    model = load_model(p, torch_device)
    if p.random_weights:
        print(f"WARNING: concerto: RANDOM WEIGHTS (preset {p.preset}, seed {p.seed}): cached features are NOT "
              f"meaningful. For real ones: `dvc exp run -S concerto.weights=concerto_base` (grid_size 0.02 m as "
              f"upstream) on a machine with internet (GPU recommended).", file=sys.stderr, flush=True)
    with atomic.transaction(), stage_run("concerto", reports) as run:  # all outputs change together
        run.log_params({"concerto": params["concerto"], "data.cameras": list(data.cameras)})
        run.set_tags({"concerto.weights_source": str(model.weights_source),
                      "concerto.random_weights": str(p.random_weights)})
        run.log_metrics(build_features(points_root, out, data.cameras, p, model, torch_device, progress))


if __name__ == "__main__":
    app()
