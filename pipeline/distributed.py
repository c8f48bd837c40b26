"""Device choice and torchrun process groups (DDP), for the training loops and the models that sync over ranks.

Distributed training follows torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``): :func:`init_distributed` starts a process group when
``WORLD_SIZE > 1`` (NCCL on CUDA, gloo on CPU) and is a no-op otherwise, so the same code runs with
``python -m`` and with ``torchrun --nproc_per_node N -m``. Every collective is a no-op without a group.

:func:`run_cpu_ranks` is the CPU counterpart of torchrun inside one stage: N processes of one torch thread
each, this process being rank 0. A small model's step on a few cores runs faster as N one-thread halves of
the batch than as one N-thread batch (the per-op thread overhead dominates), so a stage can train that way
without a launcher in its command.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` → CUDA if available else CPU; ``cpu``/``cuda``/``cuda:N`` as given (CUDA checked)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device = {requested!r} but CUDA is not available (use 'auto' or 'cpu')")
    return device


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


def shard_range(n: int) -> range:
    """This process's contiguous share of ``n`` items (rank r of W takes ``[r·n/W, (r+1)·n/W)``); all of them
    without a group. Concatenating the shares in rank order gives ``range(n)``."""
    if not is_distributed():
        return range(n)
    rank, world = dist.get_rank(), dist.get_world_size()
    return range(rank * n // world, (rank + 1) * n // world)


def gather_to_main(value: Any) -> list[Any] | None:
    """Every process's picklable ``value`` in rank order on rank 0 (None elsewhere); ``[value]`` without a group."""
    if not is_distributed():
        return [value]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, out, dst=0)
    return out


# ------------------------------------------------------------------------------------------ CPU ranks
_THREADS_BEFORE_RANKS: list[int] = []  # rank 0's torch threads before run_cpu_ranks set one (restored after)


def cpu_ranks_for(requested: int, device: str) -> int:
    """Processes :func:`run_cpu_ranks` should start: ``requested`` for a CPU job that is not already part of a
    torchrun group, else 1 (CUDA jobs use torchrun; a torchrun rank must not start ranks of its own)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or pick_device(device).type != "cpu":
        return 1
    return max(1, requested)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, env: dict[str, str], target: Callable[..., Any], args: tuple) -> None:
    """Entry point of a forked rank: torchrun's variables for ``rank``, one torch thread, then ``target``."""
    from pipeline.errors import one_line_errors

    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    one_line_errors(target)(*args)


def _failure_line(process: Any) -> str:
    return f"error: CPU rank {process.name} failed (exit code {process.exitcode}); stopping the job"


def _exit_if_a_rank_fails(process: Any, stopping: threading.Event) -> None:
    """Watchdog thread of rank 0: a failed rank leaves the others blocked in a collective, so end the job
    (unless rank 0 is already stopping, e.g. because its own collective failed first)."""
    process.join()
    if process.exitcode and not stopping.is_set():
        stopping.set()
        print(_failure_line(process), file=sys.stderr, flush=True)
        os._exit(1)


def run_cpu_ranks(target: Callable[..., Any], ranks: int, *args: Any) -> Any:
    """``target(*args)`` as ``ranks`` data-parallel CPU processes (gloo), one torch thread each.

    This process is rank 0 and returns ``target``'s result; ranks 1 ... N-1 are forked from it on Linux (they
    start at once with its imported modules; no collective may have run before), spawned elsewhere and must leave ``target`` after their
    share of the collective work (rank 0 alone writes outputs). ``ranks <= 1`` runs ``target`` here unchanged. Rank 0 gets its torch threads back from
    :func:`leave_cpu_ranks` (call it when the collective part is over, e.g. before a single-process evaluation).
    A rank that fails ends the job with exit code 1.
    """
    if ranks <= 1:
        return target(*args)
    import multiprocessing

    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(ranks)}
    # fork on Linux: spawn would import torch and the pipeline again (~5 s); elsewhere fork is unsafe (macOS)
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    sys.stdout.flush()
    sys.stderr.flush()  # or the children would print what is still buffered here once more
    others = [context.Process(target=_rank_main, args=(rank, env, target, args), name=str(rank))
              for rank in range(1, ranks)]
    stopping = threading.Event()
    watchers = []  # the only threads that join the ranks: two joins of one child race for its exit status
    for process in others:
        process.start()
        watchers.append(threading.Thread(target=_exit_if_a_rank_fails, args=(process, stopping), daemon=True))
        watchers[-1].start()
    saved = {k: os.environ.get(k) for k in (*env, "RANK", "LOCAL_RANK")}
    os.environ.update(env, RANK="0", LOCAL_RANK="0")
    _THREADS_BEFORE_RANKS[:] = [torch.get_num_threads()]
    torch.set_num_threads(1)
    try:
        result = target(*args)
        for watcher in watchers:
            watcher.join()
        return result
    except BaseException as err:
        stopping.set()
        if isinstance(err, RuntimeError):  # e.g. gloo: "connection closed by peer": a rank is gone, name it instead
            for watcher in watchers:
                watcher.join(timeout=30)
        failed = [process for process in others if process.exitcode is not None and process.exitcode > 0]
        for process in others:
            process.terminate()
        if failed:
            print(_failure_line(failed[0]), file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        raise
    finally:
        leave_cpu_ranks()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def leave_cpu_ranks() -> None:
    """End the process group that :func:`run_cpu_ranks` started and give rank 0 its torch threads back
    (no-op otherwise, e.g. under torchrun, whose group the launcher owns)."""
    if not _THREADS_BEFORE_RANKS:
        return
    if dist.is_initialized():
        dist.destroy_process_group()
    torch.set_num_threads(_THREADS_BEFORE_RANKS.pop())
