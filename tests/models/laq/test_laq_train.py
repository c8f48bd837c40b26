"""LAQ training: data pairing, deterministic resume, replacement schedule, DDP counters (2 gloo processes)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from laq_fixtures import write_features

from pipeline.data.features_cache import load_manifest
from pipeline.data.splits import split_sequences
from pipeline.params.laq import LAQParams
from pipeline.train import common
from pipeline.train.laq import (batch_indices, load_feature_pairs, replaces_at, scene_channels, train_laq,
                                training_offsets)
from tests.conftest import repo_params
from tests.curve_rows import Rows

TINY = repo_params("laq", dim=16, heads=2, spatial_depth=1, temporal_depth=1, decoder_depth=1, codebook_size=8,
                 code_seq_len=4, quant_dim=4, frame_offset=2, steps=6, batch_size=4, lr=1e-3, replace_every=2,
                 replace_until=0.5, replace_threshold=0.5, log_every=2, checkpoint_every=100, device="cpu")


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("laqdata")
    write_features(root, sequences=3, frames=10, n_side=3, channels=4, seed=1)
    return root / "data/features"


def load(features: Path, params: LAQParams):
    manifest = load_manifest(features)
    splits = split_sequences(manifest["sequences"], 1, 0)
    return (load_feature_pairs(features, splits["train"], params.frame_offset, manifest),
            load_feature_pairs(features, splits["val"], params.frame_offset, manifest), splits, manifest)


def test_pairs_are_frame_offset_apart(features):
    train, val, splits, _ = load(features, TINY)
    assert len(train) == 2 * (10 - 2) and len(val) == 10 - 2
    assert np.all(train.frames[:, 1] - train.frames[:, 0] == 2)
    first = np.load(features / splits["train"][0] / "Stereo_Left_Omni_F.npz")
    i = 3
    c = first["tokens"].shape[-1]  # bird's-eye tokens: cached features, then 3 geometry channels
    assert train.tokens.shape[-1] == c + 3 and train.grid == (3, 3)
    torch.testing.assert_close(train.tokens[train.pairs[i, 0], :, :c], torch.from_numpy(first["tokens"][train.frames[i, 0]]))
    torch.testing.assert_close(train.tokens[train.pairs[i, 1], :, :c], torch.from_numpy(first["tokens"][train.frames[i, 1]]))
    # geometry channels: centroid offset from the cell centre; the fixture's centroids are the centres at y = 1.5
    torch.testing.assert_close(train.tokens[:, :, c:], torch.tensor([0.0, 1.5, 0.0]).expand(len(train.tokens), 9, 3))


def test_jittered_offsets_hold_every_pair_and_the_plain_ones_as_a_view(features):
    manifest = load_manifest(features)
    splits = split_sequences(manifest["sequences"], 1, 0)
    assert training_offsets(5, 0) == [5] and training_offsets(2, 3) == [1, 2, 3, 4, 5]
    jittered = load_feature_pairs(features, splits["train"], training_offsets(2, 1), manifest)
    plain = load_feature_pairs(features, splits["train"], 2, manifest)
    # 2 sequences of 10 frames: 9 + 8 + 7 pairs each at offsets 1, 2, 3, every one within its sequence
    assert len(jittered) == 2 * (9 + 8 + 7)
    assert sorted(set((jittered.frames[:, 1] - jittered.frames[:, 0]).tolist())) == [1, 2, 3]
    assert all(a == b for a, b in zip(jittered.sequence, np.repeat(splits["train"], 24), strict=True))
    view = jittered.at_offset(2)
    torch.testing.assert_close(jittered.tokens[view.pairs], plain.tokens[plain.pairs])
    np.testing.assert_array_equal(view.frames, plain.frames)
    assert view.sequence == plain.sequence and view.camera == plain.camera
    assert view.tokens is jittered.tokens  # shared, not copied


def test_reversed_batch_swaps_the_frames_and_leaves_the_other_draws(features):
    train, _, _, _ = load(features, TINY)
    idx = torch.tensor([0, 5])
    plain = train.batch(idx, torch.device("cpu"))
    backwards = train.batch(idx, torch.device("cpu"), reverse=torch.tensor([False, True]))
    for k, other in enumerate((2, 3, 0, 1, 5, 4)):  # (t0, x0, t1, x1, m0, m1): each array swaps with its partner
        torch.testing.assert_close(backwards[k][0], plain[k][0])  # pair 0 as it was
        torch.testing.assert_close(backwards[k][1], plain[other][1])  # pair 1: frame t + offset first
    with_reverse = TINY.model_copy(update=dict(reverse=0.5, batch_size=64))
    idx_a, mirror_a, none = batch_indices(3, 100, TINY.model_copy(update=dict(batch_size=64)))
    idx_b, mirror_b, reverse = batch_indices(3, 100, with_reverse)
    assert none is None and torch.equal(idx_a, idx_b) and torch.equal(mirror_a, mirror_b)
    assert 0 < int(reverse.sum()) < 64


def test_mirrored_batch_is_the_left_right_mirror(features):
    from pipeline.train.laq import mirror_grid

    train, _, _, _ = load(features, TINY)
    idx = torch.tensor([0, 5])
    plain = train.batch(idx, torch.device("cpu"))
    flipped = train.batch(idx, torch.device("cpu"), mirror=torch.tensor([False, True]))
    for a, b in zip(plain, flipped):
        torch.testing.assert_close(a[0], b[0])  # not mirrored
    t0, x0 = plain[0][1].reshape(3, 3, -1), plain[1][1].reshape(3, 3, 3)  # (rows = z, cols = x, ...)
    ft0, fx0 = flipped[0][1].reshape(3, 3, -1), flipped[1][1].reshape(3, 3, 3)
    for col in range(3):
        torch.testing.assert_close(ft0[:, col, :-3], t0[:, 2 - col, :-3])  # features move to the mirrored column
        torch.testing.assert_close(ft0[:, col, -3], -t0[:, 2 - col, -3])  # the centroid's x offset flips sign
        torch.testing.assert_close(fx0[:, col], x0[:, 2 - col] * torch.tensor([-1.0, 1.0, 1.0]))
    # cell centres of a symmetric grid map onto each other, so mirroring twice is the identity
    twice = mirror_grid(mirror_grid(plain[1], train.grid, True), train.grid, True)
    torch.testing.assert_close(twice, plain[1])


def test_mirror_needs_a_bev_grid(features, tmp_path):
    import shutil

    copy = tmp_path / "features"
    shutil.copytree(features, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["token_layout"] = "fps"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    train, val, splits, manifest = load(copy, TINY)
    assert train.grid is None and train.tokens.shape[-1] == 4
    with pytest.raises(ValueError, match="laq.mirror = 0.5 needs bird's-eye tokens"):
        train_laq(train, val, TINY.model_copy(update=dict(mirror=0.5)), tmp_path / "model.pt", tmp_path / "state.pt",
                  splits=splits, manifest=manifest, progress=False)


def test_scene_weight_needs_an_above_ground_half(features, tmp_path):
    train, val, splits, manifest = load(features, TINY)  # the fixture's tokens pool once (no bev_ground)
    with pytest.raises(ValueError, match="laq.scene_weight = 2.0 needs tokens with an above-ground half"):
        train_laq(train, val, TINY.model_copy(update=dict(scene_weight=2.0)), tmp_path / "model.pt",
                  tmp_path / "state.pt", splits=splits, manifest=manifest, progress=False)
    assert scene_channels({**manifest, "bev_ground": "both"}) == manifest["channels"] // 2
    assert scene_channels({**manifest, "bev_ground": "both", "token_layout": "fps"}) == 0


def test_bad_feature_file_is_reported(features, tmp_path):
    import shutil

    copy = tmp_path / "features"
    shutil.copytree(features, copy)
    manifest = load_manifest(copy)
    path = copy / manifest["sequences"][0] / "Stereo_Left_Omni_F.npz"
    arrays = dict(np.load(path))
    arrays["tokens"] = arrays["tokens"][:, :5]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="Stereo_Left_Omni_F.npz: 'token_xyz' has shape"):
        load_feature_pairs(copy, manifest["sequences"][:1], 2, manifest)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_manifest(tmp_path)


def run(features, out, params, **kw):
    train, val, splits, manifest = load(features, params)
    return train_laq(train, val, params, out / "model.pt", out / "state.pt", splits=splits, manifest=manifest,
                     progress=False, **kw)


def test_resume_equals_uninterrupted_run(features, tmp_path):
    """stop_after = k (an absolute step), resume in a "new process": same weights, same curves from step 0."""
    params = TINY.model_copy(update=dict(steps=8, checkpoint_every=3))
    full_rows, part_rows = Rows(), Rows()
    full = run(features, tmp_path / "full", params, run=full_rows)
    assert not (tmp_path / "full/state.pt").exists()  # removed once the model is written
    first = run(features, tmp_path / "part", params, stop_after=5, run=Rows())
    assert first.steps_run == 5 and not (tmp_path / "part/model.pt").exists()
    assert common.load_checkpoint(tmp_path / "part/state.pt")["step"] == 5
    again = run(features, tmp_path / "part", params, stop_after=5)  # absolute: already there, trains nothing
    assert again.resumed_from == 5 and again.steps_run == 0
    torch.manual_seed(123)  # a resumed process starts with other RNG state; the resume state restores it
    second = run(features, tmp_path / "part", params, run=part_rows)
    assert second.resumed_from == 5 and second.steps_run == 3
    a, b = full.model.state_dict(), second.model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    saved = torch.load(tmp_path / "part/model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], a[k]) for k in a)
    # the resumed run's curves hold every row from step 0, identical to the uninterrupted run's
    assert part_rows.by_step() == full_rows.by_step()
    assert second.curves == full.curves
    assert {step for curve, step, _ in part_rows.rows if curve == "train"} == {2, 4, 6, 8}
    # other params: the old state is not resumed
    run(features, tmp_path / "other", params, stop_after=2)
    third = run(features, tmp_path / "other", params.model_copy(update=dict(lr=2e-3, steps=2)))
    assert third.resumed_from == 0


def test_replacement_schedule_stops_early(features, tmp_path):
    params = TINY.model_copy(update=dict(steps=20, replace_every=2, replace_until=0.3, log_every=5))
    assert [s + 1 for s in range(20) if replaces_at(s, params)] == [2, 4, 6]
    collector = Rows()
    run(features, tmp_path / "sched", params, run=collector)
    rows = collector.rows
    events = [(step, values) for curve, step, values in rows if curve == "codebook"]
    assert [step for step, _ in events] == [2, 4, 6]
    assert all(0 <= v["replaced"] <= 8 for _, v in events)
    train_rows = [values for curve, _, values in rows if curve == "train"]
    assert len(train_rows) == 4 and all(np.isfinite(r["loss"]) and r["perplexity_0"] >= 1 for r in train_rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, features: str, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    params = TINY.model_copy(update=dict(steps=3, replace_every=2, replace_until=0.7))  # one replacement, at step 2
    info = common.init_distributed("cpu")
    result = run(Path(features), Path(out), params, dist_info=info)
    quantizer = result.model.quantizer
    local = quantizer.usage.clone()
    reduced = common.all_reduce_sum(local.clone())
    torch.save({"local": local, "reduced": reduced, "codebook": quantizer.codebook.detach().clone(),
                "weight": result.model.in_proj.weight.detach().clone()}, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_share_counters_and_codebook(features, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(features), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    torch.testing.assert_close(r0["reduced"], r1["reduced"], rtol=0, atol=0)
    torch.testing.assert_close(r0["reduced"], r0["local"] + r1["local"], rtol=0, atol=0)
    # one step after the replacement (counters reset), each rank counted its 2 pairs x 4 codes
    assert r0["local"].sum() == 8 and r1["local"].sum() == 8
    torch.testing.assert_close(r0["codebook"], r1["codebook"], rtol=0, atol=0)
    torch.testing.assert_close(r0["weight"], r1["weight"], rtol=0, atol=0)
    assert (tmp_path / "model.pt").is_file() and not (tmp_path / "state.pt").exists()
