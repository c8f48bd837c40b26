"""Every section of params.yaml and its model; :func:`validate_all` checks a whole params file."""

from __future__ import annotations

from typing import Any

from pipeline.config import ParamsError, parse_section
from pipeline.params.base import Section
from pipeline.params.concerto import ConcertoParams
from pipeline.params.drives import DrivesParams
from pipeline.params.data import DataParams, DownloadParams, VideosParams
from pipeline.params.laq import LAQParams
from pipeline.params.pointcloud import PointcloudParams
from pipeline.params.train import Phase1Params
from pipeline.params.video import Phase2Params
from pipeline.params.vggt import VggtParams

SECTIONS: dict[str, type[Section]] = {
    "data": DataParams,
    "download": DownloadParams,
    "videos": VideosParams,
    "drives": DrivesParams,
    "pointcloud": PointcloudParams,
    "vggt": VggtParams,
    "concerto": ConcertoParams,
    "laq": LAQParams,
    "train": Phase1Params,
    "video": Phase2Params,
}


def validate_all(raw: dict[str, Any]) -> dict[str, Section]:
    """Validate every section of a loaded params file; the first problem raises a one-line ParamsError."""
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"params.yaml: unknown section '{unknown[0]}' (known: {', '.join(SECTIONS)})")
    return {name: parse_section(raw, name, cls) for name, cls in SECTIONS.items()}
