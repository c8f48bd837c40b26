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
from typing import Callable

import numpy as np
import torch

from pipeline.data.frames import FrameRecord, frame_selection  # noqa: F401 (frame_selection: where callers found it)
from pipeline.models.slots import SlotModelConfig, SlotSceneModel
from pipeline.models.slots.batch import anchors_of, make_batch, model_merge, predict, slot_anchors
from pipeline.models.slots.losses import loss_weights, total_loss
from pipeline.models.slots.refine import refine_vectors
from pipeline.models.slots.shapes import normalised_extents, shape_clusters
from pipeline.params.train import Phase1Params
from pipeline.progress import progress_bar
from pipeline.train import common
from pipeline.train.selection import ModelSelector


def slot_model_config(params: Phase1Params) -> SlotModelConfig:
    """The slot model's sizes from the ``train`` section."""
    return SlotModelConfig(slots=params.slots, prototypes=params.prototypes, ico_level=params.ico_level,
                           input_height=params.input_height, input_width=params.input_width,
                           prior_width=params.prior_width, merge_gap_m=params.merge_gap_m,
                           merge_max_semi_axis_m=params.merge_max_semi_axis_m)


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
        batch = make_batch(chunk, params.points_per_frame, rng, device, model_merge(model))
        out = predict(model, batch)
        _, terms = total_loss(common.unwrap(model), out, batch, loss_weights(params), params.samples_per_slot,
                              torch.Generator(device=device).manual_seed(0))
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + v * len(chunk) / len(records)
    model.train()
    return totals


def prototype_extents(records: list[FrameRecord], prototypes: int, seed: int, merge: tuple[float, float]) -> np.ndarray:
    """(P, 3) shape clusters of the training slot anchors' normalised extents (see
    :mod:`pipeline.models.slots.shapes`; one entry per slot, aliases left out): the initial prototype bank."""
    anchors = [slot_anchors(r, merge) for r in records]
    axes = torch.from_numpy(np.concatenate([a.axes for a, _ in anchors]))
    spread = torch.from_numpy(np.concatenate([a.spread for a, _ in anchors]))
    radius = torch.from_numpy(np.concatenate([a.radius for a, _ in anchors]))
    weight = np.concatenate([a.weight * (parent == np.arange(len(parent))) for a, parent in anchors])
    extents = normalised_extents(axes, spread, radius).numpy()
    return shape_clusters(extents, weight, prototypes, seed)


def build_model(train: list[FrameRecord], params: Phase1Params, device: torch.device) -> SlotSceneModel:
    """The untrained model; with ``prototype_init = shapes`` its bank holds the training shape clusters."""
    model = SlotSceneModel(slot_model_config(params), seed=params.seed)
    if params.prototype_init == "shapes":
        merge = (params.merge_gap_m, params.merge_max_semi_axis_m)
        model.prototypes.init_from_extents(torch.from_numpy(prototype_extents(train, params.prototypes, params.seed, merge)))
    return model.to(device)


def validation_frames(val: list[FrameRecord], limit: int) -> list[FrameRecord]:
    """At most ``limit`` (0 = all) validation frames, evenly spaced over the list."""
    if limit <= 0 or len(val) <= limit:
        return val
    return [val[i] for i in np.linspace(0, len(val) - 1, limit).round().astype(int)]


Scorer = Callable[[SlotSceneModel, list[FrameRecord]], dict[str, float | None]]


