"""The one training-loop skeleton of phase one, phase two and LAQ: schedule, resume state, curves, DDP, progress.

A training function builds its model and optimiser, then hands the bookkeeping to a :class:`TrainLoop`
and keeps only what is its own (batch, loss, metrics)::

    loop = TrainLoop("train phase 1", model, optimizer, steps=..., schedule=WarmupCosine(steps, 50),
                     state_path=Path("checkpoints/phase1/state.pt"), identity=digest, checkpoint_every=200,
                     info=info, run=run)
    net = loop.wrap()                      # DistributedDataParallel for CUDA ranks, else the model itself
    for step in loop.steps(stop_after):    # learning rates set for this step; resume state saved on cadence
        ... forward, backward, loop.sync_gradients(), optimizer.step() ...
        if loop.due(step, log_every):
            loop.log("train", step, terms)
    if not loop.stopped:
        loop.finish(out_model, payload)    # final model written, resume state removed

Resume semantics (the same for every loop):

- The resume state lives in ``state_path`` (``checkpoints/<stage>/state.pt``, a DVC output declared
  ``persist: true, cache: false``, never inside the stage's model output, which DVC deletes before a
  rerun). It holds model, optimiser, the next step, the global RNG states (Python, NumPy, torch), every
  curve row logged so far, an ``identity`` string (params + data fingerprint) and any loop-specific
  ``extra`` tensors. A state with another identity is ignored (the run starts fresh).
- ``stop_after`` counts from step 0 (an absolute step): the loop saves the state before step
  ``stop_after`` and stops; a later call resumes there. The state is also saved after every
  ``checkpoint_every`` steps, and removed by :meth:`TrainLoop.finish` once the final model is written,
  so a forced rerun trains again.
- A resumed run replays the saved curve rows into ``run`` before training on, so its curves hold every
  row from step 0, exactly as an uninterrupted run's.

Batches are drawn by the callers from ``(seed, step, rank)``, so a resumed run draws the same batches;
with the RNG states restored too, resuming is bit-identical to an uninterrupted run on one machine.

Data wait vs compute: :class:`DataClock` splits every step's wall time at the model's first forward call
(data: drawing and building the batch; compute: the rest of the step); the loop sends the totals as run
facts (``train_loop.data_seconds``, ``compute_seconds``, ``data_share`` in ``reports/<stage>/run.json``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from pipeline.models.optim import Adam
from pipeline.progress import progress_bar
from pipeline.train import common


class CurveSink(Protocol):
    """Where curve rows go (``pipeline.tracking.StageRun`` or a test's collector)."""

    def log_step(self, curve: str, step: int, values: dict[str, float]) -> None: ...


@dataclass(frozen=True)
class WarmupCosine:
    """Learning rate of a step: linear warm-up over ``warmup`` steps, then cosine decay to ``floor`` x base.

    ``lr(step, base) = base * (step + 1) / warmup`` for ``step < warmup``, else
    ``base * (floor + (1 - floor) * (1 + cos(pi * p)) / 2)`` with ``p = (step - warmup) / max(total - warmup, 1)``.
    ``progress_first``: evaluate the cosine's angle as ``pi * p`` (LAQ) rather than
    ``pi * (step - warmup) / max(total - warmup, 1)`` (phases one and two); the two differ in the last bit
    for some steps, and each loop keeps the rounding it has always had, so runs stay bit-identical.
    """

    total: int
    warmup: int
    floor: float = 0.0
    progress_first: bool = False

    def __call__(self, step: int, base: float) -> float:
        if step < self.warmup:
            return base * (step + 1) / self.warmup
        span = max(self.total - self.warmup, 1)
        if self.progress_first:
            angle = math.pi * min((step - self.warmup) / span, 1.0)
        else:
            angle = math.pi * (step - self.warmup) / span
        return base * (self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(angle)))


