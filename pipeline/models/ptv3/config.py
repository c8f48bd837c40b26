"""Configuration of the Point Transformer V3 encoder as Concerto uses it (PT-v3m2 / Sonata, encoder only).

`PTv3Config` holds every hyper-parameter that changes the module tree or the forward pass. Its field
names are the keyword arguments of upstream's `PointTransformerV3(**config)`, so the `config` dict
stored in an official Concerto `.pth` maps onto it one to one (`PTv3Config.from_official`).

Presets (`PRESETS`):
- `concerto_small`  depths (2,2,2,6,2),  channels (32,64,128,256,512), heads (2,4,8,16,32) — uncertain:
  no official config file exists; the values reproduce the README's 39M parameters.
- `concerto_base`   depths (3,3,3,12,3), channels (48,96,192,384,512), heads (3,6,12,24,32)
- `concerto_large`  depths (3,3,3,12,3), channels (64,128,256,512,768), heads (4,8,16,32,48)
- `tiny`            depths (1,)*5, channels (16,16,32,32,64), heads (1,1,2,2,4), patch 64 — CPU tests
  and the offline default (random weights).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")

# Upstream kwargs that do not change parameters or the inference forward pass of the encoder.
# `traceable`: we always keep the pooling trace; `dec_*`: only read when enc_mode=False (rejected below).
_IGNORED_KWARGS = frozenset({"traceable", "dec_depths", "dec_channels", "dec_num_head", "dec_patch_size"})


@dataclass(frozen=True)
class PTv3Config:
    """Hyper-parameters of the PTv3 encoder (names = upstream kwargs).

    Sequences have one entry per stage (`enc_*`, 5 stages for Concerto) or per pooling (`stride`,
    stages - 1). `enc_patch_size` is the number of serialized tokens per attention patch.
    """

    in_channels: int = 9
    order: tuple[str, ...] = ORDERS
    stride: tuple[int, ...] = (2, 2, 2, 2)
    enc_depths: tuple[int, ...] = (3, 3, 3, 12, 3)
    enc_channels: tuple[int, ...] = (48, 96, 192, 384, 512)
    enc_num_head: tuple[int, ...] = (3, 6, 12, 24, 32)
    enc_patch_size: tuple[int, ...] = (1024,) * 5
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    drop_path: float = 0.3
    layer_scale: float | None = None
    pre_norm: bool = True
    shuffle_orders: bool = True
    enable_rpe: bool = False
    enable_flash: bool = True
    upcast_attention: bool = False
    upcast_softmax: bool = False
    mask_token: bool = True
    enc_mode: bool = True
    freeze_encoder: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.enc_depths)
        for name in ("enc_channels", "enc_num_head", "enc_patch_size"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"config: {name} has {len(getattr(self, name))} entries, enc_depths has {n}")
        if len(self.stride) != n - 1:
            raise ValueError(f"config: stride needs {n - 1} entries (stages - 1), got {len(self.stride)}")
        for c, h in zip(self.enc_channels, self.enc_num_head):
            if c % h:
                raise ValueError(f"config: enc_channels {c} is not divisible by enc_num_head {h}")
        for o in self.order:
            if o not in ORDERS:
                raise ValueError(f"config: unknown serialization order {o!r}; expected one of {ORDERS}")
        if not self.enc_mode:
            raise ValueError("config: enc_mode=False (PTv3 decoder) is not implemented; Concerto uses enc_mode=True")
        if self.enable_rpe:
            raise ValueError("config: enable_rpe=True (relative position bias) is not implemented; Concerto uses False")

    @property
    def num_stages(self) -> int:
        return len(self.enc_depths)

    def drop_path_rates(self) -> list[float]:
        """Per-block drop-path rates, linspace(0, drop_path, total blocks), computed in plain Python
        (no tensor, so constructors work under `torch.device("meta")`)."""
        total = sum(self.enc_depths)
        if total == 1:
            return [0.0]
        return [self.drop_path * i / (total - 1) for i in range(total)]

    def to_official(self) -> dict[str, Any]:
        """The upstream-style kwargs dict (what an official `.pth` stores under `config`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        out["traceable"] = True
        return out

    @classmethod
    def from_official(cls, config: Mapping[str, Any], **overrides: Any) -> "PTv3Config":
        """Build from an official `ckpt["config"]` dict (upstream kwargs), then apply `overrides`.

        Kwargs known to change nothing for the encoder (`traceable`, `dec_*`) are accepted and kept in
        `extra`; any other unknown kwarg raises ValueError naming it.
        """
        merged = dict(config)
        merged.update(overrides)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in merged.items():
            if key in names:
                kwargs[key] = _normalise(key, value)
            elif key in _IGNORED_KWARGS:
                extra[key] = value
            else:
                raise ValueError(f"config: unsupported PointTransformerV3 argument {key!r}={value!r}")
        return cls(**kwargs, extra=extra)

    def replace(self, **changes: Any) -> "PTv3Config":
        return dataclasses.replace(self, **{k: _normalise(k, v) for k, v in changes.items()})


def _normalise(key: str, value: Any) -> Any:
    if key == "order":
        return (value,) if isinstance(value, str) else tuple(value)
    if isinstance(value, list):
        return tuple(value)
    return value


PRESETS: dict[str, PTv3Config] = {
    "concerto_small": PTv3Config(
        enc_depths=(2, 2, 2, 6, 2),
        enc_channels=(32, 64, 128, 256, 512),
        enc_num_head=(2, 4, 8, 16, 32),
    ),
    "concerto_base": PTv3Config(
        enc_depths=(3, 3, 3, 12, 3),
        enc_channels=(48, 96, 192, 384, 512),
        enc_num_head=(3, 6, 12, 24, 32),
    ),
    "concerto_large": PTv3Config(
        enc_depths=(3, 3, 3, 12, 3),
        enc_channels=(64, 128, 256, 512, 768),
        enc_num_head=(4, 8, 16, 32, 48),
    ),
    "tiny": PTv3Config(
        enc_depths=(1, 1, 1, 1, 1),
        enc_channels=(16, 16, 32, 32, 64),
        enc_num_head=(1, 1, 2, 2, 4),
        enc_patch_size=(64,) * 5,
        enable_flash=False,
    ),
}


def preset(name: str, **changes: Any) -> PTv3Config:
    """A named preset, optionally with fields changed (e.g. `mask_token=False`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown PTv3 preset {name!r}; expected one of {sorted(PRESETS)}")
    cfg = PRESETS[name]
    return cfg.replace(**changes) if changes else cfg
