"""DVC stage `pointclouds`: depth maps -> labelled point clouds with normals, in parquet.

The work is :func:`pipeline.steps.pointclouds.run`.
"""

from __future__ import annotations

import os
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
    out: Path = typer.Option(Path("data/pointclouds"), help="Parquet dataset to write."),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), help="Processes (does not change outputs)."),
) -> None:
    with early_tracking("pointclouds"):  # the MLflow service opens the stage run while the block imports torch & co.
        with frozen_imports():
            from pipeline.steps import pointclouds
        pointclouds.run(load_params(), raw, out, workers)


if __name__ == "__main__":
    run_and_exit(app)
