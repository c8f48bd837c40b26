"""DVC stage `train_phase1`: depth maps -> K object slots of learned sphere prototypes.

The work is :func:`pipeline.steps.train_phase1.run`. Also runs under torchrun (DDP):
`torchrun --nproc_per_node 2 -m stages.train_phase1`.
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
    out: Path = typer.Option(Path("models/phase1/model.pt"), help="Trained model (config + weights)."),
    state: Path = typer.Option(Path("checkpoints/phase1/state.pt"), help="Resumable training state."),
    device: str = typer.Option("auto", help="auto (CUDA if available) | cpu | cuda | cuda:N."),
) -> None:
    with early_tracking("train_phase1"):  # the MLflow service opens the stage run while the block imports torch & co.
        with frozen_imports():
            from pipeline.steps import train_phase1
        train_phase1.run(load_params(), frames, out, state, device)


if __name__ == "__main__":
    run_and_exit(app)
