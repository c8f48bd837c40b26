"""SYNTHIA-SEQS encodings: round trips, the spec's self-checks, and one-line errors on bad files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.io import synthia
from pipeline.io.synthia import SynthiaFormatError

# A real pose line quoted in a public reader (SEQS-04-SUMMER frame 0).
REAL_POSE_LINE = ("-0.00057973 0.00086285 1 0 -0.11839 0.99297 -0.00092542 0 0.99297 0.11839 0.00047349 0 "
                  "44.388 3.1314 117.55 1")


def test_depth_round_trip_and_decoder_agreement(tmp_path):
    depth = np.array([[0.01, 1.234, 655.34], [np.inf, 12.0, np.nan]], dtype=np.float32)
    path = tmp_path / "d.png"
    synthia.write_depth(path, depth)
    cm = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH)
    unchanged = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    expected = np.array([[1, 123, 65534], [65535, 1200, 65535]], dtype=np.uint16)
    assert cm.dtype == np.uint16 and np.array_equal(cm, expected)
    assert np.array_equal(unchanged[:, :, 0], expected) and np.array_equal(unchanged[:, :, 2], expected)
    back = synthia.read_depth(path)
    assert back[0, 1] == pytest.approx(1.23) and np.isnan(back[1, 0]) and back[1, 1] == pytest.approx(12.0)


def test_labels_channels(tmp_path):
    cls = np.array([[8, 3], [10, 1]], dtype=np.uint16)
    inst = np.array([[300, 0], [7, 0]], dtype=np.uint16)
    path = tmp_path / "l.png"
    synthia.write_labels(path, cls, inst)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(raw[:, :, 2], cls) and np.array_equal(raw[:, :, 1], inst) and not raw[:, :, 0].any()
    got_cls, got_inst = synthia.read_labels(path)
    assert np.array_equal(got_cls, cls) and np.array_equal(got_inst, inst)


def test_pose_file_format_and_real_sample(tmp_path):
    path = tmp_path / "000000.txt"
    path.write_text(REAL_POSE_LINE + "\n")
    pose = synthia.read_pose(path)
    assert np.allclose(pose[:3, 3], [44.388, 3.1314, 117.55])
    assert np.linalg.det(pose[:3, :3]) == pytest.approx(-1.0, abs=1e-3)  # Unity: left-handed world
    synthia.write_pose(path, pose)
    text = path.read_text()
    assert text.endswith("\n") and "  " not in text and not text.rstrip("\n").endswith(" ")
    assert len([float(x) for x in text.strip().split(" ")]) == 16
    assert np.fromfile(path, sep=" ").size == 16
    assert np.allclose(synthia.read_pose(path), pose)


def test_intrinsics_seven_lines(tmp_path):
    path = tmp_path / "intrinsics.txt"
    synthia.write_intrinsics(path, synthia.Intrinsics(532.740352, 640, 380, 0.8))
    lines = [line.strip() for line in path.read_text().splitlines()]
    assert len(lines) == 7 and lines[1] == lines[3] == lines[5] == ""
    assert [float(lines[i]) for i in (0, 2, 4, 6)] == [532.740352, 640.0, 380.0, 0.8]
    assert synthia.read_intrinsics(path) == synthia.Intrinsics(532.740352, 640.0, 380.0, 0.8)


def test_eight_bit_depth_is_rejected(tmp_path):
    path = tmp_path / "d.png"
    cv2.imwrite(str(path), np.full((4, 6, 3), 200, dtype=np.uint8))
    with pytest.raises(SynthiaFormatError, match=r"d\.png: depth must be a 16-bit PNG"):
        synthia.read_depth(path)


def test_corrupt_png_is_rejected(tmp_path):
    path = tmp_path / "d.png"
    synthia.write_depth(path, np.ones((8, 8), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(SynthiaFormatError, match="not a readable PNG"):
        synthia.read_depth(path)


def test_wrong_size_is_rejected(tmp_path):
    path = tmp_path / "d.png"
    synthia.write_depth(path, np.ones((8, 10), dtype=np.float32))
    with pytest.raises(SynthiaFormatError, match="is 10x8, expected 12x8"):
        synthia.read_depth(path, expect_hw=(8, 12))


@pytest.mark.parametrize("content, message", [("1 2 3", "got 3"), ("a b", "16 numbers"),
                                              (" ".join(["1"] * 16), "not column-major"),
                                              ("1 0 0 0 0 1 0 0 0 0 1 0 nan 0 0 1", "non-finite"),
                                              ("1 0 0 0 0 1 0 0 0 0 1 0 5 -inf 0 1", "non-finite")])
def test_bad_pose_files(tmp_path, content, message):
    path = tmp_path / "p.txt"
    path.write_text(content)
    with pytest.raises(SynthiaFormatError, match=message):
        synthia.read_pose(path)


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(SynthiaFormatError, match="intrinsics.txt: intrinsics file not found"):
        synthia.read_intrinsics(tmp_path / "intrinsics.txt")
    with pytest.raises(SynthiaFormatError, match="000001.txt: pose file not found"):
        synthia.read_pose(tmp_path / "000001.txt")
