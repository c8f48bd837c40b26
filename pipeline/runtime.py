"""Process settings and measurements shared by the model stages: device, torch threads, memory (glibc heap
settings: ``pipeline/heap.py``).

- ``stage_device``: the ``--device`` option (``auto`` -> CUDA when available) as a ``torch.device``;
- ``set_torch_threads`` / ``torch_threads``: torch's intra-op CPU thread count;
- ``peak_rss_mb`` / ``cuda_memory_metrics``: peak host (MiB, ``ru_maxrss``) and CUDA memory.
"""

from __future__ import annotations

import resource

import torch

from pipeline.distributed import pick_device


def stage_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu`` / ``cuda`` / ``cuda:N`` explicit (CUDA checked).

    :func:`pipeline.distributed.pick_device`, with a string torch cannot parse reported as a ValueError
    (one error line in a stage) instead of torch's RuntimeError.
    """
    try:
        return pick_device(name)
    except RuntimeError:
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None


def set_torch_threads(threads: int) -> None:
    """Set torch's CPU threads; 0 keeps torch's default. Negative counts are a ValueError."""
    if threads < 0:
        raise ValueError(f"--threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)


def torch_threads() -> int:
    """torch's current intra-op CPU thread count."""
    return torch.get_num_threads()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cuda_memory_metrics(device: torch.device) -> dict[str, float]:
    """``{"cuda_peak_allocated_mb": ...}`` (MiB, one decimal) on a CUDA device, else ``{}``."""
    if device.type != "cuda":
        return {}
    return {"cuda_peak_allocated_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
