"""Phase-one training: fit the slot scene model to depth frames with the one-directional Chamfer loss.

Resumable (``checkpoints/phase1/state.pt`` holds model, optimiser, step and the params it was made
with; a run with other params starts fresh), deterministic from ``train.seed`` (batches are drawn
from ``(seed, step, rank)``), device auto (CUDA with bf16 autocast for the encoder), and runs under
``torchrun`` (one shard of each batch per process; DDP on CUDA, gradients averaged by the loop on CPU).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipeline.data.frames import FrameRecord, frame_selection  # noqa: F401 (frame_selection: where callers found it)
from pipeline.models.optim import Adam
from pipeline.models.slots import SlotModelConfig, SlotSceneModel
from pipeline.models.slots.batch import Merge, anchors_of, make_batch, model_merge, predict, slot_anchors
from pipeline.models.slots.losses import loss_weights, total_loss
from pipeline.models.slots.refine import refine_vectors
from pipeline.models.slots.shapes import normalised_extents, shape_clusters
from pipeline.params.train import Phase1Params
from pipeline.train import common
from pipeline.train.loop import CurveSink, TrainLoop, WarmupCosine
from pipeline.train.selection import ModelSelector


def slot_model_config(params: Phase1Params) -> SlotModelConfig:
    """The slot model's sizes from the ``train`` section."""
    return SlotModelConfig(slots=params.slots, prototypes=params.prototypes, ico_level=params.ico_level,
                           input_height=params.input_height, input_width=params.input_width,
                           prior_width=params.prior_width, merge_gap_m=params.merge_gap_m,
                           merge_max_semi_axis_m=params.merge_max_semi_axis_m, merge_geometry=params.merge_geometry)


def records_fingerprint(records: list[FrameRecord]) -> str:
    """Which frames (and how many target points each) a run trains on; part of the resume identity."""
    return ";".join(f"{r.sequence}:{r.camera}:{r.frame}:{len(r.points)}" for r in records)


def build_optimizer(model: SlotSceneModel, params: Phase1Params) -> Adam:
    proto = [model.prototypes.offsets]
    rest = [p for n, p in model.named_parameters() if not n.startswith("prototypes.")]
    return Adam([{"params": rest, "lr": params.lr}, {"params": proto, "lr": params.prototype_lr}])


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


def prototype_extents(records: list[FrameRecord], prototypes: int, seed: int, merge: Merge,
                      cluster_weight: str = "points") -> np.ndarray:
    """(P, 3) shape clusters of the training slot anchors' normalised extents (see
    :mod:`pipeline.models.slots.shapes`; one entry per slot, aliases left out): the initial prototype bank.
    ``cluster_weight``: each anchor weighs its share of the frame's points (``points``) or 1 (``anchors``)."""
    anchors = [slot_anchors(r, merge) for r in records]
    axes = torch.from_numpy(np.concatenate([a.axes for a, _ in anchors]))
    spread = torch.from_numpy(np.concatenate([a.spread for a, _ in anchors]))
    radius = torch.from_numpy(np.concatenate([a.radius for a, _ in anchors]))
    weight = np.concatenate([a.weight * (parent == np.arange(len(parent))) for a, parent in anchors])
    extents = normalised_extents(axes, spread, radius).numpy()
    if cluster_weight == "anchors":
        weight = (weight > 0).astype(weight.dtype)
    return shape_clusters(extents, weight, prototypes, seed)


def build_model(train: list[FrameRecord], params: Phase1Params, device: torch.device) -> SlotSceneModel:
    """The untrained model; with ``prototype_init = shapes`` its bank holds the training shape clusters."""
    model = SlotSceneModel(slot_model_config(params), seed=params.seed)
    if params.prototype_init == "shapes":
        merge = (params.merge_gap_m, params.merge_max_semi_axis_m, params.merge_geometry == "shared")
        extents = prototype_extents(train, params.prototypes, params.seed, merge, params.prototype_cluster_weight)
        model.prototypes.init_from_extents(torch.from_numpy(extents))
    return model.to(device)


def validation_frames(val: list[FrameRecord], limit: int) -> list[FrameRecord]:
    """At most ``limit`` (0 = all) validation frames, evenly spaced over the list."""
    if limit <= 0 or len(val) <= limit:
        return val
    return [val[i] for i in np.linspace(0, len(val) - 1, limit).round().astype(int)]


