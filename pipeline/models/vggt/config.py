"""Configuration of the VGGT model (Visual Geometry Grounded Transformer).

One frozen dataclass holds every hyper-parameter of the module tree. The ``vggt_1b()`` preset reproduces
the released VGGT-1B checkpoint layout (1,797 tensors, 1,256,537,516 parameters); ``vggt_tiny()`` keeps the
same module tree with small widths so the whole forward path runs in seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

HEAD_PREFIXES = {
    "camera": "camera_head.",
    "depth": "depth_head.",
    "point": "point_head.",
    "track": "track_head.",
}


def default_dpt_layers(depth: int) -> tuple[int, int, int, int]:
    """Aggregator layer indices (absolute, 0-based) read by the DPT heads for an aggregator of ``depth`` rounds.

    Rule: the first tap is ``depth // 6``, the others end the 2nd, 3rd and 4th quarter of the stack
    (``(k + 1) * depth / 4 - 1``, rounded). For 24 rounds this gives the upstream taps (4, 11, 17, 23);
    for 4 rounds it gives (0, 1, 2, 3). The last tap is always ``depth - 1``, which the camera head reads too.
    """
    if depth < 4:
        raise ValueError(f"aggregator depth must be >= 4 for four DPT taps, got {depth}")
    taps = (depth // 6,) + tuple(int(round((k + 1) * depth / 4)) - 1 for k in (1, 2, 3))
    if len(set(taps)) != 4 or list(taps) != sorted(taps):
        raise ValueError(f"cannot derive four distinct increasing DPT taps for depth {depth}: {taps}")
    return taps  # type: ignore[return-value]


@dataclass(frozen=True)
class VGGTConfig:
    """All VGGT hyper-parameters.

    Token layout per frame: [camera token, ``num_register_tokens`` register tokens, patch tokens].
    The DINOv2-style tokenizer and the aggregator share ``embed_dim`` (the tokenizer output feeds the
    aggregator directly, as upstream). Heads read the channel concatenation of frame and global block
    outputs, i.e. ``2 * embed_dim`` channels.
    """

    # image / patches
    img_size: int = 518  # training resolution; sets the learned pos-embed grid (img_size // patch_size)^2
    patch_size: int = 14
    embed_dim: int = 1024
    # DINOv2-style tokenizer (ViT with register tokens)
    tok_depth: int = 24
    tok_heads: int = 16
    tok_mlp_ratio: float = 4.0
    tok_init_values: float = 1.0  # LayerScale init
    num_register_tokens: int = 4  # used both by the tokenizer and by the aggregator's register tokens
    # aggregator (alternating frame / global attention)
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    init_values: float = 0.01
    qk_norm: bool = True
    rope_freq: float = 100.0
    # camera head
    camera_trunk_depth: int = 4
    camera_heads: int = 16
    camera_iters: int = 4
    # DPT heads (depth, point, and track feature extractor)
    dpt_layers: tuple[int, ...] = (4, 11, 17, 23)
    dpt_features: int = 256
    dpt_out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    dpt_frames_chunk: int = 8  # frames per DPT chunk inside one forward (memory knob, no effect on values)
    # track head (DPT feature extractor + CoTracker-style predictor)
    track_features: int = 128
    track_hidden: int = 384
    track_heads: int = 8
    track_depth: int = 6
    track_virtual_tracks: int = 64
    track_corr_levels: int = 7
    track_corr_radius: int = 4
    track_stride: int = 2
    track_iters: int = 4
    track_max_scale: float = 518.0
    # which heads exist (a disabled head has no parameters; its checkpoint keys are dropped on load)
    enable_camera: bool = True
    enable_depth: bool = True
    enable_point: bool = True
    enable_track: bool = True

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads or (self.embed_dim // self.num_heads) % 4:
            raise ValueError(
                f"embed_dim {self.embed_dim} / num_heads {self.num_heads} must give a head dim divisible by 4 (2-D RoPE)"
            )
        if self.embed_dim % self.tok_heads:
            raise ValueError(f"embed_dim {self.embed_dim} not divisible by tok_heads {self.tok_heads}")
        if len(self.dpt_layers) != 4 or any(not 0 <= i < self.depth for i in self.dpt_layers):
            raise ValueError(f"dpt_layers must be 4 indices in [0, {self.depth}), got {self.dpt_layers}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")

    @property
    def patch_start_idx(self) -> int:
        """Index of the first patch token in a frame's token sequence (camera + registers come first)."""
        return 1 + self.num_register_tokens

    def needed_layers(self) -> tuple[int, ...]:
        """Absolute aggregator layer indices the enabled heads read (the only ones worth keeping)."""
        keep: set[int] = set()
        if self.enable_camera:
            keep.add(self.depth - 1)
        if self.enable_depth or self.enable_point or self.enable_track:
            keep.update(self.dpt_layers)
        return tuple(sorted(keep))

    def disabled_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the heads switched off in this config."""
        flags = {"camera": self.enable_camera, "depth": self.enable_depth, "point": self.enable_point,
                 "track": self.enable_track}
        return tuple(HEAD_PREFIXES[name] for name, on in flags.items() if not on)

    def with_heads(self, **flags: bool) -> "VGGTConfig":
        """Copy with some ``enable_*`` flags changed, e.g. ``cfg.with_heads(track=False, point=False)``."""
        unknown = set(flags) - set(HEAD_PREFIXES)
        if unknown:
            raise ValueError(f"unknown head(s) {sorted(unknown)}; known: {sorted(HEAD_PREFIXES)}")
        return dataclasses.replace(self, **{f"enable_{k}": v for k, v in flags.items()})

    def same_architecture(self, other: "VGGTConfig") -> bool:
        """True when both configs give the same full key/shape layout (head flags ignored)."""
        strip = {f"enable_{h}": True for h in HEAD_PREFIXES} | {"dpt_frames_chunk": 0}
        return dataclasses.replace(self, **strip) == dataclasses.replace(other, **strip)


def vggt_1b(**overrides) -> VGGTConfig:
    """The released VGGT-1B architecture (``facebook/VGGT-1B``); overrides e.g. ``enable_track=False``."""
    return VGGTConfig(**overrides)


def vggt_tiny(**overrides) -> VGGTConfig:
    """A ~1 M-parameter config with the VGGT-1B module tree, for CPU tests and the offline pipeline default.

    Tokenizer ViT dim 64 / depth 2 / 4 heads / 4 registers / 4x4 learned pos-embed grid (img_size 56, so
    every real input exercises pos-embed interpolation); aggregator depth 4 (DPT taps (0, 1, 2, 3) by
    ``default_dpt_layers``), 4 heads of dim 16; tracker with 3 correlation levels so 70x98 inputs work.
    """
    base = dict(
        img_size=56, embed_dim=64, tok_depth=2, tok_heads=4, num_register_tokens=4,
        depth=4, num_heads=4, camera_trunk_depth=1, camera_heads=4,
        dpt_layers=default_dpt_layers(4), dpt_features=32, dpt_out_channels=(16, 32, 64, 64),
        track_features=16, track_hidden=32, track_heads=4, track_depth=2, track_virtual_tracks=8,
        track_corr_levels=3, track_corr_radius=2, track_max_scale=518.0,
    )
    base.update(overrides)
    return VGGTConfig(**base)


def depth_camera_config(preset: str) -> VGGTConfig:
    """The ``vggt.preset`` (``tiny`` | ``1b``) with only the camera and depth heads (the vggt stage needs no
    point map or tracks)."""
    build = {"tiny": vggt_tiny, "1b": vggt_1b}[preset]
    return build(enable_point=False, enable_track=False)
