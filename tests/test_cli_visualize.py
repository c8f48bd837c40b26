"""`protoscene visualize`: one frame of a video -> VGGT point cloud as PNG and PLY."""

from __future__ import annotations

import av
import numpy as np
import open3d as o3d
from typer.testing import CliRunner

from pipeline.cli import app


def write_video(path, frames=6, size=64):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx", rate=5)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 40 * i, dtype=np.uint8)
            image[: size // 2, :, 0] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_visualize_writes_png_and_ply(tmp_path):
    video = tmp_path / "clip.webm"
    write_video(video)
    result = CliRunner().invoke(app, ["visualize", str(video), "--frame", "3", "--output", str(tmp_path / "viz"),
                                      "--frame-size", "56", "--max-points", "500"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "viz/clip_000003.png").stat().st_size > 1000
    cloud = o3d.io.read_point_cloud(str(tmp_path / "viz/clip_000003.ply"))
    assert 0 < len(cloud.points) <= 500 and cloud.has_colors()


def test_visualize_missing_frame_is_one_line(tmp_path):
    video = tmp_path / "clip.webm"
    write_video(video, frames=3)
    result = CliRunner().invoke(app, ["visualize", str(video), "--frame", "10", "--output", str(tmp_path / "viz"),
                                      "--frame-size", "56"])
    assert result.exit_code == 1 and "has no frame 10" in (result.stderr or result.output)
