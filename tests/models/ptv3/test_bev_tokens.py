"""Bird's-eye token grid: cell assignment and per-cell means against a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.models.ptv3.bev_tokens import BEVGrid, pool_bev


def test_cell_of_and_centres_follow_the_documented_order():
    grid = BEVGrid(cells_x=4, cells_z=3, width=8.0, depth=9.0)  # 2 m x 3 m cells
    assert grid.n_tokens == 12
    centres = grid.centres()
    assert centres[0].tolist() == [-3.0, 0.0, 1.5] and centres[3].tolist() == [3.0, 0.0, 1.5]
    assert centres[4].tolist() == [-3.0, 0.0, 4.5]  # row 1 is farther from the camera
    assert np.array_equal(grid.cell_of(centres), np.arange(12))
    outside = np.array([[-4.01, 0.0, 1.0], [4.0, 0.0, 1.0], [0.0, 0.0, -0.1], [0.0, 0.0, 9.0]])
    assert grid.cell_of(outside).tolist() == [-1, -1, -1, -1]  # half-open [-w/2, w/2) x [0, depth)
    assert grid.cell_of(np.array([[-4.0, 5.0, 0.0]])).tolist() == [0]  # height is ignored


def test_pool_bev_matches_brute_force():
    rng = np.random.default_rng(0)
    grid = BEVGrid(5, 4, 20.0, 40.0)
    xyz = np.stack([rng.uniform(-12, 12, 500), rng.normal(0, 2, 500), rng.uniform(-2, 30, 500)], 1)  # rows 3 empty
    feats = rng.normal(size=(500, 7)).astype(np.float32)
    out = pool_bev(xyz, feats, grid)
    assert out["tokens"].shape == (20, 7) and out["token_xyz"].shape == (20, 3) and out["token_mask"].dtype == bool
    for n in range(20):
        row, col = divmod(n, 5)
        x0, z0 = -10.0 + 4.0 * col, 10.0 * row
        inside = [i for i in range(500) if x0 <= xyz[i, 0] < x0 + 4.0 and z0 <= xyz[i, 2] < z0 + 10.0]
        assert out["counts"][n] == len(inside) and out["token_mask"][n] == bool(inside)
        if inside:
            np.testing.assert_allclose(out["tokens"][n], feats[inside].mean(0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(out["token_xyz"][n], xyz[inside].mean(0), rtol=1e-5, atol=1e-5)
        else:
            assert not out["tokens"][n].any()
            np.testing.assert_allclose(out["token_xyz"][n], grid.centres()[n])
    assert not out["token_mask"][15:].any()  # z >= 30 m: no points
    assert out["counts"].sum() == ((np.abs(xyz[:, 0]) < 10) & (xyz[:, 0] >= -10) & (xyz[:, 2] >= 0)).sum()


def test_bad_grid_and_shapes_are_rejected():
    with pytest.raises(ValueError, match="cell"):
        BEVGrid(0, 3, 1.0, 1.0)
    with pytest.raises(ValueError, match="extent"):
        BEVGrid(2, 3, -1.0, 1.0)
    with pytest.raises(ValueError, match="pool_bev"):
        pool_bev(np.zeros((4, 2)), np.zeros((4, 3)), BEVGrid(2, 2, 1.0, 1.0))
