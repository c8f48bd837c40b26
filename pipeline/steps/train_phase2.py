"""DVC stage ``train_phase2``: slots with identity over time, camera vector, motion priors, forecasting at t + Δ.

:func:`run` starts from the phase-one model, loads sequences with carried anchors from the
``frames`` stage's cache (``pipeline/models/video/sequences.py``) and trains (``pipeline/train/phase2.py``), writing the model, the
resumable state and the curves and metrics (MLflow run of ``pipeline/tracking.py``; with torchrun every
rank reports into its own folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.config import parse_section
from pipeline.data.frames import frame_selection
from pipeline.data.frames_cache import cached_sequences
from pipeline.data.splits import checked_split
from pipeline.eval.curve_figures import curves_figure
from pipeline.models.video.sequences import load_sequences, with_odometry
from pipeline.params.data import DataParams
from pipeline.params.train import Phase1Params
from pipeline.params.video import Phase2Params
from pipeline.tracking import rank_report_dir, stage_run
from pipeline.train.common import check_trained_with
from pipeline.train.phase2 import build_model, train_phase2


def run(params: dict[str, Any], frames: Path, phase1: Path, out: Path, state: Path, device: str = "auto") -> None:
    """The stage: train from ``phase1`` on the frame cache ``frames``, write ``out`` (model) and ``state`` (resume).

    ``params``: the whole params.yaml (sections ``data`` and ``video``); ``device``: auto | cpu | cuda[:N].
    """
    data = parse_section(params, "data", DataParams)
    video = parse_section(params, "video", Phase2Params)
    if not phase1.is_file():
        raise FileNotFoundError(f"{phase1}: phase-one model not found (run the train_phase1 stage first)")
    split = checked_split(cached_sequences(frames), data.val_sequences, data.test_sequences)
    camera = data.cameras[0]
    main_process = int(os.environ.get("RANK", "0")) == 0
    report_dir = rank_report_dir("train_phase2")
    _, p1 = build_model(phase1, video, device="cpu")
    check_trained_with(phase1, p1.model_dump(), parse_section(params, "train", Phase1Params).model_dump(), "train")
    with stage_run("train_phase2", report_dir) as stage:
        stage.log_params({"video": params["video"], "split": split, "phase1": str(phase1)})
        for curve in ("train", "val"):  # DVC outputs even when, e.g., the validation split is empty
            stage.declare_curve(curve, ["loss", "forecast_best_m"])
        train = load_sequences(frames, split["train"], camera, frame_selection(p1))
        val = load_sequences(frames, split["val"], camera, frame_selection(p1))
        if video.camera == "self_supervised":  # world frame from depth odometry; ground-truth poses unused
            train, val = [with_odometry(s) for s in train], [with_odometry(s) for s in val]
        if not train:
            raise ValueError(f"no training sequence has >= 2 frames with >= {p1.min_points} target points")
        summary = train_phase2(train, val, video, phase1, out, state, run=stage, device=device, progress=main_process)
        stage.log_artifact(curves_figure(stage.curves, "train_phase2", stage.report_dir / "figures" / "curves.png"), "figures")
        stage.log_metrics({"train": summary, "split": split})
