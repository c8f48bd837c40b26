"""Train Concerto-LAQ from cached features (``data/features``, the ``concerto`` stage's output).

Data: ``data/features/<sequence>/<camera with / → _>.npz`` with ``frames`` (T,) int32, ``time_s`` (T,),
``global`` (T, C), ``tokens`` (T, N, C), ``token_xyz`` (T, N, 3) (metres, camera frame) and ``token_mask``
(T, N), plus ``manifest.json``. A training pair is (frame f, frame f + ``frame_offset``) of one sequence and camera
(frame indices, not array positions). With bird's-eye tokens (manifest ``token_layout: bev``) a share
``mirror`` of the training pairs is mirrored left-right (grid columns reversed, x negated): the same drive
seen in a mirrored street, so left and right turns are equally common whatever the few training
sequences did. A share ``reverse`` is played backwards (frame f + offset first), the drive seen in reverse;
with ``offset_jitter`` j > 0 the training pairs are every offset in [offset - j, offset + j] (>= 1) instead of
``frame_offset`` alone. Validation, test and the metrics' probes keep ``frame_offset``. Features are
standardised per channel with statistics of the training sequences' occupied tokens (stored in the model
file); empty tokens are set to 0 after that (the mean), so "this cell empties" is a change the decoder predicts
like any other. Memory is that of the cached arrays only.

Training is deterministic for a seed on CPU: the batch of step s is drawn from a generator seeded
with (seed, s), so a resumed run draws the same batches; the NSVQ noise uses the global torch RNG,
whose state is saved with the resume state (:mod:`pipeline.train.loop`). With several processes
(``cpu_ranks`` or torchrun) each rank takes a strided share of the step's batch and the gradients are
averaged: by DDP on CUDA (``broadcast_buffers=False``: the code-usage counters stay per rank and are
all-reduced by the quantizer), by :meth:`TrainLoop.sync_gradients` on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.features_cache import load_features, load_manifest
from pipeline.data.splits import split_sequences
from pipeline.models.laq import LAQ, LAQConfig
from pipeline.models.laq.nsvq import perplexity
from pipeline.models.optim import Adam
from pipeline.models.ptv3.bev_tokens import BEVGrid
from pipeline.params.laq import LAQParams
from pipeline.train import common
from pipeline.train.loop import CurveSink, TrainLoop, WarmupCosine, identity_digest


# --------------------------------------------------------------------------------------------- data
@dataclass
class FeaturePairs:
    """Frames of some sequences and the (t, t+offset) pairs between them.

    ``tokens`` (F, N, C) float32, ``xyz`` (F, N, 3) metres, ``mask`` (F, N) bool (occupied), ``global_`` (F, C);
    ``pairs`` (P, 2) int64
    row indices into the frame arrays; per pair ``sequence``, ``camera`` and ``frames`` (P, 2) frame indices.
    ``grid``: (rows, columns) of the bird's-eye token grid (token = row * columns + col), None for unaligned tokens.
    Bird's-eye tokens end with :data:`GEOMETRY_CHANNELS` channels: the offset (x, y, z) of the cell's centroid
    from the cell centre (metres; 0 in empty cells), so C = cached channels + 3 for them.
    """

    tokens: torch.Tensor
    xyz: torch.Tensor
    mask: torch.Tensor
    global_: torch.Tensor
    pairs: torch.Tensor
    sequence: list[str]
    camera: list[str]
    frames: np.ndarray
    grid: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def batch(self, idx: torch.Tensor, device: torch.device, mirror: torch.Tensor | None = None,
              reverse: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(tokens_t, xyz_t, tokens_t1, xyz_t1, mask_t, mask_t1) of pairs ``idx`` on ``device`` (``LAQ.forward`` order).

        ``mirror`` (len(idx),) bool: mirror those pairs left-right (:func:`mirror_grid`; needs ``grid``);
        ``reverse`` (len(idx),) bool: those pairs backwards (the later frame first).
        """
        a, b = self.pairs[idx, 0], self.pairs[idx, 1]
        if reverse is not None:
            a, b = torch.where(reverse, b, a), torch.where(reverse, a, b)
        t0, x0, t1, x1, m0, m1 = self.tokens[a], self.xyz[a], self.tokens[b], self.xyz[b], self.mask[a], self.mask[b]
        if mirror is not None and bool(mirror.any()):
            if self.grid is None:
                raise ValueError("mirroring needs bird's-eye grid tokens (features manifest token_layout: bev)")

            def flip(x: torch.Tensor, is_xyz: bool = False) -> torch.Tensor:
                return torch.where(mirror.view(-1, *[1] * (x.dim() - 1)), mirror_grid(x, self.grid, is_xyz), x)

            t0, t1, m0, m1, x0, x1 = flip(t0), flip(t1), flip(m0), flip(m1), flip(x0, True), flip(x1, True)
            sign = torch.ones(t0.shape[-1])
            sign[-GEOMETRY_CHANNELS] = -1.0  # the centroid's x offset (kept zero-mean by standardise)
            t0, t1 = (torch.where(mirror[:, None, None], t * sign, t) for t in (t0, t1))
        return tuple(x.to(device) for x in (t0, x0, t1, x1, m0, m1))

    def at_offset(self, frame_offset: int) -> FeaturePairs:
        """The pairs exactly ``frame_offset`` frames apart (a view: the frame arrays are shared, not copied)."""
        keep = np.flatnonzero(self.frames[:, 1] - self.frames[:, 0] == frame_offset)
        return replace(self, pairs=self.pairs[torch.from_numpy(keep)], sequence=[self.sequence[i] for i in keep],
                       camera=[self.camera[i] for i in keep], frames=self.frames[keep])


