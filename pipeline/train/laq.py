"""Train Concerto-LAQ from cached features (``data/features``, the ``concerto`` stage's output).

Data: ``data/features/<sequence>/<camera with / → _>.npz`` with ``frames`` (T,) int32, ``time_s`` (T,),
``global`` (T, C), ``tokens`` (T, N, C) and ``token_xyz`` (T, N, 3) (metres, camera frame), plus
``manifest.json``. A training pair is (frame f, frame f + ``frame_offset``) of one sequence and camera
(frame indices, not array positions). Features are standardised per channel with statistics of the
training sequences (stored in the checkpoint). Memory is that of the cached arrays only.

Training is deterministic for a seed on CPU: the batch of step s is drawn from a generator seeded
with (seed, s), so a resumed run draws the same batches; the NSVQ noise uses the global torch RNG,
whose state is checkpointed. Under torchrun (``WORLD_SIZE > 1``) the model is wrapped in DDP
(``broadcast_buffers=False``: the code-usage counters stay per rank and are all-reduced by the
quantizer) and each rank takes a strided share of the step's batch.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.features_cache import features_path
from pipeline.models.laq import LAQ, LAQConfig
from pipeline.models.laq.nsvq import perplexity
from pipeline.train import common

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
LogFn = Callable[[str, int, dict[str, float]], None]


@dataclass(frozen=True)
class LAQParams:
    """``laq`` section of params.yaml (model sizes, schedule, quantizer, evaluation).

    Model (see :class:`pipeline.models.laq.LAQConfig`; the seed's defaults are dim 512, depth 4/4, 8 heads;
    the CPU default is smaller so the stage trains in about 3 minutes on 2 cores):
    - ``dim``: model width; ``heads``: attention heads;
    - ``spatial_depth`` / ``temporal_depth`` / ``decoder_depth``: transformer blocks (decoder 0 = spatial_depth);
    - ``codebook_size``: NSVQ codebook entries; ``code_seq_len``: codes per frame pair; ``quant_dim``: code size;
    - ``frame_offset``: frames between the two frames of a pair (frame indices; 5 FPS → 1 s at 5).
    Training:
    - ``steps``: optimiser steps; ``batch_size``: pairs per step (over all DDP ranks);
    - ``lr``: peak Adam learning rate (linear warm-up over 5 % of steps, cosine decay to 10 %);
    - ``grad_clip``: max gradient norm (0 = off);
    - ``replace_every``: steps between codebook replacements; ``replace_until``: fraction of ``steps``
      after which replacement stops; ``replace_threshold``: a code is dead if used fewer than this many
      times per step since the last replacement; ``replace_noise``: relative norm of the perturbation
      added to a copied code;
    - ``log_every``: steps between curve rows; ``checkpoint_every``: steps between checkpoints;
    - ``seed``: seeds initialisation, batches and NSVQ noise; ``device``: auto | cpu | cuda | cuda:N.
    Evaluation:
    - ``motion_bins``: quantile bins per motion variable (yaw rate, forward speed) for the NMI.
    """

    dim: int = 128
    heads: int = 4
    spatial_depth: int = 2
    temporal_depth: int = 2
    decoder_depth: int = 2
    codebook_size: int = 256
    code_seq_len: int = 4
    quant_dim: int = 32
    frame_offset: int = 5
    steps: int = 200
    batch_size: int = 16
    lr: float = 3e-4
    grad_clip: float = 1.0
    replace_every: int = 5
    replace_until: float = 0.1
    replace_threshold: float = 0.03
    replace_noise: float = 0.05
    log_every: int = 10
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"
    motion_bins: int = 3

    def validate(self) -> None:
        LAQConfig(in_channels=1, **self.model_kwargs())  # sizes
        if self.frame_offset < 1:
            raise ValueError(f"frame_offset = {self.frame_offset} must be >= 1")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("steps, batch_size and lr must be positive")
        if not 0.0 <= self.replace_until <= 1.0:
            raise ValueError(f"replace_until = {self.replace_until} must be a fraction in [0, 1]")
        if self.replace_every < 1 or self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError("replace_every, log_every and checkpoint_every must be >= 1")
        if self.motion_bins < 2:
            raise ValueError(f"motion_bins = {self.motion_bins} must be >= 2")

    def model_kwargs(self) -> dict[str, Any]:
        keys = ("dim", "heads", "spatial_depth", "temporal_depth", "decoder_depth", "codebook_size",
                "code_seq_len", "quant_dim")
        return {k: getattr(self, k) for k in keys}


# --------------------------------------------------------------------------------------------- data
def read_manifest(features: Path) -> dict[str, Any]:
    path = features / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: features manifest not found (run the concerto stage first)")
    manifest = json.loads(path.read_text())
    for key in ("channels", "tokens", "camera", "sequences", "random_weights"):
        if key not in manifest:
            raise ValueError(f"{path}: manifest lacks key '{key}'")
    return manifest


@dataclass
class FeaturePairs:
    """Frames of some sequences and the (t, t+offset) pairs between them.

    ``tokens`` (F, N, C) float32, ``xyz`` (F, N, 3) metres, ``global_`` (F, C); ``pairs`` (P, 2) int64
    row indices into the frame arrays; per pair ``sequence``, ``camera`` and ``frames`` (P, 2) frame indices.
    """

    tokens: torch.Tensor
    xyz: torch.Tensor
    global_: torch.Tensor
    pairs: torch.Tensor
    sequence: list[str]
    camera: list[str]
    frames: np.ndarray

    def __len__(self) -> int:
        return len(self.pairs)

    def batch(self, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(tokens_t, xyz_t, tokens_t1, xyz_t1) of pairs ``idx``, on ``device``."""
        a, b = self.pairs[idx, 0], self.pairs[idx, 1]
        return tuple(x.to(device) for x in (self.tokens[a], self.xyz[a], self.tokens[b], self.xyz[b]))


