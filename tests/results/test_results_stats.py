"""Results preset statistics: paired bootstrap against a direct resampling loop, section on known tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipeline.results import phase1
from pipeline.results.run import apply_overrides, parse_override
from pipeline.results.stats import block_bootstrap, mean_std, paired_bootstrap


def test_paired_bootstrap_matches_a_direct_loop():
    rng = np.random.default_rng(0)
    diff = rng.normal(-0.05, 0.1, (40, 3))
    diff[3, 1] = np.nan  # one frame lacks the metric in one seed
    got = paired_bootstrap(diff, resamples=500, seed=1)
    assert np.isclose(got["mean"], np.nanmean(diff))
    index = np.random.default_rng(1).integers(0, 40, (500, 40))
    means = [np.nanmean(diff[i]) for i in index]  # pooled mean of the resampled frames
    assert np.isclose(got["low"], np.quantile(means, 0.025)) and np.isclose(got["high"], np.quantile(means, 0.975))
    assert got["high"] < 0 and got["frames"] == 40


def test_block_bootstrap_matches_a_direct_loop_over_runs_of_windows():
    """Each resample rebuilds every sequence from runs of ``block`` consecutive windows with random starts (drawn per
    sequence in order of appearance, as a direct loop draws them); cut to the sequence's length."""
    rng = np.random.default_rng(0)
    diff = rng.normal(0.0, 0.1, (23, 2))
    groups = np.array(["a"] * 15 + ["b"] * 8)
    got = block_bootstrap(diff, groups, 4, resamples=300, seed=2)
    draw = np.random.default_rng(2)
    starts = {g: draw.integers(0, n - 4 + 1, (300, -(-n // 4))) for g, n in (("a", 15), ("b", 8))}
    means = []
    for r in range(300):
        rows = []
        for group, first, n in (("a", 0, 15), ("b", 15, 8)):
            rows += [first + start + k for start in starts[group][r] for k in range(4)][:n]
        means.append(diff[rows].mean())
    assert np.isclose(got["mean"], diff.mean()) and got["frames"] == 23 and got["block"] == 4
    assert np.isclose(got["low"], np.quantile(means, 0.025)) and np.isclose(got["high"], np.quantile(means, 0.975))


def test_block_bootstrap_widens_the_interval_of_overlapping_windows():
    """Windows that share frames share their error: a difference that is one value per run of 10 windows (10
    independent values, each repeated 10 times) has the spread of 10 values, not of 100, so its honest interval is
    sqrt(10) = 3.2 times the window-by-window one. Runs of 10 random-start windows recover most of that (the blocks
    do not line up with the runs); on independent windows both intervals agree. Widths averaged over 10 draws."""
    groups = np.zeros(100, dtype=int)

    def width(interval):
        return interval["high"] - interval["low"]

    shared, independent = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        runs = np.repeat(rng.normal(0.0, 1.0, 10), 10)[:, None]  # (100, 1)
        shared.append(width(block_bootstrap(runs, groups, 10)) / width(paired_bootstrap(runs)))
        alone = rng.normal(0.0, 1.0, (100, 1))
        independent.append(width(block_bootstrap(alone, groups, 10)) / width(paired_bootstrap(alone)))
    assert 2.0 < np.mean(shared) < 3.5
    assert 0.8 < np.mean(independent) < 1.15
    short = block_bootstrap(np.arange(3.0)[:, None], np.zeros(3), 10)  # fewer windows than a run: kept whole
    assert short["low"] == short["high"] == 1.0


def test_constant_difference_has_a_zero_width_interval_and_mean_std():
    got = paired_bootstrap(np.full((10, 2), 0.2))
    assert np.isclose(got["low"], 0.2) and np.isclose(got["high"], 0.2)
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}


def test_phase1_section_on_known_tables(tmp_path):
    dirs = []
    for seed in range(2):
        rows = []
        for frame in range(20):
            for method, offset in (("model", -0.05), ("model_refined", -0.08), ("kmeans_spheres", 0.0),
                                   ("pca_ellipsoids", -0.06)):
                value = 0.3 + 0.01 * frame + offset + 0.001 * seed
                rows.append({"sequence": "S", "frame": frame, "method": method, "chamfer_l1_m": value,
                             "chamfer_vis_m": value, "comp_all_m": value, "acc_m": value, "fsv": 0.1,
                             "fg_ari": 0.5 - offset})
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        pd.DataFrame(rows).to_csv(folder / "phase1_frames.csv", index=False)
        protos = {"prototype_usage": [0.3, 0.3, 0.4], "prototypes_over_10pct": 3, "class_prototype_nmi": 0.4,
                  "class_prototype_table": {"car": [1, 2, 3]}}
        (folder / "evaluate.json").write_text(json.dumps({"phase1": {"held_out_sequences": ["S"], "skipped_frames": 1,
                                                                      "prototypes": protos}}))
        (folder / "train_phase1.json").write_text(json.dumps({"train": {"train_seconds": 60.0, "selected_step": 100}}))
        dirs.append(folder)
    summary = phase1.summarise(dirs, [0, 1])
    assert np.isclose(summary["paired"]["model_vs_kmeans_spheres"]["chamfer_l1_m"]["mean"], -0.05)
    assert np.isclose(summary["headline"]["model"]["chamfer_l1_m"]["std"], np.std([0.0, 0.001], ddof=1))
    assert summary["frames_per_seed"] == [20, 20]
    assert summary["targets"]["single_pass_beats_spheres_chamfer_l1"]
    assert summary["targets"]["refined_chamfer_l1_below_ellipsoids"]
    assert "model_refined_vs_pca_ellipsoids" in phase1.markdown(summary, "t")


def test_overrides_are_checked():
    params = {"train": {"seed": 0}}
    assert apply_overrides(params, dict([parse_override("train.seed=3")])) == {"train": {"seed": 3}}
    try:
        apply_overrides(params, {"train.sed": 1})
    except ValueError as err:
        assert "train.sed" in str(err)
    else:
        raise AssertionError("unknown key accepted")


def write_phase2_run(folder, seed: int, offsets: dict[str, float]) -> None:
    """A kept run of the phase-two section: 30 forecasts per Δ, error = base + method offset + seed shift."""
    folder.mkdir()
    rows = [{"sequence": "S", "context_last": i, "delta": d, "delta_s": d / 5, "method": m,
             "chamfer_m": 0.5 + 0.01 * i + 0.1 * d + offset + 0.002 * seed}
            for d in (1, 5, 10) for i in range(30) for m, offset in offsets.items()]
    pd.DataFrame(rows).to_csv(folder / "phase2_forecasts.csv", index=False)
    camera = {"relative_rotation_deg": 0.5, "relative_translation_m": 0.1, "end_drift_m": 3.0 + seed,
              "end_drift_rotation_deg": 4.0, "drift_40_frames_m": 1.5, "drift_40_frames_deg": 3.0}
    identity = {"phase2_carried": {"fg_ari_clip": 0.4, "switches_per_instance": 3.0},
                "phase2_tracked": {"fg_ari_clip": 0.7, "switches_per_instance": 0.5}}
    (folder / "evaluate.json").write_text(json.dumps({"phase2": {
        "sequences": ["S"], "guesses": 3, "best_of_1": "most confident", "world_frame": "camera head", "context_frames": 4,
        "camera_error": camera, "identity": identity}}))
    (folder / "train_phase2.json").write_text(json.dumps({"train": {"train_seconds": 30.0}}))


def test_phase2_section_on_known_tables(tmp_path):
    from pipeline.results import phase2

    offsets = {"model_best_of_1": -0.05, "model_best_of_k": -0.2, "copy_last": 0.1, "constant_velocity": 0.0,
               "constant_acceleration": 0.2, "speed_scalings_best_of_3": -0.1, "context_lengths_best_of_3": -0.15}
    dirs = [tmp_path / f"seed{s}" for s in range(2)]
    for seed, folder in enumerate(dirs):
        write_phase2_run(folder, seed, offsets)
    summary = phase2.summarise(dirs, [0, 1])
    five = summary["paired"]["delta_5"]
    assert np.isclose(five["model_best_of_1_vs_constant_velocity"]["mean"], -0.05)
    assert np.isclose(five["model_best_of_k_vs_context_lengths_best_of_3"]["mean"], -0.05)
    assert five["model_best_of_1_vs_constant_velocity"]["frames"] == 30
    assert np.isclose(summary["headline"]["delta_10"]["copy_last"]["mean"], 0.5 + 0.145 + 1.0 + 0.1 + 0.001)
    assert np.isclose(summary["headline"]["delta_10"]["copy_last"]["std"], np.std([0.0, 0.002], ddof=1))
    assert np.isclose(summary["camera"]["end_drift_m"]["mean"], 3.5)
    assert summary["forecasts_per_seed"]["delta_5"] == [30, 30]
    targets = summary["targets"]
    assert targets["best_of_1_beats_constant_velocity_delta_5"]  # the best single-guess baseline
    assert targets["best_of_k_beats_context_lengths_best_of_3_delta_10"]
    assert targets["drift_40_frames_at_most_2_m"] and targets["clip_fg_ari_0.6"]  # the track ids' identity
    assert summary["identity"]["ids"] == "object track ids"
    assert np.isclose(summary["identity_slot_indices"]["switches_per_instance"]["mean"], 3.0)
    # a model worse than the best baseline fails its target
    offsets["model_best_of_1"] = 0.05
    for seed, folder in enumerate(dirs):
        folder.rename(tmp_path / f"old{seed}")
        write_phase2_run(folder, seed, offsets)
    worse = phase2.summarise(dirs, [0, 1])
    assert not worse["targets"]["best_of_1_beats_constant_velocity_delta_5"]
    assert five["model_best_of_1_vs_constant_velocity"]["block"] == 9  # 4 context frames + Δ
    narrow_only = {f"delta_{d}": {k: {**v, "block_high": 0.01} for k, v in summary["paired"][f"delta_{d}"].items()}
                   for d in (5, 10)}
    narrow_targets = phase2.targets(narrow_only, None, [], ["speed_scalings_best_of_3"])
    assert not any(ok for name, ok in narrow_targets.items()
                   if name.startswith("best_of") and "mean_below" not in name)  # the block interval decides
    assert narrow_targets["best_of_k_mean_below_speed_scalings_best_of_3_delta_5"]  # the literal wording
    above = {f"delta_{d}": {k: {**v, "mean": 0.01} for k, v in narrow_only[f"delta_{d}"].items()} for d in (5, 10)}
    assert not phase2.targets(above, None, [], ["speed_scalings_best_of_3"])[
        "best_of_k_mean_below_speed_scalings_best_of_3_delta_10"]
    assert "model_best_of_k_vs_speed_scalings_best_of_3" in phase2.markdown(summary, "t")
    assert "fixed" not in phase2.markdown(summary, "t")  # runs without fixed guesses (or from before them)
    summary["fixed_guesses"] = [0.0, 1.0]
    assert ("guesses 1-2 fixed: 0.0 x the extrapolated velocity, 1.0 x the extrapolated velocity, nothing learned"
            in phase2.markdown(summary, "t"))
    summary["fixed_guess_velocity"] = ["velocity_from", "slots"]
    assert "1.0 x the slots' own velocity, nothing" in phase2.markdown(summary, "t")


def test_run_seed_sets_every_seed_and_targets_laq(tmp_path, monkeypatch):
    """run_seed writes params.yaml with train/video/laq seeds = the preset's seed and repros evaluate and laq."""
    import subprocess

    import yaml

    from pipeline.results import run

    root = tmp_path / "project"
    root.mkdir()
    params = {"train": {"seed": 0}, "video": {"seed": 0}, "laq": {"seed": 0}, "data": {"seed": 9}}
    calls = []

    def fake_run(cmd, cwd=None, **kwargs):
        calls.append(cmd)
        if "repro" in cmd:
            calls.append(yaml.safe_load((cwd / "params.yaml").read_text()))
            (cwd / "reports/laq").mkdir(parents=True)
            (cwd / "reports/laq/metrics.json").write_text("{}")
        return subprocess.CompletedProcess(cmd, 0, stdout="/cache\n" if "cache" in cmd else "")

    (root / ".dvc").mkdir()
    (root / ".dvc/config").write_text("")
    monkeypatch.setattr(run, "project_files", lambda _: [".dvc/config"])
    monkeypatch.setattr(run.subprocess, "run", fake_run)
    run.run_seed(root, params, 2, tmp_path / "kept", "results-x-seed2")
    repro, written = calls[-2], calls[-1]
    assert repro[-3:] == ["repro", "evaluate", "laq"]
    assert written["train"]["seed"] == written["video"]["seed"] == written["laq"]["seed"] == 2
    assert written["data"]["seed"] == 9 and (tmp_path / "kept/laq.json").is_file()


def test_run_seed_keeps_only_reports_the_run_wrote(tmp_path, monkeypatch):
    """A committed report in the checkout (here the LAQ metrics) is not kept when the run's targets do not
    write it (``--targets evaluate``): the copy starts without the kept files."""
    import subprocess

    from pipeline.results import run

    root = tmp_path / "project"
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc/config").write_text("")
    (root / "reports/laq").mkdir(parents=True)
    (root / "reports/laq/metrics.json").write_text('{"committed": true}')

    def fake_run(cmd, cwd=None, **kwargs):
        if "repro" in cmd:
            (cwd / "reports/evaluate").mkdir(parents=True)
            (cwd / "reports/evaluate/metrics.json").write_text("{}")
        return subprocess.CompletedProcess(cmd, 0, stdout="/cache\n" if "cache" in cmd else "")

    monkeypatch.setattr(run, "project_files", lambda _: [".dvc/config", "reports/laq/metrics.json"])
    monkeypatch.setattr(run.subprocess, "run", fake_run)
    run.run_seed(root, {"train": {"seed": 0}, "video": {"seed": 0}, "laq": {"seed": 0}}, 1, tmp_path / "kept",
                 "results-x-seed1", ("evaluate",))
    assert (tmp_path / "kept/evaluate.json").is_file() and not (tmp_path / "kept/laq.json").exists()


def test_format_mean_std_says_when_nothing_was_recorded():
    from pipeline.results.stats import format_mean_std, mean_std

    assert format_mean_std(mean_std([None, float("nan")])) == "not recorded"
    assert format_mean_std(mean_std([1.0, 3.0])) == "2.000 ± 1.414"


def test_compare_pairs_two_result_sets_forecast_by_forecast(tmp_path):
    """Set B's best-of-1 is set A's minus 0.1 m on every forecast (B's best-of-k equals A's): B − A is exactly
    −0.1 with a zero-width interval and 0 for best-of-k; the forecasts B lacks are left out; a missing run is named."""
    import pytest

    from pipeline.results import compare

    rng = np.random.default_rng(0)
    for tag, shift in (("a", 0.0), ("b", -0.1)):
        for seed in (0, 1):
            rows = [{"sequence": "S", "context_last": c, "delta": d, "delta_s": d / 5, "method": m,
                     "chamfer_m": float(1 + rng.uniform()) if tag == "a" else None}
                    for c in range(3, 9) for d in (5, 10) for m in ("model_best_of_1", "model_best_of_k", "copy_last")]
            folder = tmp_path / "runs" / tag / f"seed{seed}"
            folder.mkdir(parents=True)
            table = pd.DataFrame(rows)
            if tag == "b":
                base = pd.read_csv(tmp_path / "runs" / "a" / f"seed{seed}" / "phase2_forecasts.csv")
                table["chamfer_m"] = base["chamfer_m"] + np.where(base["method"] == "model_best_of_1", shift, 0.0)
                table = table[table.context_last != 8]  # B has one context window fewer
            table.to_csv(folder / "phase2_forecasts.csv", index=False)
    got = compare.paired_sets(compare.forecast_tables(tmp_path / "runs" / "a", [0, 1]),
                              compare.forecast_tables(tmp_path / "runs" / "b", [0, 1]), 4)
    for delta in ("delta_5", "delta_10"):
        first, best = got[delta]["model_best_of_1"], got[delta]["model_best_of_k"]
        assert np.isclose(first["mean"], -0.1) and np.isclose(first["low"], -0.1) and np.isclose(first["high"], -0.1)
        assert first["frames"] == 5 and np.isclose(best["mean"], 0.0)
        assert np.isclose(first["block_low"], -0.1) and np.isclose(first["block_high"], -0.1)
    with pytest.raises(FileNotFoundError, match="seed2/phase2_forecasts.csv"):
        compare.forecast_tables(tmp_path / "runs" / "a", [0, 2])
