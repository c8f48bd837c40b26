"""LAQ model: shapes, stop-gradient, copy start, and the S codes can differ."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.laq import LAQ, LAQConfig
from pipeline.models.laq.layers import spatial_cells

SMALL = dict(in_channels=6, dim=32, heads=4, spatial_depth=1, temporal_depth=1, decoder_depth=1,
             codebook_size=16, code_seq_len=4, quant_dim=8)


def inputs(b=3, n=10, c=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(b, n, c, generator=gen), torch.randn(b, n, 3, generator=gen) * 5,
            torch.randn(b, n, c, generator=gen), torch.randn(b, n, 3, generator=gen) * 5)


def test_shapes_and_copy_start():
    torch.manual_seed(0)
    model = LAQ(LAQConfig(**SMALL)).eval()
    t0, x0, t1, x1 = inputs()
    out = model(t0, x0, t1, x1)
    assert out.prediction.shape == t0.shape and out.indices.shape == (3, 4) and out.codes.shape == (3, 4, 8)
    torch.testing.assert_close(out.prediction, t0)  # zero-initialised head: prediction starts as the copy
    torch.testing.assert_close(out.loss, ((t0 - t1) ** 2).mean())


def test_decoder_input_has_stop_gradient_and_encoder_gets_gradient():
    torch.manual_seed(0)
    model = LAQ(LAQConfig(**SMALL)).train()
    with torch.no_grad():
        model.head.weight.normal_()  # open the head so gradients flow back
    model(*inputs()).loss.backward()
    # the input projection is reached through the encoder (frame difference), the decoder path is detached
    assert model.in_proj.weight.grad.abs().sum() > 0
    assert model.queries.grad.abs().sum() > 0
    assert model.quantizer.codebook.grad.abs().sum() > 0
    model.zero_grad()
    embed = model.embed(*inputs()[:2]).detach().requires_grad_(True)
    codes = torch.randn(3, 4, 8)
    model.decode(embed, inputs()[0], codes).sum().backward()
    assert embed.grad is None  # decode detaches frame t's embedding


def test_queries_give_different_codes_for_region_specific_motion():
    """Motion that differs per region of the scene must be able to give different codes per position.

    Toy: tokens on a 4 x 4 ground grid (left/right x near/far quadrants); in each pair one random
    quadrant's features shift. Trained briefly, the 4 code positions must not be identical copies of each
    other (a pooled vector would make them so), and positions must not all carry the same code.
    """
    torch.manual_seed(0)
    cfg = LAQConfig(**{**SMALL, "codebook_size": 8})
    model = LAQ(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    n = 16
    grid = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(n, 2)
    xyz = torch.stack([grid[:, 0] * 5 - 7.5, torch.full((n,), 1.5), grid[:, 1] * 5 + 5], 1)
    quadrant = (grid[:, 0] >= 2).long() * 2 + (grid[:, 1] >= 2).long()
    gen = torch.Generator().manual_seed(1)

    def batch(b=32):
        t0 = torch.randn(b, n, 6, generator=gen)
        which = torch.randint(4, (b,), generator=gen)
        shift = torch.randn(b, 6, generator=gen) * 2
        mask = (quadrant[None, :] == which[:, None]).float()[..., None]
        return t0, xyz.expand(b, n, 3), t0 + mask * shift[:, None, :], xyz.expand(b, n, 3)

    for step in range(80):
        out = model(*batch())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if (step + 1) % 10 == 0 and step < 40:
            model.quantizer.replace_unused(10, 0.5, 0.05)
    model.eval()
    with torch.no_grad():
        idx = model(*batch(256)).indices
        latent = model(*batch(256)).latent
    identical = (idx == idx[:, :1]).all(1).float().mean()
    assert identical < 0.6, f"{identical:.2f} of pairs have 4 identical codes"
    # the continuous vectors of the 4 queries differ
    assert (latent[:, 0] - latent[:, 1]).norm(dim=-1).mean() > 1e-3


def test_distinct_query_inputs_give_distinct_latents_untrained():
    torch.manual_seed(0)
    model = LAQ(LAQConfig(**SMALL)).eval()
    latent, _ = model.encode(*inputs())
    for a in range(4):
        for b in range(a + 1, 4):
            assert not torch.allclose(latent[:, a], latent[:, b])


def test_spatial_cells_are_equal_and_match_a_brute_force_split():
    from pipeline.models.laq.layers import grid_shape, spatial_cells

    assert grid_shape(4) == (2, 2) and grid_shape(6) == (2, 3) and grid_shape(5) == (1, 5) and grid_shape(1) == (1, 1)
    gen = torch.Generator().manual_seed(0)
    xyz = torch.randn(3, 20, 3, generator=gen) * 10
    xyz[..., 2] = xyz[..., 2].abs() + 1
    cells = spatial_cells(xyz, 4)
    for b in range(3):
        assert torch.equal(torch.bincount(cells[b], minlength=4), torch.full((4,), 5))
        az = torch.atan2(xyz[b, :, 0], xyz[b, :, 2])
        rng = torch.hypot(xyz[b, :, 0], xyz[b, :, 2])
        left = set(az.argsort()[:10].tolist())
        for n in range(20):
            col = 0 if n in left else 1
            members = [m for m in range(20) if (m in left) == (col == 0)]
            near = sorted(members, key=lambda m: float(rng[m]))[:5]
            assert int(cells[b, n]) == (0 if n in near else 1) * 2 + col


def test_token_error_weights_geometry_channels():
    torch.manual_seed(0)
    model = LAQ(LAQConfig(**{**SMALL, "geometry_channels": 2, "geometry_weight": 3.0}))
    pred, target = torch.randn(2, 10, 6), torch.randn(2, 10, 6)
    sq = (pred - target) ** 2
    expected = sq[..., :4].mean((1, 2)) + 3.0 * sq[..., 4:].mean((1, 2))
    torch.testing.assert_close(model.token_error(pred, target), expected)
    plain = LAQ(LAQConfig(**SMALL))
    torch.testing.assert_close(plain.token_error(pred, target), sq.mean((1, 2)))


def test_token_error_weights_the_scene_channels():
    # channels: 2 of every point, 2 above the ground (scene), 2 geometry
    torch.manual_seed(0)
    model = LAQ(LAQConfig(**{**SMALL, "geometry_channels": 2, "scene_channels": 2, "scene_weight": 3.0}))
    pred, target = torch.randn(2, 10, 6), torch.randn(2, 10, 6)
    sq = (pred - target) ** 2
    per_token = (sq[..., 0] + sq[..., 1] + 3.0 * (sq[..., 2] + sq[..., 3])) / (2 + 3.0 * 2)
    expected = per_token.mean(1) + sq[..., 4:].mean((1, 2))
    torch.testing.assert_close(model.token_error(pred, target), expected)
    even = LAQ(LAQConfig(**{**SMALL, "geometry_channels": 2, "scene_channels": 2}))
    torch.testing.assert_close(even.token_error(pred, target), sq[..., :4].mean((1, 2)) + sq[..., 4:].mean((1, 2)))
    with pytest.raises(ValueError, match="scene_channels"):
        LAQConfig(**{**SMALL, "geometry_channels": 2, "scene_channels": 4})


def test_empty_tokens_embed_as_the_learned_empty_vector():
    torch.manual_seed(0)
    model = LAQ(LAQConfig(**SMALL))
    with torch.no_grad():
        model.empty.normal_()
    t0, x0, _, _ = inputs()
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[:, 4] = False
    other = t0.clone()
    other[:, 4] += 100.0  # features of an empty token must not matter
    a, b = model.embed(t0, x0, mask), model.embed(other, x0, mask)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[:, 4], model.empty + model.position(x0[:, 4]))


def test_joint_temporal_mixing_reaches_other_tokens_per_token_does_not():
    """With no spatial blocks, only 'joint' lets a change of frame t+offset's token 7 alter the encoding at token 2."""
    torch.manual_seed(0)
    t0, x0, t1, x1 = inputs()
    moved = t1.clone()
    moved[:, 7] += torch.arange(6.0)  # not a constant shift (the input LayerNorm would remove it)
    for mode, reaches in (("joint", True), ("per_token", False)):
        model = LAQ(LAQConfig(**{**SMALL, "spatial_depth": 0, "temporal_mode": mode})).eval()
        seen = {}

        def hook(_module, _inputs, output, seen=seen):
            seen["out"] = output

        handle = model.temporal[-1].register_forward_hook(hook)
        model.encode(t0, x0, t1, x1)
        before = seen["out"].clone()
        model.encode(t0, x0, moved, x1)
        handle.remove()
        b, n = 3, 10
        as_tokens = (lambda h: h.reshape(b, 2, n, -1)[:, :, 2]) if mode == "joint" else (lambda h: h.reshape(b, n, 2, -1)[:, 2])
        changed = not torch.allclose(as_tokens(before), as_tokens(seen["out"]))
        assert changed == reaches, mode


