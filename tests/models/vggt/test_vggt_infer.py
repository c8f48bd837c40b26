"""Chunked inference: output contract, chunk chaining with known geometry, point-cloud sampling."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.spatial.transform import Rotation

from pipeline.geometry.sampling import farthest_point_sampling
from pipeline.models.vggt import build_vggt, vggt_tiny
from pipeline.models.vggt.geometry import extri_intri_to_pose_encoding
from pipeline.models.vggt.infer import autocast_dtype, chunk_ranges, point_cloud_from_outputs, run_vggt


def test_chunk_ranges():
    assert chunk_ranges(7, 3, 0) == [(0, 3), (3, 6), (6, 7)]
    assert chunk_ranges(7, 3, 1) == [(0, 3), (2, 5), (4, 7)]
    assert chunk_ranges(2, 5, 1) == [(0, 2)]
    with pytest.raises(ValueError):
        chunk_ranges(5, 1, 1)


def test_autocast_is_off_on_cpu():
    assert autocast_dtype(torch.device("cpu")) is None


def test_run_vggt_tiny_contract():
    model = build_vggt(vggt_tiny(enable_track=False), seed=0)
    frames = np.random.default_rng(0).integers(0, 256, (4, 60, 84, 3), dtype=np.uint8)
    out = run_vggt(model, frames, frames_per_chunk=2, target_size=98, chain_chunks=False, point_head=True)
    S, (h, w) = 4, tuple(out["pre_model_hw"])
    assert (h, w) == (70, 98)
    assert out["depth"].shape == (S, h, w) and out["depth_conf"].shape == (S, h, w)
    assert out["extrinsic"].shape == (S, 3, 4) and out["intrinsic"].shape == (S, 3, 3)
    assert out["world_points"].shape == (S, h, w, 3) and out["world_points_head"].shape == (S, h, w, 3)
    assert out["chunk_index"].tolist() == [0, 0, 1, 1]
    assert str(out["weights_source"]) == "random-init (no checkpoint)"
    # intrinsics in original pixels: principal point at the original image centre, focal scaled by 84/98
    np.testing.assert_allclose(out["intrinsic"][:, :2, 2], np.tile([42.0, 30.0], (S, 1)), atol=1e-4)
    np.testing.assert_allclose(out["intrinsic"][:, 0, 0], out["intrinsic_model"][:, 0, 0] * 84 / 98, rtol=1e-5)
    assert np.isfinite(out["world_points"]).all()


class FakeVGGT(nn.Module):
    """Returns exact geometry of a known scene, each chunk in its first camera's frame at its own scale.

    Frame identity is read from the image colour (frame i is filled with value 20 + 10 i)."""

    def __init__(self, R, t, depth_fn, fov=1.0):
        super().__init__()
        self.cfg = vggt_tiny()
        self.R, self.t, self.depth_fn, self.fov = R, t, depth_fn, fov
        self.weights_source = "fake"

    def forward(self, images, heads=None):
        ids = ((images[:, 0, 0, 0] * 255 - 20) / 10).round().long().tolist()
        h, w = images.shape[-2:]
        sigma = 1.5 + 0.7 * ids[0]  # arbitrary per-chunk scale
        R0, t0 = self.R[ids[0]], self.t[ids[0]]
        E, D = [], []
        for i in ids:
            Rc = self.R[i] @ R0.T
            E.append(torch.cat((Rc, ((self.t[i] - Rc @ t0) / sigma)[:, None]), -1))
            D.append(self.depth_fn(i, h, w) / sigma)
        E = torch.stack(E)[None]
        K = torch.zeros(1, len(ids), 3, 3, dtype=torch.float64)
        K[..., 0, 0] = K[..., 1, 1] = (w / 2) / np.tan(self.fov / 2)
        enc = extri_intri_to_pose_encoding(E, K, (h, w)).float()
        enc[..., 7] = self.fov
        depth = torch.stack(D)[None, ..., None].float()
        return {"pose_enc": enc, "depth": depth, "depth_conf": torch.ones_like(depth[..., 0])}


def test_chained_chunks_recover_the_sequence_frame():
    S = 7
    R = torch.from_numpy(Rotation.from_euler("xyz", np.random.default_rng(1).normal(0, 0.3, (S, 3))).as_matrix())
    t = torch.from_numpy(np.random.default_rng(2).normal(0, 1.0, (S, 3)))

    def depth_fn(i, h, w):
        v, u = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        return (2.0 + 0.1 * i + 0.01 * u + 0.02 * v).double()

    frames = np.stack([np.full((42, 56, 3), 20 + 10 * i, dtype=np.uint8) for i in range(S)])
    out = run_vggt(FakeVGGT(R, t, depth_fn), frames, frames_per_chunk=3, target_size=56, chain_chunks=True)
    assert out["chunk_index"].tolist() == [0, 0, 0, 1, 1, 2, 2]
    h, w = out["pre_model_hw"]
    sigma0 = 1.5  # chunk 0 starts at frame 0
    for i in range(S):
        Rc = R[i] @ R[0].T
        np.testing.assert_allclose(out["extrinsic"][i, :, :3], Rc.numpy(), atol=1e-5)
        np.testing.assert_allclose(out["extrinsic"][i, :, 3], ((t[i] - Rc @ t[0]) / sigma0).numpy(), atol=1e-5)
        np.testing.assert_allclose(out["depth"][i], (depth_fn(i, h, w) / sigma0).numpy(), rtol=1e-5)
    # chunk k is rescaled by sigma_k / sigma_0 (its own scale relative to chunk 0)
    assert out["chunk_scale"][0] == 1.0 and out["chunk_scale"][1] == pytest.approx((1.5 + 0.7 * 2) / 1.5)


def _greedy_fps_reference(p: np.ndarray, k: int) -> list[int]:
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)  # full distance matrix (brute force)
    chosen = [0]
    for _ in range(k - 1):
        chosen.append(int(np.argmax(d[:, chosen].min(axis=1))))
    return chosen


def test_farthest_point_sampling_matches_brute_force():
    p = np.random.default_rng(3).random((300, 3))
    got = farthest_point_sampling(torch.from_numpy(p), 25).tolist()
    assert got == _greedy_fps_reference(p, 25)


def test_point_cloud_from_outputs():
    rng = np.random.default_rng(4)
    S, h, w = 2, 10, 12
    outputs = {
        "world_points": rng.normal(size=(S, h, w, 3)).astype(np.float32),
        "depth": np.abs(rng.normal(size=(S, h, w))).astype(np.float32) + 0.1,
        "depth_conf": rng.uniform(1, 5, (S, h, w)).astype(np.float32),
        "images_model": rng.integers(0, 256, (S, h, w, 3), dtype=np.uint8),
    }
    outputs["depth"][0, 0, 0] = 0.0  # invalid pixel is never returned
    for method in ("random", "fps"):
        pc = point_cloud_from_outputs(outputs, 50, method=method, conf_percentile=50)
        assert pc["points"].shape == (50, 3) and pc["colors"].shape == (50, 3)
        f, (v, u) = pc["frame"], pc["pixel"].T
        np.testing.assert_array_equal(pc["points"], outputs["world_points"][f, v, u])
        assert np.all(pc["conf"] >= np.percentile(outputs["depth_conf"], 50) - 1e-3)
        assert not np.any((f == 0) & (v == 0) & (u == 0))
    everything = point_cloud_from_outputs(outputs, 10_000)
    assert everything["points"].shape[0] == S * h * w - 1
