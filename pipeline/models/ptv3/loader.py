"""Loading and saving Concerto encoders in the official `.pth` format.

Official format: `{"config": PointTransformerV3 kwargs, "state_dict": bare parameter keys}` (Hugging Face
repo `Pointcept/Concerto`, files `f"{name}.pth"`; weights CC-BY-NC-4.0). The model is always built
from the file's own `config`; `enable_flash` is overridden from availability (flash_attn importable and
a CUDA device), and the state dict is loaded with strict=True.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from pipeline.io import checkpoint

from .attention import flash_attn_available
from .config import preset
from .model import PointTransformerV3

log = logging.getLogger(__name__)

HF_REPO = "Pointcept/Concerto"
RELEASED = ("concerto_small", "concerto_base", "concerto_large", "concerto_large_outdoor", "sonata")
RANDOM_INIT = "random-init (no checkpoint)"


def build_random(name: str = "tiny", seed: int = 0, device: torch.device | str = "cpu", conv_backend: str = "torch", **changes: Any) -> PointTransformerV3:
    """A preset with seeded random weights, in eval mode; `weights_source` says so."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PointTransformerV3(preset(name, **changes), conv_backend=conv_backend)
    model.weights_source = RANDOM_INIT
    model.preset_name = name
    return model.to(device).eval()


def resolve_checkpoint(name_or_path: str | os.PathLike, repo_id: str = HF_REPO, cache_dir: str | None = None) -> Path:
    """A local `.pth` path as is, or a released name fetched with `hf_hub_download` (cache first)."""
    path = Path(name_or_path)
    if path.suffix == ".pth" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"concerto checkpoint not found: {path}")
        return path
    name = str(name_or_path)
    if name not in RELEASED:
        raise ValueError(f"concerto: {name!r} is neither a .pth file nor a released name {RELEASED}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a project dependency
        raise RuntimeError("concerto: huggingface_hub is needed to download checkpoints") from exc
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=f"{name}.pth", cache_dir=cache_dir))
    except Exception as exc:  # offline, missing cache, network or auth errors all end here
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        why = "HF_HUB_OFFLINE is set and it is not cached" if offline else f"{type(exc).__name__}"
        raise FileNotFoundError(
            f"concerto: cannot get {repo_id}/{name}.pth ({why}); download it with network access or pass a local .pth path"
        ) from None


def load_checkpoint_dict(path: str | os.PathLike) -> dict[str, Any]:
    """torch.load(weights_only=True) of an official-format file, validated."""
    ckpt = checkpoint.load(path)
    if not isinstance(ckpt, Mapping) or "config" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"concerto: {path} is not an official checkpoint (dict with 'config' and 'state_dict')")
    return dict(ckpt)


def load_concerto(
    name_or_path: str | os.PathLike = "concerto_small",
    device: torch.device | str = "cpu",
    repo_id: str = HF_REPO,
    cache_dir: str | None = None,
    custom_config: Mapping[str, Any] | None = None,
    conv_backend: str = "torch",
) -> PointTransformerV3:
    """Load a released Concerto encoder (name) or a local official-format `.pth`, strict, in eval mode.

    `custom_config` entries overwrite the file's config (as upstream's `load(custom_config=...)`);
    `enable_flash` is then set to whether flash_attn can run on `device`. `conv_backend`: see model.py.
    """
    path = resolve_checkpoint(name_or_path, repo_id, cache_dir)
    ckpt = load_checkpoint_dict(path)
    overrides = dict(custom_config or {})
    overrides["enable_flash"] = flash_attn_available() and torch.device(device).type == "cuda"
    with torch.device("meta"):
        model = PointTransformerV3.from_official_config(ckpt["config"], conv_backend=conv_backend, **overrides)
    model.load_state_dict(ckpt["state_dict"], strict=True, assign=True)
    model.weights_source = f"checkpoint {Path(path).name}"
    model.preset_name = Path(path).stem
    return model.to(device).eval()


def load_encoder(
    weights: str | os.PathLike | None = None,
    preset_name: str = "tiny",
    device: torch.device | str = "cpu",
    seed: int = 0,
    **kwargs: Any,
) -> PointTransformerV3:
    """Entry point for pipeline stages: a checkpoint (released name or .pth path) if `weights` is given,
    else the preset with seeded random weights, announced with a logged warning and
    `model.weights_source == RANDOM_INIT`."""
    if weights:
        return load_concerto(weights, device=device, **kwargs)
    log.warning("concerto: no checkpoint given; using preset %r with RANDOM weights (%s)", preset_name, RANDOM_INIT)
    return build_random(preset_name, seed=seed, device=device)


def save_checkpoint(model: PointTransformerV3, path: str | os.PathLike) -> None:
    """Write `{"config", "state_dict"}` in the official format, atomically and byte-reproducibly."""
    payload = {"config": model.config.to_official(), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    checkpoint.save(path, payload)
