"""Concerto-LAQ model: encoder (spatial + temporal transformer, frame difference, code queries), NSVQ, decoder.

Shapes: B frame pairs, N spatial tokens per frame (same order in both frames), C feature channels,
S = ``code_seq_len`` codes, Q = ``quant_dim``. Token centres are metres in the camera frame (OpenCV axes).

- Encoder (C-ViViT-like, after LAPA's LAQ): each frame's tokens are projected C → dim (shared by both
  frames) plus a Fourier encoding of the token centres; ``spatial_depth`` blocks attend within a frame,
  ``temporal_depth`` blocks across the two time steps at each token position. The difference
  (frame t+offset − frame t) of the encodings is split into S spatial cells of frame t (for S = 4:
  left/right x near/far, :func:`spatial_cells`) and each cell is read by its own learned query with
  cross-attention restricted to the cell, so the S codes summarise different parts of the scene (like
  LAPA's 2 x 2 token grid; one pooled vector would give S identical codes, shared/specs/models.md §1.5).
- NSVQ quantises each of the S vectors (dimension Q) with one shared codebook.
- Decoder: frame t's projected tokens with stop-gradient (LAPA) go through ``decoder_blocks`` blocks
  with cross-attention to the S codes; a zero-initialised head predicts the change, so the prediction
  of frame t+offset's tokens starts as the copy of frame t. Loss: MSE of the predicted tokens.
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
        self.position = FourierPosition(c.dim, c.pos_frequencies, c.pos_scale_m)
        self.spatial = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.spatial_depth))
        self.time_embed = nn.Parameter(torch.zeros(2, c.dim))
        self.temporal = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.temporal_depth))
        self.diff_position = FourierPosition(c.dim, c.pos_frequencies, c.pos_scale_m)
        self.queries = nn.Parameter(torch.randn(c.code_seq_len, c.dim))
        self.reader = Block(c.dim, c.heads, c.mlp_ratio, cross=True, self_attn=False)
        self.to_quant = nn.Sequential(nn.LayerNorm(c.dim), nn.Linear(c.dim, c.quant_dim))
        self.quantizer = NSVQ(c.codebook_size, c.quant_dim)
        self.from_quant = nn.Linear(c.quant_dim, c.dim)
        self.code_embed = nn.Parameter(torch.randn(c.code_seq_len, c.dim) * 0.02)
        self.decoder = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio, cross=True) for _ in range(c.decoder_blocks))
        self.out_norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.in_channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def embed(self, tokens: Tensor, xyz: Tensor) -> Tensor:
        """(…, N, C) features and (…, N, 3) centres → (…, N, dim)."""
        return self.in_proj(self.in_norm(tokens)) + self.position(xyz)

    def encode(self, tokens0: Tensor, xyz0: Tensor, tokens1: Tensor, xyz1: Tensor) -> tuple[Tensor, Tensor]:
        """Continuous latent actions (B, S, Q) and frame t's token embedding (B, N, dim)."""
        b, n, _ = tokens0.shape
        x = self.embed(torch.stack([tokens0, tokens1], 1), torch.stack([xyz0, xyz1], 1))  # (B, 2, N, dim)
        first = x[:, 0]
        h = x.reshape(b * 2, n, -1)
        for block in self.spatial:
            h = block(h)
        h = h.reshape(b, 2, n, -1).transpose(1, 2).reshape(b * n, 2, -1) + self.time_embed
        for block in self.temporal:
            h = block(h)
        h = h.reshape(b, n, 2, -1)
        diff = h[:, :, 1] - h[:, :, 0] + self.diff_position(xyz0)
        cells = spatial_cells(xyz0, self.config.code_seq_len)  # (B, N)
        mask = cells[:, None, :] == torch.arange(self.config.code_seq_len, device=cells.device)[None, :, None]
        queries = self.reader(self.queries.expand(b, -1, -1), context=diff, mask=mask)
        return self.to_quant(queries), first

    def decode(self, first: Tensor, tokens0: Tensor, codes: Tensor) -> Tensor:
        """Predict frame t+offset's tokens (B, N, C) from frame t's embedding (stop-gradient) and codes (B, S, Q)."""
        context = self.from_quant(codes) + self.code_embed
        y = first.detach()
        for block in self.decoder:
            y = block(y, context=context)
        return tokens0 + self.head(self.out_norm(y))

    def forward(self, tokens0: Tensor, xyz0: Tensor, tokens1: Tensor, xyz1: Tensor) -> LAQOutput:
        """Frame pair (tokens (B, N, C), centres (B, N, 3)) at t and t+offset → :class:`LAQOutput`."""
        latent, first = self.encode(tokens0, xyz0, tokens1, xyz1)
        codes, indices = self.quantizer(latent)
        prediction = self.decode(first, tokens0, codes)
        return LAQOutput(F.mse_loss(prediction, tokens1), prediction, indices, codes, latent)

    @torch.no_grad()
    def predict_with_indices(self, tokens0: Tensor, xyz0: Tensor, indices: Tensor) -> Tensor:
        """Prediction (B, N, C) of frame t+offset from frame t and given code indices (B, S) (hard codes)."""
        return self.decode(self.embed(tokens0, xyz0), tokens0, self.quantizer.lookup(indices))