def mirror_grid(x: torch.Tensor, grid: tuple[int, int], is_xyz: bool = False) -> torch.Tensor:
    """Left-right mirror of per-token arrays (B, N, ...) on a (rows, columns) grid: columns reversed; for
    token centres (``is_xyz``, (B, N, 3), OpenCV camera axes) x is negated too. The grid is symmetric about
    x = 0, so a mirrored cell centre is the centre of the mirrored cell."""
    rows, cols = grid
    flipped = x.unflatten(1, (rows, cols)).flip(2).flatten(1, 2)
    if is_xyz:
        flipped = flipped * torch.tensor([-1.0, 1.0, 1.0], dtype=x.dtype)
    return flipped


def load_feature_pairs(features: Path, sequences: list[str], frame_offset: int | Sequence[int],
                       manifest: dict[str, Any]) -> FeaturePairs:
    """Read the npz files of ``sequences`` (every camera in the manifest) and pair frames ``frame_offset`` apart
    (one offset, or each of several: pairs ordered by first frame, then offset)."""
    offsets = [frame_offset] if isinstance(frame_offset, int) else list(frame_offset)
    tokens, xyz, masks, glob, pairs, seq_of, cam_of, frames_of = [], [], [], [], [], [], [], []
    offset = 0
    channels, n_tokens = int(manifest["channels"]), int(manifest["tokens"])
    grid = bev_grid(manifest)
    for sequence in sequences:
        for camera in manifest["camera"]:
            arrays = load_features(features, sequence, camera)  # checked against the manifest's N and C
            frames = arrays["frames"].astype(np.int64)
            tok, pos, gl, occupied = arrays["tokens"], arrays["token_xyz"], arrays["global"], arrays["token_mask"]
            t = len(frames)
            row = {int(f): i for i, f in enumerate(frames)}
            for i, f in enumerate(frames):
                for step in offsets:
                    j = row.get(int(f) + step)
                    if j is not None:
                        pairs.append((offset + i, offset + j))
                        seq_of.append(sequence)
                        cam_of.append(camera)
                        frames_of.append((int(f), int(f) + step))
            if grid is not None:
                tok = np.concatenate([tok, centroid_offsets(pos, occupied, grid)], axis=-1)
            tokens.append(tok.astype(np.float32))
            xyz.append(pos.astype(np.float32))
            masks.append(occupied.astype(bool))
            glob.append(gl.astype(np.float32))
            offset += t
    if not tokens:
        return FeaturePairs(torch.zeros(0, n_tokens, channels), torch.zeros(0, n_tokens, 3),
                            torch.zeros(0, n_tokens, dtype=torch.bool), torch.zeros(0, channels),
                            torch.zeros(0, 2, dtype=torch.int64), [], [], np.zeros((0, 2), np.int64))
    return FeaturePairs(torch.from_numpy(np.concatenate(tokens)), torch.from_numpy(np.concatenate(xyz)),
                        torch.from_numpy(np.concatenate(masks)),
                        torch.from_numpy(np.concatenate(glob)), torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2),
                        seq_of, cam_of, np.asarray(frames_of, dtype=np.int64).reshape(-1, 2),
                        None if grid is None else (grid.cells_z, grid.cells_x))


