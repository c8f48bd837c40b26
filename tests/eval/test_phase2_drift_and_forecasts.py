"""Camera drift on synthetic pose chains and the forecast summary on a constructed table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.eval.phase2_eval import camera_metrics, pose_drift, summarise_forecasts
from pipeline.models.video.poses import axis_angle_to_matrix, chain


def straight_drive(steps: int, forward_m: float, yaw_rad: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative poses prev_from_cur (1, steps, ...): turn by ``yaw_rad`` about y, move ``forward_m`` along z."""
    r = axis_angle_to_matrix(torch.tensor([0.0, yaw_rad, 0.0], dtype=torch.float64)).expand(1, steps, 3, 3)
    t = torch.tensor([0.0, 0.0, forward_m], dtype=torch.float64).expand(1, steps, 3)
    return r, t


def test_drift_of_a_biased_translation_grows_linearly():
    r_gt, t_gt = chain(*straight_drive(39, 1.0, 0.0))
    r_est, t_est = chain(*straight_drive(39, 1.05, 0.0))  # 5 cm too far per frame
    drift_m, drift_deg = pose_drift(r_est[0], t_est[0], r_gt[0], t_gt[0])
    assert drift_m == pytest.approx(0.05 * np.arange(40), abs=1e-9)
    assert drift_deg == pytest.approx(np.zeros(40), abs=1e-4)


def test_drift_of_a_biased_yaw_accumulates_angle_and_bends_the_path():
    r_gt, t_gt = chain(*straight_drive(20, 1.0, 0.0))
    eps = math.radians(0.5)
    r_est, t_est = chain(*straight_drive(20, 1.0, eps))
    drift_m, drift_deg = pose_drift(r_est[0], t_est[0], r_gt[0], t_gt[0])
    assert drift_deg == pytest.approx(0.5 * np.arange(21), abs=1e-4)
    # position: sum of unit steps along headings 0, eps, 2 eps, ... vs straight along z
    heading = eps * np.arange(20)
    est = np.stack([np.sin(heading).sum(), 0.0, np.cos(heading).sum()])
    assert drift_m[-1] == pytest.approx(np.linalg.norm(est - np.array([0, 0, 20.0])), rel=1e-6)


def test_camera_metrics_reports_end_and_horizon_drift():
    rows = [{"sequence": s, "frame": f, "relative_rotation_deg": math.nan if f == start else 1.0,
             "relative_translation_m": math.nan if f == start else 0.1, "drift_m": 0.1 * (f - start),
             "drift_deg": 1.0 * (f - start)}
            for s, start, n in (("a", 0, 60), ("b", 5, 30)) for f in range(start, start + n)]
    out = camera_metrics(rows, horizon=40)
    assert out["end_drift_m"] == pytest.approx((5.9 + 2.9) / 2)
    assert out["drift_40_frames_m"] == pytest.approx((3.9 + 2.9) / 2)
    assert out["relative_rotation_deg"] == 1.0 and out["pairs"] == 59 + 29 and out["sequences"] == 2
    assert camera_metrics([]) is None


def test_forecast_summary_compares_with_the_best_baselines():
    methods = {"model_best_of_1": 0.8, "model_best_of_k": 0.5, "copy_last": 1.0, "constant_velocity": 0.9,
               "constant_acceleration": 1.2, "speed_scalings_best_of_3": 0.6, "context_lengths_best_of_3": 0.7,
               "target_frame_slots": 0.2}
    rows = [{"sequence": "s", "context_last": i, "delta": 5, "delta_s": 1.0, "method": m, "chamfer_m": v + 0.01 * i}
            for i in range(4) for m, v in methods.items()]
    out = summarise_forecasts(rows, 3)
    five = out["delta_5"]
    assert five["forecasts"] == 4 and five["copy_last"] == pytest.approx(1.015)
    assert five["best_of_1_vs_best_single_guess_baseline"] == pytest.approx(1 - 0.815 / 0.915, abs=1e-4)
    assert five["best_of_k_vs_best_k_guess_baseline"] == pytest.approx(1 - 0.515 / 0.615, abs=1e-4)
    assert out["delta_1"] == {"forecasts": 0}


def test_stacked_guesses_score_as_each_forecast_alone():
    """One Chamfer call over the guesses of several forecasts gives each guess the error it gets when its
    forecast is scored alone (the evaluation scores all methods of a window at once)."""
    from pipeline.eval.phase2_eval import eval_points, stack_guesses
    from pipeline.models.slots import SlotModelConfig
    from pipeline.models.video import VideoModelConfig, VideoSlotModel
    from pipeline.models.video.baselines import speed_scalings
    from pipeline.models.video.forecaster import SlotTrack, constant_velocity, copy_last
    from pipeline.models.video.model import forecast_chamfer

    g = torch.Generator().manual_seed(0)
    k = 2
    model = VideoSlotModel(VideoModelConfig(camera_head=False, prototypes=2, hidden=16, time_features=2),
                           SlotModelConfig(slots=k, prototypes=2, ico_level=1))
    times = torch.tensor([[0.0, 0.2, 0.4]])
    centre = torch.randn(1, 1, k, 3, generator=g) * 3 + torch.randn(1, 1, k, 3, generator=g) * times.view(1, 3, 1, 1)
    track = SlotTrack(centre, torch.eye(3).expand(1, 3, k, 3, 3), torch.ones(1, 3, k), torch.full((1, 3, k, 2), 0.5),
                      times)
    delta = torch.tensor([1.0])
    forecasts = [copy_last(track), constant_velocity(track, delta), speed_scalings(track, delta, 3)]
    points = torch.from_numpy(eval_points(np.random.default_rng(0).normal(0, 4, (5000, 3)).astype(np.float32)))[None]
    assert points.shape == (1, 2048, 3)
    mask = torch.ones(points.shape[:2], dtype=torch.bool)
    pose = (torch.eye(3)[None], torch.zeros(1, 3))
    together = forecast_chamfer(model, stack_guesses(forecasts), *pose, points, mask, exact=True)[0]
    alone = torch.cat([forecast_chamfer(model, f, *pose, points, mask, exact=True)[0] for f in forecasts])
    assert together.shape == (5,) and torch.allclose(together, alone, atol=1e-6)
