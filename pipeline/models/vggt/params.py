"""The ``vggt`` section of params.yaml (read by the ``vggt`` stage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .config import VGGTConfig, vggt_1b, vggt_tiny


@dataclass(frozen=True)
class VggtParams:
    """``vggt`` section of params.yaml.

    - ``weights``: ``random`` (random initialisation, announced everywhere; numbers carry no meaning), a local
      checkpoint file / folder, or a Hugging Face repo id such as ``facebook/VGGT-1B`` (needs network or a
      filled cache);
    - ``preset``: ``tiny`` (~1 M parameters, CPU) or ``1b`` (the released VGGT-1B architecture; real weights
      need it);
    - ``revision``: pinned hub commit for a repo id (empty: the loader's default pin for ``facebook/VGGT-1B``);
    - ``frames_per_chunk``: frames per forward pass; consecutive chunks share one frame, which chains their
      cameras and depth scale into the frame of frame 0 (bounds memory for long videos);
    - ``target_size``: model input width in pixels, a multiple of 14 (518 = VGGT's training size; smaller
      values only to keep the offline CPU default fast);
    - ``mode``: ``crop`` or ``pad`` pre-processing, as the reference ``load_and_preprocess_images``;
    - ``max_points``: points per frame in ``data/vggt/points`` after subsampling;
    - ``sampling``: ``random`` or ``fps`` (farthest-point sampling);
    - ``normal_neighbours``: k of the k-NN plane fit for normals (open3d);
    - ``max_frames``: first frames per sequence and camera to process (0 = all);
    - ``eval_max_depth_m``: ground-truth depth beyond this many metres is ignored by the depth metrics;
    - ``camera_height_m``: the scale normaliser (``pipeline/geometry/ground.py``): each sequence's points are
      scaled so that the camera is this many metres above the fitted ground plane (the metre-based
      ``concerto`` params then fit VGGT clouds too; 0 = keep VGGT's arbitrary units);
    - ``seed``: seeds random initialisation and the point subsampling.
    """

    weights: str = "random"
    preset: Literal["tiny", "1b"] = "tiny"
    revision: str = ""
    frames_per_chunk: int = 8
    target_size: int = 252
    mode: Literal["crop", "pad"] = "crop"
    max_points: int = 8192
    sampling: Literal["random", "fps"] = "random"
    normal_neighbours: int = 16
    max_frames: int = 0
    eval_max_depth_m: float = 80.0
    camera_height_m: float = 2.1
    seed: int = 0

    def validate(self) -> None:
        if not self.weights.strip():
            raise ValueError("weights must be 'random', a checkpoint path or a hub repo id")
        if self.frames_per_chunk < 2:
            raise ValueError(f"frames_per_chunk = {self.frames_per_chunk} must be >= 2 (chunks share a frame)")
        if self.target_size < 28 or self.target_size % 14:
            raise ValueError(f"target_size = {self.target_size} must be a multiple of 14 and >= 28")
        if self.max_points < 16:
            raise ValueError(f"max_points = {self.max_points} must be >= 16")
        if self.normal_neighbours < 3:
            raise ValueError(f"normal_neighbours = {self.normal_neighbours} must be >= 3")
        if self.max_frames < 0:
            raise ValueError(f"max_frames = {self.max_frames} must be >= 0 (0 = all frames)")
        if self.camera_height_m < 0:
            raise ValueError(f"camera_height_m = {self.camera_height_m} must be >= 0 (0 = no normalisation)")
        if self.eval_max_depth_m <= 0:
            raise ValueError(f"eval_max_depth_m = {self.eval_max_depth_m} must be positive")

    @property
    def random_weights(self) -> bool:
        return self.weights.strip() == "random"

    def model_config(self) -> VGGTConfig:
        """Preset with only the camera and depth heads (the stage needs no point map or tracks)."""
        preset = vggt_tiny if self.preset == "tiny" else vggt_1b
        return preset(enable_point=False, enable_track=False)
