"""SYNTHIA-SEQS on-disk layout: one reader and writer for real and generated sequences.

Layout of a sequence folder ``SYNTHIA-SEQS-<NN>-<WEATHER>/`` (as published with SYNTHIA-SEQS, Ros et al., CVPR 2016)::

    RGB/<rig>/<view>/%06d.png            8-bit RGB
    Depth/<rig>/<view>/%06d.png          16-bit x 3 channels, planar depth Z in centimetres (R=G=B);
                                         0 = invalid, 65535 = sky / no hit
    GT/LABELS/<rig>/<view>/%06d.png      16-bit x 3 channels: R = class id, G = instance id, B = 0
    GT/COLOR/<rig>/<view>/%06d.png       8-bit RGB class palette (not used for training)
    CameraParams/<rig>/<view>/%06d.txt   16 numbers, column-major 4x4 camera-to-world pose, metres,
                                         OpenGL camera axes (x right, y up, looking down -z) in a
                                         y-up left-handed world, so det(R) = -1
    CameraParams/intrinsics.txt          7 lines: focal, '', cx, '', cy, '', stereo baseline (m)

``<rig>`` is ``Stereo_Left`` or ``Stereo_Right``; ``<view>`` is ``Omni_F/B/L/R``. A camera is named
``"<rig>/<view>"``. PNGs are decoded with ``imagecodecs.png_decode`` (zlib-ng; the fastest exact
16-bit decoder we measured, ``reports/bench/stages.md``), which keeps the stored bit depth and the file's
channel order, RGB: class = index 0, instance = index 1. (Pillow and flagless ``cv2.imread`` silently
return 8 bits.) The writers encode with OpenCV, whose arrays are BGR.

Every reader validates what it reads and raises :class:`SynthiaFormatError` with one line naming
the file, so a corrupt, 8-bit or wrongly sized image never turns into silent garbage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.io import atomic

RIGS = ("Stereo_Left", "Stereo_Right")
VIEWS = ("Omni_F", "Omni_B", "Omni_L", "Omni_R")
ALL_CAMERAS = tuple(f"{rig}/{view}" for rig in RIGS for view in VIEWS)
SEQUENCE_PATTERN = re.compile(r"^SYNTHIA-SEQS-\d{2}-[A-Z]+$")
FRAME_RATE_HZ = 5.0
DEPTH_INVALID = 0
DEPTH_NO_HIT = 65535
CM_PER_M = 100.0
OFFLINE_MARKER = "GENERATED_OFFLINE.txt"

# SEQS class ids and README palette (RGB). 13/14 are reserved.
CLASS_NAMES = {
    0: "void", 1: "sky", 2: "building", 3: "road", 4: "sidewalk", 5: "fence", 6: "vegetation",
    7: "pole", 8: "car", 9: "traffic_sign", 10: "pedestrian", 11: "bicycle", 12: "lanemarking",
    15: "traffic_light",
}
CLASS_COLORS = {
    0: (0, 0, 0), 1: (128, 128, 128), 2: (128, 0, 0), 3: (128, 64, 128), 4: (0, 0, 192),
    5: (64, 64, 128), 6: (128, 128, 0), 7: (192, 192, 128), 8: (64, 0, 128), 9: (192, 128, 128),
    10: (64, 64, 0), 11: (0, 128, 192), 12: (0, 172, 0), 15: (0, 128, 128),
}
# Dynamic ("thing") classes: the only ones with instance ids in GT/LABELS.
THING_CLASSES = (8, 10, 11)


class SynthiaFormatError(ValueError):
    """A file that does not follow the SYNTHIA-SEQS format; the message names the file."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (u = column, v = row), shared by every camera of a sequence."""

    focal: float
    cx: float
    cy: float
    baseline: float

    def matrix(self) -> np.ndarray:
        """3x3 K (float64)."""
        return np.array([[self.focal, 0, self.cx], [0, self.focal, self.cy], [0, 0, 1]], dtype=np.float64)


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class SequenceLayout:
    """File paths of one sequence folder."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    def image(self, kind: str, camera: str, frame: int) -> Path:
        """``kind`` is one of RGB, Depth, GT/LABELS, GT/COLOR."""
        return self.root / kind / camera / f"{frame:06d}.png"

    def depth(self, camera: str, frame: int) -> Path:
        return self.image("Depth", camera, frame)

    def labels(self, camera: str, frame: int) -> Path:
        return self.image("GT/LABELS", camera, frame)

    def rgb(self, camera: str, frame: int) -> Path:
        return self.image("RGB", camera, frame)

    def color_labels(self, camera: str, frame: int) -> Path:
        return self.image("GT/COLOR", camera, frame)

    def pose(self, camera: str, frame: int) -> Path:
        return self.root / "CameraParams" / camera / f"{frame:06d}.txt"

    @property
    def intrinsics(self) -> Path:
        return self.root / "CameraParams" / "intrinsics.txt"

    @property
    def is_generated(self) -> bool:
        return (self.root / OFFLINE_MARKER).is_file()

    def cameras(self) -> list[str]:
        """Cameras that have a Depth folder, in the canonical order."""
        return [c for c in ALL_CAMERAS if (self.root / "Depth" / c).is_dir()]

    def frames(self, camera: str) -> list[int]:
        """Frame indices present in Depth/<camera>, sorted."""
        folder = self.root / "Depth" / camera
        if not folder.is_dir():
            raise SynthiaFormatError(f"{folder}: camera folder missing")
        return sorted(int(p.stem) for p in folder.glob("[0-9]" * 6 + ".png"))


def list_sequences(root: Path) -> list[SequenceLayout]:
    """Sequence folders directly under ``root`` whose names match SYNTHIA-SEQS-NN-WEATHER (at least one)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found (run the download stage first)")
    layouts = [SequenceLayout(p) for p in sorted(root.iterdir()) if p.is_dir() and SEQUENCE_PATTERN.match(p.name)]
    if not layouts:
        raise FileNotFoundError(f"{root}: no SYNTHIA-SEQS-NN-WEATHER sequence folders (run the download stage first)")
    return layouts


