"""The ``drives`` stage's output (``data/drives``): layout, ground-truth table, splits with every manoeuvre.

Layout::

    data/drives/points/sequence=<DRIVE-NNNN>/camera=Stereo_Left_Omni_F/points.parquet   (pipeline/io/pointcloud_table.py)
    data/drives/points/manifest.json    partitions, cameras, coordinates "camera", input "drives", splits
    data/drives/groundtruth.parquet     one row per (drive, frame): sequence, frame, time_s, manoeuvre and the
                                        camera-to-world pose m00 .. m33 (row-major; SYNTHIA world and OpenGL camera
                                        axes, as the pose files of pipeline/io/synthia.py)

Splits: the last ``test`` drives by name are test, the ``val`` before them validation (``pipeline/data/splits.py``);
consecutive drives alternate tour phase and first turn (``pipeline/data/synthetic/generate.py:rig_plan``), so
two consecutive drives of 8 s together hold every manoeuvre; :func:`missing_labels` checks it per split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.synthetic.manoeuvres import LABELS

POINTS = "points"
GROUNDTRUTH = "groundtruth.parquet"
POSE_COLUMNS = [f"m{i}{j}" for i in range(4) for j in range(4)]


def drive_name(index: int) -> str:
    """``DRIVE-0007``: sortable names, so the split by name is the split by index."""
    return f"DRIVE-{index:04d}"


def groundtruth_rows(sequence: str, camera_to_world: np.ndarray, manoeuvre: np.ndarray, frame_rate_hz: float) -> pd.DataFrame:
    """Rows of one drive: ``camera_to_world`` (T, 4, 4), ``manoeuvre`` (T,) labels."""
    t = len(manoeuvre)
    table = pd.DataFrame({"sequence": [sequence] * t, "frame": np.arange(t, dtype=np.int32),
                          "time_s": np.arange(t) / frame_rate_hz, "manoeuvre": [str(m) for m in manoeuvre]})
    poses = pd.DataFrame(camera_to_world.reshape(t, 16).astype(np.float64), columns=POSE_COLUMNS)
    return pd.concat([table, poses], axis=1)


def read_groundtruth(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``root/groundtruth.parquet`` -> {drive: (camera_to_world (T, 4, 4) indexed by frame, manoeuvre (T,) str)}."""
    path = root / GROUNDTRUTH
    if not path.is_file():
        raise FileNotFoundError(f"{path}: drive ground truth not found (run the drives stage)")
    table = pd.read_parquet(path)
    missing = [c for c in ["sequence", "frame", "manoeuvre", *POSE_COLUMNS] if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    out = {}
    for sequence, rows in table.groupby("sequence", sort=True):
        rows = rows.sort_values("frame")
        if not np.array_equal(rows["frame"].to_numpy(), np.arange(len(rows))):
            raise ValueError(f"{path}: frames of {sequence} are not 0 .. {len(rows) - 1}")
        poses = rows[POSE_COLUMNS].to_numpy(np.float64).reshape(-1, 4, 4)
        if not np.isfinite(poses).all():
            raise ValueError(f"{path}: poses of {sequence} hold NaN or inf")
        out[str(sequence)] = (poses, rows["manoeuvre"].to_numpy(dtype=str))
    return out


def missing_labels(labels: dict[str, np.ndarray], names: list[str]) -> list[str]:
    """Manoeuvre labels (:data:`LABELS` order) that no frame of the drives ``names`` holds."""
    seen = set()
    for name in names:
        seen.update(str(x) for x in labels[name])
    return [label for label in LABELS if label not in seen]


def sequence_manoeuvres(raw: Path, names: list[str]) -> dict[str, np.ndarray] | None:
    """Per-frame manoeuvre labels of generated SYNTHIA-SEQS sequences (``<raw>/<name>/groundtruth/manoeuvres.parquet``,
    ``pipeline/data/synthetic/generate.py``), indexed by frame; None when a sequence has none (real SYNTHIA)."""
    out = {}
    for name in names:
        path = raw / name / "groundtruth" / "manoeuvres.parquet"
        if not path.is_file():
            return None
        table = pd.read_parquet(path, columns=["frame", "manoeuvre"]).sort_values("frame")
        if not np.array_equal(table["frame"].to_numpy(), np.arange(len(table))):
            raise ValueError(f"{path}: frames are not 0 .. {len(table) - 1}")
        out[name] = table["manoeuvre"].to_numpy(dtype=str)
    return out