def load_feature_pairs(features: Path, sequences: list[str], frame_offset: int, manifest: dict[str, Any]) -> FeaturePairs:
    """Read the npz files of ``sequences`` (every camera in the manifest) and pair frames ``frame_offset`` apart."""
    tokens, xyz, glob, pairs, seq_of, cam_of, frames_of = [], [], [], [], [], [], []
    offset = 0
    channels, n_tokens = int(manifest["channels"]), int(manifest["tokens"])
    for sequence in sequences:
        for camera in manifest["camera"]:
            path = features_path(features, sequence, camera)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: feature file missing (listed in the manifest)")
            with np.load(path) as npz:
                missing = {"frames", "tokens", "token_xyz", "global"} - set(npz.files)
                if missing:
                    raise ValueError(f"{path}: missing arrays {sorted(missing)}")
                frames = npz["frames"].astype(np.int64)
                tok, pos, gl = npz["tokens"], npz["token_xyz"], npz["global"]
            t = len(frames)
            if tok.shape != (t, n_tokens, channels) or pos.shape != (t, n_tokens, 3) or gl.shape != (t, channels):
                raise ValueError(f"{path}: tokens {tok.shape}, token_xyz {pos.shape}, global {gl.shape} do not match "
                                 f"{t} frames x {n_tokens} tokens x {channels} channels of the manifest")
            if not np.isfinite(tok).all():
                raise ValueError(f"{path}: tokens contain NaN or inf")
            row = {int(f): i for i, f in enumerate(frames)}
            for i, f in enumerate(frames):
                j = row.get(int(f) + frame_offset)
                if j is not None:
                    pairs.append((offset + i, offset + j))
                    seq_of.append(sequence)
                    cam_of.append(camera)
                    frames_of.append((int(f), int(f) + frame_offset))
            tokens.append(tok.astype(np.float32))
            xyz.append(pos.astype(np.float32))
            glob.append(gl.astype(np.float32))
            offset += t
    if not tokens:
        return FeaturePairs(torch.zeros(0, n_tokens, channels), torch.zeros(0, n_tokens, 3), torch.zeros(0, channels),
                            torch.zeros(0, 2, dtype=torch.int64), [], [], np.zeros((0, 2), np.int64))
    return FeaturePairs(torch.from_numpy(np.concatenate(tokens)), torch.from_numpy(np.concatenate(xyz)),
                        torch.from_numpy(np.concatenate(glob)), torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2),
                        seq_of, cam_of, np.asarray(frames_of, dtype=np.int64).reshape(-1, 2))


@dataclass
class LAQData:
    """The cached features of one LAQ run: ``manifest``, sequence ``splits`` and the pairs of each part.

    ``train`` / ``val``: pairs of the training / validation sequences (validation loss during training);
    ``held_out``: pairs of the validation and test sequences (``held_out_names``), for the code metrics.
    """

    manifest: dict[str, Any]
    splits: dict[str, list[str]]
    held_out_names: list[str]
    train: FeaturePairs
    val: FeaturePairs
    held_out: FeaturePairs


