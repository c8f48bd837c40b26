"""The VGGT model: aggregator + camera / depth / point / track heads (state-dict compatible with VGGT-1B).

Submodule registration order (aggregator, camera_head, point_head, depth_head, track_head) reproduces the
checkpoint's state-dict order. Constructors allocate nothing data-dependent, so the model can be built
under ``with torch.device("meta"):``.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .aggregator import Aggregator
from .camera_head import CameraHead
from .config import VGGTConfig
from .dpt_head import DPTHead
from .track_head import TrackHead


class VGGT(nn.Module):
    """Images (S, 3, H, W) or (B, S, 3, H, W) in [0, 1], H and W multiples of the patch size -> dict:

    - ``pose_enc`` (B, S, 9) and ``pose_enc_list`` (camera head; see camera_head.py for the encoding)
    - ``depth`` (B, S, H, W, 1) z-depth along the optical axis, ``depth_conf`` (B, S, H, W) >= 1
    - ``world_points`` (B, S, H, W, 3), ``world_points_conf`` (B, S, H, W) (point head)
    - ``track`` (B, S, N, 2), ``vis``, ``conf`` (B, S, N) when ``query_points`` (N, 2) or (B, N, 2) are given

    All geometry is in the frame of the sequence's first camera, up to one unknown global scale.
    ``heads`` restricts which enabled heads run (e.g. ``("camera", "depth")``); the aggregator then keeps
    only the layers those heads read.
    """

    def __init__(self, cfg: VGGTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.aggregator = Aggregator(cfg)
        self.camera_head = CameraHead(cfg) if cfg.enable_camera else None
        self.point_head = DPTHead(cfg, output_dim=4, activation="inv_log") if cfg.enable_point else None
        self.depth_head = DPTHead(cfg, output_dim=2, activation="exp") if cfg.enable_depth else None
        self.track_head = TrackHead(cfg) if cfg.enable_track else None

    def available_heads(self) -> tuple[str, ...]:
        return tuple(h for h in ("camera", "depth", "point", "track") if getattr(self, f"{h}_head") is not None)

    def layers_for(self, heads: tuple[str, ...]) -> tuple[int, ...]:
        """Absolute aggregator layer indices needed by ``heads``."""
        keep: set[int] = set()
        if "camera" in heads:
            keep.add(self.cfg.depth - 1)
        if {"depth", "point", "track"} & set(heads):
            keep.update(self.cfg.dpt_layers)
        return tuple(sorted(keep))

    def forward(self, images: torch.Tensor, query_points: torch.Tensor | None = None,
                heads: tuple[str, ...] | None = None) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        if images.ndim == 4:
            images = images[None]
        if query_points is not None and query_points.ndim == 2:
            query_points = query_points[None]
        avail = self.available_heads()
        heads = tuple(avail if heads is None else heads)
        missing = [h for h in heads if h not in avail]
        if missing:
            raise ValueError(f"head(s) {missing} are disabled in this model (enabled: {list(avail)})")
        if "track" in heads and query_points is None:
            heads = tuple(h for h in heads if h != "track")
        layers, start = self.aggregator(images, keep_layers=self.layers_for(heads))
        hw = (images.shape[-2], images.shape[-1])
        out: dict[str, torch.Tensor | list[torch.Tensor]] = {}
        # Heads run in float32 (autocast off), as the reference implementation does on CUDA.
        no_autocast = (torch.autocast(device_type=images.device.type, enabled=False)
                       if images.device.type in ("cuda", "cpu") else contextlib.nullcontext())
        with no_autocast:
            layers = {k: v.float() for k, v in layers.items()}
            if "camera" in heads:
                enc_list = self.camera_head(layers[self.cfg.depth - 1])
                out["pose_enc"], out["pose_enc_list"] = enc_list[-1], enc_list
            if "depth" in heads:
                out["depth"], out["depth_conf"] = self.depth_head(layers, hw, start)
            if "point" in heads:
                out["world_points"], out["world_points_conf"] = self.point_head(layers, hw, start)
            if "track" in heads:
                tracks, vis, conf = self.track_head(layers, hw, start, query_points.float())
                out["track"], out["vis"], out["conf"] = tracks[-1], vis, conf
        return out


def init_weights(model: VGGT, seed: int | None = 0) -> VGGT:
    """Random initialisation for checkpoint-free use (tests, offline pipeline default).

    Linear weights ~ trunc-normal(0.02), biases 0, learned tokens / pos-embed small normal. The camera
    head's last layer is biased so that the random model outputs a valid camera: quaternion w and both
    FoVs get a positive bias (otherwise the ReLU FoV can be 0 -> infinite focal length, and a zero
    quaternion has no rotation). Outputs of a randomly initialised model carry no geometric meaning.
    """
    gen = torch.Generator().manual_seed(seed) if seed is not None else None

    def normal_(p: torch.Tensor, std: float) -> None:
        if p.is_meta:
            return
        tmp = torch.empty(p.shape, dtype=torch.float32).normal_(0.0, std, generator=gen)
        p.copy_(tmp.clamp_(-2 * std, 2 * std))

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                normal_(module.weight, 0.02)
                if module.bias is not None and not module.bias.is_meta:
                    module.bias.zero_()
            elif isinstance(module, nn.MultiheadAttention):
                normal_(module.in_proj_weight, 0.02)
                if not module.in_proj_bias.is_meta:
                    module.in_proj_bias.zero_()
            for name, p in module.named_parameters(recurse=False):
                if name.endswith(("token", "tokens", "pos_embed", "virual_tracks")):
                    normal_(p, 0.02)
        if model.camera_head is not None:
            bias = model.camera_head.pose_branch.fc2.bias
            if not bias.is_meta:
                # accumulated over `iters` refinements: w ~ 1, FoV ~ 1 rad (about 57 degrees)
                bias[6] = 1.0 / model.cfg.camera_iters
                bias[7:9] = 1.0 / model.cfg.camera_iters
    return model


def build_vggt(cfg: VGGTConfig, device: torch.device | str = "cpu", seed: int | None = 0) -> VGGT:
    """Construct and randomly initialise a model on ``device`` (use ``load.load_vggt`` for real weights)."""
    model = VGGT(cfg)
    init_weights(model, seed)
    model.weights_source = "random-init (no checkpoint)"
    return model.to(device).eval()
