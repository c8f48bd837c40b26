"""The headline metrics of an experiment: the ~20 numbers that compare experiments at a glance.

One mapping, stage -> {metric key in ``reports/<stage>/metrics.json`` (flattened with dots) -> headline
name}. :mod:`pipeline.tracking` logs each stage's headline metrics as ``headline/<name>`` on the stage's
MLflow run and on the experiment's parent run as the stage finishes. The ``headline/`` prefix sorts before
the other metric groups (``phase1.*``, ``stats/*``...), so MLflow's compare view lists them first.
Keys a run does not produce (a stage skipped, a tiny sample without held-out frames) are left out.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import flatten

PREFIX = "headline/"

HEADLINE: dict[str, dict[str, str]] = {
    "train_phase1": {"train.final_train.loss": "phase1.train_loss"},
    "train_phase2": {"train.final_train.loss": "phase2.train_loss"},
    "evaluate": {
        "phase1.model_refined.chamfer_l1_m": "phase1.chamfer_l1_m",
        "phase1.model_refined.acc_m": "phase1.acc_m",
        "phase1.model_refined.fscore_0.2": "phase1.fscore_0.2",
        "phase1.model_refined.fg_ari": "phase1.fg_ari",
        "phase1.model_refined.position_error_m": "phase1.position_error_m",
        "phase1.model_refined_vs_kmeans_spheres.chamfer_l1_reduction": "phase1.chamfer_reduction_vs_kmeans",
        "phase1.model_refined_vs_kmeans_spheres.fg_ari_gain": "phase1.fg_ari_gain_vs_kmeans",
        "phase2.forecast_chamfer_m.delta_5.model_best_of_k": "phase2.forecast_chamfer_m_delta5",
        "phase2.forecast_chamfer_m.delta_5.best_of_k_vs_best_baseline": "phase2.forecast_vs_baseline_delta5",
        "phase2.identity.phase2_tracked.fg_ari_clip": "phase2.fg_ari_clip",
        "phase2.identity.phase2_tracked.switches_per_instance": "phase2.switches_per_instance",
        "phase2.camera_error.relative_rotation_deg": "camera.relative_rotation_deg",
        "phase2.camera_error.relative_translation_m": "camera.relative_translation_m",
        "phase2.camera_error.end_drift_m": "camera.end_drift_m",
    },
    "laq": {
        "probe.r2": "laq.probe_r2",
        "probe.r2_shuffled_labels": "laq.probe_r2_shuffled",
        "prediction.mse_ratio_to_copy": "laq.prediction_mse_ratio_to_copy",
        "nmi.tuple.ami": "laq.code_motion_ami",
        "controllability.delta_mse_shuffled": "laq.controllability_delta_mse",
        "actions.test.probe.codes.r2.forward_mps": "laq.probe_r2_forward",
        "actions.test.probe.codes.r2.yaw_rate_radps": "laq.probe_r2_yaw_rate",
        "actions.test.probe.latent_before_nsvq.r2.yaw_rate_radps": "laq.probe_r2_yaw_rate_before_nsvq",
        "actions.test.manoeuvre.tuple.ami": "laq.code_manoeuvre_ami",
        "actions.test.usage.perplexity_min_position": "laq.perplexity_min_position",
        "actions.test.controllability.relative_gain_shuffled": "laq.shuffled_code_gain_relative",
    },
    "vggt": {
        "rotation_error_deg.median": "camera.vggt_rotation_error_deg",
        "depth_abs_rel.median": "camera.vggt_depth_abs_rel",
    },
}


def headline_metrics(stage: str, metrics: dict[str, Any]) -> dict[str, float]:
    """``{"headline/<name>": value}`` for the headline keys of ``stage`` present (and numeric) in ``metrics``."""
    flat = flatten(metrics)
    out = {}
    for key, name in HEADLINE.get(stage, {}).items():
        value = flat.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[PREFIX + name] = float(value)
    return out
