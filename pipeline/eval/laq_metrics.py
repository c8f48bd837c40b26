"""Do the LAQ codes mean something? Metrics on held-out frame pairs (README, "Concerto-LAQ").

- Code usage: perplexity exp(H) per code position, pooled over positions, and of the joint code tuple;
  active codes; replacement events of training.
- Prediction: next-feature MSE (standardised feature space) of the decoder vs the copy-frame-t baseline.
- Controllability (Genie ΔtPSNR analogue in feature space): MSE with shuffled (within the held-out set,
  no pair keeps its own) or uniformly random codes minus MSE with the inferred codes; > 0 means the
  codes carry information the decoder uses.
- Linear probe: ridge regression from the hard code embeddings (S × Q, concatenated) to the
  ground-truth relative camera motion (axis-angle rotation and translation of frame t+offset in
  frame t's OpenCV camera axes), fitted on training pairs (penalty by leave-one-sequence-out CV),
  R² on held-out pairs; the same probe fitted on shuffled training labels is the chance reference.
  With bird's-eye tokens the training pairs are also probed mirrored left-right (their motion mirrored
  by :func:`mirror_motion`), as in training, so the probe sees left and right turns alike.
  The same probe on the difference of the pooled ``global`` features is a reference for what the
  frozen features alone carry linearly.
- NMI / AMI between code tuples (and each position) and motion classes from quantile bins of the
  yaw rate (rotation about the camera's y axis) and forward motion (translation along z).

``pipeline/steps/laq.py`` assembles all of these with training and data summaries for the ``laq`` stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.data.camera import synthia_pair_motion
from pipeline.distributed import gather_to_main, shard_range
from pipeline.io.synthia import SequenceLayout, read_pose
from pipeline.models.laq import LAQ
from pipeline.models.laq.nsvq import perplexity

MOTION_NAMES = ("rot_x", "rot_y", "rot_z", "t_x", "t_y", "t_z")


# ----------------------------------------------------------------------------------- ground truth
def mirror_motion(motion: np.ndarray) -> np.ndarray:
    """Relative motions (P, 6) seen in a left-right mirrored world (x → −x in the OpenCV camera frame).

    Translation: t_x negated. Rotation vectors are axial: under the reflection M = diag(−1, 1, 1),
    ω → det(M) M ω = (ω_x, −ω_y, −ω_z); so yaw (rot_y) and roll (rot_z) change sign, pitch does not.
    """
    return motion * np.array([1.0, -1.0, -1.0, -1.0, 1.0, 1.0])


def pair_motion(raw: Path, sequences: list[str], cameras: list[str], frames: np.ndarray) -> np.ndarray:
    """(P, 6) relative motion of each pair (sequence, camera, frames (P, 2)) from the pose files under ``raw``."""
    out = np.zeros((len(frames), 6))
    cache: dict[tuple[str, str, int], np.ndarray] = {}

    def pose(sequence: str, camera: str, frame: int) -> np.ndarray:
        key = (sequence, camera, frame)
        if key not in cache:
            cache[key] = read_pose(SequenceLayout(raw / sequence).pose(camera, frame))
        return cache[key]

    for i, (sequence, camera, (fa, fb)) in enumerate(zip(sequences, cameras, frames)):
        out[i] = synthia_pair_motion(pose(sequence, camera, int(fa)), pose(sequence, camera, int(fb)))
    return out


# ---------------------------------------------------------------------------------------- probes
def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float | np.ndarray) -> Pipeline:
    """scikit-learn ridge on standardised inputs (``StandardScaler`` then ``Ridge`` with an intercept), fitted.

    ``x`` (P, D), ``y`` (P, T); ``alpha``: one penalty, or one per target column (each column an independent ridge).
    """
    return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x, y)


def ridge_predict(model: Pipeline, x: np.ndarray) -> np.ndarray:
    """Predictions (P, T) of a :func:`ridge_fit` model."""
    return model.predict(x)


def r2_scores(y_true: np.ndarray, y_pred: np.ndarray, min_var: float = 1e-10) -> np.ndarray:
    """Per-column R² (scikit-learn ``r2_score``); NaN where the held-out target is (nearly) constant."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = r2_score(y_true, y_pred, multioutput="raw_values", force_finite=False)
    return np.where(y_true.var(0) > min_var, scores, np.nan)


