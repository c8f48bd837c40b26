"""DVC stage ``videos``: the listing of the video folder, which vggt -> concerto -> laq read.

``videos.dir`` and ``videos.labels`` are DVC dependencies of the stage (dvc.yaml interpolates them), so DVC reruns it
when a video or the labels file is added, removed or rewritten, or when the params point elsewhere; the defaults are
the repository's empty inbox ``data/video_inbox`` and its empty labels file. It writes two files, separate DVC outputs:
- ``data/videos/listing.json`` (read by ``vggt``): the folder, ``videos.stride`` and per video (``videos.dir``,
  recursive, sorted, the first ``videos.max_videos``) its path relative to the folder, the partition name it
  gets downstream, size in bytes and modification time (ns). It changes only when the listed videos (or those
  params) change, so only then do ``vggt`` -> ``concerto`` -> ``laq`` rerun.
- ``data/videos/labels.json`` (read by ``laq`` only): the labels file's path, size and mtime (``file``) and the
  labels of the listed videos by partition name (``labels``; empty for a file without theirs).
With ``download.source`` other than ``videos`` both are empty. Nothing is decoded here (that is the ``vggt``
stage's job, which skips undecodable files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import parse_section, project_path
from pipeline.params.data import DownloadParams, VideosParams
from pipeline.data.video import list_videos, read_video_labels, sequence_name
from pipeline.io import atomic

LISTING = "listing.json"
LABELS = "labels.json"


def video_folder(p: VideosParams) -> Path:
    """``videos.dir`` as an absolute path (relative paths are relative to the project root); must be a folder."""
    folder = project_path(p.dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: video folder not found (videos.dir)")
    return folder


def file_entry(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def build_listing(p: VideosParams) -> tuple[dict[str, Any], dict[str, Any]]:
    """(listing, labels record) of the folder of ``p`` (see the module docstring). Zero videos is an error."""
    folder = video_folder(p)
    paths = list_videos(folder)
    if p.max_videos:
        paths = paths[:p.max_videos]
    if not paths:
        raise FileNotFoundError(f"{folder}: no .webm or .mp4 videos (videos.dir)")
    entries = [{"path": v.relative_to(folder).as_posix(), "sequence": sequence_name(v, folder), **file_entry(v)}
               for v in paths]
    names = [e["sequence"] for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{folder}: two videos map to the same name; rename one")
    listing: dict[str, Any] = {"source": "videos", "dir": str(folder), "stride": p.stride, "videos": entries}
    label_path = project_path(p.labels)
    if not label_path.is_file():
        raise FileNotFoundError(f"{label_path}: labels file not found (videos.labels)")
    by_id = read_video_labels(label_path)
    labels = {"file": {"path": str(label_path), **file_entry(label_path)},
              "labels": {e["sequence"]: by_id[Path(e["path"]).stem] for e in entries if Path(e["path"]).stem in by_id}}
    return listing, labels


def run(params: dict[str, Any], out: Path) -> None:
    """The stage: ``out/listing.json`` and ``out/labels.json`` (each written atomically)."""
    download = parse_section(params, "download", DownloadParams)
    p = parse_section(params, "videos", VideosParams)
    if download.source == "videos":
        listing, labels = build_listing(p)
        print(f"videos: {len(listing['videos'])} videos listed in {listing['dir']}"
              + f", {len(labels['labels'])} labelled", flush=True)
    else:
        listing, labels = {"source": download.source, "videos": []}, {"file": None, "labels": {}}
    atomic.write_json(out / LISTING, listing)
    atomic.write_json(out / LABELS, labels)
