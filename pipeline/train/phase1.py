"""Phase-one training: fit the slot scene model to depth frames with the one-directional Chamfer loss.

Resumable (``checkpoints/phase1/state.pt`` holds model, optimiser, step and the params it was made
with; a run with other params starts fresh), deterministic from ``train.seed`` (batches are drawn
from ``(seed, step, rank)``), device auto (CUDA with bf16 autocast for the encoder), and runs under
``torchrun`` (DDP, one shard of each batch per process; gloo on CPU).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.data.frames import FrameRecord, FrameSelection
from pipeline.models.slots import SlotModelConfig, SlotSceneModel
from pipeline.models.slots.batch import anchors_of, make_batch, predict
from pipeline.models.slots.losses import loss_weights, total_loss
from pipeline.models.slots.refine import refine_vectors
from pipeline.params.train import Phase1Params
from pipeline.progress import progress_bar
from pipeline.train import common


def slot_model_config(params: Phase1Params) -> SlotModelConfig:
    """The slot model's sizes from the ``train`` section."""
    return SlotModelConfig(slots=params.slots, prototypes=params.prototypes, ico_level=params.ico_level,
                           input_height=params.input_height, input_width=params.input_width)


def frame_selection(params: Phase1Params) -> FrameSelection:
    """Which points of a frame are targets, and the encoder's input size, from the ``train`` section."""
    return FrameSelection(points=params.points, far_m=params.far_m, input_height=params.input_height,
                          input_width=params.input_width, min_points=params.min_points, slots=params.slots,
                          seed=params.seed)


def records_fingerprint(records: list[FrameRecord]) -> str:
    """Which frames (and how many target points each) a run trains on; part of the resume identity."""
    return ";".join(f"{r.sequence}:{r.camera}:{r.frame}:{len(r.points)}" for r in records)


def learning_rate(step: int, total: int, base: float, warmup: int = 50) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def build_optimizer(model: SlotSceneModel, params: Phase1Params) -> torch.optim.Optimizer:
    proto = [model.prototypes.offsets]
    rest = [p for n, p in model.named_parameters() if not n.startswith("prototypes.")]
    return torch.optim.Adam([{"params": rest, "lr": params.lr, "base_lr": params.lr},
                             {"params": proto, "lr": params.prototype_lr, "base_lr": params.prototype_lr}])


@torch.no_grad()
def validation_loss(model, records: list[FrameRecord], params: Phase1Params, device: torch.device) -> dict[str, float]:
    model.eval()
    rng = np.random.default_rng(12345)
    totals: dict[str, float] = {}
    chunks = [records[i : i + params.batch_size] for i in range(0, len(records), params.batch_size)]
    for chunk in chunks:
        batch = make_batch(chunk, params.points_per_frame, rng, device)
        out = predict(model, batch)
        _, terms = total_loss(common.unwrap(model), out, batch, loss_weights(params), params.samples_per_slot,
                              torch.Generator(device=device).manual_seed(0))
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + v * len(chunk) / len(records)
    model.train()
    return totals