GEOMETRY_CHANNELS = 3


def scene_channels(manifest: dict[str, Any]) -> int:
    """Feature channels of each token that pool only the points above the ground: the second half of the cached
    channels with ``bev_ground: both`` (``pipeline.steps.concerto.bev_cells``), else 0."""
    both = manifest.get("token_layout") == "bev" and manifest.get("bev_ground") == "both"
    return int(manifest["channels"]) // 2 if both else 0


def bev_grid(manifest: dict[str, Any]):
    """The bird's-eye grid (:class:`~pipeline.models.ptv3.bev_tokens.BEVGrid`) of a features manifest, None for other layouts."""
    if manifest.get("token_layout") != "bev":
        return None
    grid = BEVGrid(int(manifest["bev_cells_x"]), int(manifest["bev_cells_z"]), float(manifest["bev_width"]),
                   float(manifest["bev_depth"]))
    if grid.n_tokens != int(manifest["tokens"]):
        raise ValueError(f"features manifest: bev grid {grid.cells_x} x {grid.cells_z} does not give its "
                         f"{manifest['tokens']} tokens")
    return grid


def centroid_offsets(token_xyz: np.ndarray, mask: np.ndarray, grid) -> np.ndarray:
    """(T, N, 3) offset of each bird's-eye token's centroid from its ``grid`` cell centre (points' units; 0 where empty)."""
    return np.where(mask[..., None], token_xyz - grid.centres()[None], 0.0)


@dataclass
class LAQData:
    """The cached features of one LAQ run: ``manifest``, sequence ``splits`` and the pairs of each part.

    ``train`` / ``val`` / ``test``: pairs of the training / validation (validation loss, model choices) / test
    sequences (the reported code metrics); ``held_out``: pairs of the validation and test sequences
    (``held_out_names``), for the metrics of videos.
    """

    manifest: dict[str, Any]
    splits: dict[str, list[str]]
    held_out_names: list[str]
    train: FeaturePairs
    val: FeaturePairs
    test: FeaturePairs
    held_out: FeaturePairs


def load_laq_data(features: Path, frame_offset: int, val_sequences: int, test_sequences: int,
                  offset_jitter: int = 0) -> LAQData:
    """Read the manifest, split its sequences and load the frame pairs of each part.

    The training pairs are every offset in [frame_offset - offset_jitter, frame_offset + offset_jitter] (>= 1),
    the others ``frame_offset`` apart (``FeaturePairs.at_offset`` gives the training pairs of the metrics).
    The split is the manifest's ``splits`` when it has one (features of the ``drives`` stage: its balanced
    split), else ``pipeline.data.splits`` with ``val_sequences`` / ``test_sequences`` (``data.*``).
    Raises ValueError when the split leaves no training or no held-out sequence.
    """
    manifest = load_manifest(features)
    splits = manifest.get("splits") or split_sequences(list(manifest["sequences"]), val_sequences, test_sequences)
    held_out_names = splits["val"] + splits["test"]
    if not splits["train"] or not held_out_names:
        raise ValueError(f"{features}: {len(manifest['sequences'])} sequences leave no training or no held-out "
                         f"sequence (data.val_sequences={val_sequences}, data.test_sequences={test_sequences})")
    return LAQData(manifest, splits, held_out_names,
                   train=load_feature_pairs(features, splits["train"], training_offsets(frame_offset, offset_jitter),
                                            manifest),
                   val=load_feature_pairs(features, splits["val"], frame_offset, manifest),
                   test=load_feature_pairs(features, splits["test"], frame_offset, manifest),
                   held_out=load_feature_pairs(features, held_out_names, frame_offset, manifest))


