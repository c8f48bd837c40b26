"""DVC stage `vggt`: RGB frames -> VGGT depth, cameras and point clouds, evaluated against ground truth.

The work is :func:`pipeline.steps.vggt.run` (RGB frames of ``data/raw``, or of the listed videos when
``download.source`` is ``videos``): outputs ``data/vggt`` (npz per camera, ``points/`` parquet),
``reports/vggt/metrics.json`` and ``reports/vggt/figures``. Random weights (the offline default) are
announced on stderr, in MLflow and in every metric file.
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
    raw: Path = typer.Option(Path("data/raw"), help="SYNTHIA-SEQS sequences (download stage output)."),
    videos: Path = typer.Option(Path("data/videos"), help="Listing of the videos stage (read when download.source "
                                                           "is videos)."),
    out: Path = typer.Option(Path("data/vggt"), help="Output folder (npz per camera, points/ parquet)."),
    reports: Path = typer.Option(Path("reports/vggt"), help="Metrics and figures folder."),
    device: str = typer.Option("auto", help="auto (CUDA if available) | cpu | cuda. Does not change params."),
    threads: int = typer.Option(0, help="torch CPU threads (0 = torch default, all cores: on 2 quiet cores the tiny "
                                        "model runs 17.7 frames/s vs 12.8 with 1). On a shared, busy machine 1 is "
                                        "faster: intra-op thread barriers stall."),
) -> None:
    with early_tracking("vggt"):  # the MLflow service opens the stage run while the block imports torch & co.
        with frozen_imports():
            from pipeline import runtime
            from pipeline.steps import vggt
        params = load_params()
        torch_device = runtime.stage_device(device)
        runtime.set_torch_threads(threads)
        vggt.run(params, raw, out, reports, torch_device, videos)


if __name__ == "__main__":
    run_and_exit(app)
