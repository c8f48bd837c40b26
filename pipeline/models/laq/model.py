"""Concerto-LAQ model: encoder (spatial + temporal transformer, frame difference, code queries), NSVQ, decoder.

Shapes: B frame pairs, N spatial tokens per frame, C feature channels, S = ``code_seq_len`` codes,
Q = ``quant_dim``. Token centres are metres in the camera frame (OpenCV axes). ``mask`` (B, N) marks
occupied tokens (an empty bird's-eye cell or a padding token is False; None = all occupied).

- Encoder (C-ViViT-like, after LAPA's LAQ): each frame's tokens are projected C → dim (shared by both
  frames; empty tokens get one learned "empty" vector instead) plus a Fourier encoding of the token
  centres; ``spatial_depth`` blocks attend within a frame, then ``temporal_depth`` blocks mix the two
  frames: ``temporal_mode = "joint"`` attends over all 2N tokens of the pair (a token of frame t+offset
  can find where its content was in frame t, which is how ego-motion shows on a bird's-eye grid), or
  ``"per_token"`` over the two time steps of each token position (LAPA's factorisation; needs tokens
  aligned across frames). The difference
  (frame t+offset − frame t) of the encodings is split into S spatial cells of frame t (for S = 4:
  left/right x near/far, :func:`spatial_cells`) and each cell is read by its own learned query with
  cross-attention restricted to the cell, so the S codes summarise different parts of the scene (like
  LAPA's 2 x 2 token grid, Ye et al. 2024; one pooled vector would give S identical codes). With
  ``read_cells`` R > S, R cells are read and each code sees R / S of them (concatenated, projected).
- NSVQ quantises each of the S vectors (dimension Q) with one shared codebook.
- Decoder: frame t's projected tokens with stop-gradient (LAPA) go through ``decoder_blocks`` blocks
  with cross-attention to the S codes; a zero-initialised head predicts the change, so the prediction
  of frame t+offset's tokens starts as the copy of frame t. Loss (:meth:`LAQ.token_error`): MSE of the
  predicted feature channels plus ``geometry_weight`` times the MSE of the geometry channels (bird's-eye
  tokens carry their centroid's offset in the cell: the most direct trace of ego-motion).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import LAQConfig
from .layers import Block, FourierPosition, spatial_cells
from .nsvq import NSVQ


@dataclass
class LAQOutput:
    """``loss`` scalar MSE; ``prediction`` (B, N, C); ``indices`` (B, S); ``codes`` (B, S, Q) as fed to the
    decoder (noise-substituted in training, hard in eval); ``latent`` (B, S, Q) before quantisation."""

    loss: Tensor
    prediction: Tensor
    indices: Tensor
    codes: Tensor
    latent: Tensor


class LAQ(nn.Module):
    def __init__(self, config: LAQConfig):
        super().__init__()
        self.config = config
        c = config
        self.in_norm = nn.LayerNorm(c.in_channels)
        self.in_proj = nn.Linear(c.in_channels, c.dim)
        self.empty = nn.Parameter(torch.zeros(c.dim))
        self.position = FourierPosition(c.dim, c.pos_frequencies, c.pos_scale_m)
        self.spatial = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.spatial_depth))
        self.time_embed = nn.Parameter(torch.zeros(2, c.dim))
        self.temporal = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.temporal_depth))
        self.diff_position = FourierPosition(c.dim, c.pos_frequencies, c.pos_scale_m)
        self.queries = nn.Parameter(torch.randn(c.cells, c.dim))
        self.reader = Block(c.dim, c.heads, c.mlp_ratio, cross=True, self_attn=False)
        read = c.dim * (c.cells // c.code_seq_len)  # the read vectors of one code's cells, concatenated
        self.to_quant = nn.Sequential(nn.LayerNorm(read), nn.Linear(read, c.quant_dim))
        self.quantizer = NSVQ(c.codebook_size, c.quant_dim)
        self.from_quant = nn.Linear(c.quant_dim, c.dim)
        self.code_embed = nn.Parameter(torch.randn(c.code_seq_len, c.dim) * 0.02)
        self.decoder = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio, cross=True) for _ in range(c.decoder_blocks))
        self.out_norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.in_channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if c.warp:
            self.motion = nn.Linear(c.code_seq_len * c.dim, 3)  # (yaw, sideways, forward), zero = no motion
            nn.init.zeros_(self.motion.weight)
            nn.init.zeros_(self.motion.bias)
        if c.warp_gate:
            self.gate = nn.Linear(c.dim, 1)  # logit of the moved token's share: starts as the plain warp (0.98)
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, GATE_START_LOGIT)

    def embed(self, tokens: Tensor, xyz: Tensor, mask: Tensor | None = None) -> Tensor:
        """(…, N, C) features, (…, N, 3) centres and (…, N) occupancy → (…, N, dim)."""
        h = self.in_proj(self.in_norm(tokens))
        if mask is not None:
            h = torch.where(mask[..., None], h, self.empty)
        return h + self.position(xyz)

    def encode(self, tokens0: Tensor, xyz0: Tensor, tokens1: Tensor, xyz1: Tensor, mask0: Tensor | None = None,
               mask1: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Continuous latent actions (B, S, Q) and frame t's token embedding (B, N, dim)."""
        b, n, _ = tokens0.shape
        mask = None if mask0 is None and mask1 is None else torch.stack([_full(mask0, tokens0), _full(mask1, tokens1)], 1)
        x = self.embed(torch.stack([tokens0, tokens1], 1), torch.stack([xyz0, xyz1], 1), mask)  # (B, 2, N, dim)
        first = x[:, 0]
        h = x.reshape(b * 2, n, -1)
        for block in self.spatial:
            h = block(h)
        h = h.reshape(b, 2, n, -1) + self.time_embed[None, :, None, :]
        if self.config.temporal_mode == "joint":
            h = h.reshape(b, 2 * n, -1)
            for block in self.temporal:
                h = block(h)
            h = h.reshape(b, 2, n, -1).transpose(1, 2)
        else:
            h = h.transpose(1, 2).reshape(b * n, 2, -1)
            for block in self.temporal:
                h = block(h)
            h = h.reshape(b, n, 2, -1)
        diff = h[:, :, 1] - h[:, :, 0] + self.diff_position(xyz0)
        r = self.config.cells
        cells = spatial_cells(xyz0, r)  # (B, N)
        mask = cells[:, None, :] == torch.arange(r, device=cells.device)[None, :, None]
        read = self.reader(self.queries.expand(b, -1, -1), context=diff, mask=mask)  # (B, R, dim)
        return self.to_quant(read.reshape(b, self.config.code_seq_len, -1)), first

    def decode(self, first: Tensor, tokens0: Tensor, codes: Tensor, xyz0: Tensor | None = None) -> Tensor:
        """Predict frame t+offset's tokens (B, N, C) from frame t's embedding (stop-gradient) and codes (B, S, Q);
        the prediction is a change of frame t's tokens, moved first if ``config.warp`` (needs ``xyz0`` (B, N, 3))."""
        context = self.from_quant(codes) + self.code_embed
        base = tokens0 if not self.config.warp else self.warped_base(first, tokens0, xyz0,
                                                                      self.motion(context.flatten(1)))
        y = first.detach()
        for block in self.decoder:
            y = block(y, context=context)
        return base + self.head(self.out_norm(y))

    def warped_base(self, first: Tensor, tokens0: Tensor, xyz0: Tensor, motion: Tensor) -> Tensor:
        """The decoder's starting point with ``config.warp`` (B, N, C): frame t's tokens moved by ``motion`` (B, 3)
        (:meth:`warp_tokens`), or with ``config.warp_gate`` per token g · moved + (1 − g) · unmoved, g = sigmoid of a
        linear map of that token's embedding ``first`` (B, N, dim) (stop-gradient, as the decoder reads it), starting
        at g = sigmoid(``GATE_START_LOGIT``) everywhere."""
        moved = self.warp_tokens(tokens0, xyz0, motion)
        if not self.config.warp_gate:
            return moved
        share = torch.sigmoid(self.gate(first.detach()))  # (B, N, 1)
        return tokens0 + share * (moved - tokens0)

    def warp_tokens(self, tokens0: Tensor, xyz0: Tensor, motion: Tensor) -> Tensor:
        """Frame t's tokens (B, N, C) at centres ``xyz0`` (B, N, 3) (metres, OpenCV camera axes) gathered where
        the rigid ground-plane motion ``motion`` (B, 3) moves them (:func:`moved_centres`). Token n of the result is
        the Gaussian-weighted (``warp_sigma_m``) mean of the moved tokens around token n's centre: differentiable in
        the motion."""
        ground = torch.nan_to_num(xyz0[..., [0, 2]].float())  # (B, N, 2) x, z
        logits = -torch.cdist(ground, moved_centres(xyz0, motion)).pow(2) / (2 * self.config.warp_sigma_m ** 2)
        return torch.softmax(logits, -1) @ tokens0  # logits: (B, N target, N source)

    def forward(self, tokens0: Tensor, xyz0: Tensor, tokens1: Tensor, xyz1: Tensor, mask0: Tensor | None = None,
                mask1: Tensor | None = None) -> LAQOutput:
        """Frame pair (tokens (B, N, C), centres (B, N, 3), occupancy (B, N)) at t and t+offset → :class:`LAQOutput`.

        The loss is the MSE over all tokens of frame t+offset; empty tokens are expected to hold zeros
        (the data loader sets them so), so the decoder also learns which cells empty or fill.
        """
        latent, first = self.encode(tokens0, xyz0, tokens1, xyz1, mask0, mask1)
        codes, indices = self.quantizer(latent)
        prediction = self.decode(first, tokens0, codes, xyz0)
        return LAQOutput(self.token_error(prediction, tokens1).mean(), prediction, indices, codes, latent)

    def token_error(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Per-pair loss (B,): MSE over the feature channels (the scene channels weighted by ``scene_weight``) +
        ``geometry_weight`` x MSE over the geometry channels (:class:`LAQConfig`)."""
        c = self.config
        g = c.geometry_channels
        squared = (prediction - target).pow(2)
        features = squared[..., :-g] if g else squared
        if c.scene_channels and c.scene_weight != 1.0:
            other, scene = features[..., :-c.scene_channels], features[..., -c.scene_channels:]
            total = other.shape[-1] + c.scene_weight * c.scene_channels
            feature_error = (other.sum(-1) + c.scene_weight * scene.sum(-1)).mean(1) / total
        else:
            feature_error = features.mean((1, 2))
        if g == 0:
            return feature_error
        return feature_error + c.geometry_weight * squared[..., -g:].mean((1, 2))

    @torch.no_grad()
    def predict_with_indices(self, tokens0: Tensor, xyz0: Tensor, indices: Tensor, mask0: Tensor | None = None) -> Tensor:
        """Prediction (B, N, C) of frame t+offset from frame t and given code indices (B, S) (hard codes)."""
        return self.decode(self.embed(tokens0, xyz0, mask0), tokens0, self.quantizer.lookup(indices), xyz0)


GATE_START_LOGIT = 4.0  # warp_gate's initial logit: sigmoid(4) = 0.98 of the moved token (yaw learns as without it)
WARP_YAW_RAD = 0.3  # the warp's motion parameters are (yaw / WARP_YAW_RAD, shift / WARP_SHIFT_M): order 1 for a drive
WARP_SHIFT_M = 4.0  # (one bird's-eye cell), so the zero-initialised linear map reaches them at a plain learning rate


def moved_centres(xyz: Tensor, motion: Tensor) -> Tensor:
    """Ground-plane positions (B, N, 2) as (x, z) metres of the centres ``xyz`` (B, N, 3) (OpenCV camera axes; NaN
    counts as 0) after the rigid motion ``motion`` (B, 3): a yaw of ``WARP_YAW_RAD * motion[:, 0]`` rad about the
    camera's y axis, ``(x, z) -> (x cos - z sin, x sin + z cos)``, then a shift of ``WARP_SHIFT_M * motion[:, 1:]``
    along (x, z)."""
    yaw, shift = WARP_YAW_RAD * motion[:, 0], WARP_SHIFT_M * motion[:, 1:]
    cos, sin = yaw.cos()[:, None], yaw.sin()[:, None]
    ground = torch.nan_to_num(xyz[..., [0, 2]].float())
    return torch.stack([cos * ground[..., 0] - sin * ground[..., 1],
                        sin * ground[..., 0] + cos * ground[..., 1]], -1) + shift[:, None, :]


def _full(mask: Tensor | None, tokens: Tensor) -> Tensor:
    """``mask`` or an all-True (B, N) mask for ``tokens`` (B, N, C)."""
    return torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device) if mask is None else mask