PROBE_ALPHAS = (1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)
CV_FOLDS = 5


def choose_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas=PROBE_ALPHAS) -> np.ndarray:
    """Per target column, the ridge penalty with the least grouped-CV squared error; (T,).

    Groups are sequences, so the choice never sees a held-out frame of the sequence it predicts: up to
    :data:`CV_FOLDS` groups this is leave-one-group-out, beyond it ``CV_FOLDS`` folds of whole groups
    (scikit-learn ``GroupKFold``). With a single group the middle of the grid (1.0) is returned for every target.
    Each fold is one SVD giving the fold's ridge for every penalty at once (:func:`ridge_path_errors`).
    """
    from sklearn.model_selection import GroupKFold

    names = np.unique(groups)
    if len(names) < 2:
        return np.ones(y.shape[1])
    folds = GroupKFold(n_splits=min(CV_FOLDS, len(names))).split(x, y, groups)
    errors = sum(ridge_path_errors(x[fit], y[fit], x[test], y[test], alphas) for fit, test in folds)
    return np.asarray(alphas, dtype=np.float64)[errors.argmin(0)]


def ridge_path_errors(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                      alphas) -> np.ndarray:
    """Summed squared test error (A, T) of :func:`ridge_fit` for each penalty of ``alphas`` (A,), from one SVD.

    Same model as :func:`ridge_fit` (inputs standardised with the fit rows' mean and population std, std 0 → 1;
    intercept = mean of ``y_fit``): with the SVD U S Vᵀ of the standardised centred fit inputs, the weights
    for penalty a are V diag(s / (s² + a)) Uᵀ (y − ȳ).
    """
    mean, scale = x_fit.mean(0), x_fit.std(0)
    scale[scale == 0] = 1.0
    y_mean = y_fit.mean(0)
    u, s, vt = np.linalg.svd((x_fit - mean) / scale, full_matrices=False)
    uty = u.T @ (y_fit - y_mean)  # (K, T)
    z_test = ((x_test - mean) / scale) @ vt.T  # (M, K)
    shrink = s[None, :] / (s[None, :] ** 2 + np.asarray(alphas, dtype=np.float64)[:, None])  # (A, K)
    predicted = np.einsum("mk,ak,kt->amt", z_test, shrink, uty) + y_mean
    return ((predicted - y_test[None]) ** 2).sum(1)


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, groups_train: np.ndarray, x_eval: np.ndarray,
                 y_eval: np.ndarray, seed: int = 0, names: tuple[str, ...] = MOTION_NAMES) -> dict[str, Any]:
    """Ridge probe fitted on training pairs, R² on held-out pairs, against the same probe on shuffled labels.

    The penalty of each target is chosen by leave-one-sequence-out CV on the training pairs
    (:func:`choose_alpha`), separately for the true and the shuffled labels. ``r2`` is the mean over targets that vary on the
    held-out set; ``r2_per_target`` lists all (None when constant).
    """
    return score_probe(fit_probe(x_train, y_train, groups_train, seed), x_eval, y_eval, names)


@dataclass
class FittedProbe:
    """A :func:`fit_probe` result: the probe, the shuffled-label probe and their penalties (T,)."""

    model: Pipeline
    shuffled: Pipeline
    alpha: np.ndarray
    alpha_shuffled: np.ndarray


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, groups_train: np.ndarray, seed: int = 0) -> FittedProbe:
    """The ridge probe of :func:`linear_probe` and its shuffled-label twin, fitted once (score on any split with
    :func:`score_probe`)."""
    rng = np.random.default_rng(seed)
    alpha = choose_alpha(x_train, y_train, groups_train)
    y_shuffled = y_train[rng.permutation(len(y_train))]
    alpha_shuffled = choose_alpha(x_train, y_shuffled, groups_train)
    return FittedProbe(ridge_fit(x_train, y_train, alpha), ridge_fit(x_train, y_shuffled, alpha_shuffled), alpha,
                       alpha_shuffled)


