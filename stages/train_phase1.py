"""DVC stage `train_phase1`: depth maps -> K object slots of learned sphere prototypes.

Also runs under torchrun (DDP): `torchrun --nproc_per_node 2 -m stages.train_phase1`.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from pipeline.config import load_params, parse_section
from pipeline.errors import one_line_errors
from pipeline.params.data import DataParams
from pipeline.params.train import Phase1Params

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    raw: Path = typer.Option(Path("data/raw"), help="SYNTHIA-SEQS sequences."),
    clouds: Path = typer.Option(Path("data/pointclouds"), help="Point-cloud parquet (camera coordinates)."),
    out: Path = typer.Option(Path("models/phase1/model.pt"), help="Trained model (config + weights)."),
    state: Path = typer.Option(Path("checkpoints/phase1/state.pt"), help="Resumable training state."),
    device: str = typer.Option("auto", help="auto (CUDA if available) | cpu | cuda | cuda:N."),
) -> None:
    params = load_params()
    data = parse_section(params, "data", DataParams)
    train = parse_section(params, "train", Phase1Params)
    from pipeline.data.frames import load_frames
    from pipeline.data.splits import training_split
    from pipeline.tracking import rank_report_dir, stage_run
    from pipeline.train.phase1 import frame_selection, train_phase1

    split = training_split(raw, data.val_sequences, data.test_sequences)
    camera = data.cameras[0]
    main_process = int(os.environ.get("RANK", "0")) == 0
    report_dir = rank_report_dir("train_phase1")
    with stage_run("train_phase1", report_dir) as run:
        run.log_params({"train": params["train"], "split": split})
        for curve in ("train", "val"):  # DVC outputs even when, e.g., no validation frame qualifies
            run.declare_curve(curve, ["loss", "chamfer_m", "free_space_m", "reverse_m"])
        records, skipped = load_frames(raw, clouds, split["train"], camera, frame_selection(train), progress=main_process)
        val, _ = load_frames(raw, clouds, split["val"], camera, frame_selection(train), progress=main_process)
        if not records:
            raise ValueError(f"params.yaml: no training frame has >= train.min_points={train.min_points} target points")
        summary = train_phase1(records, val, train, out, state, run=run, device=device, progress=main_process)
        run.log_metrics({"train": summary, "skipped_frames": skipped, "split": split})


if __name__ == "__main__":
    app()
