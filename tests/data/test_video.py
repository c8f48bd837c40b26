"""Video pairs: a synthetic clip written with PyAV is read back with the right count, size and pairing."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.video import VideoPairs, count_frames, decode_frames


def write_clip(path, frames: int, height: int = 48, width: int = 64, codec: str = "libvpx") -> None:
    """Frame i is a flat grey of level 10 + 20·i (so a decoded frame tells its index)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=5)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), 10 + 20 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frame_level(frame_chw) -> float:
    return float(frame_chw.mean()) * 255.0


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_clip(root / "a.webm", 8)
    (root / "sub").mkdir()
    write_clip(root / "sub" / "b.mp4", 6, codec="mpeg4")
    (root / "notes.txt").write_text("not a video")
    return root


def test_decode_count_and_size(videos):
    assert count_frames(videos / "a.webm") == 8
    assert count_frames(videos / "sub" / "b.mp4") == 6
    frames = decode_frames(videos / "a.webm", {1, 3}, frame_size=28)
    assert sorted(frames) == [1, 3] and frames[1].shape == (28, 28, 3) and frames[1].dtype == np.uint8


def test_pairs_are_offset_apart_and_resized(videos):
    data = VideoPairs(videos, frame_size=28, frame_offset=3)
    assert [v.name for v in data.videos] == ["a.webm", "b.mp4"]
    assert len(data) == (8 - 3) + (6 - 3)
    item = data[2]
    assert item["frames"].shape == (2, 3, 28, 28) and item["index"] == 2 and item["video"].endswith("a.webm")
    assert 0.0 <= float(item["frames"].min()) and float(item["frames"].max()) <= 1.0
    # grey levels identify the frames: 10 + 20 t and 10 + 20 (t + 3), up to codec error
    assert frame_level(item["frames"][0]) == pytest.approx(10 + 20 * 2, abs=4)
    assert frame_level(item["frames"][1]) == pytest.approx(10 + 20 * 5, abs=4)
    last = data[len(data) - 1]
    assert last["video"].endswith("b.mp4") and last["index"] == 2
    assert frame_level(last["frames"][1]) == pytest.approx(10 + 20 * 5, abs=4)


def test_limits_and_errors(videos, tmp_path):
    assert len(VideoPairs(videos, frame_size=16, frame_offset=1, max_pairs_per_video=2)) == 4
    with pytest.raises(FileNotFoundError, match="no .webm or .mp4"):
        VideoPairs(tmp_path)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.mp4: not a decodable video"):
        VideoPairs(tmp_path)