def identity_digest(*parts: Any) -> str:
    """A short digest of JSON-serialisable ``parts`` (params, data fingerprints): a run's resume identity."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def average_gradients(model: torch.nn.Module) -> None:
    """All-reduce-mean every gradient over the processes (zeros for unused trainable parameters), one all-reduce per
    dtype and device over the flattened gradients; for models not wrapped in DistributedDataParallel (their
    forward is not a single call, or CPU ranks: :meth:`TrainLoop.wrap`). No-op in one process.

    The values equal DDP's: DDP divides by the world size before summing and this sums first, which for 2
    ranks (a power of 2) rounds identically; the sum over ranks is element-wise either way."""
    if not common.is_distributed():
        return
    by_kind: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_kind.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in by_kind.values():
        flat = common.all_reduce_mean(torch.cat([g.reshape(-1) for g in grads]))
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


class DataClock:
    """Wall seconds of the training steps, split at the first forward call of any of the model's modules in
    the step: before it the caller draws and builds the batch (data), after it come forward, backward,
    optimiser step, logging and validation (compute). A step without a forward call counts as compute.

    The split is marked by forward pre-hooks (:meth:`attach`) that only read the clock, so the training files
    need no change and outputs, random draws and model bytes are unaffected. On CUDA the times are those
    of the host (kernels run asynchronously), so a GPU step's compute may show up in the next step's data.
    """

    def __init__(self) -> None:
        self.data_seconds = 0.0
        self.compute_seconds = 0.0
        self._began: float | None = None
        self._split: float | None = None

    def attach(self, model: torch.nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        """Hook every module of ``model``; returns the handles (``handle.remove()`` detaches)."""
        return [module.register_forward_pre_hook(self._mark) for module in model.modules()]

    def _mark(self, *_: Any) -> None:
        if self._began is not None and self._split is None:
            self._split = time.perf_counter()

    def begin(self) -> None:
        """A step starts (its batch is drawn next)."""
        self._began, self._split = time.perf_counter(), None

    def end(self) -> None:
        """The step's work is done: add its data and compute seconds."""
        if self._began is None:
            return
        now = time.perf_counter()
        split = self._began if self._split is None else self._split
        self.data_seconds += split - self._began
        self.compute_seconds += now - split
        self._began = None

    def facts(self) -> dict[str, float]:
        """Run facts: data and compute seconds and the data share (data / (data + compute))."""
        total = self.data_seconds + self.compute_seconds
        return {"data_seconds": round(self.data_seconds, 3), "compute_seconds": round(self.compute_seconds, 3),
                "data_share": round(self.data_seconds / total, 4) if total > 0 else 0.0}


