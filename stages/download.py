"""DVC stage `download`: raw SYNTHIA-SEQS sequences into data/raw (generated offline by default).

The work is :func:`pipeline.steps.download.run` (``download.source``: ``synthetic`` or ``synthia``).
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
    out: Path = typer.Option(Path("data/raw"), help="Folder that receives the sequence folders."),
    archive_cache: Path = typer.Option(Path(".cache/synthia"), help="Where real archives are kept (resume)."),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), help="Render processes (does not change outputs)."),
) -> None:
    with early_tracking("download"):  # the MLflow service opens the stage run while the block imports torch & co.
        with frozen_imports():
            from pipeline.steps import download
        download.run(load_params(), out, archive_cache, workers)


if __name__ == "__main__":
    run_and_exit(app)
