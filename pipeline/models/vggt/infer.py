"""Chunked VGGT inference on RGB frames and point-cloud extraction.

Frames of a sequence are pre-processed (``preprocess.py``), split into consecutive chunks of
``frames_per_chunk`` frames and run through the model chunk by chunk, so memory is bounded by the chunk
size, not by the video length.

Coordinate frames and scale (read this before using the outputs):
- Within one chunk VGGT expresses everything in the camera frame of the chunk's first frame (its
  extrinsic is close to [I | 0]), with an arbitrary scale (VGGT is not metric).
- ``chain_chunks=True`` (default): consecutive chunks share one frame (chunk k+1 starts with the last frame
  of chunk k). The similarity between the two chunk frames is taken from that shared frame: rotation and
  translation from its two extrinsics, scale from the median ratio of its two depth maps. All cameras,
  depths and points are then expressed in the frame of frame 0 of the sequence, at the scale of chunk 0.
  Errors accumulate along the chain (no global optimisation).
- ``chain_chunks=False``: chunks are independent; each chunk's outputs are in its own first frame and own
  scale, and ``chunk_index`` says which chunk a frame belongs to. Do not mix points across chunks then.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from pipeline.geometry.sampling import farthest_point_sampling

from .geometry import depth_to_world_points, pose_encoding_to_extri_intri
from .model import VGGT
from .preprocess import preprocess_frames


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA with compute capability >= 8, fp16 on older CUDA GPUs, None (fp32) elsewhere."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def chunk_ranges(num_frames: int, frames_per_chunk: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges covering 0..num_frames-1; consecutive ranges share ``overlap`` frames."""
    if frames_per_chunk < 1 or overlap < 0 or (overlap and frames_per_chunk <= overlap):
        raise ValueError(f"frames_per_chunk ({frames_per_chunk}) must be >= 1 and > overlap ({overlap})")
    ranges, start = [], 0
    while True:
        end = min(num_frames, start + frames_per_chunk)
        ranges.append((start, end))
        if end >= num_frames:
            return ranges
        start = end - overlap


