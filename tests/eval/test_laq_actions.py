"""LAQ action metrics against independent references: analytic poses, hand-computed mutual information."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import camera
from pipeline.data.camera import look_pose
from pipeline.eval import laq_actions as la
from pipeline.results import laq as results_laq


def test_motion_components_from_analytic_poses():
    """A camera at 6 m/s along its axis turning right at 0.25 rad/s for 1 s, and a sideways step: components exact."""
    start = np.array([2.0, 1.6, -3.0])
    a = look_pose(start, yaw=0.4, pitch=0.0)
    ahead = start + 6.0 * np.array([np.sin(0.4), 0.0, np.cos(0.4)])
    pairs = [camera.synthia_pair_motion(a, look_pose(ahead, 0.4, 0.0)),  # 6 m straight ahead in 1 s
             camera.synthia_pair_motion(a, look_pose(start, 0.4 + 0.25, 0.0)),  # turn right on the spot
             camera.synthia_pair_motion(a, look_pose(start + 1.5 * np.array([np.cos(0.4), 0.0, -np.sin(0.4)]),
                                                      0.4, 0.0))]  # 1.5 m to the right
    components = la.motion_components(np.array(pairs), seconds=1.0)
    np.testing.assert_allclose(components, [[6.0, 0, 0], [0, 0.25, 0], [0, 0, 1.5]], atol=1e-9)
    np.testing.assert_allclose(la.motion_components(np.array(pairs), seconds=2.0), components / 2, atol=1e-12)


def _nmi_reference(a: np.ndarray, b: np.ndarray) -> float:
    """NMI with the arithmetic mean of the entropies, from the contingency table by hand."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    p = joint / joint.sum()
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum()
    h = lambda q: -(q[q > 0] * np.log(q[q > 0])).sum()  # noqa: E731
    return mi / ((h(pa) + h(pb)) / 2)


def test_label_agreement_hand_cases():
    rng = np.random.default_rng(0)
    names = ["left", "left", "right", "right", "stop", "stop"]
    perfect = np.array([[1, 0], [1, 0], [2, 0], [2, 0], [3, 1], [3, 1]])
    out = la.label_agreement(perfect, names, rng, mirrored_indices=perfect[[2, 3, 0, 1, 4, 5]])
    assert out["tuple"]["nmi"] == pytest.approx(1.0) and out["tuple"]["ami"] == pytest.approx(1.0)
    # mirrored left pairs use the right codes and are labelled right: still one code tuple per label
    assert out["tuple_with_mirrored_pairs"]["ami"] == pytest.approx(1.0)
    assert out["labels"] == 3 and out["per_position"][1]["nmi"] < 1.0
    # codes independent of the labels: 2 x 2 balanced table, zero mutual information
    independent = la.label_agreement(np.array([[0], [1], [0], [1]]), ["left", "left", "stop", "stop"], rng)
    assert independent["tuple"]["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert independent["tuple"]["ami"] <= 0.0
    # a general case against the hand-computed contingency-table NMI
    codes, labels = rng.integers(0, 5, 200), rng.integers(0, 4, 200)
    names = [la.LABELS[i] for i in labels]
    got = la.label_agreement(codes[:, None], names, rng)["tuple"]["nmi"]
    assert got == pytest.approx(_nmi_reference(np.unique(codes, return_inverse=True)[1], labels), rel=1e-9)


def test_pair_labels_follow_the_majority_and_label_ids():
    labels = {"d": np.array(["stop"] * 3 + ["accelerate"] * 5 + ["left"] * 4)}
    assert la.pair_labels(labels, ["d", "d", "d"], np.array([[0, 5], [1, 6], [6, 11]])) == [
        "stop", "accelerate", "left"]
    assert list(la.label_ids(["straight", "lane_change_right", "other"])) == [0, 7, 8]


def test_component_probe_reads_linear_signal_not_shuffled():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(400, 3))
    x = np.concatenate([y @ rng.normal(size=(3, 6)), rng.normal(size=(400, 4))], 1) + 0.05 * rng.normal(size=(400, 10))
    groups = np.repeat(np.arange(8), 50)
    probe = la.component_probe(la.fit_probe(x[:300], y[:300], groups[:300], seed=0), x[300:], y[300:])
    for name in la.COMPONENTS:
        assert probe["r2"][name] > 0.9 and probe["r2_shuffled_labels"][name] < 0.1


def test_targets_thresholds():
    split = {"probe": {"codes": {"r2": {"forward_mps": 0.7, "yaw_rate_radps": 0.55},
                                 "r2_shuffled_labels": {"forward_mps": -0.1, "yaw_rate_radps": 0.1}}},
             "manoeuvre": {"tuple": {"ami": 0.31}}, "usage": {"perplexity_min_position": 12.0},
             "controllability": {"relative_gain_shuffled": 0.1}}
    got = la.targets(split)
    assert got["probe_r2_forward"]["met"] and not got["probe_r2_yaw_rate"]["met"]
    assert got["probe_r2_forward_over_shuffled"]["value"] == pytest.approx(0.8)
    assert not got["probe_r2_yaw_rate_over_shuffled"]["met"] and got["ami_code_tuple_manoeuvre"]["met"]
    assert not got["perplexity_min_position"]["met"] and got["shuffled_code_gain_relative"]["met"]
    del split["manoeuvre"]
    assert la.targets(split)["ami_code_tuple_manoeuvre"] == {"value": None, "target": 0.3, "met": None}


def test_manoeuvre_usage_figure(tmp_path, assert_readable):
    rng = np.random.default_rng(0)
    labels = [la.LABELS[i] for i in rng.integers(0, 8, 120)]
    path = tmp_path / "figures" / "manoeuvre_usage.png"
    la.manoeuvre_usage_figure(rng.integers(0, 32, (120, 4)), labels, 32, path)
    assert_readable(path)


def test_results_section_mean_std_over_seeds(tmp_path: Path):
    values = [0.5, 0.7, 0.9]
    dirs = []
    for i, v in enumerate(values):
        split = {"pairs": 10, "probe": {"codes": {"r2": {"forward_mps": v, "yaw_rate_radps": v / 2},
                                                  "r2_shuffled_labels": {"forward_mps": 0.0, "yaw_rate_radps": -0.1}}},
                 "manoeuvre": {"tuple": {"ami": v / 3}}, "usage": {"perplexity_min_position": 20.0 + i}}
        folder = tmp_path / f"seed{i}"
        folder.mkdir()
        (folder / "laq.json").write_text(json.dumps({"actions": {"val": split, "test": split}, "data": {}}))
        dirs.append(folder)
    summary = results_laq.summarise(dirs, [0, 1, 2])
    forward = summary["test"]["probe_r2_forward"]
    assert forward["mean"] == pytest.approx(np.mean(values)) and forward["std"] == pytest.approx(np.std(values, ddof=1))
    assert summary["test"]["probe_r2_yaw_rate_over_shuffled"]["per_seed"] == pytest.approx([0.35, 0.45, 0.55])
    assert summary["targets_test"]["probe_r2_forward"]["met"] and not summary["targets_test"]["probe_r2_yaw_rate"]["met"]
    assert summary["test"]["mse_inferred_codes"]["n"] == 0  # missing in these runs: no value, no crash
    assert "probe_r2_forward" in results_laq.markdown(summary, "LAQ")
