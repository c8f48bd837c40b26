"""Dataclasses of the ``data``, ``download`` and ``videos`` sections of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.io.synthia import ALL_CAMERAS, SEQUENCE_PATTERN


@dataclass(frozen=True)
class DataParams:
    """What the pipeline works on, for any source.

    - ``cameras``: SYNTHIA cameras ("<rig>/<view>") to generate / extract and to process;
    - ``frames``: frames per sequence (generated count; upper limit for real downloads);
    - ``sequences``, ``height``, ``width``, ``seed``: the synthetic generator's size and seed
      (real SYNTHIA is always 1280 x 760 and uses ``download.synthia_sequences``).
    - ``test_sequences`` / ``val_sequences``: how many sequences (the last ones, by name) are held
      out for testing and validation; the rest are for training.
    """

    seed: int = 0
    sequences: int = 6
    frames: int = 40
    height: int = 760
    width: int = 1280
    cameras: tuple[str, ...] = ("Stereo_Left/Omni_F",)
    val_sequences: int = 1
    test_sequences: int = 1

    def validate(self) -> None:
        for camera in self.cameras:
            if camera not in ALL_CAMERAS:
                raise ValueError(f"unknown camera {camera!r}; expected some of {list(ALL_CAMERAS)}")
        if not self.cameras:
            raise ValueError("cameras must name at least one camera")
        if self.sequences < 1 or self.frames < 1:
            raise ValueError("sequences and frames must be >= 1")
        if self.height < 16 or self.width < 16 or self.height % 2 or self.width % 2:
            raise ValueError(f"image size {self.width}x{self.height} must be even and at least 16x16")
        if self.val_sequences < 0 or self.test_sequences < 0:
            raise ValueError("val_sequences and test_sequences must be >= 0")


@dataclass(frozen=True)
class DownloadParams:
    """Where the raw sequences come from: ``synthetic`` (generated offline) or ``synthia`` (real).

    ``videos``: the concerto -> laq branch reads the RGB videos of the ``videos`` section through the ``vggt``
    stage; ``data/raw`` is then the synthetic default, so the depth branch (slot models) keeps running.
    """

    source: Literal["synthetic", "synthia", "videos"] = "synthetic"
    synthia_sequences: tuple[str, ...] = ("SYNTHIA-SEQS-01-SPRING",)
    synthia_base_url: str = "http://synthia-dataset.cvc.uab.cat/SYNTHIA_SEQS"

    def validate(self) -> None:
        for name in self.synthia_sequences:
            if not SEQUENCE_PATTERN.match(name):
                raise ValueError(f"synthia_sequences: {name!r} is not a SYNTHIA-SEQS-NN-WEATHER name")


@dataclass(frozen=True)
class VideosParams:
    """A folder of RGB videos for the vggt -> concerto -> laq branch (used when ``download.source: videos``).

    - ``dir``: folder searched recursively for .webm / .mp4 (usually outside the repository; absolute or
      relative to the project root);
    - ``max_videos``: the first videos by path (0 = all);
    - ``stride``: VGGT runs on frames 0, stride, 2 stride, ... of each video (frame indices stay those of the
      video, so ``laq.frame_offset`` counts video frames and must be a multiple of ``stride``);
    - ``labels``: optional labels file (Something-Something-v2 style: a JSON list of objects with ``id`` and
      ``template`` or ``label``, or a JSON object id -> label; the id is the video's file name without suffix).
    """

    dir: str = ""
    max_videos: int = 0
    stride: int = 1
    labels: str = ""

    def validate(self) -> None:
        if self.max_videos < 0:
            raise ValueError(f"max_videos = {self.max_videos} must be >= 0 (0 = all)")
        if self.stride < 1:
            raise ValueError(f"stride = {self.stride} must be >= 1")