def _similarity_from_shared(E_prev: torch.Tensor, d_prev: torch.Tensor, E_new: torch.Tensor, d_new: torch.Tensor
                            ) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Map new-chunk world coordinates into the previous (chained) frame: X_prev = s * A @ X_new + b.

    The shared frame has camera-from-world extrinsics E_prev / E_new (3, 4) and depths d_prev / d_new (H, W);
    s = median(d_prev / d_new) over pixels where both are positive and finite.
    """
    valid = (d_prev > 0) & (d_new > 0) & torch.isfinite(d_prev) & torch.isfinite(d_new)
    s = float(torch.median(d_prev[valid] / d_new[valid])) if bool(valid.any()) else 1.0
    Rp, tp, Rn, tn = E_prev[:, :3], E_prev[:, 3], E_new[:, :3], E_new[:, 3]
    A = Rp.T @ Rn
    b = Rp.T @ (s * tn - tp)
    return s, A, b


@torch.inference_mode()
def run_vggt(model: VGGT, images: np.ndarray, frames_per_chunk: int = 16, device: torch.device | str = "cpu",
             mode: str = "crop", target_size: int = 518, chain_chunks: bool = True,
             point_head: bool = False) -> dict[str, np.ndarray]:
    """Run VGGT on RGB frames uint8 (S, H, W, 3) (or a list of differently sized frames).

    Returns numpy arrays (h, w = model-input size, see ``pre_model_hw``):
    - ``depth`` (S, h, w) float32 z-depth in model units (arbitrary scale), ``depth_conf`` (S, h, w) >= 1
    - ``extrinsic`` (S, 3, 4) camera-from-world, OpenCV axes (see the module docstring for the world frame)
    - ``intrinsic`` (S, 3, 3) in pixels of each *original* frame; ``intrinsic_model`` (S, 3, 3) in model pixels
    - ``world_points`` (S, h, w, 3) float32 from depth + cameras; ``images_model`` (S, h, w, 3) uint8 colours
    - ``chunk_index`` (S,) int, ``chunk_scale`` (num_chunks,) scale applied to each chunk when chaining
    - with ``point_head``: ``world_points_head`` / ``world_points_head_conf`` (point head, chained the same way)
    - ``pre_*``: the pre-processing record; ``weights_source``: 0-d string array (random init is announced)
    """
    device = torch.device(device)
    if isinstance(images, np.ndarray) and (images.ndim != 4 or images.shape[-1] != 3):
        raise ValueError(f"images must be uint8 (S, H, W, 3) RGB, got shape {images.shape}")
    heads = ("camera", "depth") + (("point",) if point_head else ())
    x, record = preprocess_frames(images, mode=mode, target=target_size, multiple=model.cfg.patch_size)
    S, _, h, w = x.shape
    ranges = chunk_ranges(S, frames_per_chunk, overlap=1 if chain_chunks and frames_per_chunk > 1 else 0)
    if chain_chunks and frames_per_chunk == 1 and S > 1:
        raise ValueError("chain_chunks needs frames_per_chunk >= 2 (chunks share one frame)")
    amp = autocast_dtype(device)
    depth = torch.zeros(S, h, w)
    conf = torch.zeros(S, h, w)
    extr = torch.zeros(S, 3, 4)
    K = torch.zeros(S, 3, 3)
    pts_head = torch.zeros(S, h, w, 3) if point_head else None
    pts_conf = torch.zeros(S, h, w) if point_head else None
    chunk_index = np.zeros(S, dtype=np.int64)
    scales = []
    for ci, (f0, f1) in enumerate(ranges):
        batch = x[f0:f1].to(device)
        ctx = torch.autocast(device_type="cuda", dtype=amp) if amp is not None else contextlib.nullcontext()
        with ctx:
            out = model(batch, heads=heads)
        e, k = pose_encoding_to_extri_intri(out["pose_enc"][0].float(), (h, w))
        d = out["depth"][0, ..., 0].float()
        e, k, d, c = e.cpu(), k.cpu(), d.cpu(), out["depth_conf"][0].float().cpu()
        p = out["world_points"][0].float().cpu() if point_head else None
        new = slice(f0 + (1 if chain_chunks and ci > 0 else 0), f1)
        take = slice(new.start - f0, f1 - f0)
        s = 1.0
        if chain_chunks and ci > 0:
            s, A, b = _similarity_from_shared(extr[f0], depth[f0], e[0], d[0])
            R = e[:, :, :3] @ A.T
            e = torch.cat((R, s * e[:, :, 3:] - R @ b[:, None]), dim=-1)
            d = d * s
            if p is not None:
                p = s * p @ A.T + b
        scales.append(s)
        depth[new], conf[new], extr[new], K[new] = d[take], c[take], e[take], k[take]
        chunk_index[new] = ci
        if point_head:
            pts_head[new], pts_conf[new] = p[take], out["world_points_conf"][0].float().cpu()[take]
    result = {
        "depth": depth.numpy(), "depth_conf": conf.numpy(), "extrinsic": extr.numpy(),
        "intrinsic": record.intrinsics_to_original(K.numpy()).astype(np.float32), "intrinsic_model": K.numpy(),
        "world_points": depth_to_world_points(depth.double(), extr.double(), K.double()).float().numpy(),
        "images_model": (x.permute(0, 2, 3, 1) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy(),
        "chunk_index": chunk_index, "chunk_scale": np.asarray(scales, dtype=np.float64),
        "weights_source": np.asarray(getattr(model, "weights_source", "unknown (model built outside load_vggt)")),
        **record.as_arrays(),
    }
    if point_head:
        result["world_points_head"], result["world_points_head_conf"] = pts_head.numpy(), pts_conf.numpy()
    return result


def point_cloud_from_outputs(outputs: dict[str, np.ndarray], max_points: int, method: str = "random",
                             conf_percentile: float = 0.0, seed: int = 0, fps_candidates: int = 16
                             ) -> dict[str, np.ndarray]:
    """Flatten ``run_vggt`` outputs to a point cloud of at most ``max_points`` points.

    Keeps pixels with positive finite depth and ``depth_conf`` at or above the ``conf_percentile``-th
    percentile (0 keeps all; the reference demos drop the lowest 50 %), then subsamples: ``"random"``
    (uniform without replacement, seeded) or ``"fps"`` (farthest-point sampling over at most
    ``fps_candidates * max_points`` random candidates). Returns points (M, 3) float32 in the outputs' world
    frame, colors (M, 3) uint8, conf (M,), frame (M,) int64 and pixel (M, 2) int64 as (v, u).
    """
    if method not in ("random", "fps"):
        raise ValueError(f"method must be 'random' or 'fps', got {method!r}")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    pts = outputs["world_points"].reshape(-1, 3)
    conf = outputs["depth_conf"].reshape(-1)
    depth = outputs["depth"].reshape(-1)
    valid = (depth > 0) & np.isfinite(pts).all(axis=1) & np.isfinite(conf)
    if conf_percentile > 0 and valid.any():
        valid &= conf >= np.percentile(conf[valid], conf_percentile)
    cand = np.flatnonzero(valid)
    rng = np.random.default_rng(seed)
    if method == "random" or cand.size <= max_points:
        chosen = rng.choice(cand, size=min(max_points, cand.size), replace=False) if cand.size > max_points else cand
    else:
        pool = rng.choice(cand, size=min(cand.size, fps_candidates * max_points), replace=False)
        pick = farthest_point_sampling(torch.from_numpy(pts[pool]).double(), max_points)
        chosen = pool[pick.numpy()]
    chosen = np.sort(chosen)
    S, h, w = outputs["depth"].shape
    frame, rem = np.divmod(chosen, h * w)
    return {
        "points": pts[chosen].astype(np.float32), "colors": outputs["images_model"].reshape(-1, 3)[chosen],
        "conf": conf[chosen].astype(np.float32), "frame": frame.astype(np.int64),
        "pixel": np.stack(np.divmod(rem, w), axis=1).astype(np.int64),
    }