def channel_stats(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (C,) over the occupied tokens (``mask`` (F, N)) of all frames (std floored at 1e-6)."""
    flat = tokens[mask].double()
    return flat.mean(0).float(), flat.std(0).clamp_min(1e-6).float()


def standardise(data: FeaturePairs, mean: torch.Tensor, std: torch.Tensor) -> FeaturePairs:
    """In place: ``(tokens - mean) / std`` on occupied tokens, 0 on empty ones."""
    data.tokens = torch.where(data.mask[..., None], (data.tokens - mean) / std, torch.zeros(()))
    return data


def token_statistics(train: FeaturePairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (C,) of the tokens of the frames that ``train``'s pairs use (:func:`channel_stats`);
    for bird's-eye tokens the centroid's x offset keeps mean 0, so mirroring is a sign flip after standardising."""
    used = torch.unique(train.pairs)
    mean, std = channel_stats(train.tokens[used], train.mask[used])
    if train.grid is not None:
        mean[-GEOMETRY_CHANNELS] = 0.0
    return mean, std


def model_config(train: FeaturePairs, manifest: dict[str, Any], params: LAQParams) -> LAQConfig:
    """The model config of ``params`` for the tokens of ``train`` (channels, geometry channels of bird's-eye
    tokens) and of the features ``manifest`` (the above-ground half, :func:`scene_channels`)."""
    return LAQConfig(in_channels=train.tokens.shape[-1], geometry_channels=GEOMETRY_CHANNELS if train.grid else 0,
                     scene_channels=scene_channels(manifest), **params.model_kwargs())


def training_offsets(frame_offset: int, offset_jitter: int) -> list[int]:
    """The frame offsets of the training pairs: ``frame_offset`` +- ``offset_jitter``, at least 1 (ascending)."""
    return [o for o in range(frame_offset - offset_jitter, frame_offset + offset_jitter + 1) if o >= 1]


# ----------------------------------------------------------------------------------------- schedule
def lr_schedule(params: LAQParams) -> WarmupCosine:
    """Linear warm-up over 5 % of the steps, then cosine decay to 10 % of ``lr``."""
    return WarmupCosine(params.steps, max(1, int(0.05 * params.steps)), floor=0.1, progress_first=True)


def replaces_at(step: int, params: LAQParams) -> bool:
    """Replacement after (0-based) ``step``: every ``replace_every`` steps while within ``replace_until``."""
    done = step + 1
    return done % params.replace_every == 0 and done <= params.replace_until * params.steps


def batch_indices(step: int, n_pairs: int, params: LAQParams, rank: int = 0,
                  world: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The pairs of step ``step``, which of them to mirror and which to play backwards (None when ``reverse`` is 0;
    the same on every rank), this rank's strided share. ``reverse`` draws after the others, so it leaves them as
    they were without it."""
    generator = torch.Generator().manual_seed(params.seed * 1_000_003 + step)
    idx = torch.randint(n_pairs, (params.batch_size,), generator=generator)
    mirror = torch.rand(params.batch_size, generator=generator) < params.mirror
    reverse = torch.rand(params.batch_size, generator=generator) < params.reverse if params.reverse > 0 else None
    return idx[rank::world], mirror[rank::world], None if reverse is None else reverse[rank::world]


# ------------------------------------------------------------------------------------------ training
@torch.no_grad()
def evaluate_loss(model: LAQ, data: FeaturePairs, device: torch.device, batch: int = 64) -> float:
    """Mean MSE over all pairs of ``data`` in eval mode (hard codes); NaN without pairs. Under DDP every
    process evaluates its share of the pairs (:func:`pipeline.distributed.shard_range`) and all get the mean."""
    if len(data) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    share = common.shard_range(len(data))
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(share.start, share.stop, batch):
        idx = torch.arange(start, min(start + batch, share.stop))
        total += model(*data.batch(idx, device)).loss.double() * len(idx)
    model.train(was_training)
    return float(common.all_reduce_sum(total)) / len(data)


@dataclass
class TrainResult:
    """A finished (or stopped) run: the model, its feature statistics (C,), and every curve row from step 0."""

    model: LAQ
    mean: torch.Tensor
    std: torch.Tensor
    steps_run: int
    seconds: float
    resumed_from: int
    curves: dict[str, list[dict[str, float]]]


def _signature(params: LAQParams, config: LAQConfig, splits: dict[str, list[str]], manifest: dict[str, Any]) -> dict:
    """What must match for a resume state to be used (plain types)."""
    return {"params": params.model_dump(), "config": config.to_dict(), "splits": splits,
            "manifest": {k: manifest[k] for k in sorted(manifest) if isinstance(manifest[k], str | int | float | bool)}}


def train_laq(train: FeaturePairs, val: FeaturePairs, params: LAQParams, out_model: Path, state_path: Path, *,
              splits: dict[str, list[str]], manifest: dict[str, Any], run: CurveSink | None = None,
              resume: bool = True, stop_after: int | None = None, progress: bool = True,
              dist_info: common.DistInfo | None = None) -> TrainResult:
    """Train on ``train`` pairs (standardised in place), validate on ``val``; write ``out_model`` at the end.

    ``run`` receives the ``train`` and ``codebook`` curves (main rank only). Resume state (``state_path``),
    ``resume`` and ``stop_after`` (an absolute step; the final model is not written then):
    :mod:`pipeline.train.loop`; a state is used only if its params, splits and manifest match.
    ``out_model`` holds ``config``, ``params``, ``state_dict`` and the feature statistics ``mean``/``std``.
    """
    info = dist_info or common.init_distributed(params.device)
    device = info.device
    if len(train) == 0:
        raise ValueError("no training pairs: too few sequences for the split, or frame_offset larger than the clips")
    if params.mirror > 0 and train.grid is None:
        raise ValueError(f"laq.mirror = {params.mirror} needs bird's-eye tokens (concerto.tokens: bev); "
                         f"set laq.mirror: 0 for other token layouts")
    scene = scene_channels(manifest)
    if params.scene_weight != 1.0 and not scene:
        raise ValueError(f"laq.scene_weight = {params.scene_weight} needs tokens with an above-ground half "
                         f"(concerto.tokens: bev, concerto.bev_ground: both); set laq.scene_weight: 1")
    config = model_config(train, manifest, params)
    common.seed_everything(params.seed)
    mean, std = token_statistics(train)
    standardise(train, mean, std)
    standardise(val, mean, std)
    model = LAQ(config).to(device)
    optimizer = Adam(model.parameters(), lr=params.lr, betas=(0.9, 0.99))
    loop = TrainLoop("laq", model, optimizer, steps=params.steps, schedule=lr_schedule(params), state_path=state_path,
                     identity=identity_digest(_signature(params, config, splits, manifest)),
                     checkpoint_every=params.checkpoint_every, info=info, run=run, progress=progress, resume=resume)
    net = loop.wrap(broadcast_buffers=False)  # code-usage counters stay per rank (all-reduced by the quantizer)
    # code counts per position and (loss sum, pairs) since the last curve row; saved with the resume state
    window = torch.zeros(config.code_seq_len, config.codebook_size, dtype=torch.float64, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    if "window" in loop.extra and info.is_main:  # the state holds the sums over ranks; other ranks restart at 0
        window += loop.extra["window"].to(device)
        loss_sum += loop.extra["loss_sum"].to(device)
    loop.extra_state = lambda: {"window": common.all_reduce_sum(window.clone()).cpu(),
                                "loss_sum": common.all_reduce_sum(loss_sum.clone()).cpu()}
    last_replace = (loop.start // params.replace_every) * params.replace_every
    model.train()
    for step in loop.steps(stop_after):
        idx, mirror, reverse = batch_indices(step, len(train), params, info.rank, info.world_size)
        out = net(*train.batch(idx, device, mirror if params.mirror > 0 else None, reverse))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        loop.sync_gradients()
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
                                                      params.replace_noise, params.replace_from)
            last_replace = step + 1
            loop.log("codebook", step + 1, {"replaced": float(replaced), "active": float((usage > 0).sum())})
        if loop.due(step, params.log_every, offset=1):
            common.all_reduce_sum(window)
            common.all_reduce_sum(loss_sum)
            counts = window.cpu().numpy()
            row = {"loss": float(loss_sum[0] / loss_sum[1]), "val_loss": evaluate_loss(model, val, device),
                   "lr": loop.learning_rate(step),
                   "active_codes": float((counts.sum(0) > 0).sum()),
                   "perplexity_pooled": perplexity(counts.sum(0))}
            for s in range(config.code_seq_len):
                row[f"perplexity_{s}"] = perplexity(counts[s])
            loop.log("train", step + 1, row)
            window.zero_()
            loss_sum.zero_()
            loop.postfix(loss=f"{row['loss']:.4f}", ppl=f"{row['perplexity_pooled']:.1f}")
    if not loop.stopped:
        loop.finish(out_model, lambda: {"config": config.to_dict(), "params": params.model_dump(), "mean": mean, "std": std,
                                        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}})
    model.eval()
    end = params.steps if loop.stopped_at is None else loop.stopped_at
    return TrainResult(model, mean, std, end - loop.start, loop.seconds, loop.start, loop.curves)
