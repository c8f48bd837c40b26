"""What do the LAQ codes mean? Metrics against the manoeuvre labels and motion components of frame pairs.

Per split (validation for model choices, test for the reported numbers), on the pairs of that split:

- Motion components of a pair (:func:`motion_components`), from the ground-truth poses of its two frames
  (``pipeline/data/camera.py:synthia_pair_motion``, frame t+offset in frame t's OpenCV camera axes) divided
  by the pair's duration: ``forward_mps`` (t_z / s), ``yaw_rate_radps`` (rot_y / s, > 0 turns right),
  ``lateral_mps`` (t_x / s, > 0 to the right).
- Probe R² per component (ridge, ``pipeline/eval/laq_metrics.py:linear_probe``: penalty per component by
  grouped CV over training drives, training pairs mirrored too) against the same probe on shuffled training
  labels, on four inputs: the hard codes (what LAQ gives), the continuous encoder output before NSVQ (what
  quantization costs), the plain difference of the frame tokens' geometry channels and occupancy (what is
  there before any learning) and the difference of the pooled ``global`` features.
- NMI / AMI (scikit-learn) between the code tuples and the manoeuvre label of each pair
  (``pipeline/data/synthetic/manoeuvres.py:pair_manoeuvre``), beside the same with shuffled labels, per
  code position, and pooled with the mirrored pairs (codes of the mirrored pair, label
  ``mirror_manoeuvre``); beside them the AMI that tuples built from the *true* motion reach on the same pairs
  (``pipeline/eval/laq_ami_reference.py``: what the chance correction leaves for an ideal code).
- Decoder error with inferred vs shuffled vs random codes (``decoder_metrics``), and the shuffled-code gain
  relative to the model's error.
- Per-manoeuvre code usage figure (:func:`manoeuvre_usage_figure`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.synthetic.manoeuvres import LABELS, mirror_manoeuvre, pair_manoeuvre
from pipeline.eval.laq_ami_reference import true_motion_agreement
from pipeline.eval.laq_metrics import (
    FittedProbe,
    decoder_metrics,
    fit_probe,
    infer_codes,
    mirror_motion,
    mutual_information,
    score_probe,
    tuple_ids,
    usage_stats,
)
from pipeline.eval.laq_video_metrics import label_usage_figure
from pipeline.models.laq import LAQ

COMPONENTS = ("forward_mps", "yaw_rate_radps", "lateral_mps")
PROBE_INPUTS = {"codes": "embeddings", "latent_before_nsvq": "latent", "token_diff": "token_diff",
                "global_feature_diff": "feature_diff"}


def motion_components(motion: np.ndarray, seconds: float) -> np.ndarray:
    """(P, 3) forward speed (m/s), yaw rate (rad/s, > 0 = right) and lateral speed (m/s, > 0 = right) from
    relative motions (P, 6) (rotation vector, translation; OpenCV axes of frame t) over ``seconds``."""
    return np.stack([motion[:, 5], motion[:, 1], motion[:, 3]], 1) / seconds


def pair_labels(labels: dict[str, np.ndarray], sequences: list[str], frames: np.ndarray) -> list[str]:
    """Manoeuvre label of every pair (``sequences`` (P,), ``frames`` (P, 2)) from per-frame ``labels``."""
    return [pair_manoeuvre(labels[s], int(a), int(b)) for s, (a, b) in zip(sequences, frames, strict=True)]


def label_ids(names: list[str]) -> np.ndarray:
    """Integer class of each label (index in :data:`LABELS`, unknown labels after them)."""
    order = list(LABELS) + sorted(set(names) - set(LABELS))
    return np.asarray([order.index(n) for n in names], dtype=np.int64)


def label_agreement(indices: np.ndarray, names: list[str], rng: np.random.Generator,
                    mirrored_indices: np.ndarray | None = None) -> dict[str, Any]:
    """NMI / AMI of code tuples (and each position) vs the labels ``names``; shuffled-label reference; pooled
    with the mirrored pairs when ``mirrored_indices`` (codes of the mirrored pairs) is given."""
    classes = label_ids(names)
    tuples = tuple_ids(indices)
    out = {"tuple": mutual_information(tuples, classes),
           "tuple_shuffled_labels": mutual_information(tuples, classes[rng.permutation(len(classes))]),
           "per_position": [mutual_information(indices[:, s], classes) for s in range(indices.shape[1])],
           "labels": int(len(np.unique(classes)))}
    if mirrored_indices is not None:
        pooled = np.concatenate([indices, mirrored_indices])
        mirrored = label_ids(list(names) + [mirror_manoeuvre(n) for n in names])
        out["tuple_with_mirrored_pairs"] = mutual_information(tuple_ids(pooled), mirrored)
    return out


def component_probe(probe: FittedProbe, x_eval: np.ndarray, y_eval: np.ndarray) -> dict[str, Any]:
    """A fitted probe on the motion components of one split: R² per component with its shuffled-label reference."""
    scores = score_probe(probe, x_eval, y_eval, names=COMPONENTS)
    return {"r2": scores["r2_per_target"], "r2_shuffled_labels": scores["r2_shuffled_per_target"],
            "r2_mean": scores["r2"], "r2_mean_shuffled_labels": scores["r2_shuffled_labels"], "alpha": scores["alpha"]}


def fit_component_probes(codes_train: dict[str, np.ndarray], codes_train_mirrored: dict[str, np.ndarray] | None,
                         motion_train: np.ndarray, groups: np.ndarray, seconds: float,
                         seed: int) -> dict[str, FittedProbe]:
    """One probe (and its shuffled-label twin) per input of :data:`PROBE_INPUTS` from the training pairs' codes
    (:func:`infer_codes`), with the mirrored training pairs (``codes_train_mirrored``, motion mirrored) when given;
    ``groups`` (P,): sequence of each training pair (grouped CV)."""
    y_train = motion_components(motion_train, seconds)
    probes = {}
    for name, key in PROBE_INPUTS.items():
        x, y, g = codes_train[key], y_train, groups
        if codes_train_mirrored is not None and key != "feature_diff":  # global features have no mirror
            x = np.concatenate([x, codes_train_mirrored[key]])
            y = np.concatenate([y_train, motion_components(mirror_motion(motion_train), seconds)])
            g = np.concatenate([groups, groups])
        probes[name] = fit_probe(x, y, g, seed)
    return probes


def action_metrics(model: LAQ, split, probes: dict[str, FittedProbe], motion_split: np.ndarray,
                   labels_split: list[str] | None, *, seconds: float, device: torch.device,
                   seed: int, codes: dict[str, np.ndarray] | None = None,
                   mirrored: dict[str, np.ndarray] | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """The module's metrics on the pairs of one ``split`` (:class:`pipeline.train.laq.FeaturePairs`) with the
    probes of :func:`fit_component_probes`. ``motion_split`` (P, 6) as ``synthia_pair_motion``; ``seconds``: a
    pair's duration; ``codes`` / ``mirrored``: :func:`infer_codes` of ``split`` / of the mirrored split when
    already at hand. Returns (metrics, the split's code indices (P, S))."""
    rng = np.random.default_rng(seed)
    codes = codes or infer_codes(model, split, device)
    y_split = motion_components(motion_split, seconds)
    probes = {name: component_probe(probe, codes[PROBE_INPUTS[name]], y_split) for name, probe in probes.items()}
    decoder = decoder_metrics(model, split, codes, rng, device)
    control = decoder["controllability"]
    mse = decoder["prediction"]["mse"]
    control["relative_gain_shuffled"] = control["delta_mse_shuffled"] / mse if mse > 0 else None
    control["relative_gain_random"] = control["delta_mse_random"] / mse if mse > 0 else None
    out: dict[str, Any] = {"pairs": len(split), "usage": usage_stats(codes["indices"], model.config.codebook_size),
                           "probe": probes, **decoder}
    if labels_split is not None:
        if mirrored is None and split.grid is not None:
            mirrored = infer_codes(model, split, device, mirror=True)
        out["manoeuvre_pairs"] = {label: int(labels_split.count(label)) for label in LABELS if label in labels_split}
        out["manoeuvre"] = label_agreement(codes["indices"], labels_split, rng,
                                           None if mirrored is None else mirrored["indices"])
        out["manoeuvre"]["true_motion_reference"] = true_motion_agreement(y_split, label_ids(labels_split), seed=seed)
    return out, codes["indices"]


TARGETS = {  # issue "LAQ v2": held-out (test) pairs
    "probe_r2_forward": ("probe.codes.r2.forward_mps", 0.6),
    "probe_r2_yaw_rate": ("probe.codes.r2.yaw_rate_radps", 0.6),
    "probe_r2_forward_over_shuffled": (None, 0.5),
    "probe_r2_yaw_rate_over_shuffled": (None, 0.5),
    "ami_code_tuple_manoeuvre": ("manoeuvre.tuple.ami", 0.3),
    "perplexity_min_position": ("usage.perplexity_min_position", 16.0),
    "shuffled_code_gain_relative": ("controllability.relative_gain_shuffled", 0.1),
}


def _get(metrics: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def targets(split_metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the issue on one split's metrics: value, threshold, met (None when not measurable)."""
    probe = split_metrics["probe"]["codes"]
    out = {}
    for name, (path, threshold) in TARGETS.items():
        if path is None:
            component = "forward_mps" if "forward" in name else "yaw_rate_radps"
            r2, shuffled = probe["r2"][component], probe["r2_shuffled_labels"][component]
            value = None if r2 is None or shuffled is None else r2 - shuffled
        else:
            value = _get(split_metrics, path)
        out[name] = {"value": value, "target": threshold, "met": None if value is None else bool(value >= threshold)}
    return out


def manoeuvre_usage_figure(indices: np.ndarray, labels: list[str], codebook_size: int, path: Path) -> None:
    """PNG: per manoeuvre (rows) the share of each code (columns, pooled over positions) on the test pairs."""
    label_usage_figure(indices, labels, codebook_size, path,
                       title="LAQ code usage per manoeuvre (test pairs; share of the manoeuvre's codes, all positions)")
