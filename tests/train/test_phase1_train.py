"""Phase-one training: loss goes down on a fixed batch, resuming is exact, DDP runs under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from pipeline.data.frames import load_frames
from pipeline.eval.phase1_eval import validation_scores
from pipeline.steps.pointclouds import build_pointclouds
from pipeline.train.phase1 import frame_selection, load_model, train_phase1
from tests.conftest import repo_params
from tests.curve_rows import Rows

SEQ = "SYNTHIA-SEQS-01-GENERATED"
CAM = "Stereo_Left/Omni_F"
TINY = repo_params("train", slots=3, prototypes=2, ico_level=1, input_height=64, input_width=96, points="all", far_m=60.0,
                   min_points=8, points_per_frame=64, steps=4, batch_size=2, samples_per_slot=16,
                   refine_steps_train=1, log_every=1, val_every=100, checkpoint_every=100)


def tiny_records(generated_root: Path, tmp_path: Path):
    clouds = tmp_path / "clouds"
    build_pointclouds(generated_root, clouds, (CAM,), repo_params("pointcloud", max_points=256), workers=1, progress=False)
    records, _ = load_frames(generated_root, clouds, [SEQ], CAM, frame_selection(TINY), progress=False)
    return records, clouds


def test_resume_equals_uninterrupted(generated_root, tmp_path):
    """stop_after = 3 then resume with a new run object (a new process): bit-identical weights, and curves that
    hold every row from step 0, equal to an uninterrupted run's."""
    records, _ = tiny_records(generated_root, tmp_path)
    params = TINY.model_copy(update={"val_every": 2})
    full, resumed = Rows(), Rows()
    train_phase1(records, records, params, tmp_path / "a/model.pt", tmp_path / "a/state.pt", run=full, device="cpu",
                 progress=False, scorer=validation_scores)
    part = train_phase1(records, records, params, tmp_path / "b/model.pt", tmp_path / "b/state.pt", run=Rows(),
                        device="cpu", progress=False, stop_after=3, scorer=validation_scores)
    assert part["stopped_early"] and not (tmp_path / "b/model.pt").exists()
    summary = train_phase1(records, records, params, tmp_path / "b/model.pt", tmp_path / "b/state.pt", run=resumed,
                           device="cpu", progress=False, scorer=validation_scores)
    assert summary["resumed_from_step"] == 3
    # the finished run drops its state but leaves the persisted folder non-empty (no DVC "empty" warning)
    assert not (tmp_path / "b/state.pt").exists() and (tmp_path / "b/README.md").is_file()
    a, _ = load_model(tmp_path / "a/model.pt")
    b, _ = load_model(tmp_path / "b/model.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    # validation before the update of steps 0 and 2, and after the last one (model selection candidates)
    assert [(c, s) for c, s, _ in full.by_step()] == [("train", s) for s in range(4)] + [("val", 0), ("val", 2), ("val", 4)]
    assert resumed.by_step() == full.by_step()


def test_other_params_do_not_resume(generated_root, tmp_path, capsys):
    records, _ = tiny_records(generated_root, tmp_path)
    train_phase1(records, [], TINY, tmp_path / "m.pt", tmp_path / "s.pt", device="cpu", progress=False, stop_after=1)
    other = TINY.model_copy(update={"lr": 1e-3})
    summary = train_phase1(records, [], other, tmp_path / "m.pt", tmp_path / "s.pt", device="cpu", progress=False)
    assert summary["resumed_from_step"] == 0 and "starting fresh" in capsys.readouterr().out


def test_training_lowers_the_loss(generated_root, tmp_path):
    records, _ = tiny_records(generated_root, tmp_path)

    class Curves:
        rows: list = []

        def log_step(self, curve, step, values):
            self.rows.append(values)

    curves = Curves()
    params = TINY.model_copy(update={"steps": 40, "lr": 2e-3})
    train_phase1(records[:1] * 2, [], params, tmp_path / "m.pt", tmp_path / "s.pt", run=curves, device="cpu",
                 progress=False)
    first = sum(r["chamfer_m"] for r in curves.rows[:5]) / 5
    last = sum(r["chamfer_m"] for r in curves.rows[-5:]) / 5
    assert last < 0.8 * first


DDP_SCRIPT = """
import os, sys, torch
from pathlib import Path
from pipeline.data.frames import load_frames
from pipeline.train.phase1 import frame_selection, train_phase1
from tests.train.test_phase1_train import TINY, SEQ, CAM
raw, clouds, out = map(Path, sys.argv[1:4])
records, _ = load_frames(raw, clouds, [SEQ], CAM, frame_selection(TINY), progress=False)
summary = train_phase1(records, [], TINY, out / "model.pt", out / "state.pt", device="cpu", progress=False)
if int(os.environ["RANK"]) == 0:
    print("world", summary["world_size"], "frames", summary["frames_seen"])
"""


def test_ddp_two_cpu_processes(generated_root, tmp_path):
    _, clouds = tiny_records(generated_root, tmp_path)
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(generated_root), str(clouds), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world 2 frames 8" in proc.stdout
    assert (tmp_path / "out/model.pt").is_file()
