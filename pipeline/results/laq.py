"""LAQ section of the results preset: the headline LAQ metrics on the test drives, mean ± std over seeds.

Input: one folder per training seed holding ``laq.json`` (the ``laq`` stage's ``reports/laq/metrics.json``,
whose ``actions`` are measured per split and ``targets_test`` holds the issue's targets on the test pairs).
Reported: the test split's numbers (validation numbers beside them, for the record of model choices) and each
target met by the mean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.results.stats import mean_std

METRICS = {  # name -> dotted key inside one split's actions block (pipeline/eval/laq_actions.py)
    "probe_r2_forward": "probe.codes.r2.forward_mps",
    "probe_r2_forward_shuffled": "probe.codes.r2_shuffled_labels.forward_mps",
    "probe_r2_yaw_rate": "probe.codes.r2.yaw_rate_radps",
    "probe_r2_yaw_rate_shuffled": "probe.codes.r2_shuffled_labels.yaw_rate_radps",
    "probe_r2_lateral": "probe.codes.r2.lateral_mps",
    "probe_r2_forward_latent": "probe.latent_before_nsvq.r2.forward_mps",
    "probe_r2_yaw_rate_latent": "probe.latent_before_nsvq.r2.yaw_rate_radps",
    "probe_r2_forward_token_diff": "probe.token_diff.r2.forward_mps",
    "probe_r2_yaw_rate_token_diff": "probe.token_diff.r2.yaw_rate_radps",
    "ami_code_tuple_manoeuvre": "manoeuvre.tuple.ami",
    "ami_shuffled_labels": "manoeuvre.tuple_shuffled_labels.ami",
    "nmi_code_tuple_manoeuvre": "manoeuvre.tuple.nmi",
    "distinct_code_tuples": "usage.distinct_tuples",
    # the same AMI for tuples of the TRUE motion (pipeline/eval/laq_ami_reference.py): one 16-cluster code, and
    # 16 equal-count bins of forward speed, yaw rate and lateral speed as three positions
    "ami_true_motion_one_code": "manoeuvre.true_motion_reference.kmeans.ami",
    "ami_true_motion_three_positions": "manoeuvre.true_motion_reference.quantiles_all.ami",
    "perplexity_min_position": "usage.perplexity_min_position",
    "mse_inferred_codes": "prediction.mse",
    "mse_shuffled_codes": "controllability.mse_shuffled_codes",
    "mse_random_codes": "controllability.mse_random_codes",
    "shuffled_code_gain_relative": "controllability.relative_gain_shuffled",
    # does the true motion show in the tokens at all (pipeline/eval/laq_motion_check.py; > 0: it explains them)
    "tokens_motion_explained": "motion_in_tokens.explained",
    "decoder_motion_forward_correlation": "motion_in_tokens.decoder_motion_correlation.forward",
    "decoder_motion_yaw_correlation": "motion_in_tokens.decoder_motion_correlation.yaw",
}
TARGETS = {"probe_r2_forward": 0.6, "probe_r2_yaw_rate": 0.6, "probe_r2_forward_over_shuffled": 0.5,
           "probe_r2_yaw_rate_over_shuffled": 0.5, "ami_code_tuple_manoeuvre": 0.3, "perplexity_min_position": 16.0,
           "shuffled_code_gain_relative": 0.1}


def lookup(block: dict[str, Any], dotted: str) -> float | None:
    """``block[a][b]...`` for ``a.b...``; None when a key is missing."""
    for key in dotted.split("."):
        if not isinstance(block, dict) or key not in block:
            return None
        block = block[key]
    return block


def split_values(metrics: dict[str, Any], split: str) -> dict[str, float | None]:
    """:data:`METRICS` of one run's ``split`` (``val`` / ``test``), plus the probe gains over shuffled labels."""
    block = metrics.get("actions", {}).get(split, {})
    values = {name: lookup(block, key) for name, key in METRICS.items()}
    for c in ("forward", "yaw_rate"):
        r2, shuffled = values[f"probe_r2_{c}"], values[f"probe_r2_{c}_shuffled"]
        values[f"probe_r2_{c}_over_shuffled"] = None if r2 is None or shuffled is None else r2 - shuffled
    return values


def summarise(run_dirs: list[Path], seeds: list[int]) -> dict:
    """The section's JSON: per split, every metric per seed and mean ± std; targets on the test mean."""
    runs = [json.loads((d / "laq.json").read_text()) for d in run_dirs]
    out: dict[str, Any] = {"seeds": seeds, "pairs": runs[0].get("actions", {}).get("test", {}).get("pairs"),
                           "data": runs[0].get("data", {}), "note": runs[0].get("note")}
    for split in ("val", "test"):
        per_seed = [split_values(m, split) for m in runs]
        out[split] = {name: {"per_seed": [v[name] for v in per_seed], **mean_std([v[name] for v in per_seed])}
                      for name in per_seed[0]}
    out["targets_test"] = {name: {"target": t, "mean": out["test"][name]["mean"],
                                  "met": bool(out["test"][name]["mean"] >= t)} for name, t in TARGETS.items()}
    return out


def markdown(summary: dict, title: str) -> str:
    """The section as a Markdown report."""
    lines = [f"# {title}", "", f"Seeds {summary['seeds']}; test pairs per seed {summary['pairs']}; "
             f"splits {summary['data'].get('splits', {}) and {k: len(v) for k, v in summary['data']['splits'].items()}}.",
             ""]
    if summary.get("note"):
        lines += [f"Note: {summary['note']}.", ""]
    lines += ["| metric | test: mean ± std | test per seed | validation: mean ± std |", "|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for name, row in summary["test"].items():
        val = summary["val"][name]
        lines.append(f"| {name} | {row['mean']:.3f} ± {row['std']:.3f} | {', '.join(fmt(v) for v in row['per_seed'])} | "
                     f"{val['mean']:.3f} ± {val['std']:.3f} |")
    lines += ["", "## Targets (test drives, mean over seeds)", ""]
    lines += [f"- {'yes' if t['met'] else 'NO '} {name}: {t['mean']:.3f} (target >= {t['target']})"
              for name, t in summary["targets_test"].items()]
    return "\n".join(lines) + "\n"