def train_phase1(train: list[FrameRecord], val: list[FrameRecord], params: Phase1Params, out_model: Path,
                 state_path: Path, run=None, device: str = "auto", progress: bool = True,
                 stop_after: int | None = None) -> dict:
    """Train and write ``out_model`` (config + weights); returns a summary for the metrics file.

    ``state_path`` holds the resumable state while training runs (every ``checkpoint_every`` steps)
    and is removed once the model is written, so a rerun trains again rather than "resuming" a
    finished run. A state made with other params or other training frames is ignored.

    ``stop_after``: save the resumable state after that many steps and return without writing the
    model (a time-sliced job, or a test of resuming); the next call continues from the state.
    """
    info = common.init_distributed(device)
    common.seed_everything(params.seed)
    model = SlotSceneModel(slot_model_config(params), seed=params.seed).to(info.device)
    optimizer = build_optimizer(model, params)
    start_step = 0
    digest = params.digest(records_fingerprint(train))
    if state_path.is_file():
        state = common.load_checkpoint(state_path, map_location=info.device)
        if state.get("params_digest") == digest:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_step = int(state["step"])
            print(f"train_phase1: resuming from {state_path} at step {start_step}")
        else:
            print(f"train_phase1: {state_path} was made with other params or data; starting fresh")
    ddp = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
           if info.distributed else model)
    weights = loss_weights(params)
    per_rank = max(params.batch_size // info.world_size, 1)
    started, frames_seen = time.perf_counter(), 0
    bar = progress_bar(range(start_step, params.steps), initial=start_step, total=params.steps, desc="train phase 1",
               disable=not (progress and info.is_main))
    terms: dict[str, float] = {}
    for step in bar:
        if stop_after is not None and step >= stop_after:
            if info.is_main:
                common.save_checkpoint(state_path, {"model": common.unwrap(ddp).state_dict(),
                                                    "optimizer": optimizer.state_dict(), "step": step,
                                                    "params_digest": digest})
            common.barrier()
            return {"steps": step, "stopped_early": True}
        rng = np.random.default_rng([params.seed, step, info.rank])
        chosen = [train[i] for i in rng.choice(len(train), per_rank, replace=len(train) < per_rank)]
        batch = make_batch(chosen, params.points_per_frame, rng, info.device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, params.steps, group["base_lr"])
        out = predict(ddp, batch)
        generator = torch.Generator(device=info.device).manual_seed(int(rng.integers(1 << 62)))
        loss, terms = total_loss(common.unwrap(ddp), out, batch, weights, params.samples_per_slot, generator)
        if params.refine_steps_train > 0 and params.weight_distill > 0:
            target = refine_vectors(common.unwrap(ddp), batch, anchors_of(batch), out.vector, params.refine_steps_train,
                                    params.refine_lr, weights, params.samples_per_slot, seed=step)
            distill = torch.nn.functional.mse_loss(out.vector, target)
            loss = loss + params.weight_distill * distill
            terms["distill"] = distill.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), params.grad_clip)
        optimizer.step()
        frames_seen += per_rank * info.world_size
        if info.is_main:
            bar.set_postfix(chamfer=f"{terms['chamfer_m']:.3f}", free=f"{terms['free_space_m']:.3f}")
            if run is not None and (step % params.log_every == 0 or step == params.steps - 1):
                run.log_step("train", step, terms)
            if run is not None and val and (step % params.val_every == 0 or step == params.steps - 1):
                run.log_step("val", step, validation_loss(ddp, val, params, info.device))
            if (step + 1) % params.checkpoint_every == 0 and step + 1 < params.steps:
                common.save_checkpoint(state_path, {"model": common.unwrap(ddp).state_dict(),
                                                    "optimizer": optimizer.state_dict(), "step": step + 1,
                                                    "params_digest": digest})
    seconds = time.perf_counter() - started
    if info.is_main:
        model_cpu = common.unwrap(ddp)
        common.save_checkpoint(out_model, {"config": dataclasses.asdict(slot_model_config(params)),
                                           "params": params.model_dump(),
                                           "state_dict": {k: v.detach().cpu() for k, v in model_cpu.state_dict().items()}})
        common.discard_state(state_path)  # the state only serves to resume an interrupted run
        state_path.parent.mkdir(parents=True, exist_ok=True)  # the (empty) folder is the stage's output
    common.barrier()
    return {"steps": params.steps, "resumed_from_step": start_step, "train_seconds": round(seconds, 1),
            "frames_seen": frames_seen, "frames_per_s": round(frames_seen / max(seconds, 1e-9), 1),
            "train_frames": len(train), "val_frames": len(val), "world_size": info.world_size,
            "device": str(info.device), "final_train": terms}


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[SlotSceneModel, dict]:
    """Rebuild the model from ``model.pt`` written by :func:`train_phase1` (weights_only load)."""
    payload = common.load_checkpoint(path, map_location=device)
    config = payload["config"]
    config["channels"] = tuple(config["channels"])
    model = SlotSceneModel(SlotModelConfig(**config)).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload["params"]