def load_laq_data(features: Path, frame_offset: int, val_sequences: int, test_sequences: int) -> LAQData:
    """Read the manifest, split its sequences (``pipeline.data.splits``) and load the frame pairs of each part.

    Raises ValueError when the split leaves no training or no held-out sequence.
    """
    from pipeline.data.splits import split_sequences

    manifest = read_manifest(features)
    splits = split_sequences(list(manifest["sequences"]), val_sequences, test_sequences)
    held_out_names = splits["val"] + splits["test"]
    if not splits["train"] or not held_out_names:
        raise ValueError(f"{features}: {len(manifest['sequences'])} sequences leave no training or no held-out "
                         f"sequence (data.val_sequences={val_sequences}, data.test_sequences={test_sequences})")
    return LAQData(manifest, splits, held_out_names,
                   train=load_feature_pairs(features, splits["train"], frame_offset, manifest),
                   val=load_feature_pairs(features, splits["val"], frame_offset, manifest),
                   held_out=load_feature_pairs(features, held_out_names, frame_offset, manifest))


def channel_stats(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (C,) over all frames and tokens (std floored at 1e-6)."""
    flat = tokens.reshape(-1, tokens.shape[-1]).double()
    return flat.mean(0).float(), flat.std(0).clamp_min(1e-6).float()


def standardise(data: FeaturePairs, mean: torch.Tensor, std: torch.Tensor) -> FeaturePairs:
    data.tokens = (data.tokens - mean) / std
    return data


# ----------------------------------------------------------------------------------------- schedule
def learning_rate(step: int, params: LAQParams) -> float:
    """Linear warm-up over 5 % of the steps, then cosine decay to 10 % of ``lr``."""
    warmup = max(1, int(0.05 * params.steps))
    if step < warmup:
        return params.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, params.steps - warmup)
    return params.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def replaces_at(step: int, params: LAQParams) -> bool:
    """Replacement after (0-based) ``step``: every ``replace_every`` steps while within ``replace_until``."""
    done = step + 1
    return done % params.replace_every == 0 and done <= params.replace_until * params.steps


def batch_indices(step: int, n_pairs: int, params: LAQParams, rank: int = 0, world: int = 1) -> torch.Tensor:
    """The pairs of step ``step`` (same on every rank), this rank's strided share."""
    generator = torch.Generator().manual_seed(params.seed * 1_000_003 + step)
    idx = torch.randint(n_pairs, (params.batch_size,), generator=generator)
    return idx[rank::world]


# ------------------------------------------------------------------------------------------ training
@torch.no_grad()
def evaluate_loss(model: LAQ, data: FeaturePairs, device: torch.device, batch: int = 64) -> float:
    """Mean MSE over all pairs of ``data`` in eval mode (hard codes); NaN without pairs."""
    if len(data) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(data), batch):
        idx = torch.arange(start, min(start + batch, len(data)))
        total += float(model(*data.batch(idx, device)).loss) * len(idx)
    model.train(was_training)
    return total / len(data)


@dataclass
class TrainResult:
    model: LAQ
    mean: torch.Tensor
    std: torch.Tensor
    steps_run: int
    seconds: float
    resumed_from: int


def _signature(params: LAQParams, config: LAQConfig, splits: dict[str, list[str]], manifest: dict[str, Any]) -> dict:
    """What must match for a checkpoint to be resumed (plain types)."""
    return {"params": asdict(params), "config": config.to_dict(), "splits": splits,
            "manifest": {k: manifest[k] for k in sorted(manifest) if isinstance(manifest[k], str | int | float | bool)}}