class TrainLoop:
    """Resume state, learning-rate schedule, curves, checkpoint cadence, DDP wrapping and progress of one run.

    ``name``: progress label and log prefix. ``model`` (on ``info.device``) and ``optimizer`` are the run's;
    the base learning rate of each parameter group is its ``lr`` at construction, scaled per step by
    ``schedule``. ``steps``: total optimiser steps. ``state_path``, ``identity``, ``checkpoint_every``: see
    the module docstring. ``run``: receives curve rows (main process only). ``resume``: False ignores an
    existing state.
    """

    def __init__(self, name: str, model: torch.nn.Module, optimizer: Adam, *, steps: int,
                 schedule: Callable[[int, float], float], state_path: Path, identity: str, checkpoint_every: int,
                 info: common.DistInfo, run: CurveSink | None = None, progress: bool = True,
                 resume: bool = True) -> None:
        self.name, self.model, self.optimizer = name, model, optimizer
        self.total, self.schedule, self.state_path = steps, schedule, Path(state_path)
        self.identity, self.checkpoint_every, self.info, self.run = identity, checkpoint_every, info, run
        self.progress = progress
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.curves: dict[str, list[dict[str, Any]]] = {}
        self.extra: dict[str, Any] = {}  # loop-specific state restored by resume(), e.g. LAQ's usage window
        self.extra_state: Callable[[], dict[str, Any]] = dict  # what save() stores as ``extra``
        self.start = 0
        self.stopped_at: int | None = None  # the step before which steps(stop_after) stopped
        self.seconds = 0.0
        self.clock = DataClock()
        self.ddp = False  # set by wrap(): gradients are averaged by DistributedDataParallel
        if resume:
            self._resume()

    def _resume(self) -> None:
        """Load the state if it has this run's identity; replay its curve rows into ``run``."""
        if not self.state_path.is_file():
            return
        state = common.load_checkpoint(self.state_path, map_location=self.info.device)
        if state.get("identity") != self.identity:
            print(f"{self.name}: {self.state_path} was made with other params or data; starting fresh")
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        common.set_rng_state(state["rng"])
        self.start, self.curves, self.extra = int(state["step"]), state["curves"], state["extra"]
        print(f"{self.name}: resuming from {self.state_path} at step {self.start}")
        if self.run is not None and self.info.is_main:
            for curve, rows in self.curves.items():
                for row in rows:
                    self.run.log_step(curve, int(row["step"]), {k: v for k, v in row.items() if k != "step"})

    def wrap(self, broadcast_buffers: bool = True) -> torch.nn.Module:
        """The model in DistributedDataParallel for a multi-process CUDA job, else the model itself.

        CPU ranks (``cpu_ranks``, gloo) are not wrapped: DDP's constructor imports ``torch._dynamo`` (~2.5 s per
        rank on our CPUs) and its overlap of communication with backward buys nothing there. The training
        function then calls :meth:`sync_gradients` after backward, which averages the gradients as DDP would
        (same values: :func:`average_gradients`). As DDP does at wrap time, rank 0's parameters (and buffers,
        with ``broadcast_buffers``) are copied to every rank first."""
        if not self.info.distributed:
            return self.model
        if self.info.device.type == "cpu":
            with torch.no_grad():
                for tensor in [*self.model.parameters(), *(self.model.buffers() if broadcast_buffers else ())]:
                    common.broadcast_(tensor, src=0)
            return self.model
        ids = [self.info.device.index] if self.info.device.type == "cuda" else None
        ddp = torch.nn.parallel.DistributedDataParallel
        # torch >= 2.13 renamed the flag (the old name warns); the new one still syncs buffers once at wrap
        # time, which changes nothing here: every rank builds or resumes the same buffers.
        name = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
                else "broadcast_buffers")
        self.ddp = True
        return ddp(self.model, device_ids=ids, **{name: broadcast_buffers})

    def sync_gradients(self) -> None:
        """After backward: average the gradients over the processes unless DDP (:meth:`wrap`) already did."""
        if not self.ddp:
            average_gradients(self.model)

    def learning_rate(self, step: int, group: int = 0) -> float:
        """The scheduled learning rate of parameter group ``group`` at ``step``."""
        return self.schedule(step, self.base_lrs[group])

    def steps(self, stop_after: int | None = None) -> Iterator[int]:
        """Steps ``start ... steps - 1``, learning rates set before each; saves the state on cadence.

        With ``stop_after`` (an absolute step) the state is saved before that step and the loop ends with
        ``stopped_at`` = that step (or the resume step, if later).
        """
        bar = progress_bar(total=self.total, initial=self.start, desc=self.name, unit="step",
                           disable=not (self.progress and self.info.is_main))
        self.bar = bar
        began = time.perf_counter()
        hooks = self.clock.attach(self.model)
        try:
            for step in range(self.start, self.total):
                if stop_after is not None and step >= stop_after:
                    self.save(step)
                    self.stopped_at = step
                    return
                for i, group in enumerate(self.optimizer.param_groups):
                    group["lr"] = self.learning_rate(step, i)
                self.clock.begin()
                yield step
                self.clock.end()
                bar.update(1)
                done = step + 1
                stops_next = stop_after is not None and done >= stop_after
                if done % self.checkpoint_every == 0 and done < self.total and not stops_next:
                    self.save(done)
        finally:
            self.seconds = time.perf_counter() - began
            for hook in hooks:
                hook.remove()
            bar.close()
            if self.info.is_main and hasattr(self.run, "log_run_facts"):
                self.run.log_run_facts({"train_loop": self.clock.facts()})

    @property
    def stopped(self) -> bool:
        """Did :meth:`steps` stop at ``stop_after`` (the final model is not written)?"""
        return self.stopped_at is not None

    def due(self, step: int, every: int, offset: int = 0) -> bool:
        """A curve row after ``step`` (0-based)? Every ``every`` steps counted from step ``-offset`` (offset 0:
        after steps 0, every, 2 every, ...; offset 1: after every ``every`` steps done), and after the last step."""
        return (step + offset) % every == 0 or step == self.total - 1

    def log(self, curve: str, step: int, values: dict[str, float]) -> None:
        """One curve row: kept in the resume state and sent to ``run`` (main process)."""
        self.curves.setdefault(curve, []).append({"step": step, **values})
        if self.run is not None and self.info.is_main:
            self.run.log_step(curve, step, values)

    def postfix(self, **values: str) -> None:
        """Values shown beside the progress bar (main process)."""
        self.bar.set_postfix(**values)

    def save(self, step: int) -> None:
        """Write the resume state (main process; every process waits for it). ``extra_state`` runs on every
        process, so it may reduce over ranks."""
        extra = self.extra_state()
        if self.info.is_main:
            common.save_checkpoint(self.state_path, {
                "model": common.unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": step, "identity": self.identity, "rng": common.rng_state(), "curves": self.curves,
                "extra": extra})
        common.barrier()

    def finish(self, out_model: Path, payload: Callable[[], dict[str, Any]]) -> None:
        """Write the final model (``payload()``, main process) and remove the resume state; its folder (the
        stage's persisted DVC output) keeps a README (:func:`pipeline.train.common.discard_state`)."""
        if self.info.is_main:
            common.save_checkpoint(out_model, payload())
            common.discard_state(self.state_path)
        common.barrier()

    def summary(self) -> dict[str, Any]:
        """Run facts for the metrics file: steps, resume step, seconds of this call, world size, device."""
        return {"steps": self.total, "resumed_from_step": self.start, "train_seconds": round(self.seconds, 1),
                "world_size": self.info.world_size, "device": str(self.info.device)}
