"""`protoscene validate` recognises the right pose convention on generated data and rejects wrong ones."""

from __future__ import annotations

from pipeline.eval.validate_poses import ASSUMED, validate_sequence
from pipeline.io import synthia


def test_assumed_convention_wins_on_generated_data(generated_root):
    layout = synthia.list_sequences(generated_root)[0]
    report = validate_sequence(layout, "Stereo_Left/Omni_F", pairs=2, radius=0.3, min_motion_m=0.2)
    assert report["pairs_checked"] >= 1
    assert report["best_convention"] == ASSUMED and report["assumed_convention_ok"]
    others = [v for k, v in report["overlap"].items() if k != ASSUMED]
    assert report["overlap"][ASSUMED] > 0.8 and max(others) < report["overlap"][ASSUMED] - 0.2
    assert 0 < report["depth_no_hit_fraction"] < 1
