"""DVC stage `evaluate`: dataset statistics and figures; phase-one and phase-two metrics on held-out sequences.

The work is :func:`pipeline.steps.evaluate.run`.
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
    raw: Path = typer.Option(Path("data/raw"), help="SYNTHIA-SEQS sequences."),
    clouds: Path = typer.Option(Path("data/pointclouds"), help="Point-cloud parquet dataset."),
    frames: Path = typer.Option(Path("data/frames"), help="Frame cache (frames stage output)."),
    reports: Path = typer.Option(Path("reports/evaluate"), help="Metrics and figures folder."),
    phase1: Path = typer.Option(Path("models/phase1/model.pt"), help="Phase-one model."),
    phase2: Path = typer.Option(Path("models/phase2/model.pt"), help="Phase-two (video) model."),
) -> None:
    with early_tracking("evaluate"):  # the MLflow service opens the stage run while the block imports torch & co.
        with frozen_imports():
            from pipeline.steps import evaluate
        evaluate.run(load_params(), raw, clouds, frames, reports, phase1, phase2)


if __name__ == "__main__":
    run_and_exit(app)
