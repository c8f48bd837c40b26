"""Phase-one section of the results preset: headline metrics over seeds and paired comparisons.

Input: one folder per training seed holding ``phase1_frames.csv`` (per-frame metrics of every method,
written by the evaluate stage) and ``evaluate.json`` / ``train_phase1.json`` (the stages' metrics).
Differences are learned minus baseline on the same frame and seed (negative = better for the
distances in metres, positive = better for FG-ARI); intervals: :func:`pipeline.results.stats.paired_bootstrap`
over frames, seeds pooled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.results.stats import format_mean_std, mean_std, paired_bootstrap, trained_record

METRICS = ("chamfer_l1_m", "chamfer_vis_m", "comp_all_m", "acc_m", "fg_ari", "fsv")
METHODS = ("model", "model_refined", "kmeans_spheres", "pca_ellipsoids")
LEARNED = ("model", "model_refined")
BASELINES = ("kmeans_spheres", "pca_ellipsoids")


def load_runs(run_dirs: list[Path]) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """(per-frame rows with a ``seed_run`` column, evaluate phase-one metrics, train_phase1 metrics) per run."""
    frames, evaluated, trained = [], [], []
    for i, folder in enumerate(run_dirs):
        table = pd.read_csv(folder / "phase1_frames.csv")
        frames.append(table.assign(seed_run=i))
        evaluated.append(json.loads((folder / "evaluate.json").read_text())["phase1"])
        trained.append(trained_record(folder, "train_phase1"))
    return pd.concat(frames, ignore_index=True), evaluated, trained


def paired_differences(frames: pd.DataFrame, metric: str, learned: str, baseline: str) -> np.ndarray:
    """(frames, seeds) learned - baseline for ``metric``; NaN where a frame lacks it in a seed."""
    wide = frames.pivot_table(index=["sequence", "frame"], columns=["seed_run", "method"], values=metric, dropna=False)
    seeds = sorted(frames["seed_run"].unique())
    return np.stack([wide[(s, learned)].to_numpy() - wide[(s, baseline)].to_numpy() for s in seeds], axis=1)


def summarise(run_dirs: list[Path], seeds: list[int]) -> dict:
    """The section's JSON: per method and metric mean +- std over seeds, paired comparisons, prototypes."""
    frames, evaluated, trained = load_runs(run_dirs)
    per_seed = frames.groupby(["seed_run", "method"])[list(METRICS)].mean()
    headline = {m: {k: mean_std([per_seed.loc[(s, m), k] for s in range(len(run_dirs))]) for k in METRICS}
                for m in METHODS}
    paired = {f"{a}_vs_{b}": {k: paired_bootstrap(paired_differences(frames, k, a, b)) for k in METRICS}
              for a in LEARNED for b in BASELINES}
    protos = [e["prototypes"] for e in evaluated]
    return {
        "seeds": seeds,
        "held_out_sequences": evaluated[0]["held_out_sequences"],
        "frames_per_seed": [int((frames[(frames.seed_run == i) & (frames.method == "model")]).shape[0])
                            for i in range(len(run_dirs))],
        "skipped_frames_per_seed": [e["skipped_frames"] for e in evaluated],
        "skip_rule": "frames with fewer than train.min_points target points (things within train.far_m) are skipped; "
                     "FG-ARI only on frames with >= 2 ground-truth instances",
        "headline": headline,
        "paired": paired,
        "prototypes": {
            "usage": [p["prototype_usage"] for p in protos],
            "usage_per_cluster": [p.get("prototype_usage_per_cluster") for p in protos],  # absent before 2026-12-03
            "prototypes_over_10pct": mean_std([p["prototypes_over_10pct"] for p in protos]),
            "class_prototype_nmi": mean_std([p["class_prototype_nmi"] for p in protos]),
            "class_prototype_table": [p["class_prototype_table"] for p in protos],
        },
        "train": {"seconds": mean_std([t["train"].get("train_seconds") for t in trained]),
                  "selected_step": [t["train"].get("selected_step") for t in trained]},
        "targets": targets(headline, paired, protos),
    }


def targets(headline: dict, paired: dict, protos: list[dict]) -> dict[str, bool]:
    """The issue's "done when" checks (``-S train.slots=12`` is a separate preset run)."""
    single = paired["model_vs_kmeans_spheres"]
    better = lambda c, up=False: (c["low"] > 0) if up else (c["high"] < 0)  # noqa: E731 - interval excludes 0
    refined, ellipsoid = headline["model_refined"], headline["pca_ellipsoids"]
    return {
        "single_pass_beats_spheres_chamfer_l1": better(single["chamfer_l1_m"]),
        "single_pass_beats_spheres_chamfer_vis": better(single["chamfer_vis_m"]),
        "single_pass_beats_spheres_completeness": better(single["comp_all_m"]),
        "single_pass_beats_spheres_fg_ari": better(single["fg_ari"], up=True),
        "refined_chamfer_l1_below_ellipsoids": refined["chamfer_l1_m"]["mean"] < ellipsoid["chamfer_l1_m"]["mean"],
        "refined_chamfer_vis_below_ellipsoids": refined["chamfer_vis_m"]["mean"] < ellipsoid["chamfer_vis_m"]["mean"],
        "refined_fg_ari_spheres_plus_0.15": refined["fg_ari"]["mean"] >= headline["kmeans_spheres"]["fg_ari"]["mean"] + 0.15,
        "three_prototypes_over_10pct": all(p["prototypes_over_10pct"] >= 3 for p in protos),
        "class_prototype_nmi_0.3": all((p["class_prototype_nmi"] or 0) >= 0.3 for p in protos),
    }


def markdown(summary: dict, title: str) -> str:
    """The section as a Markdown report."""
    ms = format_mean_std
    lines = [f"# {title}", "",
             f"Seeds {summary['seeds']}; held-out sequences {', '.join(summary['held_out_sequences'])}; "
             f"frames per seed {summary['frames_per_seed']} (skipped {summary['skipped_frames_per_seed']}: "
             f"{summary['skip_rule']}).", "",
             "## Held-out metrics, mean ± std over seeds (metres; FG-ARI and fsv unitless)", "",
             "| method | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    lines += [f"| {m} | " + " | ".join(ms(summary["headline"][m][k]) for k in METRICS) + " |" for m in METHODS]
    lines += ["", "## Paired per-frame differences, learned − baseline: mean [bootstrap 95 % interval over frames, "
              "seeds pooled]", "", "| comparison | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, row in summary["paired"].items():
        lines.append(f"| {name} | " + " | ".join(f"{c['mean']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
                                                for c in (row[k] for k in METRICS)) + " |")
    p = summary["prototypes"]
    lines += ["", "## Prototypes (single pass, held-out frames)", "",
              f"- blend mass per prototype, per seed (distinct slots: a merged group once): {p['usage']}",
              f"- the same over every k-means cluster (a merged group once per cluster): {p['usage_per_cluster']}",
              f"- prototypes with >= 10 % of the mass: {ms(p['prototypes_over_10pct'])}",
              f"- class ↔ prototype NMI: {ms(p['class_prototype_nmi'])}",
              f"- class ↔ prototype table (matched slots per prototype), seed {summary['seeds'][0]}: "
              f"{p['class_prototype_table'][0]}", "",
              f"Training seconds per seed: {ms(summary['train']['seconds'])}; selected steps {summary['train']['selected_step']}.",
              "", "## Targets", ""]
    lines += [f"- {'yes' if ok else 'NO '} {name}" for name, ok in summary["targets"].items()]
    return "\n".join(lines) + "\n"