def test_one_code_reading_four_cells_sees_every_cell():
    """code_seq_len 1 with read_cells 4: one code per pair whose latent depends on the tokens of every cell
    (each cell is read by its own query, then concatenated), and a read_cells that S does not divide is refused."""
    torch.manual_seed(0)
    model = LAQ(LAQConfig(**{**SMALL, "code_seq_len": 1, "read_cells": 4})).eval()
    t0, x0, t1, x1 = inputs(b=2, n=12)
    t1 = t1.requires_grad_(True)
    out = model(t0, x0, t1, x1)
    assert out.indices.shape == (2, 1) and out.latent.shape == (2, 1, 8)
    out.latent[0].sum().backward()
    cells = spatial_cells(x0, 4)[0]
    reach = t1.grad[0].abs().sum(-1)  # (N,) how much each token of pair 0 moves its latent
    assert all(reach[cells == c].sum() > 0 for c in range(4))
    assert t1.grad[1].abs().sum() == 0  # pairs stay separate
    with pytest.raises(ValueError, match="read_cells"):
        LAQConfig(**{**SMALL, "code_seq_len": 3, "read_cells": 4})


def test_warp_moves_tokens_by_the_rigid_motion():
    """``warp_tokens`` on a 4 m grid: a 4 m forward shift hands each cell the content of the cell 4 m nearer;
    a 90 degree yaw hands the cell at (x, z) = (0, 4) the content of (4, 0); zero motion is the copy (narrow
    Gaussian)."""
    model = LAQ(LAQConfig(**{**SMALL, "warp": True, "warp_sigma_m": 0.5}))
    xs, zs = torch.meshgrid(torch.arange(-2.0, 3.0) * 4, torch.arange(-2.0, 3.0) * 4, indexing="ij")
    xyz = torch.stack([xs.flatten(), torch.zeros(25), zs.flatten()], -1)[None]  # (1, 25, 3)
    tokens = torch.randn(1, 25, 6)

    def index(x, z):
        return int(((xyz[0, :, 0] == x) & (xyz[0, :, 2] == z)).nonzero())

    still = model.warp_tokens(tokens, xyz, torch.zeros(1, 3))
    torch.testing.assert_close(still, tokens, atol=1e-6, rtol=0)
    forward = model.warp_tokens(tokens, xyz, torch.tensor([[0.0, 0.0, 1.0]]))  # shift 4 m along z
    torch.testing.assert_close(forward[0, index(4.0, 8.0)], tokens[0, index(4.0, 4.0)], atol=1e-5, rtol=0)
    turn = model.warp_tokens(tokens, xyz, torch.tensor([[torch.pi / 2 / 0.3, 0.0, 0.0]]))
    torch.testing.assert_close(turn[0, index(0.0, 4.0)], tokens[0, index(4.0, 0.0)], atol=1e-5, rtol=0)