def train_phase1(train: list[FrameRecord], val: list[FrameRecord], params: Phase1Params, out_model: Path,
                 state_path: Path, run=None, device: str = "auto", progress: bool = True,
                 stop_after: int | None = None, scorer: Scorer | None = None) -> dict:
    """Train and write ``out_model`` (config + the SELECTED weights); returns a summary for the metrics file.

    Model selection: the untrained model (step 0), every ``val_every`` steps and the last step are
    scored on the validation frames by ``scorer`` (the evaluation's own metrics, e.g.
    ``pipeline.eval.phase1_eval.validation_scores``: mean single-pass ``chamfer_l1_m`` and ``fg_ari``)
    and the best is written (Chamfer-L1, FG-ARI as tie-break, :class:`pipeline.train.selection.ModelSelector`).
    Without validation frames or scorer the last step is written (announced in the summary).

    ``state_path`` holds the resumable state while training runs (every ``checkpoint_every`` steps)
    and is removed once the model is written, so a rerun trains again rather than "resuming" a
    finished run. A state made with other params or other training frames is ignored.

    ``stop_after``: save the resumable state after that many steps and return without writing the
    model (a time-sliced job, or a test of resuming); the next call continues from the state.
    """
    info = common.init_distributed(device)
    common.seed_everything(params.seed)
    model = build_model(train, params, info.device)
    optimizer = build_optimizer(model, params)
    selector = ModelSelector(params.select_tolerance_m)
    start_step = 0
    digest = params.digest(records_fingerprint(train))
    if state_path.is_file():
        state = common.load_checkpoint(state_path, map_location=info.device)
        if state.get("params_digest") == digest:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            selector = ModelSelector.from_state(state["selector"])
            start_step = int(state["step"])
            print(f"train_phase1: resuming from {state_path} at step {start_step}")
        else:
            print(f"train_phase1: {state_path} was made with other params or data; starting fresh")
    ddp = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
           if info.distributed else model)
    weights = loss_weights(params)
    per_rank = max(params.batch_size // info.world_size, 1)
    select_on = validation_frames(val, params.val_frames)
    started, frames_seen = time.perf_counter(), 0

    def save_state(step: int) -> None:
        common.save_checkpoint(state_path, {"model": common.unwrap(ddp).state_dict(), "optimizer": optimizer.state_dict(),
                                            "step": step, "params_digest": digest, "selector": selector.state()})

    def validate(step: int) -> None:
        """Validation curve row (loss terms + evaluation metrics) and a selection candidate."""
        row = validation_loss(ddp, val, params, info.device)
        if scorer is not None:
            scores = scorer(common.unwrap(ddp), select_on)
            row.update({f"eval_{k}": v for k, v in scores.items() if v is not None})
            selector.offer(step, scores, common.unwrap(ddp).state_dict())
        if run is not None:
            run.log_step("val", step, row)

    bar = progress_bar(range(start_step, params.steps), initial=start_step, total=params.steps, desc="train phase 1",
               disable=not (progress and info.is_main))
    terms: dict[str, float] = {}
    for step in bar:
        if stop_after is not None and step >= stop_after:
            if info.is_main:
                save_state(step)
            common.barrier()
            return {"steps": step, "stopped_early": True}
        if info.is_main and val and step % params.val_every == 0:
            validate(step)  # before the update: step 0 is the untrained model
        rng = np.random.default_rng([params.seed, step, info.rank])
        chosen = [train[i] for i in rng.choice(len(train), per_rank, replace=len(train) < per_rank)]
        batch = make_batch(chosen, params.points_per_frame, rng, info.device, model_merge(ddp))
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
            if (step + 1) % params.checkpoint_every == 0 and step + 1 < params.steps:
                save_state(step + 1)
    seconds = time.perf_counter() - started
    if info.is_main and val:
        validate(params.steps)  # the trained model after its last update
    selecting = bool(val) and scorer is not None
    selection = {"selected_step": selector.step if selecting else params.steps, "selected_val": selector.scores,
                 "selection": ("validation chamfer_l1_m, fg_ari tie-break" if selecting
                               else "none (no validation frames or scorer): last step")}
    if info.is_main:
        weights_out = selector.weights if selecting else common.unwrap(ddp).state_dict()
        common.save_checkpoint(out_model, {"config": dataclasses.asdict(slot_model_config(params)),
                                           "params": params.model_dump(),
                                           "selected_step": selection["selected_step"],
                                           "state_dict": {k: v.detach().cpu() for k, v in weights_out.items()}})
        common.discard_state(state_path)  # the state only serves to resume an interrupted run
        state_path.parent.mkdir(parents=True, exist_ok=True)  # the (empty) folder is the stage's output
    common.barrier()
    return {"steps": params.steps, "resumed_from_step": start_step, "train_seconds": round(seconds, 1),
            "frames_seen": frames_seen, "frames_per_s": round(frames_seen / max(seconds, 1e-9), 1),
            "train_frames": len(train), "val_frames": len(val), "selection_frames": len(select_on),
            "world_size": info.world_size, "device": str(info.device), "final_train": terms, **selection}


def selected_step(path: Path) -> int | None:
    """The training step whose weights ``model.pt`` holds (model selection); None for older files."""
    return common.load_checkpoint(path).get("selected_step")


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[SlotSceneModel, dict]:
    """Rebuild the model from ``model.pt`` written by :func:`train_phase1` (weights_only load)."""
    payload = common.load_checkpoint(path, map_location=device)
    config = payload["config"]
    config["channels"] = tuple(config["channels"])
    model = SlotSceneModel(SlotModelConfig(**config)).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload["params"]
