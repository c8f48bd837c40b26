"""Model selection: the written phase-one model is the best validation candidate, never worse than
its k-means initialisation (step 0) on the validation frames."""

from __future__ import annotations

import pytest
import torch

from pipeline.eval.phase1_eval import validation_scores
from pipeline.train import common
from pipeline.train.phase1 import (build_model, load_model, selected_step, train_phase1, validation_frames, validation_loss,
                                   warmup_steps)
from pipeline.train.selection import ModelSelector
from tests.curve_rows import Rows
from tests.train.test_phase1_train import TINY, tiny_records


def test_selected_model_is_no_worse_than_its_initialisation(generated_root, tmp_path):
    records, _ = tiny_records(generated_root, tmp_path)
    # a learning rate far too high: training wanders off, selection must not follow it
    params = TINY.model_copy(update={"steps": 6, "val_every": 2, "lr": 0.05, "prototype_lr": 0.05, "refine_steps_train": 0})

    class Curves:
        rows: list = []

        def log_step(self, curve, step, values):
            if curve == "val":
                self.rows.append({"step": step, **values})

    curves = Curves()
    summary = train_phase1(records, records, params, tmp_path / "m.pt", tmp_path / "s.pt", run=curves, device="cpu",
                           progress=False, scorer=validation_scores)
    assert [r["step"] for r in curves.rows] == [0, 2, 4, 6]
    common.seed_everything(params.seed)
    initial = validation_scores(build_model(records, params, torch.device("cpu")), records)
    assert curves.rows[0]["eval_chamfer_l1_m"] == initial["chamfer_l1_m"]  # step 0 is the untrained model
    model, _ = load_model(tmp_path / "m.pt")
    chosen = validation_scores(model, records)
    assert chosen["chamfer_l1_m"] <= initial["chamfer_l1_m"] + params.select_tolerance_m
    best = min(r["eval_chamfer_l1_m"] for r in curves.rows)
    assert chosen["chamfer_l1_m"] <= best + params.select_tolerance_m
    assert selected_step(tmp_path / "m.pt") == summary["selected_step"]


def test_selector_prefers_lower_chamfer_and_breaks_ties_by_fg_ari():
    selector = ModelSelector(tolerance_m=0.01)
    weights = {"w": torch.zeros(1)}
    assert selector.offer(0, {"chamfer_l1_m": 0.30, "fg_ari": 0.2}, weights)
    assert not selector.offer(1, {"chamfer_l1_m": 0.35, "fg_ari": 0.9}, weights)  # worse geometry
    assert selector.offer(2, {"chamfer_l1_m": 0.305, "fg_ari": 0.5}, {"w": torch.ones(1)})  # tie, better FG-ARI
    assert not selector.offer(3, {"chamfer_l1_m": 0.302, "fg_ari": 0.4}, weights)
    assert selector.offer(4, {"chamfer_l1_m": 0.20, "fg_ari": 0.1}, weights)
    restored = ModelSelector.from_state(selector.state())
    assert restored.step == 4 and restored.scores["chamfer_l1_m"] == 0.20


def test_val_curve_and_selection_use_the_same_frames(generated_root, tmp_path):
    """With ``val_frames`` set, the step-0 validation row (loss terms and evaluation scores) is the untrained
    model's, computed on the evenly spaced selection frames only."""
    records, _ = tiny_records(generated_root, tmp_path)
    params = TINY.model_copy(update={"steps": 2, "val_every": 2, "val_frames": 2, "refine_steps_train": 0})
    curves = Rows()
    train_phase1(records, records, params, tmp_path / "m.pt", tmp_path / "s.pt", run=curves, device="cpu",
                 progress=False, scorer=validation_scores)
    first = next(values for curve, step, values in curves.by_step() if curve == "val" and step == 0)
    chosen = [records[0], records[-1]]  # two evenly spaced frames: the ends
    assert validation_frames(records, 2) == chosen
    common.seed_everything(params.seed)
    initial = build_model(records, params, torch.device("cpu"))
    assert first["eval_chamfer_l1_m"] == validation_scores(initial, chosen)["chamfer_l1_m"]
    assert first["chamfer_m"] == pytest.approx(validation_loss(initial, chosen, params, torch.device("cpu"))["chamfer_m"])
    assert first["eval_chamfer_l1_m"] != validation_scores(initial, records)["chamfer_l1_m"]


def test_warmup_is_a_tenth_of_the_steps_at_most_fifty():
    assert [warmup_steps(s) for s in (4, 150, 500, 600, 5000)] == [1, 15, 50, 50, 50]