def score_probe(probe: FittedProbe, x_eval: np.ndarray, y_eval: np.ndarray,
                names: tuple[str, ...] = MOTION_NAMES) -> dict[str, Any]:
    """R² of a :func:`fit_probe` result on (``x_eval``, ``y_eval``): the :func:`linear_probe` dict."""
    alpha, alpha_shuffled = probe.alpha, probe.alpha_shuffled
    r2 = r2_scores(y_eval, ridge_predict(probe.model, x_eval))
    shuffled = r2_scores(y_eval, ridge_predict(probe.shuffled, x_eval))
    valid = ~np.isnan(r2)
    return {"r2": float(np.mean(r2[valid])) if valid.any() else float("nan"),
            "r2_shuffled_labels": float(np.mean(shuffled[valid])) if valid.any() else float("nan"),
            "r2_per_target": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, r2)},
            "r2_shuffled_per_target": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, shuffled)},
            "targets_constant": [n for n, ok in zip(names, valid) if not ok],
            "alpha": {n: float(a) for n, a in zip(names, alpha)},
            "alpha_shuffled_labels": {n: float(a) for n, a in zip(names, alpha_shuffled)}}


# ------------------------------------------------------------------------------------ clustering
def quantile_bins(train_values: np.ndarray, values: np.ndarray, bins: int) -> np.ndarray:
    """Bin ids 0..bins-1 of ``values`` by the inner quantiles of ``train_values``."""
    edges = np.quantile(train_values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, values, side="right")


def motion_classes(motion_train: np.ndarray, motion_eval: np.ndarray, bins: int) -> np.ndarray:
    """Class per held-out pair: (yaw bin, forward bin) → yaw_bin·bins + forward_bin (rot_y and t_z)."""
    yaw = quantile_bins(motion_train[:, 1], motion_eval[:, 1], bins)
    forward = quantile_bins(motion_train[:, 5], motion_eval[:, 5], bins)
    return yaw * bins + forward


def tuple_ids(indices: np.ndarray) -> np.ndarray:
    """One integer label per row of code indices (P, S) (equal rows ↔ equal labels)."""
    return np.unique(indices, axis=0, return_inverse=True)[1].ravel()


