"""The phase-two video model: the phase-one slot model + a camera head + a forecaster.

- ``slots`` (:class:`pipeline.models.slots.SlotSceneModel`, initialised from phase one) encodes each
  frame against its carried anchors (:mod:`pipeline.models.video.tracking`); its slots are in the
  frame's OpenCV camera axes.
- ``camera`` (optional, :class:`CameraHead`) predicts ``prev_from_cur`` between consecutive frames
  of a clip from the encoder's last feature maps (captured with a forward hook, so the encoder runs
  once per frame); chained, they give ``world_from_camera`` with the clip's first frame as world.
- ``forecaster`` (:class:`Forecaster`) maps world-frame context slots to G guesses at t + Δ.

:func:`world_track` expresses slots in the world frame; :func:`forecast_verts` poses forecast
meshes in a target camera; :func:`forecast_chamfer` scores them against the target frame's points.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.geometry.mesh import point_mesh_sq_dist
from pipeline.geometry.rotations import euler_to_matrix
from pipeline.models.slots import SlotModelConfig, SlotSceneModel
from pipeline.models.slots.batch import predict
from pipeline.models.slots.losses import SMOOTH_EPS_M
from pipeline.models.slots.model import EULER_CONVENTION, SlotParams
from pipeline.models.video.camera_head import CameraHead
from pipeline.models.video.config import VideoModelConfig
from pipeline.models.video.forecaster import Forecast, Forecaster, SlotTrack
from pipeline.models.video.poses import apply, invert


class VideoSlotModel(nn.Module):
    def __init__(self, config: VideoModelConfig, slot_config: SlotModelConfig, seed: int = 0):
        super().__init__()
        if config.prototypes != slot_config.prototypes:
            raise ValueError(f"video prototypes = {config.prototypes} but the slot model has {slot_config.prototypes}")
        self.config = config
        self.slots = SlotSceneModel(slot_config, seed=seed)
        self.camera = (CameraHead(config.feature_channels, config.hidden, config.time_features)
                       if config.camera_head else None)
        self.forecaster = Forecaster(config)

    def encode(self, batch: dict[str, Tensor]) -> tuple[SlotParams, Tensor]:
        """Slots of every frame of a :func:`pipeline.models.slots.batch.make_batch` batch (N frames) and the
        encoder's last feature map (N, C, h, w)."""
        captured: dict[str, Tensor] = {}
        handle = self.slots.encoder.register_forward_hook(lambda _m, _i, out: captured.__setitem__("fmap", out[0]))
        try:
            params = predict(self.slots, batch)
        finally:
            handle.remove()
        return params, captured["fmap"]

    def relative_poses(self, fmap: Tensor, time: Tensor) -> tuple[Tensor, Tensor]:
        """Feature maps (B, T, C, h, w), times (B, T) -> prev_from_cur (B, T-1, 3, 3), (B, T-1, 3)."""
        if self.camera is None:
            raise ValueError("this model has no camera head (video.camera = gt)")
        b, t = time.shape
        a = fmap[:, :-1].reshape((b * (t - 1),) + fmap.shape[2:])
        c = fmap[:, 1:].reshape((b * (t - 1),) + fmap.shape[2:])
        r, tr = self.camera(a, c, (time[:, 1:] - time[:, :-1]).reshape(-1))
        return r.view(b, t - 1, 3, 3), tr.view(b, t - 1, 3)


def world_track(params: SlotParams, shape: tuple[int, int], r_wc: Tensor, t_wc: Tensor, time: Tensor) -> SlotTrack:
    """Camera-frame slots of B x T frames (flattened, leading dim B*T) -> world-frame :class:`SlotTrack`
    with ``world_from_camera`` poses (B, T, 3, 3), (B, T, 3) and times (B, T)."""
    b, t = shape
    k = params.centre.shape[1]
    centre = params.centre.reshape(b, t, k, 3)
    rotation = euler_to_matrix(params.euler, EULER_CONVENTION).reshape(b, t, k, 3, 3)
    return SlotTrack(centre=apply(r_wc, t_wc, centre), rotation=r_wc.unsqueeze(2) @ rotation,
                     scale=params.scale.reshape(b, t, k), weights=params.weights.reshape(b, t, k, -1), time=time,
                     camera_rotation=r_wc, camera_centre=t_wc)


def forecast_verts(slots: SlotSceneModel, forecast: Forecast, r_wc: Tensor, t_wc: Tensor) -> Tensor:
    """Mesh vertices (B, G, K, V, 3) of every guess in the target camera (``world_from_camera`` (B, 3, 3), (B, 3))."""
    shape = slots.prototypes.blend(forecast.weights) * forecast.scale[..., None, None]  # (B, K, V, 3)
    world = torch.einsum("bgkij,bkvj->bgkvi", forecast.rotation, shape) + forecast.centre.unsqueeze(3)
    r_cw, t_cw = invert(r_wc, t_wc)
    b, g, k, v, _ = world.shape
    return apply(r_cw[:, None], t_cw[:, None], world.reshape(b, g, k * v, 3)).view(b, g, k, v, 3)


def forecast_chamfer(model: VideoSlotModel, forecast: Forecast, r_wc: torch.Tensor, t_wc: torch.Tensor,
                     points: torch.Tensor, mask: torch.Tensor, exact: bool = False) -> torch.Tensor:
    """(B, G) mean smooth distance (m) of each target frame's points (B, N, 3) to the guessed meshes."""
    verts = forecast_verts(model.slots, forecast, r_wc, t_wc)  # (B, G, K, V, 3)
    b, g = verts.shape[:2]
    pts = points.unsqueeze(1).expand(-1, g, -1, -1).reshape(b * g, -1, 3)
    msk = mask.unsqueeze(1).expand(-1, g, -1).reshape(b * g, -1)
    sq, _, _ = point_mesh_sq_dist(pts, verts.reshape((b * g,) + verts.shape[2:]), model.slots.faces, mask=msk,
                                  exact=exact)
    dist = (torch.sqrt(sq + SMOOTH_EPS_M**2) - SMOOTH_EPS_M) * msk
    return (dist.sum(-1) / msk.sum(-1).clamp_min(1)).view(b, g)
