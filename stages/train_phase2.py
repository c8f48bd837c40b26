"""DVC stage `train_phase2`: slots with identity over time, camera vector, motion priors, forecasting at t + Δ.

Initialises from the phase-one model. Also runs under torchrun (DDP):
`torchrun --nproc_per_node 2 -m stages.train_phase2`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import typer

from pipeline.config import load_params, parse_section
from pipeline.data.params import DataParams
from pipeline.errors import one_line_errors
from pipeline.train.phase2 import Phase2Params

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    raw: Path = typer.Option(Path("data/raw"), help="SYNTHIA-SEQS sequences."),
    clouds: Path = typer.Option(Path("data/pointclouds"), help="Point-cloud parquet (camera coordinates)."),
    phase1: Path = typer.Option(Path("models/phase1/model.pt"), help="Phase-one model to start from."),
    out: Path = typer.Option(Path("models/phase2/model.pt"), help="Trained model (configs + weights)."),
    state: Path = typer.Option(Path("checkpoints/phase2/state.pt"), help="Resumable training state."),
    device: str = typer.Option("auto", help="auto (CUDA if available) | cpu | cuda | cuda:N."),
) -> None:
    params = load_params()
    data = parse_section(params, "data", DataParams)
    video = parse_section(params, "video", Phase2Params)
    from pipeline.data.splits import training_split
    from pipeline.tracking import rank_report_dir, stage_run
    from pipeline.train.common import check_trained_with
    from pipeline.train.phase1 import Phase1Params
    from pipeline.train.phase2 import build_model, load_sequences, train_phase2

    if not phase1.is_file():
        raise FileNotFoundError(f"{phase1}: phase-one model not found (run the train_phase1 stage first)")
    split = training_split(raw, data.val_sequences, data.test_sequences)
    camera = data.cameras[0]
    main_process = int(os.environ.get("RANK", "0")) == 0
    report_dir = rank_report_dir("train_phase2")
    _, p1 = build_model(phase1, video, device="cpu")
    check_trained_with(phase1, dataclasses.asdict(p1), dataclasses.asdict(parse_section(params, "train", Phase1Params)),
                       "train")
    with stage_run("train_phase2", report_dir) as run:
        run.log_params({"video": params["video"], "split": split, "phase1": str(phase1)})
        for curve in ("train", "val"):  # DVC outputs even when, e.g., the validation split is empty
            run.declare_curve(curve, ["loss", "chamfer_m"])
        train = load_sequences(raw, clouds, split["train"], camera, p1.selection(), progress=main_process)
        val = load_sequences(raw, clouds, split["val"], camera, p1.selection(), progress=main_process)
        if not train:
            raise ValueError(f"no training sequence has >= 2 frames with >= {p1.min_points} target points")
        summary = train_phase2(train, val, video, phase1, out, state, run=run, device=device, progress=main_process)
        run.log_metrics({"train": summary, "split": split})


if __name__ == "__main__":
    app()
