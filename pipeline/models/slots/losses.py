"""Phase-one losses: one-directional Chamfer to the slot surfaces, capped free-space, regularisers.

- **Chamfer** (depth points -> nearest surface point of any slot mesh; exact point-to-triangle,
  not vertices): a smooth L1 of the distance, ``sqrt(d^2 + eps^2) - eps`` (metres).
- **Free space** (fixes one-directional Chamfer's reward for swelling):
  area-uniform samples on every slot mesh are projected into the depth map. A sample in the image
  that lies more than ``margin`` in front of the observed depth sits in space the camera saw to be
  empty: it costs ``min(observed - margin - z, cap)`` metres. Sky / no-hit pixels count as observed
  at ``far_m`` (bounded, so sky cannot dominate). Samples closer than ``near`` to the camera plane
  or behind it cost ``min(near - z, cap)`` (no hiding behind the camera or swallowing it). Samples
  outside the image are unknown and free.
- **Reverse** (surface -> points): visible mesh samples (in the image, not in front of and not
  hidden behind the observed surface) must lie near a target point: ``min(distance, cap)`` metres.
  Without it a slot can grow into unseen space or cover surfaces that are not targets (road,
  buildings in the ``things`` setting) for free. ``compact`` applies the same capped distance to
  all samples, hidden ones included: unseen back sides stay close to the observed object, which
  is what a two-sided Chamfer distance rewards (no surface where nothing was seen).
- **Scale prior**: mean of ``log(scale / anchor_radius)^2`` (keeps scales positive and sane).
- **Smoothness**: graph Laplacian of the prototype offsets (``PrototypeBank.smoothness``).
- **Usage**: minus the entropy of the batch-mean prototype weights (all prototypes stay in use).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from pipeline.geometry.mesh import point_mesh_sq_dist, sample_points_on_mesh
from pipeline.geometry.nearest import nearest_sq_dist
from pipeline.params.train import Phase1Params

SMOOTH_EPS_M = 0.01


@dataclass(frozen=True)
class LossWeights:
    chamfer: float = 1.0
    free_space: float = 1.0
    reverse: float = 0.5
    compact: float = 0.2
    scale: float = 0.01
    smoothness: float = 1.0
    usage: float = 0.01
    free_margin_m: float = 0.2
    free_cap_m: float = 1.0
    near_m: float = 0.3
    far_m: float = 40.0


def loss_weights(params: Phase1Params) -> LossWeights:
    """The phase-one loss weights and free-space settings from the ``train`` section."""
    return LossWeights(free_space=params.weight_free_space, reverse=params.weight_reverse,
                       compact=params.weight_compact, scale=params.weight_scale,
                       smoothness=params.weight_smoothness, usage=params.weight_usage,
                       free_margin_m=params.free_margin_m, free_cap_m=params.free_cap_m, far_m=params.far_m)


def refine_weights(params: Phase1Params) -> LossWeights:
    """The loss weights of the per-frame refinement at evaluation (``train.refine_objective``): ``loss``, the
    training loss's; ``chamfer``, the two-sided Chamfer alone (points -> surface, and every surface sample ->
    points: the two halves of the evaluation's Chamfer-L1) with the scale prior, no free-space term and no
    visible-only reverse term. Both read only the frame's own depth and points."""
    weights = loss_weights(params)
    if params.refine_objective == "loss":
        return weights
    return replace(weights, free_space=0.0, reverse=0.0, compact=1.0)


def chamfer_term(points: Tensor, mask: Tensor, verts: Tensor, faces: Tensor, exact: bool = False):
    """Mean smooth distance (metres) of valid points to the union of slot surfaces; also per-point
    squared distance (B, P) and owning slot (B, P)."""
    sq, slot, _ = point_mesh_sq_dist(points, verts, faces, mask=mask, exact=exact)
    dist = torch.sqrt(sq + SMOOTH_EPS_M**2) - SMOOTH_EPS_M
    return (dist * mask).sum() / mask.sum().clamp_min(1), sq, slot


def project(points: Tensor, focal_cx_cy: Tensor) -> tuple[Tensor, Tensor]:
    """(B, N, 3) camera points, (B, 3) [f, cx, cy] -> pixel u, v (B, N) (undefined for z <= 0)."""
    f, cx, cy = (focal_cx_cy[:, i].view(-1, 1) for i in range(3))
    z = points[..., 2].clamp_min(1e-3)
    return f * points[..., 0] / z + cx, f * points[..., 1] / z + cy


