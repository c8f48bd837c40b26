"""Load VGGT weights: a local file/dir, a Hugging Face repo at a pinned revision, or an explicit random init.

Resolution of ``weights``:
- ``None`` or ``"random"``: random initialisation (announced as ``"random-init (no checkpoint)"``).
- an existing path: a checkpoint file (``.safetensors``, or a torch pickle loaded with ``weights_only=True``)
  or a directory holding ``model.safetensors`` (preferred) or ``model.pt``.
- ``"hf:<owner>/<name>[@<revision>]"`` or ``"<owner>/<name>[@<revision>]"``: ``hf_hub_download`` of
  ``model.safetensors``, falling back to ``model.pt``, at a pinned revision. ``facebook/VGGT-1B`` (research,
  non-commercial weights) has a default pin; ``facebook/VGGT-1B-Commercial`` (gated; accept the licence on
  the hub and provide a token via ``token=`` or the ``HF_TOKEN`` environment variable) needs an explicit
  revision. Offline (``HF_HUB_OFFLINE=1``) only the local cache is used.

The state dict may be raw or nested under ``"model"``. Keys of heads disabled in the config are dropped, and
everything else must match exactly (``strict=True``). For the VGGT-1B architecture the checkpoint's key/shape
manifest is also checked against the published hash.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from .config import VGGTConfig, vggt_1b
from .model import VGGT, init_weights

RANDOM_SOURCE = "random-init (no checkpoint)"
DEFAULT_REPO = "facebook/VGGT-1B"
COMMERCIAL_REPO = "facebook/VGGT-1B-Commercial"
# Second-hand pin (a third-party project's lock); verify on first download and update if the hub disagrees.
DEFAULT_REVISIONS = {DEFAULT_REPO: "860abec7937da0a4c03c41d3c269c366e82abdf9"}
CHECKPOINT_FILES = ("model.safetensors", "model.pt")
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
# sha256 of the sorted lines "key<TAB>d0,d1,...\n" over all 1,797 VGGT-1B entries (spec vggt.md section 2.1)
VGGT_1B_SORTED_MANIFEST_SHA256 = "8fde5632f0277cc34d523718d7d6018d1c321009b648de7147cce1fa0c26b47f"
VGGT_1B_ORDERED_MANIFEST_SHA256 = "bfcc64924ed4b8b5bfc0096956fcdc68689a3db9cd769b84b743524ba2e73d35"

_HUB_RE = re.compile(r"^(?:hf:)?([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w./-]+))?$")


def manifest_sha256(shapes: dict[str, tuple[int, ...]] | list[tuple[str, tuple[int, ...]]], sort: bool) -> str:
    """sha256 of ``key<TAB>dims joined by ','\\n`` lines, in the given order or sorted."""
    items = list(shapes.items()) if isinstance(shapes, dict) else list(shapes)
    lines = [f"{k}\t{','.join(str(d) for d in s)}\n" for k, s in items]
    return hashlib.sha256("".join(sorted(lines) if sort else lines).encode()).hexdigest()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat {key: tensor} dict on CPU (raw, or nested under "model")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGGT checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path), device="cpu")
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # noqa: BLE001 - re-raised as one clear line
            raise ValueError(f"cannot read VGGT checkpoint {path} with torch.load(weights_only=True): {exc}") from None
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ValueError(f"{path} does not hold a state dict of tensors (raw or under 'model')")
    return sd


def _local_checkpoint(path: Path) -> Path:
    if path.is_dir():
        for name in CHECKPOINT_FILES:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"no {' or '.join(CHECKPOINT_FILES)} in VGGT weights directory {path}")
    if path.is_file():
        return path
    raise FileNotFoundError(f"VGGT weights path does not exist: {path}")


def download_checkpoint(repo_id: str, revision: str | None = None, token: str | None = None) -> tuple[Path, str]:
    """``hf_hub_download`` model.safetensors (fallback model.pt) -> (local path, source description)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as hf_errors

    revision = revision or DEFAULT_REVISIONS.get(repo_id)
    if not revision:
        raise ValueError(f"no pinned revision known for {repo_id}; pass revision=<commit sha> (or 'repo@sha')")
    token = token or os.environ.get("HF_TOKEN") or None
    offline_missing = []
    for name in CHECKPOINT_FILES:
        try:
            local = hf_hub_download(repo_id, name, revision=revision, token=token)
            return Path(local), f"hf:{repo_id}@{revision} ({name})"
        except hf_errors.LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError: test it first)
            offline_missing.append(name)  # not cached and hub unreachable / offline
        except hf_errors.EntryNotFoundError:
            continue  # file absent in the repo: try the next name
        except hf_errors.GatedRepoError:
            raise PermissionError(f"{repo_id} is gated: accept its licence on huggingface.co and set HF_TOKEN "
                                  f"(or pass token=)") from None
        except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as exc:
            raise FileNotFoundError(f"cannot access {repo_id}@{revision}: {type(exc).__name__}") from None
    if offline_missing:
        cache = os.environ.get("HF_HUB_CACHE") or os.path.join(os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub")
        raise FileNotFoundError(
            f"VGGT weights {repo_id}@{revision} are not in the Hugging Face cache ({cache}) and the hub cannot be "
            f"reached (offline={os.environ.get('HF_HUB_OFFLINE', '0')}); download them with network access or "
            f"pass a local path")
    raise FileNotFoundError(f"{repo_id}@{revision} has neither {' nor '.join(CHECKPOINT_FILES)}")


def resolve_checkpoint(weights: str | os.PathLike, revision: str | None = None, token: str | None = None
                       ) -> tuple[Path, str]:
    """Local path or hub id -> (checkpoint file, source description)."""
    text = str(weights)
    path = Path(text).expanduser()
    if path.exists():
        ckpt = _local_checkpoint(path)
        return ckpt, f"file:{ckpt.resolve()}"
    if path.suffix in CHECKPOINT_SUFFIXES:  # "dir/model.pt" is a missing file, not the hub repo "dir/model.pt"
        raise FileNotFoundError(f"VGGT weights file not found: {text}")
    match = _HUB_RE.match(text)
    if match and not text.startswith((".", "/", "~")):
        return download_checkpoint(match.group(1), revision or match.group(2), token)
    raise FileNotFoundError(f"VGGT weights not found: {text!r} is neither an existing path nor a hub repo id")


def check_against_model(sd: dict[str, torch.Tensor], model: VGGT, source: str) -> None:
    """Raise one clear ValueError if keys or shapes differ from the model's state dict."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    wrong = [f"{k} {tuple(sd[k].shape)}!={want[k]}" for k in want if k in sd and tuple(sd[k].shape) != want[k]]
    if missing or extra or wrong:
        def head(xs: list[str]) -> str:
            return ", ".join(xs[:3]) + (" ..." if len(xs) > 3 else "")
        raise ValueError(f"checkpoint {source} does not match the VGGT config: {len(missing)} missing "
                         f"[{head(missing)}], {len(extra)} unexpected [{head(extra)}], {len(wrong)} wrong shape "
                         f"[{head(wrong)}]")


def load_vggt(weights: str | os.PathLike | None = None, cfg: VGGTConfig | None = None, *,
              revision: str | None = None, token: str | None = None, device: torch.device | str = "cpu",
              seed: int | None = 0, check_manifest: bool = True) -> tuple[VGGT, dict]:
    """Build a VGGT model in eval mode and fill it -> (model, info).

    ``cfg`` defaults to the VGGT-1B preset; its ``enable_*`` flags decide which heads are built (keys of
    disabled heads are dropped from the checkpoint, all remaining keys must match exactly). ``info`` has
    ``weights_source`` ("random-init (no checkpoint)", "file:<path>" or "hf:<repo>@<rev> (<file>)"),
    ``random_init``, ``dropped_keys`` and, for VGGT-1B, ``manifest_sha256``. The same string is stored as
    ``model.weights_source``.
    """
    cfg = cfg or vggt_1b()
    if weights is None or str(weights) == "random":
        model = init_weights(VGGT(cfg), seed).to(device).eval()
        model.weights_source = RANDOM_SOURCE
        return model, {"weights_source": RANDOM_SOURCE, "random_init": True, "dropped_keys": 0}

    ckpt, source = resolve_checkpoint(weights, revision, token)
    sd = read_state_dict(ckpt)
    info: dict = {"weights_source": source, "random_init": False, "checkpoint": str(ckpt)}
    if check_manifest and cfg.same_architecture(vggt_1b()):
        digest = manifest_sha256({k: tuple(v.shape) for k, v in sd.items()}, sort=True)
        if digest != VGGT_1B_SORTED_MANIFEST_SHA256:
            with torch.device("meta"):
                check_against_model(sd, VGGT(vggt_1b()), source)  # names the offending keys
            raise ValueError(f"checkpoint {source} key/shape manifest sha256 {digest} is not VGGT-1B's")
        info["manifest_sha256"] = digest
    drop = cfg.disabled_prefixes()
    kept = {k: v for k, v in sd.items() if not k.startswith(drop)} if drop else sd
    info["dropped_keys"] = len(sd) - len(kept)
    with torch.device("meta"):
        model = VGGT(cfg)
    check_against_model(kept, model, source)
    kept = {k: (v.float() if v.is_floating_point() else v) for k, v in kept.items()}
    model.load_state_dict(kept, strict=True, assign=True)
    model.aggregator.reset_buffers("cpu")
    model = model.to(device).eval()
    model.weights_source = source
    return model, info
