"""Stage `concerto` end to end on the small generated fixture (tiny preset, random weights, 3 frames)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.data import features_cache
from pipeline.io import pointcloud_table
from pipeline.models.ptv3.bev_tokens import BEVGrid
from pipeline.steps import concerto  # RANDOM_NOTE, ZUP_FROM_CV
from pipeline.steps.pointclouds import build_pointclouds
from stages import concerto as concerto_stage
from tests.conftest import repo_params

REPO = Path(__file__).parents[2]
SEQ = "SYNTHIA-SEQS-01-GENERATED"
CAM = "Stereo_Left/Omni_F"
POINTS = 300
PARAMS = {"weights": "random", "preset": "tiny", "points_from": "pointclouds", "grid_size": 0.05,
          "tokens": "fps", "spatial_tokens": 8, "seed": 0, "max_points": 0,
          "bev_cells_x": 4, "bev_cells_z": 3, "bev_width": 16.0, "bev_depth": 30.0, "bev_ground": "keep", "bev_ground_margin": 0.3}


@pytest.fixture(scope="module")
def pointclouds(generated_root, tmp_path_factory) -> Path:
    """data/pointclouds of the fixture: one camera, 300 points per frame."""
    out = tmp_path_factory.mktemp("pc") / "pointclouds"
    build_pointclouds(generated_root, out, (CAM,), repo_params("pointcloud", max_points=POINTS), workers=1, progress=False)
    return out


@pytest.fixture
def project(tmp_path, pointclouds, monkeypatch):
    """Throw-away project: dvc.yaml, params.yaml with a small `concerto` section, data/pointclouds."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["concerto"].update(PARAMS)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(pointclouds, tmp_path / "data/pointclouds")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    return tmp_path


def set_params(root: Path, **values) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["concerto"].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def run_stage(args=("--device", "cpu", "--no-progress")):
    result = CliRunner().invoke(concerto_stage.app, list(args))
    stderr = result.stderr or result.output
    return result.exit_code, [line for line in stderr.splitlines() if line.startswith("error:")], stderr


def voxel_count(xyz_zup: np.ndarray, grid: float) -> int:
    """Occupied voxels of the upstream grid (centre shift, floor) by brute force over points."""
    lo, hi = xyz_zup.min(0), xyz_zup.max(0)
    shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return len({tuple(v) for v in np.floor((xyz_zup - shift) / grid).astype(np.int64)})


