"""Generic training helpers shared by the training stages: seeding, RNG state, checkpoints.

Checkpoints hold only tensors and plain Python types (dict, list, tuple, str, int, float, bool, None)
so they load with ``torch.load(..., weights_only=True)``. RNG states are stored as tensors.
Device choice and DDP live one layer down in ``pipeline/distributed.py`` (models use them too); the
training loops reach them through this module's names.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.distributed import (  # noqa: F401  (the training loops' names)
    DistInfo,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast_,
    init_distributed,
    is_distributed,
    pick_device,
    shard_range,
    unwrap,
)
from pipeline.io import atomic, checkpoint


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states as tensors / plain types (weights_only-safe)."""
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only if CUDA is present)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors and plain types only) atomically and byte-reproducibly
    (:func:`pipeline.io.checkpoint.save`)."""
    checkpoint.save(path, payload)


STATE_NOTE = ("Resumable training state of this stage (a DVC output kept between runs, not cached).\n"
              "While the stage trains, `state.pt` here holds model, optimiser and step every `checkpoint_every`\n"
              "steps, so an interrupted run continues where it stopped; a finished run removes it.\n")


def discard_state(state_path: Path | str) -> None:
    """Remove the resumable state of a finished run and leave a README in its folder, so the persisted
    DVC output folder is never empty (DVC warns about empty outputs)."""
    state_path = Path(state_path)
    state_path.unlink(missing_ok=True)
    atomic.write_text(state_path.parent / "README.md", STATE_NOTE)


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True`` (errors name the file)."""
    return checkpoint.load(path, map_location)


RUN_ONLY_KEYS = frozenset({"device", "log_every", "val_every", "checkpoint_every"})  # do not change the model


def check_trained_with(path: Path | str, recorded: dict[str, Any], current: dict[str, Any], section: str) -> None:
    """Refuse a model trained with other params: ``recorded`` (saved in the checkpoint at ``path``) against the
    ``current`` params.yaml ``section``; the ValueError names the first differing key and both values.
    Keys that only steer the run (:data:`RUN_ONLY_KEYS`) are not compared."""

    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, list | tuple) else value

    for key in sorted(set(recorded) | set(current)):
        if key in RUN_ONLY_KEYS:
            continue
        old, new = plain(recorded.get(key, "<absent>")), plain(current.get(key, "<absent>"))
        if old != new:
            raise ValueError(f"{path}: trained with {section}.{key}={old!r} but params.yaml has {new!r}; "
                             f"retrain it (dvc repro) or restore the params")
