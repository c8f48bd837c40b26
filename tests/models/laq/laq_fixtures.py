"""A tiny cached-feature project in the `concerto` stage's format, with known camera motion.

The "world" is a smooth random feature field f(p) = W sin(A p + b) over SYNTHIA world coordinates,
shared by all sequences. Each sequence's camera drives with segment-wise constant speed and yaw rate
(pose files written as SYNTHIA-SEQS). The N token centres sit on a fixed grid in the camera frame
(OpenCV axes, on the ground 1.5 m below the camera), so frame t's tokens are f at those centres mapped
to the world: the change of the tokens between frames is caused by the camera's motion only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.data.camera import cv_to_world, look_pose
from pipeline.io.synthia import write_pose

CAMERA = "Stereo_Left/Omni_F"


BEV_WIDTH, BEV_DEPTH = 20.0, 28.0


def token_grid(n_side: int) -> np.ndarray:
    """(n_side², 3) cv-frame centres of an n_side x n_side bird's-eye grid (20 m x 28 m), y = 1.5 m (ground)."""
    from pipeline.models.ptv3.bev_tokens import BEVGrid

    centres = BEVGrid(n_side, n_side, BEV_WIDTH, BEV_DEPTH).centres()
    centres[:, 1] = 1.5
    return centres.astype(np.float32)


def drive(frames: int, rng: np.random.Generator, fps: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Positions (T, 2) as world (x, z) and yaws (T,) with random speed / yaw rate changing every 8 frames."""
    pos, yaw = rng.uniform(-20, 20, 2), rng.uniform(-np.pi, np.pi)
    positions, yaws = [], []
    for t in range(frames):
        if t % 8 == 0:
            speed, rate = rng.choice([0.0, 3.0, 8.0]), rng.choice([-0.5, 0.0, 0.0, 0.5])
        positions.append(pos.copy())
        yaws.append(yaw)
        yaw += rate / fps
        pos = pos + speed / fps * np.array([np.sin(yaw), np.cos(yaw)])
    return np.array(positions), np.array(yaws)


def write_features(root: Path, sequences: int = 4, frames: int = 24, n_side: int = 4, channels: int = 8,
                   seed: int = 0, random_weights: bool = False, noise: float = 0.02, frequency: float = 0.15,
                   poses_from: Path | None = None) -> list[str]:
    """Write data/raw/<seq>/CameraParams poses and data/features/ under ``root``; return sequence names.

    ``frequency``: spatial frequency scale (rad/m) of the feature field; ``poses_from``: a data/raw folder
    whose first ``sequences`` sequences' poses are used (copied) instead of the random drive.
    """
    from pipeline.io.synthia import list_sequences, read_pose

    rng = np.random.default_rng(seed)
    field_a = rng.normal(0, frequency, (16, 3))
    field_b = rng.uniform(0, 2 * np.pi, 16)
    field_w = rng.normal(0, 1, (16, channels)) / 4
    grid = token_grid(n_side)
    names = [f"SYNTHIA-SEQS-{i + 1:02d}-GENERATED" for i in range(sequences)]
    features = root / "data/features"
    source = list_sequences(poses_from)[:sequences] if poses_from is not None else None
    for k, name in enumerate(names):
        positions, yaws = drive(frames, rng)
        tokens = np.zeros((frames, len(grid), channels), np.float32)
        for t in range(frames):
            if source is not None:
                pose = read_pose(source[k].pose(CAMERA, t))
            else:
                pose = look_pose(np.array([positions[t, 0], 1.5, positions[t, 1]]), float(yaws[t]), 0.0)
            write_pose(root / "data/raw" / name / "CameraParams" / CAMERA / f"{t:06d}.txt", pose)
            world = cv_to_world(grid.astype(np.float64), pose)
            tokens[t] = np.sin(world @ field_a.T + field_b) @ field_w + rng.normal(0, noise, (len(grid), channels))
        out = features / name
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / f"{CAMERA.replace('/', '_')}.npz", frames=np.arange(frames, dtype=np.int32),
                 time_s=(np.arange(frames) / 5.0).astype(np.float32),
                 **{"global": tokens.mean(1)}, tokens=tokens,
                 token_xyz=np.broadcast_to(grid, (frames, *grid.shape)).astype(np.float32),
                 token_mask=np.ones((frames, len(grid)), bool))
    manifest = {"weights_source": "test fixture", "random_weights": random_weights, "preset": "fixture",
                "channels": channels, "tokens": len(grid), "pooling": "grid", "points_from": "fixture",
                "grid_size": 0.02, "camera": [CAMERA], "sequences": names, "token_layout": "bev", "bev_cells_x": n_side,
                "bev_cells_z": n_side, "bev_width": BEV_WIDTH, "bev_depth": BEV_DEPTH}
    (features / "manifest.json").write_text(json.dumps(manifest))
    return names
