"""The frames stage's cache: reading it gives exactly the arrays computed directly, and it refuses other params."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.data.camera import relative_gt_poses
from pipeline.data.carried import track_anchors
from pipeline.data.frames import FrameRecord, FrameSelection, load_frames
from pipeline.data.frames_cache import MANIFEST, cached_sequences, check_manifest
from pipeline.data.frames_cache import load_frames as load_cached_frames
from pipeline.io import synthia
from pipeline.io.synthia import SequenceLayout
from pipeline.models.video.sequences import load_sequences
from pipeline.steps.frames import build_frames
from pipeline.steps.pointclouds import build_pointclouds
from stages import train_phase1
from tests.conftest import repo_params

SEQ = "SYNTHIA-SEQS-01-GENERATED"
CAM = "Stereo_Left/Omni_F"
SELECTION = FrameSelection(points="all", far_m=60.0, input_height=64, input_width=96, min_points=8, slots=3, seed=5)


@pytest.fixture(scope="module")
def cache(generated_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    build_pointclouds(generated_root, root / "clouds", (CAM,), repo_params("pointcloud", max_points=256), workers=1,
                      progress=False)
    stats = build_frames(generated_root, root / "clouds", root / "frames", CAM, SELECTION, progress=False)
    return generated_root, root / "clouds", root / "frames", stats


def assert_same_record(a: FrameRecord, b: FrameRecord) -> None:
    assert (a.sequence, a.camera, a.frame, a.intrinsics) == (b.sequence, b.camera, b.frame, b.intrinsics)
    for name in ("depth", "points", "instance", "class_id"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    for field in dataclasses.fields(a.anchors):
        x, y = getattr(a.anchors, field.name), getattr(b.anchors, field.name)
        assert x.dtype == y.dtype and np.array_equal(x, y), field.name


def test_cached_frames_equal_direct_computation(cache):
    raw, clouds, frames, stats = cache
    direct, skipped = load_frames(raw, clouds, [SEQ], CAM, SELECTION, progress=False)
    cached, cached_skipped = load_cached_frames(frames, [SEQ], CAM, SELECTION)
    assert len(direct) == len(cached) == stats["frames"] == 3 and skipped == cached_skipped
    for a, b in zip(direct, cached, strict=True):
        assert_same_record(a, b)
    assert np.isinf(cached[0].depth).any() and cached[0].depth.shape == (64, 96)  # sky stays +inf at input size


def test_cached_sequences_equal_direct_tracking(cache):
    """Carried anchors and poses as phase two computed them before the cache (k-means re-run per sequence)."""
    raw, clouds, frames, _ = cache
    direct, _ = load_frames(raw, clouds, [SEQ], CAM, SELECTION, progress=False)
    times = np.array([r.frame / synthia.FRAME_RATE_HZ for r in direct])
    carried = track_anchors([r.points for r in direct], times, SELECTION.slots, SELECTION.seed)
    layout = SequenceLayout(raw / SEQ)
    r_wc, t_wc = relative_gt_poses(np.stack([synthia.read_pose(layout.pose(CAM, r.frame)) for r in direct]))
    (seq,) = load_sequences(frames, [SEQ], CAM, SELECTION)
    assert np.array_equal(seq.time, times) and np.array_equal(seq.r_wc, r_wc) and np.array_equal(seq.t_wc, t_wc)
    for record, anchors, cached in zip(direct, carried, seq.records, strict=True):
        assert_same_record(dataclasses.replace(record, anchors=anchors), cached)
    assert cached_sequences(frames) == [SEQ]


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(FrameSelection)])
def test_other_params_are_refused_naming_the_key(cache, key):
    _, _, frames, _ = cache
    other = "things" if key == "points" else getattr(SELECTION, key) + 32
    with pytest.raises(ValueError, match=rf"manifest.json: made with train\.{key} = .*this stage needs {other!r}"):
        load_cached_frames(frames, [SEQ], CAM, dataclasses.replace(SELECTION, **{key: other}))
    with pytest.raises(ValueError, match=r"made for camera 'Stereo_Left/Omni_F'.*data\.cameras\[0\]"):
        check_manifest(frames, "Stereo_Right/Omni_F", SELECTION)


def test_equal_arrays_give_equal_bytes(cache, tmp_path):
    """A rerun with the same inputs writes the same bytes, so DVC skips the readers."""
    raw, clouds, frames, _ = cache
    build_frames(raw, clouds, tmp_path / "again", CAM, SELECTION, progress=False)
    for name in (f"{SEQ}/Stereo_Left_Omni_F.npz", MANIFEST):
        assert (frames / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_manifest_names_the_params(cache):
    _, _, frames, _ = cache
    manifest = json.loads((frames / MANIFEST).read_text())
    assert manifest["selection"] == {f"train.{k}": v for k, v in dataclasses.asdict(SELECTION).items()}
    assert manifest["camera"] == CAM and manifest["frames"] == {SEQ: 3}


def test_stage_params_are_the_selection():
    """dvc.yaml reruns the frames stage for exactly the ``train`` keys its manifest records (and the camera)."""
    stage = yaml.safe_load((Path(__file__).parents[2] / "dvc.yaml").read_text())["stages"]["frames"]
    assert sorted(stage["params"]) == sorted(["data.cameras"] + [f"train.{f.name}" for f in dataclasses.fields(FrameSelection)])


def test_world_coordinates_fail_and_leave_nothing(generated_root, tmp_path):
    clouds = tmp_path / "clouds"
    build_pointclouds(generated_root, clouds, (CAM,), repo_params("pointcloud", max_points=64, coordinates="world"), workers=1,
                      progress=False)
    with pytest.raises(ValueError, match="pointcloud.coordinates=camera"):
        build_frames(generated_root, clouds, tmp_path / "frames", CAM, SELECTION, progress=False)
    assert not (tmp_path / "frames").exists() and not list(tmp_path.glob(".frames*"))


def test_stage_with_other_train_params_stops_in_one_line(cache, tmp_path, monkeypatch):
    """train_phase1 on a cache made with other ``train`` keys: exit 1, one line naming the key, no model."""
    repo = Path(__file__).parents[2]
    _, _, frames, _ = cache
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update({"val_sequences": 0, "test_sequences": 0})
    params["train"].update({**dataclasses.asdict(SELECTION), "seed": SELECTION.seed + 1})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(repo / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    result = CliRunner().invoke(train_phase1.app, ["--frames", str(frames), "--device", "cpu"])
    errors = [line for line in (result.stderr or result.output).splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1
    assert "manifest.json: made with train.seed = 5, this stage needs 6" in errors[0]
    assert not (tmp_path / "models/phase1/model.pt").exists()
