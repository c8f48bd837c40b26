"""The embedded video sample: short .webm clips (VP8) rendered by the synthetic generator, for tests and demos.

:func:`write_sample_videos` renders ``videos`` synthetic sequences (``pipeline/data/synthetic/``, camera
``Stereo_Left/Omni_F``) into a temporary folder and encodes each one's RGB frames as
``<out>/sample-NN.webm`` (NN from 01) at the generator's 5 FPS; optionally a ``corrupt.webm`` that no decoder accepts
(the video source must skip it) and a Something-Something-v2-style ``labels.json`` (a list of ``{"id",
"template"}``) whose label is the drive's manoeuvre over the clip from the ground-truth poses: ``turning right``
/ ``turning left`` (|yaw change| > 0.05 rad between the first and last frame) or ``going straight``.
``protoscene sample-videos`` is the command line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from pipeline.data.camera import synthia_pair_motion
from pipeline.data.synthetic.generate import GeneratorConfig, generate_dataset
from pipeline.data.video import write_video
from pipeline.io import atomic, synthia
from pipeline.io.synthia import FRAME_RATE_HZ

CAMERA = "Stereo_Left/Omni_F"
CORRUPT = "corrupt.webm"
LABELS = "labels.json"
TURN_RAD = 0.05


def manoeuvre(first_pose: np.ndarray, last_pose: np.ndarray) -> str:
    """Label of a clip from its first and last camera-to-world poses (SYNTHIA convention)."""
    yaw = synthia_pair_motion(first_pose, last_pose)[1]  # > 0: towards +x, the right
    return "going straight" if abs(yaw) <= TURN_RAD else ("turning right" if yaw > 0 else "turning left")


def write_sample_videos(out: Path, videos: int = 3, frames: int = 8, height: int = 96, width: int = 160,
                        seed: int = 0, corrupt: bool = False, labels: bool = False) -> list[Path]:
    """Write the sample into ``out`` (created if needed); returns the written files (videos, then extras)."""
    out.mkdir(parents=True, exist_ok=True)
    config = GeneratorConfig(seed=seed, sequences=videos, frames=frames, height=height, width=width,
                             cameras=(CAMERA,), workers=1)
    written, entries = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for number, folder in enumerate(generate_dataset(config, Path(tmp), progress=False), start=1):
            layout = synthia.SequenceLayout(folder)
            indices = layout.frames(CAMERA)
            rgb = np.stack([synthia.read_rgb(layout.rgb(CAMERA, f)) for f in indices])
            path = out / f"sample-{number:02d}.webm"
            atomic.write_with(path, lambda target, rgb=rgb: write_video(target, rgb, fps=int(FRAME_RATE_HZ)))
            written.append(path)
            poses = [synthia.read_pose(layout.pose(CAMERA, f)) for f in (indices[0], indices[-1])]
            entries.append({"id": path.stem, "template": manoeuvre(*poses)})
    if corrupt:
        rng = np.random.default_rng(seed)
        atomic.write_bytes(out / CORRUPT, b"\x1aE\xdf\xa3" + rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
        written.append(out / CORRUPT)
    if labels:
        atomic.write_json(out / LABELS, entries)
        written.append(out / LABELS)
    return written
