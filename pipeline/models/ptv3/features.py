"""Feature extraction with a Concerto / PTv3 encoder for one point cloud.

`extract_features(model, coords, colors, normals, grid_size, seed, n_spatial_tokens)` runs the upstream
input transform (transform.py), the encoder, and returns (numpy, float32 unless noted):

- `point_features` [N, D]: per input point. Voxel features are up-cast with the rule of the official
  demos, then copied to points through the grid-sampling `inverse`. Up-cast rule: from the last stage
  walk back through the poolings; at the first two un-poolings concatenate [parent feat, child feat
  copied to the parent's rows], afterwards only copy. D = C2 + C3 + C4:
  896 concerto_small, 1088 concerto_base, 1536 concerto_large, 128 tiny.
- `global_mean`, `global_max` [D]: mean and max over the stage-0 voxels (one row per occupied voxel,
  so density-normalised; not over raw points).
- `spatial_tokens` [T, D] with T = n_spatial_tokens, `spatial_token_xyz` [T, 3] (metres, input frame),
  `spatial_token_mask` [T] bool, `spatial_token_voxels` [T] int64:
  T centres are chosen by farthest-point sampling over the stage-0 voxel positions, starting at the
  voxel nearest to their centroid; each next centre is the voxel farthest from all chosen ones (ties:
  lowest voxel row, rows sorted by (x, y, z)). Every voxel is assigned to its nearest centre; a token
  is the mean up-cast feature of its voxels. Order = FPS order (coarse to fine coverage). If the cloud
  has fewer than T voxels, the sequence of M unique tokens is repeated cyclically and
  `spatial_token_mask` is False on the repeats.
- `meta`: dict with widths, pooling description, token ordering, grid size, seed, weights source.

Determinism: the model runs in eval mode; the voxel representative is drawn from
`numpy.random.default_rng(seed)` and the serialization-order shuffles from `torch.Generator` seeded
with `seed`, so equal inputs and seed give identical outputs (same device and thread count).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.geometry.sampling import farthest_point_sampling

from .model import PointTransformerV3
from .point import PointBatch
from .transform import concerto_transform

UPCAST_CONCAT_LEVELS = 2
GLOBAL_POOL = "mean and max over stage-0 voxels of the up-cast features (density-normalised)"
TOKEN_ORDER = "farthest-point order over stage-0 voxels, start nearest the voxel centroid; ties by lowest (x,y,z) row"


def upcast(point: PointBatch, concat_levels: int = UPCAST_CONCAT_LEVELS) -> torch.Tensor:
    """Last-stage PointBatch -> [M0, D] features at the stage-0 voxels (demo rule, see module doc)."""
    feat = point.feat
    level = 0
    while point.parent is not None:
        parent = point.parent
        up = feat[point.pooling_inverse]
        feat = torch.cat([parent.feat, up], dim=1) if level < concat_levels else up
        point = parent
        level += 1
    return feat


def upcast_width(enc_channels: tuple[int, ...], concat_levels: int = UPCAST_CONCAT_LEVELS) -> int:
    """Width D of `upcast` for the given stage channels."""
    return sum(enc_channels[-(concat_levels + 1):])


def farthest_point_order(xyz: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [min(k, M)] of farthest-point sampling on xyz [M, 3], started at the row nearest the centroid."""
    start = int(torch.argmin(((xyz - xyz.mean(0)) ** 2).sum(1))) if len(xyz) else 0
    return farthest_point_sampling(xyz, k, start)


def spatial_tokens(xyz: torch.Tensor, feat: torch.Tensor, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pool feat [M, D] at positions xyz [M, 3] into n_tokens FPS-Voronoi tokens.

    Returns (tokens [T, D], centre index [T] into rows, valid mask [T], voxel count [T]).
    """
    if n_tokens < 1:
        raise ValueError(f"spatial_tokens: n_spatial_tokens must be >= 1, got {n_tokens}")
    centres = farthest_point_order(xyz, n_tokens)
    u = centres.numel()
    assign = torch.cdist(xyz, xyz[centres]).argmin(dim=1)
    sums = feat.new_zeros(u, feat.shape[1]).index_add_(0, assign, feat)
    counts = torch.bincount(assign, minlength=u)
    tokens = sums / counts.clamp(min=1).unsqueeze(1).to(feat.dtype)
    tile = torch.arange(n_tokens, device=xyz.device) % u
    valid = torch.arange(n_tokens, device=xyz.device) < u
    return tokens[tile], centres[tile], valid, torch.where(valid, counts[tile], torch.zeros_like(counts[tile]))


@torch.inference_mode()
def extract_features(
    model: PointTransformerV3,
    coords: np.ndarray,
    colors: np.ndarray | None,
    normals: np.ndarray | None,
    grid_size: float = 0.02,
    seed: int = 0,
    n_spatial_tokens: int = 64,
    return_point_features: bool = True,
) -> dict[str, Any]:
    """Encode one cloud: coords (N, 3) metres, colors (N, 3) uint8 or None, normals (N, 3) or None.

    Shapes and conventions of the returned dict: see the module docstring. Puts the model in eval mode.
    """
    if any(m.training for m in model.modules()):
        model.eval()  # (setting every module's flag each call costs ~3 ms per frame on the tiny preset)
    device = next(model.parameters()).device
    sample = concerto_transform(coords, colors, normals, grid_size=grid_size, seed=seed)
    point = sample.to_point_batch(device)
    generator = torch.Generator().manual_seed(int(seed))
    out = model(point, generator=generator)
    voxel_feat = upcast(out).float()
    coord0 = point.coord.float()  # stage-0 voxel positions, centred frame
    tokens, centre_idx, valid, counts = spatial_tokens(coord0, voxel_feat, n_spatial_tokens)
    token_xyz = coord0[centre_idx].double().cpu().numpy() + sample.shift

    result: dict[str, Any] = {
        "global_mean": voxel_feat.mean(0).cpu().numpy(),
        "global_max": voxel_feat.max(0).values.cpu().numpy(),
        "spatial_tokens": tokens.cpu().numpy(),
        "spatial_token_xyz": token_xyz.astype(np.float32),
        "spatial_token_mask": valid.cpu().numpy(),
        "spatial_token_voxels": counts.cpu().numpy().astype(np.int64),
        "num_points": int(sample.inverse.shape[0]),
        "num_voxels": int(voxel_feat.shape[0]),
    }
    if return_point_features:
        inv = torch.from_numpy(sample.inverse).to(device)
        result["point_features"] = voxel_feat[inv].cpu().numpy()
    cfg = model.config
    result["meta"] = {
        "model": getattr(model, "preset_name", "custom"),
        "weights_source": getattr(model, "weights_source", "unknown"),
        "enc_channels": list(cfg.enc_channels),
        "feature_dim": int(voxel_feat.shape[1]),
        "upcast": f"concat over the last {UPCAST_CONCAT_LEVELS} un-poolings then copy (official demo rule)",
        "global_pool": GLOBAL_POOL,
        "spatial_token_order": TOKEN_ORDER,
        "n_spatial_tokens": int(n_spatial_tokens),
        "grid_size": float(grid_size),
        "seed": int(seed),
        "input_feat": "[x, y, z, r, g, b, nx, ny, nz], centred (x/y bbox middle, z min), colour/255",
    }
    return result
