"""DVC stage `concerto`: point clouds -> cached Concerto (PTv3) features per frame, for LAQ training.

The work is :func:`pipeline.steps.concerto.run`: reads ``data/pointclouds`` or ``data/vggt/points``
(``concerto.points_from``), writes ``data/features`` (``pipeline/data/features_cache.py``) and
``reports/concerto/metrics.json``. Random weights (the offline default) are announced on stderr, in the
manifest and in the metrics.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import load_params
from pipeline.errors import one_line_errors
from pipeline.stage_process import frozen_imports, run_and_exit
from pipeline.tracking import early_tracking

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
    workers: int = typer.Option(2, help="At most this many CPU processes encoding sequences in parallel (each with "
                                        "--threads threads; fewer for a small input, which stays in this process: "
                                        "pipeline.steps.concerto.POINTS_PER_WORKER; same output for any number; "
                                        "ignored on CUDA)."),
) -> None:
    with early_tracking("concerto"):  # the MLflow service opens the stage run while the block imports torch & co.
        with frozen_imports():
            from pipeline import runtime
            from pipeline.steps import concerto
        params = load_params()
        torch_device = runtime.stage_device(device)
        runtime.set_torch_threads(threads)
        concerto.run(params, out, reports, torch_device, progress, workers)


if __name__ == "__main__":
    run_and_exit(app)
