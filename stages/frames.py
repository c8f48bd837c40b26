"""DVC stage `frames`: each frame's resized depth, target points and k-means anchors, computed once.

The work is :func:`pipeline.steps.frames.run`.
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
    clouds: Path = typer.Option(Path("data/pointclouds"), help="Point-cloud parquet (camera coordinates)."),
    out: Path = typer.Option(Path("data/frames"), help="Frame cache to write."),
) -> None:
    with early_tracking("frames"):  # the MLflow service opens the stage run while the block imports torch & co.
        with frozen_imports():
            from pipeline.steps import frames
        frames.run(load_params(), raw, clouds, out)


if __name__ == "__main__":
    run_and_exit(app)
