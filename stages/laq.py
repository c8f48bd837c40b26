"""DVC stage `laq`: train Concerto-LAQ from cached features, then measure its codes on held-out sequences.

The work is :func:`pipeline.steps.laq.run`. Runs as ``python -m stages.laq`` or, for DDP, as
``torchrun --nproc_per_node N -m stages.laq`` (rank 0 logs, evaluates and writes the reports).
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
    features: Path = typer.Option(Path("data/features"), help="Cached features (concerto stage output)."),
    raw: Path = typer.Option(Path("data/raw"), help="SYNTHIA-SEQS sequences with the camera poses."),
    out: Path = typer.Option(Path("models/laq/model.pt"), help="Trained model (config, weights, feature statistics)."),
    state: Path = typer.Option(Path("checkpoints/laq/state.pt"), help="Resumable training state."),
    videos: Path = typer.Option(Path("data/videos"), help="Videos stage output (labels.json; video features only)."),
    drives: Path = typer.Option(Path("data/drives"), help="Drives stage output (ground truth; drive features only)."),
    resume: bool = typer.Option(True, help="Continue from --state if it was written with the same params and data."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    with early_tracking("laq"):  # the MLflow service opens the stage run while the block imports torch & co.
        with frozen_imports():
            from pipeline.steps import laq
        laq.run(load_params(), features, raw, out, state, resume, progress, videos, drives)


if __name__ == "__main__":
    run_and_exit(app)
