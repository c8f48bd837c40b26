"""How high can AMI(code tuple, manoeuvre) go at all? Reference tuples built from the *true* motion of the pairs.

The LAQ v2 issue asks for AMI(code tuple, manoeuvre) >= 0.3 together with a per-position perplexity >= 16. The
AMI's chance correction punishes tuples that are nearly unique per pair, so the number depends on how many
distinct tuples a split holds as much as on what the codes mean. These references say what an ideal
code would reach on the same pairs and labels, with no learning in between:

- ``kmeans``: one code, the k-means cluster (``levels`` clusters, scikit-learn, fixed seed) of the standardised
  motion components (forward speed, yaw rate, lateral speed; :func:`pipeline.eval.laq_actions.motion_components`).
  Four positions that all repeat this code form the same partition, so this is also the tuple of four
  redundant positions.
- ``quantiles_forward_yaw``: a tuple of two positions, forward speed and yaw rate, each cut into ``levels``
  equal-count bins (perplexity ``levels`` per position: the perplexity target when ``levels`` = 16).
- ``quantiles_all``: the same with lateral speed as a third position: positions that each read a different,
  perfectly known part of the motion.

Each entry: {"ami", "nmi", "distinct_tuples"}.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.eval.laq_metrics import mutual_information, tuple_ids

REFERENCE_LEVELS = 16  # codes per position of the references: the per-position perplexity target


def quantile_cuts(values: np.ndarray, levels: int) -> np.ndarray:
    """(levels - 1,) inner quantiles of (P,) ``values``: the cuts of ``levels`` equal-count bins."""
    return np.quantile(values, np.linspace(0.0, 1.0, levels + 1)[1:-1])


def quantile_codes(values: np.ndarray, levels: int) -> np.ndarray:
    """(P,) values -> (P,) integer bins 0..levels-1 of (nearly) equal counts (cut at :func:`quantile_cuts`)."""
    return np.searchsorted(quantile_cuts(values, levels), values, side="right")


def standardised(values: np.ndarray) -> np.ndarray:
    """(P, D) values with each column at zero mean and unit std (a constant column stays at zero)."""
    std = values.std(0)
    return (values - values.mean(0)) / np.where(std > 0, std, 1.0)


def kmeans_codes(components: np.ndarray, levels: int, seed: int) -> np.ndarray:
    """(P, D) values -> (P,) k-means cluster of the per-column standardised values (``levels`` clusters)."""
    from sklearn.cluster import KMeans

    z = standardised(components)
    clusters = min(levels, len(np.unique(z, axis=0)))
    return KMeans(clusters, n_init=4, random_state=seed).fit_predict(z).astype(np.int64)


def true_motion_agreement(components: np.ndarray, classes: np.ndarray, *, levels: int = REFERENCE_LEVELS,
                          seed: int = 0) -> dict[str, dict[str, Any]]:
    """AMI / NMI with the label ``classes`` (P,) of the reference tuples (module docstring) built from the true
    motion ``components`` (P, 3): forward speed (m/s), yaw rate (rad/s), lateral speed (m/s)."""
    bins = np.stack([quantile_codes(components[:, c], levels) for c in range(components.shape[1])], 1)
    references = {"kmeans": kmeans_codes(components, levels, seed)[:, None],
                  "quantiles_forward_yaw": bins[:, :2], "quantiles_all": bins}
    return {name: {**mutual_information(tuple_ids(codes), classes),
                   "distinct_tuples": int(len(np.unique(codes, axis=0)))}
            for name, codes in references.items()}


def noisy_read_agreement(components: np.ndarray, classes: np.ndarray, read_r2: float, *,
                         levels: int = REFERENCE_LEVELS, seed: int = 0) -> dict[str, Any]:
    """AMI / NMI with ``classes`` of one code: the k-means cluster (``levels``) of the standardised motion
    ``components`` (P, D) read with Gaussian noise of variance 1 / ``read_r2`` − 1 per component, so that the read
    explains about ``read_r2`` of each component's variance (1: the exact motion, as ``kmeans`` of
    :func:`true_motion_agreement`). The noise is drawn from ``seed``."""
    if not 0.0 < read_r2 <= 1.0:
        raise ValueError(f"read_r2 = {read_r2}: must be in (0, 1]")
    noise = np.random.default_rng(seed).standard_normal(components.shape)
    read = standardised(components) + np.sqrt(1.0 / read_r2 - 1.0) * noise
    codes = kmeans_codes(read, levels, seed)
    return {**mutual_information(codes, classes), "read_r2": read_r2, "codes": levels}
