"""Statistics of the results preset: mean +- std over seeds, paired per-frame bootstrap intervals and moving-block
bootstrap intervals for overlapping forecast windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def mean_std(values: list[float]) -> dict[str, float | int]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of finite ``values``."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0, "n": int(len(x))}


def format_mean_std(summary: dict[str, float | int]) -> str:
    """``mean ± std`` of a :func:`mean_std` summary, or ``not recorded`` when it has no value."""
    if not summary.get("n"):
        return "not recorded"
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def paired_bootstrap(diff: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Mean of paired differences ``diff`` (frames, seeds) and a percentile bootstrap interval.

    Frames are resampled with replacement (the same frames for every seed: a frame is the unit, seeds
    are pooled within it); a frame's NaN entries (metric undefined for that seed) are left out of the
    means. Returns mean, low, high and the number of frames used.
    """
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim == 1:
        diff = diff[:, None]
    diff = diff[np.isfinite(diff).any(axis=1)]
    if len(diff) == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "frames": 0}
    total, count = np.nansum(diff, axis=1), np.isfinite(diff).sum(axis=1)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(diff), (resamples, len(diff)))
    means = total[index].sum(1) / count[index].sum(1)
    alpha = (1 - level) / 2
    return {"mean": float(total.sum() / count.sum()), "low": float(np.quantile(means, alpha)),
            "high": float(np.quantile(means, 1 - alpha)), "frames": int(len(diff))}


def block_bootstrap(diff: np.ndarray, groups: np.ndarray, block: int, resamples: int = 2000, seed: int = 0,
                    level: float = 0.95) -> dict[str, float]:
    """Mean of paired differences ``diff`` (windows, seeds) and a moving-block bootstrap interval (Künsch 1989) for
    windows that overlap in time.

    ``groups`` (windows,): the sequence of each row; within a sequence the rows are taken in the given (time) order.
    Each resample rebuilds every sequence from ceil(n / ``block``) runs of ``block`` consecutive windows with random
    starts, cut to its n windows, so windows that share frames are drawn together and their shared error is not
    counted as independent evidence; a sequence with n <= ``block`` windows is kept whole. ``block`` = 1 is
    :func:`paired_bootstrap` stratified by sequence. Seeds are pooled within a window and NaN entries left out, as
    there. Returns mean, low, high, the number of windows used and ``block``.
    """
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim == 1:
        diff = diff[:, None]
    keep = np.isfinite(diff).any(axis=1)
    diff, groups = diff[keep], np.asarray(groups)[keep]
    if len(diff) == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "frames": 0, "block": block}
    total, count = np.nansum(diff, axis=1), np.isfinite(diff).sum(axis=1)
    rng = np.random.default_rng(seed)
    drawn = []
    for label in dict.fromkeys(groups.tolist()):  # sequences in order of first appearance
        rows = np.flatnonzero(groups == label)
        length = min(block, len(rows))
        runs = -(-len(rows) // length)
        starts = rng.integers(0, len(rows) - length + 1, (resamples, runs))
        drawn.append(rows[(starts[..., None] + np.arange(length)).reshape(resamples, -1)[:, :len(rows)]])
    index = np.concatenate(drawn, axis=1)  # (resamples, windows)
    means = total[index].sum(1) / count[index].sum(1)
    alpha = (1 - level) / 2
    return {"mean": float(total.sum() / count.sum()), "low": float(np.quantile(means, alpha)),
            "high": float(np.quantile(means, 1 - alpha)), "frames": int(len(diff)), "block": int(block)}


def paired_intervals(diff: np.ndarray, groups: np.ndarray, block: int) -> dict[str, float]:
    """Both intervals of paired differences ``diff`` (windows, seeds): :func:`paired_bootstrap` (mean, low, high,
    frames) plus ``block_low``, ``block_high`` and ``block`` of :func:`block_bootstrap` over ``groups``."""
    blocks = block_bootstrap(diff, groups, block)
    return {**paired_bootstrap(diff), "block_low": blocks["low"], "block_high": blocks["high"], "block": blocks["block"]}


def format_intervals(entry: dict[str, float]) -> str:
    """``mean [low, high] [block_low, block_high]`` of a :func:`paired_intervals` entry, metres with a sign."""
    return (f"{entry['mean']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}] "
            f"[{entry['block_low']:+.3f}, {entry['block_high']:+.3f}]")


def trained_record(folder: Path, stage: str) -> dict:
    """A kept training stage's metrics (``<stage>.json``) with its run facts (``<stage>_run.json``: training
    seconds and the like, not DVC metrics) merged into its ``train`` group when they were kept."""
    record = json.loads((folder / f"{stage}.json").read_text())
    facts_path = folder / f"{stage}_run.json"
    if facts_path.is_file():
        record.setdefault("train", {}).update(json.loads(facts_path.read_text()).get("train", {}))
    return record