def warmup_steps(steps: int) -> int:
    """Linear learning-rate warm-up length: 10 % of the steps, at most 50."""
    return max(1, min(50, steps // 10))


Scorer = Callable[[SlotSceneModel, list[FrameRecord]], dict[str, float | None]]


def train_phase1(train: list[FrameRecord], val: list[FrameRecord], params: Phase1Params, out_model: Path,
                 state_path: Path, run: CurveSink | None = None, device: str = "auto", progress: bool = True,
                 stop_after: int | None = None, scorer: Scorer | None = None) -> dict:
    """Train and write ``out_model`` (config + the SELECTED weights); returns a summary for the metrics file.

    Model selection: the untrained model (step 0), every ``val_every`` steps and the last step are
    scored on the validation frames by ``scorer`` (the evaluation's own metrics, e.g.
    ``pipeline.eval.phase1_eval.validation_scores``: mean single-pass ``chamfer_l1_m`` and ``fg_ari``)
    and the best is written (Chamfer-L1, FG-ARI as tie-break, :class:`pipeline.train.selection.ModelSelector`).
    Without validation frames or scorer the last step is written (announced in the summary).

    Resume state (``state_path``, ignored if made with other params or other training frames; it carries the
    selector's candidates too), curves and ``stop_after`` (an absolute step; the model is not written then):
    :mod:`pipeline.train.loop`.
    """
    info = common.init_distributed(device)
    common.seed_everything(params.seed)
    model = build_model(train, params, info.device)
    loop = TrainLoop("train phase 1", model, build_optimizer(model, params), steps=params.steps,
                     schedule=WarmupCosine(params.steps, warmup=warmup_steps(params.steps)), state_path=state_path,
                     identity=params.digest(records_fingerprint(train)), checkpoint_every=params.checkpoint_every,
                     info=info, run=run, progress=progress)
    selector = (ModelSelector.from_state(loop.extra["selector"]) if "selector" in loop.extra
                else ModelSelector(params.select_tolerance_m))
    loop.extra_state = lambda: {"selector": selector.state()}
    ddp = loop.wrap()
    weights = loss_weights(params)
    per_rank = max(params.batch_size // info.world_size, 1)
    select_on = validation_frames(val, params.val_frames)
    frames_seen = 0

    def validate(step: int) -> None:
        """Validation curve row (loss terms + evaluation metrics on the selection frames) and a selection candidate."""
        row = validation_loss(ddp, select_on, params, info.device)
        if scorer is not None:
            scores = scorer(model, select_on)
            row.update({f"eval_{k}": v for k, v in scores.items() if v is not None})
            selector.offer(step, scores, model.state_dict())
        loop.log("val", step, row)

    terms: dict[str, float] = {}
    for step in loop.steps(stop_after):
        if info.is_main and val and step % params.val_every == 0:
            validate(step)  # before the update: step 0 is the untrained model
        rng = np.random.default_rng([params.seed, step, info.rank])
        chosen = [train[i] for i in rng.choice(len(train), per_rank, replace=len(train) < per_rank)]
        batch = make_batch(chosen, params.points_per_frame, rng, info.device, model_merge(ddp))
        out = predict(ddp, batch)
        generator = torch.Generator(device=info.device).manual_seed(int(rng.integers(1 << 62)))
        loss, terms = total_loss(model, out, batch, weights, params.samples_per_slot, generator)
        if params.refine_steps_train > 0 and params.weight_distill > 0:
            target, _ = refine_vectors(model, batch, anchors_of(batch), out.vector, params.refine_steps_train,
                                       params.refine_lr, weights, params.samples_per_slot, seed=step)
            distill = torch.nn.functional.mse_loss(out.vector, target)
            loss = loss + params.weight_distill * distill
            terms["distill"] = distill.item()
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.sync_gradients()
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), params.grad_clip)
        loop.optimizer.step()
        frames_seen += per_rank * info.world_size
        if info.is_main:
            loop.postfix(chamfer=f"{terms['chamfer_m']:.3f}", free=f"{terms['free_space_m']:.3f}")
            if loop.due(step, params.log_every):
                loop.log("train", step, terms)
    if loop.stopped:
        return {"steps": loop.stopped_at, "stopped_early": True}
    if info.is_main and val:
        validate(params.steps)  # the trained model after its last update
    selecting = bool(val) and scorer is not None
    selection = {"selected_step": selector.step if selecting else params.steps, "selected_val": selector.scores,
                 "selection": ("validation chamfer_l1_m, fg_ari tie-break" if selecting
                               else "none (no validation frames or scorer): last step")}
    loop.finish(out_model, lambda: {
        "config": dataclasses.asdict(slot_model_config(params)), "params": params.model_dump(),
        "selected_step": selection["selected_step"],
        "state_dict": {k: v.detach().cpu() for k, v in (selector.weights if selecting else model.state_dict()).items()}})
    return {**loop.summary(), "frames_seen": frames_seen,
            "frames_per_s": round(frames_seen / max(loop.seconds, 1e-9), 1), "train_frames": len(train),
            "val_frames": len(val), "selection_frames": len(select_on), "final_train": terms, **selection}


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
