"""DVC stage ``train_phase1``: depth maps -> K object slots of learned sphere prototypes.

:func:`run` splits the sequences (``pipeline/data/splits.py``), loads the training and validation frames
(the ``frames`` stage's cache, ``pipeline/data/frames_cache.py``) and trains (``pipeline/train/phase1.py``;
model selection scored by ``pipeline/eval/phase1_eval.py``), writing the model, the resumable
state and the curves and metrics (MLflow run of ``pipeline/tracking.py``; with torchrun every rank
reports into its own folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.config import parse_section
from pipeline.data.frames import frame_selection
from pipeline.data.frames_cache import cached_sequences, load_frames
from pipeline.data.splits import checked_split
from pipeline.eval.curve_figures import curves_figure
from pipeline.eval.phase1_eval import validation_scores
from pipeline.params.data import DataParams
from pipeline.params.train import Phase1Params
from pipeline.tracking import rank_report_dir, stage_run
from pipeline.train.phase1 import train_phase1


def run(params: dict[str, Any], frames: Path, out: Path, state: Path, device: str = "auto") -> None:
    """The stage: train on the frame cache ``frames``, write ``out`` (model) and ``state`` (resume).

    ``params``: the whole params.yaml (sections ``data`` and ``train``); ``device``: auto | cpu | cuda[:N].
    """
    data = parse_section(params, "data", DataParams)
    train = parse_section(params, "train", Phase1Params)
    split = checked_split(cached_sequences(frames), data.val_sequences, data.test_sequences)
    camera = data.cameras[0]
    main_process = int(os.environ.get("RANK", "0")) == 0
    report_dir = rank_report_dir("train_phase1")
    with stage_run("train_phase1", report_dir) as stage:
        stage.log_params({"train": params["train"], "split": split})
        for curve in ("train", "val"):  # DVC outputs even when, e.g., no validation frame qualifies
            stage.declare_curve(curve, ["loss", "chamfer_m", "free_space_m", "reverse_m"])
        records, skipped = load_frames(frames, split["train"], camera, frame_selection(train))
        val, _ = load_frames(frames, split["val"], camera, frame_selection(train))
        if not records:
            raise ValueError(f"params.yaml: no training frame has >= train.min_points={train.min_points} target points")
        summary = train_phase1(records, val, train, out, state, run=stage, device=device, progress=main_process,
                               scorer=validation_scores)
        stage.log_artifact(curves_figure(stage.curves, "train_phase1", stage.report_dir / "figures" / "curves.png"), "figures")
        stage.log_metrics({"train": summary, "skipped_frames": skipped, "split": split})