def mutual_information(codes: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    return {"nmi": float(normalized_mutual_info_score(classes, codes)),
            "ami": float(adjusted_mutual_info_score(classes, codes))}


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of range(n) without fixed points (n >= 2)."""
    order = rng.permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = order[np.roll(np.arange(n), -1)]
    return out


# ------------------------------------------------------------------------------------ model side
@torch.no_grad()
def infer_codes(model: LAQ, data, device: torch.device, batch: int = 64, mirror: bool = False,
                pairs: range | None = None, predict: bool = True) -> dict[str, np.ndarray]:
    """Eval-mode codes of the pairs ``pairs`` (default: all) of ``data`` (a
    :class:`pipeline.train.laq.FeaturePairs`), mirrored if ``mirror``.

    Returns ``indices`` (P, S), ``embeddings`` (P, S·Q) hard code vectors, ``latent`` (P, S·Q) the encoder's
    output before NSVQ, ``token_diff`` (:func:`token_difference`), ``feature_diff`` (P, C) of the pooled
    ``global`` features (never mirrored) and, if ``predict`` (the decoder runs), ``mse`` (P,) of the prediction
    and ``copy_mse`` (P,) of copying frame t.
    """
    pairs = range(len(data)) if pairs is None else pairs
    model.eval()
    columns: dict[str, list[torch.Tensor]] = {}
    for start in range(pairs.start, pairs.stop, batch):
        idx = torch.arange(start, min(start + batch, pairs.stop))
        flip = torch.full((len(idx),), mirror) if mirror else None
        t0, x0, t1, x1, m0, m1 = data.batch(idx, device, flip)
        if predict:
            out = model(t0, x0, t1, x1, m0, m1)
            latent, codes, indices = out.latent, out.codes, out.indices
        else:
            latent = model.encode(t0, x0, t1, x1, m0, m1)[0]
            codes, indices = model.quantizer(latent)
        row = {"indices": indices, "embeddings": codes.flatten(1), "latent": latent.flatten(1),
               "token_diff": token_difference(t0, t1, m0, m1, model.config.geometry_channels)}
        if predict:
            row |= {"mse": model.token_error(out.prediction, t1), "copy_mse": model.token_error(t0, t1)}
        for key, value in row.items():
            columns.setdefault(key, []).append(value.cpu())
    result = {key: torch.cat(values) for key, values in columns.items()}
    result = {key: value.numpy() if key == "indices" else value.double().numpy() for key, value in result.items()}
    glob, chosen = data.global_, data.pairs[pairs.start:pairs.stop]
    result["feature_diff"] = (glob[chosen[:, 1]] - glob[chosen[:, 0]]).double().numpy()
    return result


def infer_codes_shared(model: LAQ, data, device: torch.device, mirror: bool = False,
                       predict: bool = True) -> dict[str, np.ndarray] | None:
    """:func:`infer_codes` of all pairs of ``data`` with the pairs shared among the DDP processes (each its
    contiguous share, :func:`pipeline.distributed.shard_range`): rank 0 gets every pair in order, the others None.
    Without a group it is :func:`infer_codes`."""
    share = shard_range(len(data))
    parts = gather_to_main(infer_codes(model, data, device, mirror=mirror, pairs=share, predict=predict)
                           if len(share) else None)
    if parts is None:
        return None
    parts = [part for part in parts if part is not None]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def token_difference(t0: torch.Tensor, t1: torch.Tensor, m0: torch.Tensor, m1: torch.Tensor,
                     geometry_channels: int) -> torch.Tensor:
    """The plain difference of a pair's tokens (B, N, C), a baseline input for the probes.

    With geometry channels (bird's-eye tokens): (B, N·(G + 1)) the change of each token's G geometry channels
    (centroid offset in its cell) and of its occupancy, the channels that carry motion when the features come
    from random backbone weights (the feature channels are random functions of the points; all N·C would also
    make a 12k-wide ridge). Otherwise (B, C) the change of the mean token.
    """
    if geometry_channels == 0:
        return t1.mean(1) - t0.mean(1)
    geometry = t1[..., -geometry_channels:] - t0[..., -geometry_channels:]
    return torch.cat([geometry.flatten(1), m1.float() - m0.float()], 1)


@torch.no_grad()
def prediction_mse(model: LAQ, data, indices: np.ndarray, device: torch.device, batch: int = 64) -> float:
    """Mean MSE of the decoder's prediction of frame t+offset when fed the given code ``indices`` (P, S)."""
    total = 0.0
    for start in range(0, len(data), batch):
        idx = torch.arange(start, min(start + batch, len(data)))
        t0, x0, t1, _, m0, _ = data.batch(idx, device)
        codes = torch.as_tensor(indices[start:start + len(idx)], device=device)
        total += float(model.token_error(model.predict_with_indices(t0, x0, codes, m0), t1).sum())
    return total / len(data)


def usage_stats(indices: np.ndarray, codebook_size: int) -> dict[str, Any]:
    """Perplexity per position, pooled and of the joint tuple; active codes per position and pooled."""
    per_position = [perplexity(np.bincount(indices[:, s], minlength=codebook_size))
                    for s in range(indices.shape[1])]
    return {"perplexity_per_position": per_position,
            "perplexity_min_position": float(np.min(per_position)),
            "perplexity_pooled": perplexity(np.bincount(indices.ravel(), minlength=codebook_size)),
            "perplexity_joint": perplexity(np.bincount(tuple_ids(indices))),
            "active_codes_per_position": [int(len(np.unique(indices[:, s]))) for s in range(indices.shape[1])],
            "active_codes": int(len(np.unique(indices))),
            "distinct_tuples": int(len(np.unique(indices, axis=0))),
            "positions_identical_fraction": float(np.mean(np.all(indices == indices[:, :1], axis=1)))}


def replacement_summary(events: list[dict[str, float]]) -> dict[str, Any]:
    """Summary of the training's replacement events (rows with step, replaced, active)."""
    if not events:
        return {"events": 0, "replaced_total": 0, "replaced_first": None, "replaced_last": None, "last_step": None}
    replaced = [int(e["replaced"]) for e in events]
    return {"events": len(events), "replaced_total": int(sum(replaced)), "replaced_first": replaced[0],
            "replaced_last": replaced[-1], "last_step": int(events[-1]["step"])}


def decoder_metrics(model: LAQ, held_out, codes_eval: dict[str, np.ndarray], rng: np.random.Generator,
                    device: torch.device) -> dict[str, dict]:
    """``prediction`` (MSE of the decoder with the inferred codes vs copying frame t) and ``controllability``
    (MSE with shuffled codes, a derangement, and with uniformly random codes, both drawn from ``rng`` in that
    order, minus the inferred-code MSE). ``codes_eval``: :func:`infer_codes` of ``held_out``."""
    idx = codes_eval["indices"]
    mse, copy = float(codes_eval["mse"].mean()), float(codes_eval["copy_mse"].mean())
    shuffled = prediction_mse(model, held_out, idx[derangement(len(idx), rng)], device)
    random_codes = prediction_mse(model, held_out, rng.integers(0, model.config.codebook_size, idx.shape), device)
    return {"prediction": {"mse": mse, "copy_baseline_mse": copy, "mse_ratio_to_copy": mse / copy if copy > 0 else None},
            "controllability": {"mse_shuffled_codes": shuffled, "mse_random_codes": random_codes,
                                "delta_mse_shuffled": shuffled - mse, "delta_mse_random": random_codes - mse}}


def evaluate_laq(model: LAQ, train, held_out, motion_train: np.ndarray, motion_eval: np.ndarray, *,
                 motion_bins: int, device: torch.device, seed: int = 0,
                 codes: dict[str, dict[str, np.ndarray] | None] | None = None) -> tuple[dict, dict]:
    """All metrics on ``held_out`` pairs (probe fitted on ``train``), and the arrays of the figures: ``indices``
    (code indices per split, for :func:`usage_figure`) and ``probe`` (held-out motion, the probe's prediction
    and sequence names, for :func:`probe_figure`).

    ``codes``: :func:`infer_codes` results already at hand (keys ``train``, ``train_mirrored``, ``held_out``),
    so the caller's other metrics do not run the model over the same pairs again; missing ones are inferred.
    """
    if len(held_out) < 2:
        raise ValueError("need at least 2 held-out pairs for the LAQ metrics (val/test sequences too short?)")
    rng = np.random.default_rng(seed)
    size = model.config.codebook_size
    codes = codes or {}
    codes_train = codes.get("train") or infer_codes(model, train, device)
    codes_eval = codes.get("held_out") or infer_codes(model, held_out, device)
    idx = codes_eval["indices"]
    decoder = decoder_metrics(model, held_out, codes_eval, rng, device)
    classes = motion_classes(motion_train, motion_eval, motion_bins)
    groups = np.asarray([f"{a}|{b}" for a, b in zip(train.sequence, train.camera)])
    probe_x, probe_y, probe_groups = codes_train["embeddings"], motion_train, groups
    if train.grid is not None:  # mirrored training pairs, as seen in training
        mirrored = codes.get("train_mirrored") or infer_codes(model, train, device, mirror=True)
        probe_x = np.concatenate([probe_x, mirrored["embeddings"]])
        probe_y = np.concatenate([probe_y, mirror_motion(motion_train)])
        probe_groups = np.concatenate([groups, groups])
    tuples = tuple_ids(idx)
    mi = mutual_information(tuples, classes)
    mi_shuffled = mutual_information(tuples[rng.permutation(len(tuples))], classes)
    probe = linear_probe(probe_x, probe_y, probe_groups, codes_eval["embeddings"], motion_eval, seed)
    alphas = np.array([probe["alpha"][n] for n in MOTION_NAMES])
    predicted = ridge_predict(ridge_fit(probe_x, probe_y, alphas), codes_eval["embeddings"])
    metrics = {
        "pairs": {"train": len(train), "held_out": len(held_out)},
        "usage_held_out": usage_stats(idx, size),
        "usage_train": usage_stats(codes_train["indices"], size),
        **decoder,
        "probe": probe,
        "probe_feature_diff_reference": linear_probe(codes_train["feature_diff"], motion_train, groups,
                                                     codes_eval["feature_diff"], motion_eval, seed),
        "nmi": {"motion_classes": int(len(np.unique(classes))), "tuple": mi, "tuple_shuffled": mi_shuffled,
                "per_position": [mutual_information(idx[:, s], classes) for s in range(idx.shape[1])]},
    }
    figures = {"indices": {"train": codes_train["indices"], "held_out": idx},
               "probe": {"true": motion_eval, "predicted": predicted, "sequence": list(held_out.sequence)}}
    return metrics, figures


def headline(metrics: dict[str, Any]) -> str:
    """One log line: held-out perplexity per code position, probe R² (and its shuffled-label chance), ΔMSE."""
    usage = metrics["usage_held_out"]
    return (f"held-out perplexity per position {[round(p, 2) for p in usage['perplexity_per_position']]}, "
            f"probe R2 {metrics['probe']['r2']:.3f} (shuffled labels {metrics['probe']['r2_shuffled_labels']:.3f}), "
            f"dMSE shuffled {metrics['controllability']['delta_mse_shuffled']:.4f}")


def probe_figure(probe: dict[str, Any], path: Path, targets: tuple[str, ...] = ("t_z", "rot_y")) -> None:
    """PNG: ground-truth vs probe-predicted motion of the held-out pairs, one panel per target, one colour per sequence."""
    from pipeline.eval import figure_kit

    plt = figure_kit.pyplot()
    units = {"t_x": "m", "t_y": "m", "t_z": "m", "rot_x": "rad", "rot_y": "rad", "rot_z": "rad"}
    sequences = np.asarray(probe["sequence"])
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets) + 2.4, 4.8), squeeze=False)
    for ax, name in zip(axes[0], targets):
        j = MOTION_NAMES.index(name)
        true, pred = probe["true"][:, j], probe["predicted"][:, j]
        for seq in np.unique(sequences):
            sel = sequences == seq
            ax.scatter(true[sel], pred[sel], s=14, alpha=0.8, label=seq)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
        r2 = r2_scores(true[:, None], pred[:, None])[0]
        ax.set_title(f"{name} over the pair: R² {r2:.2f}" if np.isfinite(r2) else f"{name} (constant)")
        ax.grid(alpha=0.3)
        ax.set_xlabel(f"ground truth ({units[name]})")
        ax.set_ylabel(f"linear probe on the codes ({units[name]})")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles.append(axes[0, 0].lines[0])
    labels.append("perfect probe (y = x)")
    axes[0, -1].legend(handles, labels, fontsize=8, title="held-out sequence", loc="upper left",
                       bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle("held-out frame pairs: camera motion read from the LAQ codes")
    fig.tight_layout()
    figure_kit.save(fig, path, dpi=90)


def usage_figure(indices: dict[str, np.ndarray], codebook_size: int, path: Path) -> None:
    """PNG: one histogram of code usage per position, one bar series per split (e.g. train / held_out)."""
    from pipeline.eval import figure_kit

    plt = figure_kit.pyplot()
    positions = next(iter(indices.values())).shape[1]
    fig, axes = plt.subplots(positions, 1, figsize=(10, 1.8 * positions + 0.6), sharex=True, squeeze=False)
    for s in range(positions):
        ax = axes[s, 0]
        for name, idx in indices.items():
            counts = np.bincount(idx[:, s], minlength=codebook_size)
            # one filled step outline per split (code i spans [i - 0.5, i + 0.5)): the look of width-1 bars, drawn
            # as one artist instead of codebook_size rectangles (1.45 -> 0.33 s at 128 codes x 4 positions)
            ax.stairs(counts / max(1, counts.sum()), np.arange(codebook_size + 1) - 0.5, fill=True, alpha=0.6,
                      label=name)
        ax.set_ylabel(f"position {s}\nfraction of pairs")
    axes[0, 0].legend(title="pairs", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    axes[-1, 0].set_xlabel("codebook index (code id)")
    fig.suptitle("LAQ code usage per code position (fraction of frame pairs using each code)")
    fig.tight_layout()
    figure_kit.save(fig, path, dpi=90)
