"""Generic training helpers shared by the training stages: device, seeding, RNG state, checkpoints, DDP.

Checkpoints hold only tensors and plain Python types (dict, list, tuple, str, int, float, bool, None)
so they load with ``torch.load(..., weights_only=True)``. RNG states are stored as tensors.

Distributed training follows torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``): :func:`init_distributed` starts a process group when
``WORLD_SIZE > 1`` (NCCL on CUDA, gloo on CPU) and is a no-op otherwise, so the same code runs with
``python -m`` and with ``torchrun --nproc_per_node N -m``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from pipeline.io import atomic


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` → CUDA if available else CPU; ``cpu``/``cuda``/``cuda:N`` as given (CUDA checked)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device = {requested!r} but CUDA is not available (use 'auto' or 'cpu')")
    return device


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
    """Write ``payload`` (tensors and plain types only) atomically with ``torch.save``."""
    atomic.write_with(path, lambda tmp: torch.save(payload, tmp))


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
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors have many types; report one line naming the file
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})") from None


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if ``WORLD_SIZE > 1`` (gloo on CPU, NCCL on CUDA), else single process.

    On CUDA each process uses ``cuda:<LOCAL_RANK>``. Idempotent: an already initialised group is reused.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device)
    if world_size <= 1:
        return DistInfo(0, 1, 0, chosen)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, chosen)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place (no-op without a process group); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over all processes in place (no-op without a process group); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return tensor


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` on every process with rank ``src``'s copy (no-op without a group)."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
