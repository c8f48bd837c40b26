"""Tiny-preset forward: shapes, invariances the architecture implies, layer pruning and chunking."""

import dataclasses

import pytest
import torch

from pipeline.models.vggt import build_vggt, vggt_tiny
from pipeline.models.vggt.layers import RotaryEmbedding2D, patch_positions


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_vggt(vggt_tiny(), seed=0)


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 70, 98, generator=torch.Generator().manual_seed(1))


def test_forward_shapes_and_ranges(model, images):
    with torch.inference_mode():
        out = model(images, query_points=torch.tensor([[20.0, 30.0], [60.0, 40.0]]))
    assert out["pose_enc"].shape == (1, 3, 9) and len(out["pose_enc_list"]) == model.cfg.camera_iters
    assert out["depth"].shape == (1, 3, 70, 98, 1) and out["depth_conf"].shape == (1, 3, 70, 98)
    assert out["world_points"].shape == (1, 3, 70, 98, 3)
    assert out["track"].shape == (1, 3, 2, 2) and out["vis"].shape == (1, 3, 2)
    assert torch.all(out["depth"] > 0) and torch.all(out["depth_conf"] >= 1)
    assert torch.all(out["pose_enc"][..., 7:] >= 0)  # ReLU FoV
    torch.testing.assert_close(out["track"][0, 0], torch.tensor([[20.0, 30.0], [60.0, 40.0]]))  # query frame fixed
    assert all(torch.isfinite(v).all() for v in out.values() if isinstance(v, torch.Tensor))


def test_non_reference_frames_are_permutation_equivariant(model, images):
    """Frames 1..S-1 share token slot 1 and RoPE positions, so swapping two of them swaps their outputs;
    frame 0 is special (world frame)."""
    with torch.inference_mode():
        a = model(images, heads=("camera", "depth"))
        b = model(images[[0, 2, 1]], heads=("camera", "depth"))
        c = model(images[[1, 0, 2]], heads=("camera", "depth"))
    torch.testing.assert_close(b["depth"][0, [0, 2, 1]], a["depth"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b["pose_enc"][0, [0, 2, 1]], a["pose_enc"][0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(c["pose_enc"][0, [1, 0, 2]], a["pose_enc"][0], atol=1e-4)


def test_keeping_only_needed_layers_changes_nothing(model, images):
    x = images[None]
    with torch.inference_mode():
        full, _ = model.aggregator(x)
        kept, _ = model.aggregator(x, keep_layers=model.layers_for(("camera", "depth")))
    assert sorted(kept) == sorted(set(model.cfg.dpt_layers) | {model.cfg.depth - 1})
    for k, v in kept.items():
        torch.testing.assert_close(v, full[k], atol=0, rtol=0)


def test_dpt_frame_chunking_changes_nothing(images):
    cfg = vggt_tiny(enable_track=False)
    m8 = build_vggt(cfg, seed=3)
    m1 = build_vggt(dataclasses.replace(cfg, dpt_frames_chunk=1), seed=3)
    with torch.inference_mode():
        a, b = m8(images, heads=("depth", "point")), m1(images, heads=("depth", "point"))
    torch.testing.assert_close(a["depth"], b["depth"], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a["world_points_conf"], b["world_points_conf"], atol=1e-6, rtol=1e-6)


def test_disabled_head_cannot_be_requested(images):
    m = build_vggt(vggt_tiny(enable_point=False, enable_track=False))
    with pytest.raises(ValueError, match="disabled"):
        m(images, heads=("point",))


def test_rope_scores_depend_only_on_relative_position():
    """<rope(q, p1), rope(k, p2)> must equal <rope(q, p1 + d), rope(k, p2 + d)> for any shift d."""
    rope = RotaryEmbedding2D(100.0)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 1, 16, generator=g), torch.randn(1, 2, 1, 16, generator=g)
    p1, p2, d = torch.tensor([[[3, 5]]]), torch.tensor([[[7, 2]]]), torch.tensor([[[4, 9]]])
    s1 = (rope(q, p1) * rope(k, p2)).sum(-1)
    s2 = (rope(q, p1 + d) * rope(k, p2 + d)).sum(-1)
    torch.testing.assert_close(s1, s2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rope(q, torch.zeros(1, 1, 2, dtype=torch.long)), q)  # position 0 = identity


def test_patch_positions_layout():
    pos = patch_positions(2, 2, 3, 5, torch.device("cpu"))
    assert pos.shape == (2, 11, 2)
    assert torch.all(pos[:, :5] == 0)
    assert pos[0, 5:].tolist() == [[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]


def test_pos_embed_interpolation_native_and_resized(model):
    tok = model.aggregator.patch_embed
    assert tok.pos_embed_for(tok.grid, tok.grid) is tok.pos_embed
    pe = tok.pos_embed_for(5, 7)
    assert pe.shape == (1, 1 + 35, model.cfg.embed_dim)
    torch.testing.assert_close(pe[:, 0], tok.pos_embed[:, 0])