# --------------------------------------------------------------------------- readers


def _imread(path: Path) -> np.ndarray:
    """Decoded PNG (H, W) or (H, W, C) in the file's channel order (RGB[A]) and bit depth."""
    import imagecodecs

    if not path.is_file():
        raise SynthiaFormatError(f"{path}: file not found")
    try:
        return imagecodecs.png_decode(path.read_bytes())
    except Exception:  # noqa: BLE001 - imagecodecs raises its own error classes for corrupt data
        raise SynthiaFormatError(f"{path}: not a readable PNG (corrupt or truncated)") from None


def _check_shape(image: np.ndarray, path: Path, expect_hw: tuple[int, int] | None, what: str) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise SynthiaFormatError(f"{path}: {what} must have 3 channels, got shape {image.shape}")
    if expect_hw is not None and image.shape[:2] != tuple(expect_hw):
        raise SynthiaFormatError(
            f"{path}: {what} is {image.shape[1]}x{image.shape[0]}, expected {expect_hw[1]}x{expect_hw[0]}"
        )


def read_depth_cm(path: Path, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Raw depth (H, W) uint16 in centimetres; 0 = invalid, 65535 = sky / no hit."""
    image = _imread(path)
    if image.dtype != np.uint16:
        raise SynthiaFormatError(f"{path}: depth must be a 16-bit PNG, got {image.dtype} (8-bit depth is lossy)")
    _check_shape(image, path, expect_hw, "depth")
    return image[:, :, 0]  # R channel (all three are equal in SYNTHIA)


def read_depth(path: Path, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Planar depth Z (H, W) float32 in metres; NaN where invalid (0) or no hit (65535)."""
    return depth_metres(read_depth_cm(path, expect_hw))


def depth_metres(raw_cm: np.ndarray) -> np.ndarray:
    """Raw depth (H, W) uint16 centimetres -> float32 metres; NaN where invalid (0) or no hit (65535)."""
    depth = raw_cm.astype(np.float32) / CM_PER_M
    depth[(raw_cm == DEPTH_INVALID) | (raw_cm == DEPTH_NO_HIT)] = np.nan
    return depth


def read_labels_image(path: Path, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    """GT/LABELS as decoded, (H, W, 3) uint16: channel 0 = class id, 1 = instance id, 2 = 0."""
    image = _imread(path)
    if image.dtype != np.uint16:
        raise SynthiaFormatError(f"{path}: labels must be a 16-bit PNG, got {image.dtype}")
    _check_shape(image, path, expect_hw, "labels")
    return image


def read_labels(path: Path, expect_hw: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(class_id, instance_id), each (H, W) uint16, from the R and G channels of GT/LABELS."""
    image = read_labels_image(path, expect_hw)
    return image[:, :, 0].copy(), image[:, :, 1].copy()


def read_rgb(path: Path, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    """RGB image (H, W, 3) uint8."""
    image = _imread(path)
    if image.dtype != np.uint8:
        raise SynthiaFormatError(f"{path}: RGB must be 8-bit, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    _check_shape(image, path, expect_hw, "RGB")
    return np.ascontiguousarray(image)


_AFFINE_ROW = np.array([0.0, 0.0, 0.0, 1.0])


def read_pose(path: Path) -> np.ndarray:
    """4x4 camera-to-world matrix (float64) from a column-major 16-number line (OpenGL camera axes)."""
    if not path.is_file():
        raise SynthiaFormatError(f"{path}: pose file not found")
    try:
        values = np.array([float(x) for x in path.read_text().split()], dtype=np.float64)
    except ValueError:
        raise SynthiaFormatError(f"{path}: pose file must hold 16 numbers") from None
    if values.size != 16:
        raise SynthiaFormatError(f"{path}: pose file must hold 16 numbers, got {values.size}")
    if not np.isfinite(values).all():
        raise SynthiaFormatError(f"{path}: pose holds non-finite numbers (NaN or inf)")
    matrix = values.reshape(4, 4, order="F")
    if not np.all(np.abs(matrix[3] - _AFFINE_ROW) <= 1e-6 + 1e-5 * _AFFINE_ROW):  # = np.allclose(atol=1e-6), cheaper
        raise SynthiaFormatError(f"{path}: pose is not column-major affine (last row {matrix[3].tolist()})")
    return matrix


def read_intrinsics(path: Path) -> Intrinsics:
    """Parse ``CameraParams/intrinsics.txt``: values on lines 0, 2, 4, 6 (focal, cx, cy, baseline)."""
    if not path.is_file():
        raise SynthiaFormatError(f"{path}: intrinsics file not found")
    lines = [line.strip() for line in path.read_text().splitlines()]
    values = [line for line in lines if line]
    try:
        focal, cx, cy, baseline = (float(v) for v in values)
    except ValueError:
        raise SynthiaFormatError(f"{path}: expected 4 numbers (focal, cx, cy, baseline), got {values!r}") from None
    if focal <= 0:
        raise SynthiaFormatError(f"{path}: focal length must be positive, got {focal}")
    return Intrinsics(focal, cx, cy, baseline)


# --------------------------------------------------------------------------- writers


def _imwrite(path: Path, image: np.ndarray) -> None:
    import cv2

    def write(tmp: Path) -> None:
        # Explicit zlib level 1: OpenCV's default settings give 16-bit depth PNGs ~7x larger that decode ~2x slower
        # (same pixels either way).
        ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise OSError(f"{path}: PNG encoding failed")
        tmp.write_bytes(encoded)  # the buffer as is (no copy)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(path, write)


def encode_depth_cm(depth_m: np.ndarray) -> np.ndarray:
    """Metres (NaN/inf = no hit) -> uint16 cm, rounded and clipped to 1..65534; 65535 for no hit."""
    finite = np.isfinite(depth_m)
    cm = np.full(depth_m.shape, DEPTH_NO_HIT, dtype=np.uint16)
    cm[finite] = np.clip(np.round(depth_m[finite] * CM_PER_M), 1, DEPTH_NO_HIT - 1).astype(np.uint16)
    return cm


def write_depth(path: Path, depth_m: np.ndarray) -> None:
    """Write planar depth (H, W) in metres as 16-bit x 3 channel centimetres (R=G=B)."""
    cm = encode_depth_cm(depth_m)
    _imwrite(path, np.dstack([cm, cm, cm]))


def write_labels(path: Path, class_id: np.ndarray, instance_id: np.ndarray) -> None:
    """Write GT/LABELS: file R = class, G = instance, B = 0 (OpenCV order: index 2, 1, 0)."""
    zeros = np.zeros_like(class_id, dtype=np.uint16)
    _imwrite(path, np.dstack([zeros, instance_id.astype(np.uint16), class_id.astype(np.uint16)]))


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image."""
    _imwrite(path, np.ascontiguousarray(rgb[:, :, ::-1]))


def _palette_bgr() -> np.ndarray:
    """The README palette as a lookup table (max class id + 1, 3) uint8 in OpenCV's BGR order."""
    lut = np.zeros((max(CLASS_COLORS) + 1, 3), dtype=np.uint8)
    for cid, colour in CLASS_COLORS.items():
        lut[cid] = colour[::-1]
    return lut


_PALETTE_BGR = _palette_bgr()


def write_color_labels(path: Path, class_id: np.ndarray) -> None:
    """Write GT/COLOR with the README palette (ids above the palette's last one take its last colour)."""
    _imwrite(path, _PALETTE_BGR[np.clip(class_id, 0, len(_PALETTE_BGR) - 1)])


def format_pose(camera_to_world: np.ndarray) -> str:
    """One line, 16 numbers column-major, single spaces, 10 significant digits, trailing newline."""
    values = np.asarray(camera_to_world, dtype=np.float64).reshape(4, 4).flatten(order="F")
    return " ".join(f"{v:.10g}" for v in values) + "\n"


def write_pose(path: Path, camera_to_world: np.ndarray) -> None:
    atomic.write_text(path, format_pose(camera_to_world))


def write_intrinsics(path: Path, intrinsics: Intrinsics) -> None:
    """Seven lines as the real file: value, blank, value, blank, value, blank, value."""
    values = [f"{intrinsics.focal:.13f}", f"{intrinsics.cx:g}", f"{intrinsics.cy:g}", f"{intrinsics.baseline:g}"]
    atomic.write_text(path, "\n\n".join(values) + "\n")
