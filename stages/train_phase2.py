"""DVC stage `train_phase2`: slots with identity over time, camera vector, motion priors, forecasting at t + Δ.

The work is :func:`pipeline.steps.train_phase2.run`; it initialises from the phase-one model. Also runs
under torchrun (DDP): `torchrun --nproc_per_node 2 -m stages.train_phase2`.
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
    frames: Path = typer.Option(Path("data/frames"), help="Frame cache (frames stage output)."),
    phase1: Path = typer.Option(Path("models/phase1/model.pt"), help="Phase-one model to start from."),
    out: Path = typer.Option(Path("models/phase2/model.pt"), help="Trained model (configs + weights)."),
    state: Path = typer.Option(Path("checkpoints/phase2/state.pt"), help="Resumable training state."),
    device: str = typer.Option("auto", help="auto (CUDA if available) | cpu | cuda | cuda:N."),
) -> None:
    with early_tracking("train_phase2"):  # the MLflow service opens the stage run while the block imports torch & co.
        with frozen_imports():
            from pipeline.steps import train_phase2
        train_phase2.run(load_params(), frames, phase1, out, state, device)


if __name__ == "__main__":
    run_and_exit(app)