def test_end_to_end_outputs_manifest_metrics(project):
    code, errors, stderr = run_stage()
    assert code == 0 and not errors, stderr
    assert "WARNING: concerto: RANDOM WEIGHTS" in stderr

    manifest = features_cache.load_manifest(project / "data/features")
    assert manifest["random_weights"] is True and manifest["weights_source"] == "random-init (no checkpoint)"
    assert manifest["channels"] == 128 and manifest["tokens"] == 8  # tiny up-cast width 32 + 32 + 64
    assert manifest["preset"] == "tiny" and manifest["points_from"] == "pointclouds"
    assert manifest["grid_size"] == 0.05 and manifest["camera"] == [CAM] and manifest["sequences"] == [SEQ]
    assert "mean" in manifest["pooling"] and manifest["points_units"] == "metres"

    feats = features_cache.load_features(project / "data/features", SEQ, CAM)  # validates dtypes, finiteness
    assert (project / "data/features" / SEQ / "Stereo_Left_Omni_F.npz").is_file()
    assert feats["frames"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(feats["time_s"], [0.0, 0.2, 0.4], rtol=1e-6)
    assert feats["global"].shape == (3, 128) and feats["tokens"].shape == (3, 8, 128)
    assert feats["token_xyz"].shape == (3, 8, 3) and feats["token_mask"].shape == (3, 8)
    assert feats["global"].std() > 0 and not np.array_equal(feats["global"][0], feats["global"][1])

    table = pointcloud_table.read_partition(project / "data/pointclouds", SEQ, CAM)
    for i, frame in enumerate(feats["frames"]):
        pts = table[table.frame == frame][["x", "y", "z"]].to_numpy(np.float64)
        # token centres are voxel representatives: input points, back in the OpenCV camera frame
        dist = np.linalg.norm(pts[None] - feats["token_xyz"][i][:, None].astype(np.float64), axis=2).min(1)
        assert dist.max() < 1e-4
        valid = feats["token_mask"][i]
        assert valid.sum() == min(8, voxel_count(pts @ concerto.ZUP_FROM_CV.T, 0.05))
        assert len({tuple(p) for p in feats["token_xyz"][i][valid]}) == valid.sum()  # distinct centres

    metrics = json.loads((project / "reports/concerto/metrics.json").read_text())
    assert metrics["random_weights"] is True and metrics["note"] == concerto.RANDOM_NOTE
    assert metrics["weights_source"] == "random-init (no checkpoint)"
    assert metrics["frames"] == 3 and metrics["points"] == 3 * POINTS and metrics["sequences"] == 1
    facts = json.loads((project / "reports/concerto/run.json").read_text())  # run facts, not DVC metrics
    assert facts["points_per_s"] > 0 and facts["peak_rss_mb"] > 0 and facts["seconds"] > 0
    assert not {"points_per_s", "peak_rss_mb", "seconds"} & set(metrics)
    g = feats["global"].astype(np.float64)
    assert metrics["features"]["global_mean"] == pytest.approx(g.mean(), rel=1e-4)
    assert metrics["features"]["global_std"] == pytest.approx(g.std(), rel=1e-4)
    assert metrics["features"]["dead_channel_fraction"] == pytest.approx((g.std(0) < 1e-6).mean())


def test_matches_direct_library_call_z_up(project):
    """The stage's global/tokens for a frame equal the library run on the frame's points rotated to z-up."""
    from pipeline.models.ptv3.features import extract_features
    from pipeline.models.ptv3.loader import build_random

    assert run_stage()[0] == 0
    feats = features_cache.load_features(project / "data/features", SEQ, CAM)
    d = pointcloud_table.read_frame(project / "data/pointclouds", SEQ, CAM, 1)
    r = concerto.ZUP_FROM_CV
    assert np.isclose(np.linalg.det(r), 1.0) and np.allclose(r @ np.array([0.0, -1.0, 0.0]), [0, 0, 1])  # up = -y_cv
    ref = extract_features(build_random("tiny", seed=0), d[["x", "y", "z"]].to_numpy(np.float64) @ r.T,
                           d[["r", "g", "b"]].to_numpy(np.uint8), d[["nx", "ny", "nz"]].to_numpy(np.float64) @ r.T,
                           grid_size=0.05, seed=0, n_spatial_tokens=8, return_point_features=False)
    np.testing.assert_allclose(feats["global"][1], ref["global_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["tokens"][1], ref["spatial_tokens"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["token_xyz"][1], ref["spatial_token_xyz"] @ r, atol=1e-5)


def test_deterministic_and_max_points(project):
    assert run_stage()[0] == 0
    first = features_cache.load_features(project / "data/features", SEQ, CAM)
    manifest = features_cache.load_manifest(project / "data/features")
    assert run_stage()[0] == 0
    second = features_cache.load_features(project / "data/features", SEQ, CAM)
    for key in features_cache.ARRAYS:
        assert np.array_equal(first[key], second[key]), key
    assert features_cache.load_manifest(project / "data/features") == manifest

    set_params(project, max_points=100, spatial_tokens=200)  # more tokens than voxels: masked repeats
    assert run_stage()[0] == 0
    capped = features_cache.load_features(project / "data/features", SEQ, CAM)
    metrics = json.loads((project / "reports/concerto/metrics.json").read_text())
    assert metrics["points"] == 3 * 100 and capped["tokens"].shape == (3, 200, 128)
    assert not capped["token_mask"].all()
    from pipeline.data.sampling import random_subsample

    table = pointcloud_table.read_partition(project / "data/pointclouds", SEQ, CAM)
    for i, frame in enumerate(capped["frames"]):
        pts = table[table.frame == frame][["x", "y", "z"]].to_numpy(np.float64)
        keep = random_subsample(len(pts), 100, np.random.default_rng([0, 0, int(frame)]))
        assert capped["token_mask"][i].sum() == voxel_count(pts[keep] @ concerto.ZUP_FROM_CV.T, 0.05)
        valid = capped["token_mask"][i]
        assert np.array_equal(capped["tokens"][i][~valid][: valid.sum()], capped["tokens"][i][valid][: (~valid).sum()])


def frame_point_features(project, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixture frame's points (M, 3), camera frame, and the library's per-point features (M, C), called directly."""
    from pipeline.models.ptv3.features import extract_features
    from pipeline.models.ptv3.loader import build_random

    d = pointcloud_table.read_frame(project / "data/pointclouds", SEQ, CAM, frame)
    xyz = d[["x", "y", "z"]].to_numpy(np.float64)
    r = concerto.ZUP_FROM_CV
    point_feats = extract_features(build_random("tiny", seed=0), xyz @ r.T, d[["r", "g", "b"]].to_numpy(np.uint8),
                                   d[["nx", "ny", "nz"]].to_numpy(np.float64) @ r.T, grid_size=0.05, seed=0,
                                   n_spatial_tokens=1)["point_features"]
    return xyz, point_feats


def test_bev_tokens_are_cell_means_of_the_library_point_features(project):
    """tokens=bev: token n of a frame = mean point feature of the points in bird's-eye cell n (brute force)."""
    set_params(project, tokens="bev")
    code, errors, stderr = run_stage()
    assert code == 0 and not errors, stderr
    manifest = features_cache.load_manifest(project / "data/features")
    assert manifest["tokens"] == 12 and manifest["token_layout"] == "bev"
    assert (manifest["bev_cells_x"], manifest["bev_cells_z"], manifest["bev_width"], manifest["bev_depth"]) == (4, 3, 16.0, 30.0)
    feats = features_cache.load_features(project / "data/features", SEQ, CAM)
    xyz, point_feats = frame_point_features(project, 2)
    occupied = 0
    for n in range(12):
        row, col = divmod(n, 4)
        x0, z0 = -8.0 + 4.0 * col, 10.0 * row
        inside = (xyz[:, 0] >= x0) & (xyz[:, 0] < x0 + 4.0) & (xyz[:, 2] >= z0) & (xyz[:, 2] < z0 + 10.0)
        assert feats["token_mask"][2, n] == inside.any()
        if inside.any():
            occupied += 1
            np.testing.assert_allclose(feats["tokens"][2, n], point_feats[inside].mean(0), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(feats["token_xyz"][2, n], xyz[inside].mean(0), rtol=1e-5, atol=1e-4)
        else:
            assert not feats["tokens"][2, n].any()
            np.testing.assert_allclose(feats["token_xyz"][2, n], [x0 + 2.0, 0.0, z0 + 5.0])
    assert occupied >= 2
    metrics = json.loads((project / "reports/concerto/metrics.json").read_text())
    assert metrics["token_layout"] == "bev" and 0 < metrics["points_in_grid_fraction"] <= 1


@pytest.mark.parametrize("mode", ["drop", "fill"])
def test_bev_tokens_leave_the_road_out(project, mode):
    """bev_ground: drop pools only the points more than bev_ground_margin above the frame's fitted plane; fill adds
    the ground points of cells with nothing above. The generator's road and sidewalk points (class labels, not seen
    by the fit) are the ones left out; the tokens' centroids are brute-force means of the pooled points."""
    from pipeline.geometry.ground import height_above_ground

    set_params(project, tokens="bev", bev_ground=mode, bev_ground_margin=0.3)
    code, errors, stderr = run_stage()
    assert code == 0 and not errors, stderr
    feats = features_cache.load_features(project / "data/features", SEQ, CAM)
    d = pointcloud_table.read_frame(project / "data/pointclouds", SEQ, CAM, 2)
    xyz = d[["x", "y", "z"]].to_numpy(np.float64)
    above = height_above_ground(xyz, seed=0) > 0.3
    road = d["class_id"].isin([3, 4]).to_numpy()  # SYNTHIA road, sidewalk
    assert road.sum() > 50 and above[road].mean() < 0.05 and above[~road].mean() > 0.5
    grid = BEVGrid(4, 3, 16.0, 30.0)
    cell = grid.cell_of(xyz)
    pooled = above if mode == "drop" else above | ~np.isin(cell, cell[above])
    assert (mode == "fill") == bool((pooled & ~above & (cell >= 0)).any())  # the fixture frame has such a cell
    inside = pooled & (cell >= 0)
    assert np.array_equal(feats["token_mask"][2], np.isin(np.arange(12), cell[inside]))
    np.testing.assert_allclose(feats["token_xyz"][2][feats["token_mask"][2]],
                               [xyz[inside & (cell == n)].mean(0) for n in np.unique(cell[inside])], rtol=1e-5, atol=1e-4)
    metrics = json.loads((project / "reports/concerto/metrics.json").read_text())
    assert metrics["bev_ground"] == mode and metrics["frames_without_ground_plane"] == 0


def test_bev_tokens_both_hold_every_point_and_the_points_above_the_ground(project):
    """bev_ground: both: each token is [mean feature of all the cell's points, mean feature of its points above the
    ground (zeros where none)], centres and occupancy from all points; the global feature's second half is the mean
    feature of the frame's points above the ground; C doubles in the arrays and the manifest (brute force)."""
    from pipeline.geometry.ground import height_above_ground

    set_params(project, tokens="bev", bev_ground="both", bev_ground_margin=0.3)
    code, errors, stderr = run_stage()
    assert code == 0 and not errors, stderr
    feats = features_cache.load_features(project / "data/features", SEQ, CAM)
    xyz, point_feats = frame_point_features(project, 2)
    c = point_feats.shape[1]
    assert features_cache.load_manifest(project / "data/features")["channels"] == 2 * c
    assert feats["tokens"].shape[-1] == feats["global"].shape[-1] == 2 * c
    above = height_above_ground(xyz, seed=0) > 0.3
    cell = BEVGrid(4, 3, 16.0, 30.0).cell_of(xyz)
    assert np.array_equal(feats["token_mask"][2], np.isin(np.arange(12), cell[cell >= 0]))
    only_ground = 0
    for n in np.unique(cell[cell >= 0]):
        np.testing.assert_allclose(feats["tokens"][2, n, :c], point_feats[cell == n].mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(feats["token_xyz"][2, n], xyz[cell == n].mean(0), rtol=1e-5, atol=1e-4)
        lifted = (cell == n) & above
        if lifted.any():
            np.testing.assert_allclose(feats["tokens"][2, n, c:], point_feats[lifted].mean(0), rtol=1e-4, atol=1e-5)
        else:
            only_ground += 1
            assert not feats["tokens"][2, n, c:].any()
    assert only_ground >= 1  # the fixture frame has a cell of road alone
    np.testing.assert_allclose(feats["global"][2, c:], point_feats[above].mean(0), rtol=1e-4, atol=1e-5)
    metrics = json.loads((project / "reports/concerto/metrics.json").read_text())
    assert metrics["bev_ground"] == "both" and metrics["channels"] == 2 * c


def test_points_from_vggt(project):
    vggt_points = project / "data/vggt/points"
    shutil.copytree(project / "data/pointclouds", vggt_points)
    manifest = json.loads((vggt_points / "manifest.json").read_text())
    manifest["units"] = "vggt (arbitrary scale per sequence, not metres)"
    (vggt_points / "manifest.json").write_text(json.dumps(manifest))
    assert run_stage()[0] == 0
    reference = features_cache.load_features(project / "data/features", SEQ, CAM)

    shutil.rmtree(project / "data/pointclouds")  # the vggt run must not read it
    set_params(project, points_from="vggt")
    code, errors, stderr = run_stage()
    assert code == 0 and not errors, stderr
    out = features_cache.load_manifest(project / "data/features")
    assert out["points_from"] == "vggt" and out["points_units"].startswith("vggt")
    got = features_cache.load_features(project / "data/features", SEQ, CAM)
    for key in features_cache.ARRAYS:
        assert np.array_equal(got[key], reference[key]), key


def world_clouds(root: Path) -> None:
    path = root / "data/pointclouds/manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "coordinates": "world"}))


def pickle_with_code_as_weights(root: Path) -> None:
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (root / "evil.pth").write_bytes(pickle.dumps({"config": {}, "state_dict": Payload()}))
    set_params(root, weights=str(root / "evil.pth"))


@pytest.mark.parametrize("change, pattern", [
    (world_clouds, r"^error: data/pointclouds/manifest\.json: needs point clouds in camera coordinates"),
    (lambda root: (root / "data/pointclouds/manifest.json").write_text("{\"partitions\": ["),
     r"^error: data/pointclouds/manifest\.json: not valid JSON"),
    (pickle_with_code_as_weights, r"^error: .*evil\.pth: not a readable checkpoint, refused by torch\.load"),
    (lambda root: set_params(root, seed=-1), r"^error: params\.yaml: 'concerto\.seed' = -1: Input should be greater than or equal to 0"),
    (lambda root: shutil.rmtree(root / "data/pointclouds"), r"^error: data/pointclouds: point clouds not found"),
    (lambda root: set_params(root, grid=0.1), r"^error: params\.yaml: unknown key 'concerto\.grid'"),
    (lambda root: set_params(root, spatial_tokens=0), r"^error: params\.yaml: 'concerto\.spatial_tokens' = 0: Input should be greater than or equal to 1"),
    (lambda root: set_params(root, tokens="bev", bev_cells_x=0), r"^error: params\.yaml: 'concerto\.bev_cells_x' = 0: Input should be greater"),
    (lambda root: set_params(root, tokens="grid"), r"^error: params\.yaml: 'concerto\.tokens' = 'grid': Input should be 'bev' or 'fps'"),
    (lambda root: set_params(root, weights="/nowhere/model.pth"), r"^error: concerto checkpoint not found"),
])
def test_bad_input_one_line_no_output(project, change, pattern):
    import re

    change(project)
    code, errors, stderr = run_stage()
    assert code == 1 and len(errors) == 1 and re.search(pattern, errors[0]), stderr
    assert not (project / "data/features").exists() and not list((project / "data").glob(".features*"))
    assert not (project / "reports/concerto/metrics.json").exists()


def test_checkpoint_weights_not_random(project):
    """A local official-format .pth: no random-weights warning or note; features follow the file's weights."""
    from pipeline.models.ptv3.loader import build_random, save_checkpoint

    assert run_stage()[0] == 0
    random_run = features_cache.load_features(project / "data/features", SEQ, CAM)
    save_checkpoint(build_random("tiny", seed=5), project / "ckpt/my_tiny.pth")
    set_params(project, weights="ckpt/my_tiny.pth", preset="large")  # preset is ignored for a checkpoint
    code, errors, stderr = run_stage()
    assert code == 0 and not errors and "RANDOM WEIGHTS" not in stderr, stderr
    manifest = features_cache.load_manifest(project / "data/features")
    assert manifest["random_weights"] is False and manifest["weights_source"] == "checkpoint my_tiny.pth"
    assert manifest["preset"] == "my_tiny" and manifest["channels"] == 128 and "note" not in manifest
    metrics = json.loads((project / "reports/concerto/metrics.json").read_text())
    assert metrics["random_weights"] is False and "note" not in metrics
    got = features_cache.load_features(project / "data/features", SEQ, CAM)
    assert not np.allclose(got["global"], random_run["global"])  # other weights (seed 5), other features
    np.testing.assert_array_equal(got["token_mask"], random_run["token_mask"])  # same voxels and FPS centres
    np.testing.assert_array_equal(got["token_xyz"], random_run["token_xyz"])


def test_a_small_input_is_encoded_without_a_worker_pool():
    """Spawning a worker (torch import, encoder build) costs more than a small input's whole encode."""
    per = concerto.POINTS_PER_WORKER
    assert concerto.useful_workers(2, 12_800) == 1  # the smoke test's drives: no pool
    assert concerto.useful_workers(2, per) == 1 and concerto.useful_workers(2, 2 * per) == 2
    assert concerto.useful_workers(2, 64 * 40 * 1024) == 2  # the default drives: 2.6 M points
    assert concerto.useful_workers(0, 10 * per) == 1
    manifest = {"partitions": [{"points": 40960}, {"points": 1024}, {"frames": 3}]}
    assert concerto.manifest_points(manifest) == 41984


def test_a_frame_without_ground_plane_keeps_every_point_and_is_counted():
    """bev_points on a wall facing the camera (no plane near the camera's down axis): every point pooled, counted."""
    from pipeline.params.concerto import ConcertoParams

    rng = np.random.default_rng(0)
    wall = np.column_stack([rng.uniform(-5, 5, 400), rng.uniform(-3, 3, 400), np.full(400, 8.0)])
    grid = BEVGrid(4, 3, 16.0, 30.0)
    for mode, counted in (("keep", 0), ("drop", 1), ("fill", 1)):
        stats = concerto.new_stats()
        p = ConcertoParams.model_validate({**PARAMS, "tokens": "bev", "bev_ground": mode})
        assert concerto.bev_points(wall, grid, p, stats).all() and stats["frames_without_ground"] == counted
    stats = concerto.new_stats()  # both: the second half pools every point too, so it repeats the first
    features = rng.normal(size=(400, 5))
    p = ConcertoParams.model_validate({**PARAMS, "tokens": "bev", "bev_ground": "both"})
    cells, above_mean = concerto.bev_cells(wall, features, grid, p, stats)
    np.testing.assert_array_equal(cells["tokens"][:, :5], cells["tokens"][:, 5:])
    np.testing.assert_allclose(above_mean, features.mean(0), rtol=1e-6)
    assert stats["frames_without_ground"] == 1
