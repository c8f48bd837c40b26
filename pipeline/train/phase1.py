"""Phase-one training: fit the slot scene model to depth frames with the one-directional Chamfer loss.

Resumable (``checkpoints/phase1/state.pt``, :mod:`pipeline.train.loop`; a run with other params or
other frames starts fresh), deterministic from ``train.seed`` (batches are drawn
from ``(seed, step, rank)``), device auto (CUDA with bf16 autocast for the encoder), and runs under
``torchrun`` (DDP, one shard of each batch per process; gloo on CPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from pipeline.data.frames import FrameRecord, FrameSelection
from pipeline.models.slots import SlotModelConfig, SlotSceneModel
from pipeline.models.slots.batch import anchors_of, make_batch, predict
from pipeline.models.slots.losses import LossWeights, total_loss
from pipeline.models.slots.refine import refine_vectors
from pipeline.train import common
from pipeline.train.loop import CurveSink, TrainLoop, WarmupCosine


@dataclass(frozen=True)
class Phase1Params:
    """``train`` section of params.yaml (phase one).

    Model: ``slots`` K, ``prototypes`` P, ``ico_level`` of the sphere, encoder ``input_height`` x
    ``input_width``. Data: ``points`` = ``things`` (car/pedestrian/bicycle points only) or ``all``;
    ``far_m`` cut-off (metres); frames with fewer than ``min_points`` target points are skipped;
    ``points_per_frame`` target points drawn per frame and step. Optimisation: ``steps`` of
    ``batch_size`` frames, Adam ``lr`` with warm-up and cosine decay, ``prototype_lr`` for the
    prototype offsets, gradient clipping at ``grad_clip``. Loss weights and free-space settings:
    see :mod:`pipeline.models.slots.losses`. ``samples_per_slot``: mesh samples per slot for the
    free-space term.
    """

    slots: int = 8
    prototypes: int = 6
    ico_level: int = 2
    input_height: int = 96
    input_width: int = 160
    points: Literal["things", "all"] = "things"
    far_m: float = 40.0
    min_points: int = 64
    points_per_frame: int = 1024
    steps: int = 600
    batch_size: int = 8
    lr: float = 5e-4
    prototype_lr: float = 2e-3
    grad_clip: float = 5.0
    weight_free_space: float = 1.0
    weight_reverse: float = 0.5
    weight_compact: float = 0.2
    weight_scale: float = 0.1
    weight_distill: float = 1.0
    refine_steps_train: int = 2
    refine_steps_eval: int = 120
    refine_lr: float = 0.05
    weight_smoothness: float = 1.0
    weight_usage: float = 0.05
    free_margin_m: float = 0.2
    free_cap_m: float = 1.0
    samples_per_slot: int = 64
    log_every: int = 20
    val_every: int = 200
    checkpoint_every: int = 200
    seed: int = 0

    def validate(self) -> None:
        if self.slots < 1 or self.prototypes < 1:
            raise ValueError("slots and prototypes must be >= 1")
        if self.min_points < self.slots:
            raise ValueError(f"min_points = {self.min_points} must be >= slots = {self.slots}")
        if self.input_height % 32 or self.input_width % 32:
            raise ValueError("input_height and input_width must be multiples of 32")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")

    def model_config(self) -> SlotModelConfig:
        return SlotModelConfig(slots=self.slots, prototypes=self.prototypes, ico_level=self.ico_level,
                               input_height=self.input_height, input_width=self.input_width)

    def selection(self) -> FrameSelection:
        return FrameSelection(points=self.points, far_m=self.far_m, input_height=self.input_height,
                              input_width=self.input_width, min_points=self.min_points, slots=self.slots,
                              seed=self.seed)

    def loss_weights(self) -> LossWeights:
        return LossWeights(free_space=self.weight_free_space, reverse=self.weight_reverse, compact=self.weight_compact, scale=self.weight_scale,
                           smoothness=self.weight_smoothness, usage=self.weight_usage,
                           free_margin_m=self.free_margin_m, free_cap_m=self.free_cap_m, far_m=self.far_m)

    def digest(self, data: str = "") -> str:
        """Identity of a training run: these params plus a fingerprint of its data."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True) + data
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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
        _, terms = total_loss(common.unwrap(model), out, batch, params.loss_weights(), params.samples_per_slot,
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
    model = SlotSceneModel(params.model_config(), seed=params.seed).to(info.device)
    loop = TrainLoop("train phase 1", model, build_optimizer(model, params), steps=params.steps,
                     schedule=WarmupCosine(params.steps, warmup=50), state_path=state_path,
                     identity=params.digest(records_fingerprint(train)), checkpoint_every=params.checkpoint_every,
                     info=info, run=run, progress=progress)
    ddp = loop.wrap()
    weights = params.loss_weights()
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
        "config": dataclasses.asdict(params.model_config()), "params": dataclasses.asdict(params),
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
