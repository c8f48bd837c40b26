"""Stage `vggt` end to end on the small generated fixture (tiny preset, random weights, 3 frames)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.io import pointcloud_table
from pipeline.io.synthia import read_labels, read_rgb
from pipeline.steps import vggt  # RANDOM_NOTE
from stages import vggt as vggt_stage

REPO = Path(__file__).parents[2]
SEQ = "SYNTHIA-SEQS-01-GENERATED"
CAM = "Stereo_Left/Omni_F"
VGGT_PARAMS = {"weights": "random", "preset": "tiny", "frames_per_chunk": 2, "target_size": 70, "mode": "crop",
               "max_points": 300, "sampling": "random", "max_frames": 3, "seed": 0}


@pytest.fixture
def project(tmp_path, generated_root, monkeypatch):
    """Throw-away project: dvc.yaml, params.yaml with a small `vggt` section, data/raw with one sequence."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["vggt"].update(VGGT_PARAMS)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(generated_root / SEQ, tmp_path / "data/raw" / SEQ)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def set_params(root: Path, **values) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["vggt"].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def run_stage(args=("--device", "cpu")):
    result = CliRunner().invoke(vggt_stage.app, list(args))
    stderr = result.stderr or result.output
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    return result.exit_code, errors, stderr


def test_end_to_end_outputs_metrics_and_points(project):
    code, errors, stderr = run_stage()
    assert code == 0 and not errors, stderr
    assert "WARNING: vggt: RANDOM WEIGHTS" in stderr

    metrics = json.loads((project / "reports/vggt/metrics.json").read_text())
    assert metrics["random_weights"] is True and metrics["note"] == vggt.RANDOM_NOTE
    assert metrics["weights_source"] == "random-init (no checkpoint)"
    assert metrics["frames"] == 3 and metrics["model_hw"] == [42, 70]  # 160x96 -> 70 wide, round(42)=42
    assert metrics["depth_abs_rel"]["count"] == 3 and np.isfinite(metrics["depth_abs_rel"]["mean"])
    assert 0.0 <= metrics["depth_delta1"]["mean"] <= 1.0
    assert metrics["rotation_error_deg"]["count"] == 2 and metrics["translation_dir_error_deg"]["count"] == 2
    facts = json.loads((project / "reports/vggt/run.json").read_text())  # run facts, not DVC metrics
    assert facts["peak_rss_mb"] > 0 and facts["frames_per_s"] > 0 and "peak_rss_mb" not in metrics
    assert (project / "reports/vggt/figures" / f"{SEQ}.png").stat().st_size > 1000

    npz = np.load(project / "data/vggt" / SEQ / "Stereo_Left_Omni_F.npz")
    assert npz["depth"].shape == (3, 42, 70) and npz["depth_conf"].shape == (3, 42, 70)
    assert npz["extrinsic"].shape == (3, 3, 4) and npz["intrinsic"].shape == (3, 3, 3)
    assert npz["frame"].tolist() == [0, 1, 2] and bool(npz["random_weights"])
    assert str(npz["weights_source"]) == "random-init (no checkpoint)"
    # intrinsics are in original pixels: principal point at the original image centre (crop keeps all of it)
    np.testing.assert_allclose(npz["intrinsic"][:, :2, 2], np.tile([80.0, 48.0], (3, 1)), atol=0.6)

    points_root = project / "data/vggt/points"
    manifest = json.loads((points_root / "manifest.json").read_text())
    assert manifest["random_weights"] is True and manifest["coordinates"] == "camera"
    table = pointcloud_table.read_partition(points_root, SEQ, CAM)
    assert list(table.columns) == pointcloud_table.SCHEMA.names
    assert sorted(table["frame"].unique()) == [0, 1, 2] and len(table) == 3 * 300
    frame1 = pointcloud_table.read_frame(points_root, SEQ, CAM, 1)
    # points back-project VGGT depth with the model intrinsics: z = depth, and reprojection lands on the pixel
    K = npz["intrinsic_model"][1]
    np.testing.assert_allclose(frame1["z"], frame1["depth"], rtol=1e-6)
    u_model = K[0, 0] * frame1["x"] / frame1["z"] + K[0, 2]
    scale_x, offset_x = npz["pre_scale_xy"][1, 0], npz["pre_offset_xy"][1, 0]
    u_orig_expected = np.floor((np.round(u_model) + 0.5 - offset_x) / scale_x)
    np.testing.assert_array_equal(frame1["u"], u_orig_expected)
    # colours and labels come from the original pixel (u, v)
    rgb = read_rgb(project / "data/raw" / SEQ / "RGB" / CAM / "000001.png")
    class_id, instance_id = read_labels(project / "data/raw" / SEQ / "GT/LABELS" / CAM / "000001.png")
    u, v = frame1["u"].to_numpy(), frame1["v"].to_numpy()
    np.testing.assert_array_equal(frame1[["r", "g", "b"]].to_numpy(), rgb[v, u])
    np.testing.assert_array_equal(frame1["class_id"], class_id[v, u])
    np.testing.assert_array_equal(frame1["instance_id"], instance_id[v, u])
    normals = frame1[["nx", "ny", "nz"]].to_numpy()
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)


def test_missing_rgb_frame_is_one_line_and_leaves_no_output(project):
    # a second sequence with a missing RGB frame fails after the first one has been processed
    second = project / "data/raw" / "SYNTHIA-SEQS-02-GENERATED"
    shutil.copytree(project / "data/raw" / SEQ, second)
    (second / "RGB" / CAM / "000002.png").unlink()
    code, errors, stderr = run_stage()
    assert code == 1
    assert len(errors) == 1 and re.search(r"02-GENERATED/RGB/Stereo_Left/Omni_F/000002\.png: file not found",
                                          errors[0]), stderr
    assert not (project / "data/vggt").exists()
    assert not list((project / "data").glob(".vggt*"))
    assert not (project / "reports/vggt/metrics.json").exists()
    assert not (project / "reports/vggt/figures").exists()


def test_nonexistent_weights_file_is_one_error_line(project, tmp_path):
    set_params(project, weights=str(tmp_path / "no_such_checkpoint.pt"))
    code, errors, stderr = run_stage()
    assert code == 1
    assert len(errors) == 1 and "no_such_checkpoint.pt" in errors[0], stderr
    assert not (project / "data/vggt").exists()


def test_relative_checkpoint_path_is_not_taken_for_a_hub_repo(project):
    set_params(project, weights="weights/model.pt")
    code, errors, stderr = run_stage()
    assert code == 1
    assert len(errors) == 1 and "weights file not found: weights/model.pt" in errors[0], stderr


def test_bad_target_size_is_a_params_error(project):
    set_params(project, target_size=100)
    code, errors, _ = run_stage()
    assert code == 1 and len(errors) == 1 and "'vggt.target_size' = 100: Input should be a multiple of 14" in errors[0]
