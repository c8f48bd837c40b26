"""Bad input to a stage: exit code 1, one `error:` line naming the file or key, no partial output."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from stages import pointclouds

REPO = Path(__file__).parents[2]
SEQ = "SYNTHIA-SEQS-01-GENERATED"
CAM = "Stereo_Left/Omni_F"


@pytest.fixture
def project(tmp_path, generated_root, monkeypatch):
    """A throw-away project folder: dvc.yaml, small params.yaml, data/raw with one camera."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pointcloud"]["max_points"] = 256
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(generated_root / SEQ, tmp_path / "data/raw" / SEQ)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    return tmp_path


def run_stage(args=()):
    result = CliRunner().invoke(pointclouds.app, ["--workers", "1", *args])
    errors = [line for line in (result.stderr or result.output).splitlines() if line.startswith("error:")]
    return result.exit_code, errors


def test_good_input_writes_output(project):
    code, errors = run_stage()
    assert code == 0 and not errors
    assert (project / "data/pointclouds/manifest.json").is_file()
    assert (project / "reports/pointclouds/metrics.json").is_file()


def corrupt_eight_bit_depth(root: Path) -> str:
    path = root / "data/raw" / SEQ / "Depth" / CAM / "000001.png"
    cv2.imwrite(str(path), np.full((96, 160, 3), 9, dtype=np.uint8))
    return r"000001\.png: depth must be a 16-bit PNG"


def corrupt_truncated_png(root: Path) -> str:
    path = root / "data/raw" / SEQ / "GT/LABELS" / CAM / "000002.png"
    path.write_bytes(path.read_bytes()[:100])
    return r"LABELS/Stereo_Left/Omni_F/000002\.png: not a readable PNG"


def corrupt_wrong_size(root: Path) -> str:
    path = root / "data/raw" / SEQ / "Depth" / CAM / "000002.png"
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), cv2.resize(image, (80, 48), interpolation=cv2.INTER_NEAREST))
    return r"000002\.png: depth is 80x48, expected 160x96"


def corrupt_missing_pose(root: Path) -> str:
    (root / "data/raw" / SEQ / "CameraParams" / CAM / "000001.txt").unlink()
    return r"000001\.txt: pose file not found"


def corrupt_missing_intrinsics(root: Path) -> str:
    (root / "data/raw" / SEQ / "CameraParams/intrinsics.txt").unlink()
    return r"intrinsics\.txt: intrinsics file not found"


def corrupt_unknown_param(root: Path) -> str:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pointcloud"]["maxpoints"] = 10
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return r"params\.yaml: unknown key 'pointcloud\.maxpoints'"


def corrupt_nan_pose_world_clouds(root: Path) -> str:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pointcloud"]["coordinates"] = "world"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    path = root / "data/raw" / SEQ / "CameraParams" / CAM / "000001.txt"
    values = path.read_text().split()
    values[12] = "nan"  # x of the translation (column-major)
    path.write_text(" ".join(values))
    return r"CameraParams/Stereo_Left/Omni_F/000001\.txt: pose holds non-finite numbers"


@pytest.mark.parametrize("corrupt", [corrupt_nan_pose_world_clouds, corrupt_eight_bit_depth, corrupt_truncated_png, corrupt_wrong_size,
                                     corrupt_missing_pose, corrupt_missing_intrinsics, corrupt_unknown_param])
def test_bad_input_one_line_and_no_partial_output(project, corrupt):
    import re

    pattern = corrupt(project)
    code, errors = run_stage()
    assert code == 1
    assert len(errors) == 1 and re.search(pattern, errors[0]), errors
    assert not (project / "data/pointclouds").exists()
    assert not list((project / "data").glob(".pointclouds*"))  # no temporary leftovers
    assert not (project / "reports/pointclouds/metrics.json").exists()


def test_unwritable_reports_keep_the_old_point_clouds(project, monkeypatch):
    """Every output of the stage changes together: the report folder refuses writes -> exit 1, and the
    previous data/pointclouds stays (not the new one), with no partial left."""
    import tempfile

    assert run_stage() == (0, [])
    before = (project / "data/pointclouds/manifest.json").read_bytes()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["pointcloud"]["max_points"] = 128
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    original = tempfile.mkstemp

    def refuse_reports(*args, **kwargs):
        if Path(kwargs.get("dir", "")).resolve() == (project / "reports/pointclouds").resolve():
            raise PermissionError(13, "Permission denied", str(kwargs["dir"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse_reports)
    code, errors = run_stage()
    assert code == 1 and len(errors) == 1 and "Permission denied" in errors[0], errors
    assert (project / "data/pointclouds/manifest.json").read_bytes() == before
    assert not list((project / "data").glob(".pointclouds*"))