def train_laq(train: FeaturePairs, val: FeaturePairs, params: LAQParams, out_dir: Path, *,
              splits: dict[str, list[str]], manifest: dict[str, Any], log_fn: LogFn | None = None,
              resume: bool = True, stop_after: int | None = None, progress: bool = True,
              dist_info: common.DistInfo | None = None) -> TrainResult:
    """Train on ``train`` pairs (standardised in place), validate on ``val``; checkpoints in ``out_dir``.

    ``log_fn(curve, step, values)`` receives the ``train`` and ``codebook`` curves (main rank only).
    ``resume``: continue from ``out_dir/checkpoint.pt`` if its params, splits and manifest match.
    ``stop_after``: stop after that many steps of this call (to test resumption); the checkpoint is
    written at the stop.
    """
    info = dist_info or common.init_distributed(params.device)
    device = info.device
    if len(train) == 0:
        raise ValueError("no training pairs: too few sequences for the split, or frame_offset larger than the clips")
    config = LAQConfig(in_channels=train.tokens.shape[-1], **params.model_kwargs())
    signature = _signature(params, config, splits, manifest)
    ckpt_path = out_dir / CHECKPOINT
    common.seed_everything(params.seed)
    mean, std = channel_stats(train.tokens[torch.unique(train.pairs)])
    standardise(train, mean, std)
    standardise(val, mean, std)
    model = LAQ(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, betas=(0.9, 0.99))
    start, history = 0, {"train": [], "codebook": []}
    resumed_window = None
    if resume and ckpt_path.is_file():
        ckpt = common.load_checkpoint(ckpt_path, map_location=device)
        if ckpt.get("signature") == signature:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            start, history = int(ckpt["step"]), ckpt["history"]
            resumed_window = (ckpt["window"], ckpt["loss_sum"])
            common.set_rng_state(ckpt["rng"])
            log.info("resuming LAQ training from %s at step %d", ckpt_path, start)
        else:
            log.info("%s was written with other params/data; training from scratch", ckpt_path)
    if log_fn is not None and info.is_main:
        for curve, rows in history.items():
            for row in rows:
                log_fn(curve, int(row["step"]), {k: v for k, v in row.items() if k != "step"})
    net = model
    if info.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)

    def emit(curve: str, step: int, values: dict[str, float]) -> None:
        history[curve].append({"step": step, **values})
        if log_fn is not None and info.is_main:
            log_fn(curve, step, values)

    def save(step: int) -> None:
        if info.is_main:
            common.save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "rng": common.rng_state(), "history": history, "signature": signature,
                "config": config.to_dict(), "mean": mean, "std": std,
                "window": window.cpu(), "loss_sum": loss_sum.cpu()})
        common.barrier()

    end = params.steps if stop_after is None else min(params.steps, start + stop_after)
    window = torch.zeros(config.code_seq_len, config.codebook_size, dtype=torch.float64, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    if resumed_window is not None and info.is_main:  # other ranks' partial window restarts at 0
        window += resumed_window[0].to(device)
        loss_sum += resumed_window[1].to(device)
    last_replace = (start // params.replace_every) * params.replace_every
    began = time.perf_counter()
    bar = None
    if progress and info.is_main and end > start:
        from tqdm import tqdm

        bar = tqdm(total=end - start, desc="laq", unit="step", leave=False)
    model.train()
    for step in range(start, end):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, params)
        out = net(*train.batch(batch_indices(step, len(train), params, info.rank, info.world_size), device))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if params.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        optimizer.step()
        with torch.no_grad():
            for s in range(config.code_seq_len):
                window[s].index_add_(0, out.indices[:, s], torch.ones(len(out.indices), dtype=torch.float64, device=device))
            loss_sum += torch.stack([out.loss.detach().double() * len(out.indices),
                                     torch.tensor(float(len(out.indices)), dtype=torch.float64, device=device)])
        if replaces_at(step, params):
            usage = model.quantizer.usage.clone()
            common.all_reduce_sum(usage)
            replaced = model.quantizer.replace_unused(step + 1 - last_replace, params.replace_threshold,
                                                      params.replace_noise)
            last_replace = step + 1
            emit("codebook", step + 1, {"replaced": float(replaced), "active": float((usage > 0).sum())})
        if (step + 1) % params.log_every == 0 or step + 1 == params.steps:
            common.all_reduce_sum(window)
            common.all_reduce_sum(loss_sum)
            counts = window.cpu().numpy()
            row = {"loss": float(loss_sum[0] / loss_sum[1]), "val_loss": evaluate_loss(model, val, device),
                   "lr": learning_rate(step, params),
                   "active_codes": float((counts.sum(0) > 0).sum()),
                   "perplexity_pooled": perplexity(counts.sum(0))}
            for s in range(config.code_seq_len):
                row[f"perplexity_{s}"] = perplexity(counts[s])
            emit("train", step + 1, row)
            window.zero_()
            loss_sum.zero_()
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.4f}", ppl=f"{row['perplexity_pooled']:.1f}")
        if bar is not None:
            bar.update(1)
        if (step + 1) % params.checkpoint_every == 0 and step + 1 < end:
            save(step + 1)
    if bar is not None:
        bar.close()
    if end > start or not ckpt_path.is_file():
        save(end)
    model.eval()
    return TrainResult(model, mean, std, end - start, time.perf_counter() - began, start)


def load_trained(path: Path, device: str | torch.device = "cpu") -> tuple[LAQ, torch.Tensor, torch.Tensor]:
    """Model (eval mode) and feature statistics from a checkpoint written by :func:`train_laq`."""
    ckpt = common.load_checkpoint(path, map_location=device)
    model = LAQ(LAQConfig(**ckpt["config"])).to(device)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt["mean"], ckpt["std"]
