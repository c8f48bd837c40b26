"""Does the true camera motion explain how the bird's-eye tokens change? A check of the data, beside the codes.

The codes can only carry a motion that shows in the tokens. For every pair, frame t's tokens are moved by the
pair's true ground-plane motion with the decoder's own Gaussian gather (:meth:`LAQ.warp_tokens`, its
``warp_sigma_m``) and compared with frame t + offset's tokens by the training loss (:meth:`LAQ.token_error`);
the same gather with no motion is the reference, so the blur of the gather cancels. Where the tokens follow the
scene, the true motion lowers the error (``explained`` > 0); where they are fixed to the camera (ground that looks
alike everywhere, an occupied wedge that turns with the camera), it raises it. With ``laq.warp``, the motion that
the decoder reads from the codes is compared with the true one too (correlation per component).

Motions are :func:`pipeline.data.camera.synthia_pair_motion` rows: camera t + offset in camera t's OpenCV frame
(rotation vector, rad; translation, m). A static point moves from p_t to ``p_t+1 = R^T (p_t - t)`` in camera
coordinates; on the ground plane that is a yaw of ``rot_y`` and a shift of ``-R^T t``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.models.laq.model import LAQ, WARP_SHIFT_M, WARP_YAW_RAD

COMPONENTS = ("yaw", "sideways", "forward")  # the warp's parameters, in its units (rad, m, m) after scaling


def true_warp_parameters(motion: np.ndarray) -> np.ndarray:
    """(P, 6) pair motions -> (P, 3) parameters of :func:`pipeline.models.laq.model.moved_centres` that move a
    static point's (x, z) from camera t to camera t + offset, assuming a yaw-only rotation (``rot_y``, rad):
    (yaw / WARP_YAW_RAD, shift_x / WARP_SHIFT_M, shift_z / WARP_SHIFT_M) with shift = -R^T t on (x, z)."""
    yaw = motion[:, 1]
    cos, sin = np.cos(yaw), np.sin(yaw)
    t_x, t_z = motion[:, 3], motion[:, 5]
    shift_x, shift_z = -(cos * t_x - sin * t_z), -(sin * t_x + cos * t_z)
    return np.stack([yaw / WARP_YAW_RAD, shift_x / WARP_SHIFT_M, shift_z / WARP_SHIFT_M], 1)


@torch.no_grad()
def motion_in_tokens(model: LAQ, split, motion: np.ndarray, device: torch.device,
                     code_vectors: np.ndarray | None = None, batch: int = 64) -> dict[str, Any]:
    """The check on every pair of ``split`` (:class:`pipeline.train.laq.FeaturePairs` with bird's-eye tokens,
    standardised as in training) with their motions (P, 6).

    Returns the mean token error with frame t's tokens moved by nothing (``error_still``), by the true motion
    (``error_true_motion``), by its yaw alone and by its shift alone, ``explained`` = 1 - true / still, and, when the
    model warps and ``code_vectors`` (P, S·Q) hard code vectors are given, ``decoder_motion_correlation`` per
    component of :data:`COMPONENTS` between the motion the decoder reads from the codes and the true one.
    """
    true = torch.as_tensor(true_warp_parameters(motion), dtype=torch.float32)
    moves = {"still": torch.zeros_like(true), "true_motion": true,
             "true_yaw_only": true * torch.tensor([1.0, 0.0, 0.0]),
             "true_shift_only": true * torch.tensor([0.0, 1.0, 1.0])}
    sums = dict.fromkeys(moves, 0.0)
    for start in range(0, len(split), batch):
        idx = torch.arange(start, min(start + batch, len(split)))
        t0, x0, t1, _, _, _ = split.batch(idx, device)
        for name, move in moves.items():
            moved = model.warp_tokens(t0, x0, move[idx].to(device))
            sums[name] += float(model.token_error(moved, t1).double().sum())
    out: dict[str, Any] = {f"error_{name}": total / len(split) for name, total in sums.items()}
    out["explained"] = 1.0 - out["error_true_motion"] / out["error_still"] if out["error_still"] > 0 else None
    if model.config.warp and code_vectors is not None:
        codes = torch.as_tensor(code_vectors, dtype=torch.float32, device=device)
        context = model.from_quant(codes.view(len(codes), model.config.code_seq_len, -1)) + model.code_embed
        read = model.motion(context.flatten(1)).cpu().numpy()
        out["decoder_motion_correlation"] = {name: _correlation(read[:, k], true[:, k].numpy())
                                             for k, name in enumerate(COMPONENTS)}
    return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation, None when either side is constant."""
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])
