"""Models of the ``data``, ``download`` and ``videos`` sections (documented in params.yaml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pipeline.io.synthia import ALL_CAMERAS, SEQUENCE_PATTERN
from pipeline.params.base import Count, PathText, Section, Seed

Camera = Literal[ALL_CAMERAS]  # "<Stereo_Left|Stereo_Right>/<Omni_F|Omni_B|Omni_L|Omni_R>"
SequenceName = Annotated[str, Field(pattern=SEQUENCE_PATTERN.pattern)]
ImageSide = Annotated[int, Field(ge=16, multiple_of=2)]
HeldOut = Annotated[int, Field(ge=0)]


class DataParams(Section):
    """``data``: what the pipeline works on, for any source (see params.yaml)."""

    seed: Seed
    sequences: Count
    frames: Count
    height: ImageSide
    width: ImageSide
    cameras: Annotated[tuple[Camera, ...], Field(strict=False, min_length=1)]
    val_sequences: HeldOut
    test_sequences: HeldOut


class DownloadParams(Section):
    """``download``: where the raw sequences come from (see params.yaml)."""

    source: Literal["synthetic", "synthia", "videos"]  # videos: data/raw stays synthetic, see the videos section
    synthia_sequences: Annotated[tuple[SequenceName, ...], Field(strict=False)]
    synthia_base_url: str


class VideosParams(Section):
    """``videos``: the folder of RGB videos read by vggt -> concerto -> laq when ``download.source`` is ``videos``
    (see params.yaml)."""

    dir: PathText  # absolute or relative to the project root; a DVC dependency of stage videos (must exist)
    max_videos: Annotated[int, Field(ge=0)]  # 0 = all
    stride: Count  # laq.frame_offset must be a multiple
    labels: PathText  # labels JSON (an empty one = no labels); also a DVC dependency
