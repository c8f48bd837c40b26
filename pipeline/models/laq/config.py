"""Model configuration of Concerto-LAQ (sizes and quantizer settings; no training schedule)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LAQConfig:
    """Sizes of the LAQ model. Defaults are the seed's (dim 512, 256 codes, 4 codes per pair, depth 4/4).

    - ``in_channels``: channels C of the cached per-token features (Concerto output);
    - ``dim``: model width; ``heads``: attention heads (``dim % heads == 0``);
    - ``spatial_depth``: transformer blocks over the tokens of one frame;
    - ``temporal_depth``: transformer blocks mixing the two frames; ``temporal_mode``: ``joint`` (attention
      over all 2N tokens of the pair) or ``per_token`` (over the two time steps of each token position,
      LAPA's factorisation, meaningful only when tokens are aligned across frames);
    - ``decoder_depth``: blocks of the predictor (self-attention over frame t's tokens + cross-attention
      to the codes); 0 means "same as ``spatial_depth``" (as in LAPA);
    - ``code_seq_len``: discrete codes S per frame pair;
    - ``read_cells``: spatial cells R of frame t read by one learned query each (0 = ``code_seq_len``); the R
      read vectors are concatenated in S groups of R / S consecutive cells, one code each, so S = 1 with R = 4
      gives one code that sees the left/right x near/far pattern of the motion (yaw vs sideways vs forward);
    - ``codebook_size``: entries of the shared NSVQ codebook; ``quant_dim``: their dimension (LAPA: 32);
    - ``warp``: the decoder's starting point is frame t's tokens moved by a rigid motion of the ground plane
      (yaw angle, sideways and forward shift) that a zero-initialised linear map reads from the codes, instead of
      frame t's tokens where they are (:meth:`LAQ.warp_tokens`); ``warp_sigma_m``: width of its Gaussian gather;
      ``warp_gate``: each token of the starting point is a learned mix of the moved and the unmoved frame-t token,
      the share read from that token's own embedding (starts at 0.98: the plain warp): cells that stay with the
      camera (the road's pixel-uniform points) can keep their place while cells that follow the scene move
      (:meth:`LAQ.warped_base`);
    - ``pos_frequencies``: Fourier frequencies per axis of the token-centre encoding;
      ``pos_scale_m``: length (metres) of the lowest frequency's period / 2π;
    - ``mlp_ratio``: hidden width of the feed-forward blocks relative to ``dim``;
    - ``geometry_channels``: the last channels of each token that describe its geometry (3 for bird's-eye
      tokens: centroid offset in the cell; 0 = none); ``geometry_weight``: their share of the loss, which is
      ``MSE(features) + geometry_weight * MSE(geometry)``;
    - ``scene_channels``: the last feature channels (before the geometry) that pool only the points above the
      ground (``concerto.bev_ground: both``; 0 = none); ``scene_weight``: their weight in the feature MSE, which
      becomes the weighted mean ``(SSE(other) + scene_weight * SSE(scene)) / (C_other + scene_weight * C_scene)``
      per token (1 = the plain mean).
    """

    in_channels: int = 512
    dim: int = 512
    heads: int = 8
    spatial_depth: int = 4
    temporal_depth: int = 4
    decoder_depth: int = 0
    temporal_mode: str = "joint"
    code_seq_len: int = 4
    read_cells: int = 0
    codebook_size: int = 256
    quant_dim: int = 32
    warp: bool = False
    warp_sigma_m: float = 2.0
    warp_gate: bool = False
    pos_frequencies: int = 8
    pos_scale_m: float = 20.0
    mlp_ratio: float = 4.0
    geometry_channels: int = 0
    geometry_weight: float = 1.0
    scene_channels: int = 0
    scene_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim = {self.dim} must be divisible by heads = {self.heads}")
        for name in ("in_channels", "dim", "heads", "code_seq_len", "codebook_size", "quant_dim", "pos_frequencies"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)} must be >= 1")
        if not 0 <= self.geometry_channels < self.in_channels or self.geometry_weight < 0:
            raise ValueError(f"geometry_channels = {self.geometry_channels} must be in [0, in_channels) and "
                             f"geometry_weight = {self.geometry_weight} >= 0")
        if not 0 <= self.scene_channels < self.in_channels - self.geometry_channels or self.scene_weight < 0:
            raise ValueError(f"scene_channels = {self.scene_channels} must be in [0, in_channels - geometry_channels) "
                             f"and scene_weight = {self.scene_weight} >= 0")
        if self.read_cells < 0 or self.cells % self.code_seq_len:
            raise ValueError(f"read_cells = {self.read_cells} must be 0 or a multiple of code_seq_len = {self.code_seq_len}")
        if self.temporal_mode not in ("joint", "per_token"):
            raise ValueError(f"temporal_mode = {self.temporal_mode!r} must be 'joint' or 'per_token'")
        if self.warp_gate and not self.warp:
            raise ValueError("warp_gate needs warp (it mixes the moved tokens with the unmoved ones)")
        for name in ("spatial_depth", "temporal_depth", "decoder_depth"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} = {getattr(self, name)} must be >= 0")

    @property
    def cells(self) -> int:
        """Spatial cells read by the encoder's queries (R)."""
        return self.read_cells or self.code_seq_len

    @property
    def decoder_blocks(self) -> int:
        return self.decoder_depth or self.spatial_depth

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
