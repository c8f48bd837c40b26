"""Phase-one training: fit the slot scene model to depth frames with the one-directional Chamfer loss.

Resumable (``checkpoints/phase1/state.pt``, :mod:`pipeline.train.loop`; a run with other params or
other frames starts fresh), deterministic from ``train.seed`` (batches are drawn
from ``(seed, step, rank)``), device auto (CUDA with bf16 autocast for the encoder), and runs under
``torchrun`` (DDP, one shard of each batch per process; gloo on CPU).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from pipeline.data.frames import FrameRecord, FrameSelection
from pipeline.models.slots import SlotModelConfig, SlotSceneModel
from pipeline.models.slots.batch import anchors_of, make_batch, predict
from pipeline.models.slots.losses import loss_weights, total_loss
from pipeline.models.slots.refine import refine_vectors
from pipeline.params.train import Phase1Params
from pipeline.train import common
from pipeline.train.loop import CurveSink, TrainLoop, WarmupCosine


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


def build_optimizer(model: SlotSceneModel, params: Phase1Params) -> torch.optim.Optimizer:
    proto = [model.prototypes.offsets]
    rest = [p for n, p in model.named_parameters() if not n.startswith("prototypes.")]
    return torch.optim.Adam([{"params": rest, "lr": params.lr}, {"params": proto, "lr": params.prototype_lr}])


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
                 state_path: Path, run: CurveSink | None = None, device: str = "auto", progress: bool = True,
                 stop_after: int | None = None) -> dict:
    """Train and write ``out_model`` (config + weights); returns a summary for the metrics file.

    Resume state (``state_path``, ignored if made with other params or other training frames), curves and
    ``stop_after`` (an absolute step; the model is not written then): :mod:`pipeline.train.loop`.
    """
    info = common.init_distributed(device)
    common.seed_everything(params.seed)
    model = SlotSceneModel(slot_model_config(params), seed=params.seed).to(info.device)
    loop = TrainLoop("train phase 1", model, build_optimizer(model, params), steps=params.steps,
                     schedule=WarmupCosine(params.steps, warmup=50), state_path=state_path,
                     identity=params.digest(records_fingerprint(train)), checkpoint_every=params.checkpoint_every,
                     info=info, run=run, progress=progress)
    ddp = loop.wrap()
    weights = loss_weights(params)
    per_rank = max(params.batch_size // info.world_size, 1)
    frames_seen = 0
    terms: dict[str, float] = {}
    for step in loop.steps(stop_after):
        rng = np.random.default_rng([params.seed, step, info.rank])
        chosen = [train[i] for i in rng.choice(len(train), per_rank, replace=len(train) < per_rank)]
        batch = make_batch(chosen, params.points_per_frame, rng, info.device)
        out = predict(ddp, batch)
        generator = torch.Generator(device=info.device).manual_seed(int(rng.integers(1 << 62)))
        loss, terms = total_loss(model, out, batch, weights, params.samples_per_slot, generator)
        if params.refine_steps_train > 0 and params.weight_distill > 0:
            target = refine_vectors(model, batch, anchors_of(batch), out.vector, params.refine_steps_train,
                                    params.refine_lr, weights, params.samples_per_slot, seed=step)
            distill = torch.nn.functional.mse_loss(out.vector, target)
            loss = loss + params.weight_distill * distill
            terms["distill"] = distill.item()
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), params.grad_clip)
        loop.optimizer.step()
        frames_seen += per_rank * info.world_size
        if info.is_main:
            loop.postfix(chamfer=f"{terms['chamfer_m']:.3f}", free=f"{terms['free_space_m']:.3f}")
            if loop.due(step, params.log_every):
                loop.log("train", step, terms)
            if val and loop.due(step, params.val_every):
                loop.log("val", step, validation_loss(ddp, val, params, info.device))
    if loop.stopped:
        return {"steps": loop.stopped_at, "stopped_early": True}
    loop.finish(out_model, lambda: {
        "config": dataclasses.asdict(slot_model_config(params)), "params": params.model_dump(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}})
    return {**loop.summary(), "frames_seen": frames_seen,
            "frames_per_s": round(frames_seen / max(loop.seconds, 1e-9), 1), "train_frames": len(train),
            "val_frames": len(val), "final_train": terms}


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[SlotSceneModel, dict]:
    """Rebuild the model from ``model.pt`` written by :func:`train_phase1` (weights_only load)."""
    payload = common.load_checkpoint(path, map_location=device)
    config = payload["config"]
    config["channels"] = tuple(config["channels"])
    model = SlotSceneModel(SlotModelConfig(**config)).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload["params"]