def observed_depth_at(depth: Tensor, u: Tensor, v: Tensor, far_m: float) -> tuple[Tensor, Tensor]:
    """Depth (B, H, W) at rounded pixels; returns (depth capped at far_m, inside-image mask)."""
    b, h, w = depth.shape
    ui, vi = torch.round(u).long(), torch.round(v).long()
    inside = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    flat = (vi.clamp(0, h - 1) * w + ui.clamp(0, w - 1))
    observed = torch.gather(depth.reshape(b, -1), 1, flat)
    observed = torch.where(torch.isfinite(observed), observed, torch.full_like(observed, far_m)).clamp(max=far_m)
    return observed, inside


def free_space_term(verts: Tensor, faces: Tensor, depth: Tensor, focal_cx_cy: Tensor, points: Tensor,
                    samples: int, w: LossWeights, generator: torch.Generator | None = None,
                    point_mask: Tensor | None = None):
    """Capped free-space violation, reverse distance of visible samples and of all samples (mean
    metres over ``samples`` points per slot mesh), and the fraction of in-image samples more than
    0.3 m in front of the observed depth.

    ``points`` (B, P, 3) are the targets; ``point_mask`` (B, P) marks the valid ones (required when the
    batch is padded, see ``make_batch``: the nearest-point search must ignore the padding)."""
    b, k, v, _ = verts.shape
    pts, _, _ = sample_points_on_mesh(verts.reshape(b * k, v, 3), faces, samples, generator=generator)
    pts = pts.reshape(b, k * samples, 3)
    z = pts[..., 2]
    u, vv = project(pts, focal_cx_cy)
    observed, inside = observed_depth_at(depth, u, vv, w.far_m)
    in_view = inside & (z > w.near_m)
    violation = torch.clamp(observed - w.free_margin_m - z, min=0, max=w.free_cap_m) * in_view
    behind = torch.clamp(w.near_m - z, min=0, max=w.free_cap_m)
    fsv = ((observed - z > 0.3) & in_view).float().sum() / in_view.float().sum().clamp_min(1)
    visible = in_view & (z <= observed + 0.3)
    sq, _ = nearest_sq_dist(pts, points, y_mask=point_mask)
    distance = (torch.sqrt(sq + SMOOTH_EPS_M**2) - SMOOTH_EPS_M).clamp(max=w.free_cap_m)
    reverse = (distance * visible).sum() / visible.sum().clamp_min(1)
    return (violation + behind).mean(), reverse, distance.mean(), fsv


def usage_entropy(weights: Tensor) -> Tensor:
    """Entropy (nats) of the prototype weights averaged over the batch and slots."""
    mean = weights.reshape(-1, weights.shape[-1]).mean(0)
    return -(mean * torch.log(mean.clamp_min(1e-9))).sum()


def total_loss(model, params, batch: dict[str, Tensor], w: LossWeights, samples: int,
               generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of all terms for one batch; also the unweighted terms for logging."""
    faces = model.faces
    chamfer, _, slot = chamfer_term(batch["points"], batch["mask"], params.verts, faces)
    free, reverse, compact, fsv = free_space_term(params.verts, faces, batch["depth"], batch["focal_cx_cy"], batch["points"],
                                                  samples, w, generator, batch["mask"])
    scale_prior = torch.log(params.scale / batch["radius"]).pow(2).mean()
    smooth = model.prototypes.smoothness()
    entropy = usage_entropy(params.weights)
    loss = (w.chamfer * chamfer + w.free_space * free + w.reverse * reverse + w.compact * compact + w.scale * scale_prior + w.smoothness * smooth
            - w.usage * entropy)
    used = torch.stack([(slot == i).any(dim=1) for i in range(params.verts.shape[1])], dim=1).float().sum(1).mean()
    terms = {"loss": loss.item(), "chamfer_m": chamfer.item(), "free_space_m": free.item(), "reverse_m": reverse.item(), "compact_m": compact.item(), "fsv": fsv.item(),
             "scale_prior": scale_prior.item(), "smoothness": smooth.item(), "prototype_entropy": entropy.item(),
             "mean_scale_m": params.scale.mean().item(), "slots_used": used.item()}
    return loss, terms
