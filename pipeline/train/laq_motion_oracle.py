"""An LAQ decoder told the *true* ego-motion instead of learned codes: how much do codes need beyond the motion?

The decoder of :class:`pipeline.models.laq.LAQ` (same config, warp included) is trained as in ``train_laq``
(batches of :func:`pipeline.train.laq.batch_indices` without mirroring, Adam, the LAQ learning-rate schedule, the
gradient-norm clip), but its S codes are a small MLP of the pair's motion code: (P, 3) standardised motion
components, exact or reduced to a coarse code (a cluster centroid, a bin mean; see
``pipeline/analysis/laq_ceiling.py``). On held-out pairs the MSE with the true motion, with a derangement of it
(the issue's shuffled-code gain) and with zero motion (:func:`held_out_errors`) tells how much of the learned codes'
use the ego-motion alone explains. An analysis, not a model of the pipeline: it reads labels no latent-action model may see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.models.laq import LAQ, LAQConfig
from pipeline.params.laq import LAQParams
from pipeline.progress import progress_bar
from pipeline.train.common import seed_everything
from pipeline.train.laq import FeaturePairs, batch_indices, lr_schedule


class MotionCodes(nn.Module):
    """(B, M) motion code -> (B, S, Q) code vectors for the decoder (an MLP, hidden width 64)."""

    def __init__(self, motion_dim: int, code_seq_len: int, quant_dim: int, hidden: int = 64):
        super().__init__()
        self.shape = (code_seq_len, quant_dim)
        self.net = nn.Sequential(nn.Linear(motion_dim, hidden), nn.GELU(), nn.Linear(hidden, code_seq_len * quant_dim))

    def forward(self, motion: Tensor) -> Tensor:
        return self.net(motion).view(len(motion), *self.shape)


@dataclass
class OracleErrors:
    """Held-out per-pair-mean token errors (``LAQ.token_error``) with the true, deranged and zero motion codes,
    and of copying frame t."""

    true: float
    shuffled: float
    zero: float
    copy: float

    @property
    def shuffled_gain(self) -> float:
        """(shuffled − true) / true: the issue's shuffled-code gain for these codes."""
        return (self.shuffled - self.true) / self.true


def predict(model: LAQ, codes: MotionCodes, pairs: FeaturePairs, idx: Tensor, motion: Tensor,
            device: torch.device) -> tuple[Tensor, Tensor]:
    """(prediction, target), each (B, N, C), of pairs ``idx`` whose decoder reads ``motion`` (B, M)."""
    t0, x0, t1, _, m0, _ = pairs.batch(idx, device)
    return model.decode(model.embed(t0, x0, m0), t0, codes(motion.to(device)), x0), t1


@dataclass
class MotionDecoder:
    """A trained LAQ decoder (``model``: encoder unused) and the MLP that turns motion codes into its codes."""

    model: LAQ
    codes: MotionCodes


def train_motion_decoder(train: FeaturePairs, motion_train: np.ndarray, config: LAQConfig, params: LAQParams, *,
                         device: torch.device = torch.device("cpu"), progress: bool = True) -> MotionDecoder:
    """Train the decoder on ``train`` pairs (standardised tokens) with their motion codes ``motion_train`` (P, M).
    Deterministic for one machine and ``params.seed``."""
    seed_everything(params.seed)
    model, codes = LAQ(config).to(device), MotionCodes(motion_train.shape[1], config.code_seq_len,
                                                       config.quant_dim).to(device)
    weights = list(model.parameters()) + list(codes.parameters())
    optimizer = torch.optim.Adam(weights, lr=params.lr, betas=(0.9, 0.99))
    schedule = lr_schedule(params)
    m_train = torch.as_tensor(motion_train, dtype=torch.float32)
    model.train()
    for step in progress_bar(range(params.steps), desc="motion-oracle decoder", unit="step",
                             disable=not progress):
        for group in optimizer.param_groups:
            group["lr"] = schedule(step, params.lr)
        idx = batch_indices(step, len(train), params)[0]
        prediction, target = predict(model, codes, train, idx, m_train[idx], device)
        loss = model.token_error(prediction, target).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if params.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(weights, params.grad_clip)
        optimizer.step()
    model.eval()
    return MotionDecoder(model, codes)


@torch.no_grad()
def held_out_errors(decoder: MotionDecoder, held_out: FeaturePairs, motion: np.ndarray, shuffled: np.ndarray,
                    device: torch.device = torch.device("cpu")) -> OracleErrors:
    """:class:`OracleErrors` on ``held_out`` pairs with their motion codes ``motion`` (Q, M), the same codes
    reordered by ``shuffled`` (a derangement of range(Q)) and zero codes."""
    m_held = torch.as_tensor(motion, dtype=torch.float32)
    errors = {name: mean_error(decoder.model, decoder.codes, held_out, m, device)
              for name, m in (("true", m_held), ("shuffled", m_held[torch.as_tensor(shuffled)]),
                              ("zero", torch.zeros_like(m_held)))}
    t0, _, t1, _, _, _ = held_out.batch(torch.arange(len(held_out)), device)
    return OracleErrors(**errors, copy=float(decoder.model.token_error(t0, t1).mean()))


def mean_error(model: LAQ, codes: MotionCodes, pairs: FeaturePairs, motion: Tensor, device: torch.device,
               batch: int = 128) -> float:
    """Mean over ``pairs`` of the per-pair token error with the motion codes ``motion`` (P, M)."""
    total = 0.0
    for start in range(0, len(pairs), batch):
        idx = torch.arange(start, min(start + batch, len(pairs)))
        prediction, target = predict(model, codes, pairs, idx, motion[idx], device)
        total += float(model.token_error(prediction, target).sum())
    return total / len(pairs)
