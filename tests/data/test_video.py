"""Video folders: clips written with PyAV are read back with the right count, size and pairing; undecodable
files are skipped; the stride grid; labels files; the embedded sample."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.video import (
    VideoPairs,
    count_frames,
    decode_frames,
    list_videos,
    read_video_labels,
    sequence_name,
    write_video,
)


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
    with pytest.raises(ValueError, match="none of the 1 videos is decodable.*bad.mp4: not a decodable video"):
        VideoPairs(tmp_path)


def test_undecodable_videos_are_skipped_with_the_reason(videos, tmp_path):
    bad = tmp_path / "bad.webm"
    bad.write_bytes(b"\x1aE\xdf\xa3" + bytes(range(256)) * 4)
    data = VideoPairs([bad, *list_videos(videos)], frame_size=16, frame_offset=1)
    assert [v.name for v in data.videos] == ["a.webm", "b.mp4"] and data.frame_counts == [8, 6]
    assert len(data.skipped) == 1 and data.skipped[0][0] == bad and "bad.webm" in data.skipped[0][1]


def test_stride_grid_frames_and_pairs(videos):
    data = VideoPairs(videos, frame_size=None, frame_offset=2, stride=2, max_frames=3)
    assert data.grid_frames(0) == [0, 2, 4] and data.grid_frames(1) == [0, 2, 4]
    assert data.items == [(0, 0), (0, 2), (0, 4), (1, 0), (1, 2)]  # t + 2 must exist (6 frames in b.mp4)
    frames, rgb = data.read_grid(0)
    assert frames == [0, 2, 4] and rgb.shape == (3, 48, 64, 3)  # native size
    np.testing.assert_allclose(rgb.reshape(3, -1).mean(1), [10, 50, 90], atol=4)


def test_write_video_round_trip_and_names(tmp_path):
    frames = np.stack([np.full((32, 48, 3), level, np.uint8) for level in (30, 120, 210)])
    write_video(tmp_path / "clip.webm", frames)
    decoded = decode_frames(tmp_path / "clip.webm")
    assert sorted(decoded) == [0, 1, 2]
    np.testing.assert_allclose([decoded[i].mean() for i in range(3)], [30, 120, 210], atol=4)
    with pytest.raises(ValueError, match="even H and W"):
        write_video(tmp_path / "odd.webm", np.zeros((2, 31, 48, 3), np.uint8))
    assert sequence_name(tmp_path / "a" / "b c.webm", tmp_path) == "a__b_c"


def test_labels_files(tmp_path):
    ssv2 = tmp_path / "ssv2.json"
    ssv2.write_text('[{"id": "78687", "label": "holding potato next to vicks", '
                    '"template": "Holding [something] next to [something]"}, {"id": "42326", "label": "x", '
                    '"template": "Pushing [something] from left to right"}]')
    assert read_video_labels(ssv2) == {"78687": "Holding something next to something",
                                       "42326": "Pushing something from left to right"}
    plain = tmp_path / "plain.json"
    plain.write_text('{"a": "open", "b": "close"}')
    assert read_video_labels(plain) == {"a": "open", "b": "close"}
    plain.write_text('[1, 2]')
    with pytest.raises(ValueError, match="plain.json: expected a JSON list"):
        read_video_labels(plain)