def test_warp_motion_starts_at_zero_and_learns_from_the_loss():
    """The motion map is zero-initialised (the warp starts as a near-copy) and receives gradient through the warp."""
    torch.manual_seed(0)
    model = LAQ(LAQConfig(**{**SMALL, "warp": True})).train()
    assert model.motion.weight.abs().sum() == 0
    model(*inputs()).loss.backward()
    assert model.motion.bias.grad.abs().sum() > 0


def test_warp_gate_mixes_moved_and_unmoved_tokens_per_cell():
    """``warp_gate``: the start is g · moved + (1 − g) · unmoved per token, g = sigmoid(4) at initialisation; a gate driven
    to 1 on some cells and 0 on others moves exactly those cells (the ungated warp there, frame t elsewhere)."""
    torch.manual_seed(0)
    model = LAQ(LAQConfig(**{**SMALL, "warp": True, "warp_gate": True})).eval()
    t0, x0, _, _ = inputs(b=2, n=12)
    first = model.embed(t0, x0)
    motion = torch.tensor([[0.4, 0.3, -0.8], [-1.0, 0.0, 0.5]])
    moved = model.warp_tokens(t0, x0, motion)
    share = torch.sigmoid(torch.tensor(4.0))
    torch.testing.assert_close(model.warped_base(first, t0, x0, motion), t0 + share * (moved - t0))
    chosen = torch.zeros(12, dtype=torch.bool)
    chosen[::3] = True
    with torch.no_grad():  # a gate that reads one embedding channel, set to +-1 per cell
        model.gate.weight.zero_()
        model.gate.weight[0, 0] = 100.0
        model.gate.bias.zero_()
    first = first.clone()
    first[..., 0] = torch.where(chosen, 1.0, -1.0)
    start = model.warped_base(first, t0, x0, motion)
    torch.testing.assert_close(start[:, chosen], moved[:, chosen])
    torch.testing.assert_close(start[:, ~chosen], t0[:, ~chosen])
    with pytest.raises(ValueError, match="warp_gate needs warp"):
        LAQConfig(**{**SMALL, "warp_gate": True})


def test_warp_gate_off_is_the_plain_warp():
    """Without ``warp_gate`` the start is the moved tokens and the model has no gate parameters."""
    model = LAQ(LAQConfig(**{**SMALL, "warp": True})).eval()
    t0, x0, _, _ = inputs()
    motion = torch.tensor([[0.2, -0.1, 0.7]] * 3)
    assert not hasattr(model, "gate")
    start = model.warped_base(model.embed(t0, x0), t0, x0, motion)
    torch.testing.assert_close(start, model.warp_tokens(t0, x0, motion))
