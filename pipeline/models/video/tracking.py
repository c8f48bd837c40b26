"""Slot identity over time: Hungarian matching of slots (the anchors carried from frame to frame that the
slots start from are data preparation: ``pipeline/data/carried.py``).

**Matching**: before any consistency or motion loss, consecutive frames are
Hungarian-matched on centre distance plus prototype-weight distance, and the matches are chained to
frame 0's order, so a swap of two slots is never penalised as motion.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from pipeline.models.video.forecaster import SlotTrack


def match_chain(centres: Tensor, weights: Tensor, weight_cost_m: float = 1.0) -> Tensor:
    """Hungarian-match each frame's slots to the previous frame's (already matched) slots.

    Args:
        centres: (T, K, 3) slot centres in one frame of reference (metres); weights (T, K, P).
        weight_cost_m: metres of cost per unit L2 distance of prototype weights.
    Returns:
        (T, K) long permutation ``perm`` with ``perm[0] = arange(K)``: slot ``perm[t, k]`` of frame t
        is the same object as slot k of frame 0 (``x[t, perm[t]]`` reorders frame t).
    """
    c, w = centres.detach().cpu().double(), weights.detach().cpu().double()
    k = c.shape[1]
    perms = [torch.arange(k)]
    for t in range(1, c.shape[0]):
        prev = perms[-1]
        cost = torch.cdist(c[t - 1, prev], c[t]) + weight_cost_m * torch.cdist(w[t - 1, prev], w[t])
        rows, cols = linear_sum_assignment(cost.numpy())
        perm = torch.empty(k, dtype=torch.long)
        perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
        perms.append(perm)
    return torch.stack(perms).to(centres.device)


def reorder(x: Tensor, perm: Tensor) -> Tensor:
    """Apply per-frame permutations (B, T, K) to x (B, T, K, ...)."""
    index = perm.view(perm.shape + (1,) * (x.dim() - 3)).expand_as(x) if x.dim() > 3 else perm
    return torch.gather(x, 2, index)


def matched_track(track: SlotTrack, enabled: bool = True) -> tuple[SlotTrack, Tensor | None]:
    """Each clip's slots (B, T, K, ...) reordered so slot k is the Hungarian chain of frame 0's slot k
    (:func:`match_chain`), and the permutations (B, T, K); unchanged and None if not ``enabled``."""
    if not enabled:
        return track, None
    perm = torch.stack([match_chain(c, w) for c, w in zip(track.centre, track.weights, strict=True)])
    return SlotTrack(reorder(track.centre, perm), reorder(track.rotation, perm), reorder(track.scale, perm),
                     reorder(track.weights, perm), track.time, track.camera_rotation, track.camera_centre), perm


def frame_order(x: Tensor, perm: Tensor | None, frame: int) -> Tensor:
    """Per-slot values (B, K, ...) of one frame, in :func:`matched_track`'s order (``perm`` (B, T, K) or None)."""
    return x if perm is None else reorder(x.unsqueeze(1), perm[:, frame : frame + 1]).squeeze(1)
