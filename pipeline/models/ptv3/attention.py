"""Serialized patch attention of PTv3 (parameter names as upstream: `qkv`, `proj`).

Tokens are visited along one serialized order (a space-filling curve, see serialization.py) and cut
into non-overlapping patches of K tokens; softmax attention runs inside each patch only.

Patch layout per cloud with n tokens (both upstream modes):
- n <= K: one patch holding the whole cloud (length n).
- n > K: ceil(n / K) patches; the last one is filled up to K with the tokens at the same slots of
  the previous patch (padded slot j >= n reads serialized position j - K), so a few keys repeat.
  Outputs at padded slots are discarded.
Modes (config `enable_flash`):
- True ("flash semantics"): K = enc_patch_size per cloud. Runs `flash_attn_varlen_qkvpacked_func` in
  fp16 when flash_attn imports and the tensors are on CUDA, else the same patches through
  `torch.nn.functional.scaled_dot_product_attention` in the input dtype.
- False (upstream non-flash branch): K = min(smallest cloud in the batch, enc_patch_size) for all
  clouds. Identical to the flash semantics for a batch of one cloud.
Scale (C/H)^-0.5 unless qk_scale is given.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout
from .point import PointBatch, offset_to_counts


def flash_attn_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except Exception:
        return False
    return True


def patch_layout(counts: list[int], patch_size: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Padded gather indices (serialized positions) per patch group.

    Returns a list of (index [P * L], real [P * L] bool, L): P patches of length L laid out flat;
    `real` is False at padded slots (their outputs are dropped). The first group collects the
    full-size patches (clouds with n >= K); each cloud with 0 < n < K forms its own one-patch group.
    """
    full_idx: list[torch.Tensor] = []
    full_real: list[torch.Tensor] = []
    groups: list[tuple[torch.Tensor, torch.Tensor, int]] = []
    start = 0
    for n in counts:
        if n >= patch_size:
            p = -(-n // patch_size)
            j = torch.arange(p * patch_size)
            full_idx.append(start + torch.where(j < n, j, j - patch_size))
            full_real.append(j < n)
        elif n > 0:
            groups.append((start + torch.arange(n), torch.ones(n, dtype=torch.bool), n))
        start += n
    if full_idx:
        groups.insert(0, (torch.cat(full_idx), torch.cat(full_real), patch_size))
    return groups


class SerializedAttention(nn.Module):
    def __init__(
        self,
        channels: int,
        num_heads: int,
        patch_size: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        order_index: int = 0,
        enable_flash: bool = True,
        upcast_attention: bool = False,
        upcast_softmax: bool = False,
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"SerializedAttention: channels {channels} not divisible by heads {num_heads}")
        self.channels, self.num_heads, self.patch_size = channels, num_heads, patch_size
        self.scale = qk_scale or (channels // num_heads) ** -0.5
        self.order_index = order_index
        self.enable_flash = enable_flash
        self.upcast = upcast_attention or upcast_softmax
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(channels, channels * 3, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = Dropout(proj_drop)

    def _effective_patch(self, counts: list[int]) -> int:
        if self.enable_flash:
            return self.patch_size
        return max(1, min(min(counts), self.patch_size))

    def forward(self, point: PointBatch) -> torch.Tensor:
        """feat [M, C] of `point` -> attention output [M, C] (rows in the point's row order)."""
        counts = offset_to_counts(point.offset).tolist()
        k_eff = self._effective_patch(counts)
        key = f"patches_{k_eff}"
        if key not in point.cache:
            point.cache[key] = [
                (i.to(point.feat.device), r.to(point.feat.device), n) for i, r, n in patch_layout(counts, k_eff)
            ]
            # per group: (serialized position, patch slot) of the real slots, for index_select/index_copy_
            point.cache[key + "_real"] = [(i[r], r.nonzero().squeeze(1)) for i, r, _ in point.cache[key]]
        groups = point.cache[key]

        order = point.serialized_order[self.order_index]
        inverse = point.serialized_inverse[self.order_index]
        qkv = self.qkv(point.feat).index_select(0, order)  # [M, 3C], serialized order
        m, c, h = qkv.shape[0], self.channels, self.num_heads

        out = qkv.new_empty(m, c)
        if self.enable_flash and qkv.is_cuda and flash_attn_available():
            self._flash(qkv, groups, out)
        else:
            for (idx, _, length), (real_pos, real_slot) in zip(groups, point.cache[key + "_real"]):
                x = qkv.index_select(0, idx).reshape(-1, length, 3, h, c // h).permute(2, 0, 3, 1, 4)  # [3, P, H, L, d]
                q, k, v = x.unbind(0)
                dtype = q.dtype
                if self.upcast:
                    q, k, v = q.float(), k.float(), v.float()
                y = F.scaled_dot_product_attention(
                    q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
                ).to(dtype)
                y = y.transpose(1, 2).reshape(-1, c)  # [P * L, C]
                out.index_copy_(0, real_pos, y.index_select(0, real_slot))
        feat = out.index_select(0, inverse)
        return self.proj_drop(self.proj(feat))

    def _flash(self, qkv: torch.Tensor, groups: list[tuple[torch.Tensor, torch.Tensor, int]], out: torch.Tensor) -> None:
        # Untested here (no GPU / flash_attn): one varlen call over all patches, fp16 like upstream.
        from flash_attn import flash_attn_varlen_qkvpacked_func

        c, h = self.channels, self.num_heads
        idx = torch.cat([g[0] for g in groups])
        real = torch.cat([g[1] for g in groups])
        seq = torch.cat([torch.full((g[0].numel() // g[2],), g[2], dtype=torch.int32) for g in groups])
        cu = F.pad(torch.cumsum(seq, 0, dtype=torch.int32), (1, 0)).to(qkv.device)
        y = flash_attn_varlen_qkvpacked_func(
            qkv[idx].half().reshape(-1, 3, h, c // h),
            cu,
            max_seqlen=max(g[2] for g in groups),
            dropout_p=self.attn_drop if self.training else 0.0,
            softmax_scale=self.scale,
        ).reshape(-1, c).to(qkv.dtype)
        out[idx[real]] = y[real]
