"""The video source: stage `videos` (listing) and stage `vggt` on the embedded sample (tiny preset, random
weights), with a corrupt file in the folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.data.video_sample import write_sample_videos
from pipeline.io import pointcloud_table
from stages import videos as videos_stage
from stages import vggt as vggt_stage

REPO = Path(__file__).parents[2]
VGGT_PARAMS = {"frames_per_chunk": 2, "target_size": 70, "max_points": 200}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """3 clips of 5 frames (96 x 160), corrupt.webm and labels.json; read-only."""
    root = tmp_path_factory.mktemp("clips")
    write_sample_videos(root, videos=3, frames=5, corrupt=True, labels=True)
    return root


def make_project(root: Path, folder: Path, source: str = "videos", stride: int = 2) -> Path:
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["download"]["source"] = source
    params["videos"].update({"dir": str(folder), "stride": stride, "labels": str(folder / "labels.json")})
    params["vggt"].update(VGGT_PARAMS)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture
def project(tmp_path, sample, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return make_project(tmp_path, sample)


def invoke(app, args=()) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(app, list(args))
    stderr = result.stderr or result.output
    return result.exit_code, [line for line in stderr.splitlines() if line.startswith("error:")], stderr


def test_listing_names_sizes_mtimes_and_labels(project, sample):
    code, errors, stderr = invoke(videos_stage.app)
    assert code == 0 and not errors, stderr
    listing = json.loads((project / "data/videos/listing.json").read_text())
    assert [v["path"] for v in listing["videos"]] == ["corrupt.webm", "sample-01.webm", "sample-02.webm",
                                                     "sample-03.webm"]
    assert [v["size"] for v in listing["videos"]] == [(sample / v["path"]).stat().st_size for v in listing["videos"]]
    labels = json.loads((project / "data/videos/labels.json").read_text())
    assert set(labels["labels"]) == {"sample-01", "sample-02", "sample-03"}
    assert labels["file"]["size"] == (sample / "labels.json").stat().st_size
    before = (project / "data/videos/listing.json").read_bytes()
    assert invoke(videos_stage.app)[0] == 0 and (project / "data/videos/listing.json").read_bytes() == before


def test_adding_a_video_changes_the_listing(tmp_path, sample, monkeypatch):
    folder = tmp_path / "clips"
    shutil.copytree(sample, folder)
    monkeypatch.chdir(make_project(tmp_path, folder))
    assert invoke(videos_stage.app)[0] == 0
    before = json.loads((tmp_path / "data/videos/listing.json").read_text())
    shutil.copy(folder / "sample-01.webm", folder / "sample-04.webm")
    assert invoke(videos_stage.app)[0] == 0
    after = json.loads((tmp_path / "data/videos/listing.json").read_text())
    assert len(after["videos"]) == len(before["videos"]) + 1 and after["videos"][-1]["sequence"] == "sample-04"


def test_other_sources_list_nothing_and_an_empty_folder_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(make_project(tmp_path, tmp_path / "empty", source="synthetic"))
    assert invoke(videos_stage.app)[0] == 0
    assert json.loads((tmp_path / "data/videos/listing.json").read_text()) == {"source": "synthetic", "videos": []}
    assert json.loads((tmp_path / "data/videos/labels.json").read_text()) == {"file": None, "labels": {}}
    make_project(tmp_path, tmp_path / "empty")
    code, errors, _ = invoke(videos_stage.app)
    assert code == 1 and len(errors) == 1 and "empty: no .webm or .mp4 videos" in errors[0]


def test_vggt_on_videos_skips_the_corrupt_one_and_writes_one_partition_per_video(project):
    assert invoke(videos_stage.app)[0] == 0
    code, errors, stderr = invoke(vggt_stage.app, ["--device", "cpu"])
    assert code == 0 and not errors, stderr
    skipped = [line for line in stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "corrupt.webm" in skipped[0], stderr
    metrics = json.loads((project / "reports/vggt/metrics.json").read_text())
    assert metrics["videos"] == 3 and metrics["videos_skipped"] == 1 and metrics["skipped"] == ["corrupt"]
    assert metrics["random_weights"] is True and metrics["frames"] == 3 * 3 and "ground_truth_note" in metrics
    points = project / "data/vggt/points"
    manifest = json.loads((points / "manifest.json").read_text())
    assert manifest["input"] == "videos" and manifest["cameras"] == ["video"] and manifest["frame_stride"] == 2
    assert [p["sequence"] for p in manifest["partitions"]] == ["sample-01", "sample-02", "sample-03"]
    for part in manifest["partitions"]:
        table = pointcloud_table.read_partition(points, part["sequence"], "video")
        assert sorted(table["frame"].unique()) == [0, 2, 4]  # stride 2 over 5 frames, video frame indices
        npz = np.load(project / "data/vggt" / part["sequence"] / "video.npz")
        factor = part["scale"]["factor"]
        assert float(npz["points_scale"]) == pytest.approx(factor) and factor > 0
        # the normaliser scaled points and depth alike: z = depth; depth = factor x VGGT depth at the pixel
        np.testing.assert_allclose(table["z"], table["depth"], rtol=1e-5)
        assert float(np.median(table["depth"])) == pytest.approx(factor * float(np.median(npz["depth"])), rel=0.2)
    assert sorted(p.name for p in (project / "reports/vggt/figures").glob("*.png")) == [
        "sample-01.png", "sample-02.png", "sample-03.png"]


def test_no_decodable_video_is_one_error_line(tmp_path, sample, monkeypatch):
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(sample / "corrupt.webm", folder / "corrupt.webm")
    (folder / "labels.json").write_text("{}")  # a labels file without labels (like the inbox's default)
    monkeypatch.chdir(make_project(tmp_path, folder))
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    assert invoke(videos_stage.app)[0] == 0
    assert json.loads((tmp_path / "data/videos/labels.json").read_text())["labels"] == {}
    code, errors, stderr = invoke(vggt_stage.app, ["--device", "cpu"])
    assert code == 1 and len(errors) == 1 and "none of the 1 videos is decodable" in errors[0], stderr
    assert not (tmp_path / "data/vggt").exists()


def test_blank_or_missing_labels_path_is_one_error_line(tmp_path, sample, monkeypatch):
    """videos.labels is a DVC dependency: never blank (the default is the inbox's empty labels file)."""
    monkeypatch.chdir(make_project(tmp_path, sample))
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    for value, expected in (("  ", "videos.labels"), (str(tmp_path / "none.json"), "none.json: labels file not found")):
        params["videos"]["labels"] = value
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        code, errors, stderr = invoke(videos_stage.app)
        assert code == 1 and len(errors) == 1 and expected in errors[0], stderr


def test_default_inbox_exists_and_lists_no_labels():
    """The defaults of videos.dir and videos.labels exist in the repository (DVC needs its dependencies)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())["videos"]
    assert (REPO / params["dir"]).is_dir() and (REPO / params["labels"]).is_file()
    assert json.loads((REPO / params["labels"]).read_text()) == {}
