"""The per-frame cache of the ``frames`` stage: what the slot models read, computed once.

Layout (one file per sequence and camera, plus a manifest)::

    <root>/<sequence>/<Stereo_Left_Omni_F>.npz   one sequence's usable frames (arrays below)
    <root>/manifest.json                         camera, sequences, frame counts and the selection
                                                 (``train.*`` params) the cache was made with

Arrays of one ``.npz`` (F usable frames, N target points over all of them, K slots; every array is
stored bit for bit as :func:`pipeline.data.frames.load_frames` returns it):

=====================  ==============  ===========================================================
frame                  (F,) int64      frame index, increasing
depth                  (F, h, w) f32   planar depth (metres) at the model's input size, +inf = no hit
intrinsics             (F, 4) f64      focal, cx, cy, baseline at that size (pixels; baseline m)
offsets                (F + 1,) int64  frame f's points are rows ``offsets[f]:offsets[f + 1]``
points                 (N, 3) f32      target points, OpenCV camera axes of their frame (metres)
instance, class_id     (N,) int64      SYNTHIA instance and class of each point
kmeans_<field>         (F, K, ...)     per-frame k-means anchors (:class:`Anchors`, sorted by depth)
kmeans_label           (N,) int64      cluster of each point
carried_<field>        as kmeans_*     anchors carried over time (phase two); only with F >= 2
r_wc, t_wc             (F, 3, 3), (F, 3)  world_from_camera relative to the first usable frame
                                       (OpenCV axes, metres); only when every pose file exists
skipped                () int64        frames without enough target points
=====================  ==============  ===========================================================

Readers pass the selection they need; :func:`check_manifest` stops them in one line naming the
first ``train.*`` key (or the camera) the cache was made with differently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.frames import Anchors, FrameRecord, FrameSelection
from pipeline.io import atomic, synthia
from pipeline.io.manifest import read_manifest
from pipeline.io.npz import write_npz
from pipeline.io.pointcloud_table import camera_dirname

MANIFEST = "manifest.json"
ANCHOR_FIELDS = ("centre", "radius", "spread", "axes", "weight")


@dataclass
class CachedSequence:
    """One sequence's cached frames: ``records`` with per-frame k-means anchors, ``carried`` anchors
    (one per record, or None below 2 usable frames), GT poses (or None) and the skipped-frame count."""

    name: str
    records: list[FrameRecord]
    carried: list[Anchors] | None
    r_wc: np.ndarray | None
    t_wc: np.ndarray | None
    skipped: int


def sequence_path(root: Path, sequence: str, camera: str) -> Path:
    return root / sequence / f"{camera_dirname(camera)}.npz"


def _anchor_arrays(prefix: str, anchors: list[Anchors]) -> dict[str, np.ndarray]:
    out = {f"{prefix}_{f}": np.stack([getattr(a, f) for a in anchors]) for f in ANCHOR_FIELDS}
    out[f"{prefix}_label"] = np.concatenate([a.label for a in anchors])
    return out


def _anchors(arrays, prefix: str, offsets: np.ndarray) -> list[Anchors]:
    fields = [arrays[f"{prefix}_{f}"] for f in ANCHOR_FIELDS]
    label = arrays[f"{prefix}_label"]
    return [Anchors(*(a[i] for a in fields), label[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)]


def write_sequence(path: Path, seq: CachedSequence) -> None:
    """Write one sequence's cache file atomically (at least one record)."""
    records = seq.records
    arrays = {
        "frame": np.array([r.frame for r in records], np.int64),
        "depth": np.stack([r.depth for r in records]),
        "intrinsics": np.array([dataclasses.astuple(r.intrinsics) for r in records], np.float64),
        "offsets": np.concatenate([[0], np.cumsum([len(r.points) for r in records])]).astype(np.int64),
        "points": np.concatenate([r.points for r in records]),
        "instance": np.concatenate([r.instance for r in records]),
        "class_id": np.concatenate([r.class_id for r in records]),
        "skipped": np.array(seq.skipped, np.int64),
        **_anchor_arrays("kmeans", [r.anchors for r in records]),
    }
    if seq.carried is not None:
        arrays.update(_anchor_arrays("carried", seq.carried))
    if seq.r_wc is not None:
        arrays.update(r_wc=seq.r_wc, t_wc=seq.t_wc)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(path, lambda tmp: write_npz(tmp, arrays))


def read_sequence(root: Path, sequence: str, camera: str) -> CachedSequence:
    """One sequence of the cache (no manifest check: use :func:`load_cached`)."""
    path = sequence_path(root, sequence, camera)
    if not path.is_file():  # a sequence without any usable frame has no file
        return CachedSequence(sequence, [], None, None, None, _manifest(root)["skipped"].get(sequence, 0))
    with np.load(path, allow_pickle=False) as npz:
        arrays = dict(npz)
    offsets = arrays["offsets"]
    anchors = _anchors(arrays, "kmeans", offsets)
    records = []
    for i, frame in enumerate(arrays["frame"]):
        rows = slice(offsets[i], offsets[i + 1])
        records.append(FrameRecord(
            sequence=sequence, camera=camera, frame=int(frame), depth=arrays["depth"][i],
            intrinsics=synthia.Intrinsics(*(float(v) for v in arrays["intrinsics"][i])),
            points=arrays["points"][rows], instance=arrays["instance"][rows], class_id=arrays["class_id"][rows],
            anchors=anchors[i]))
    carried = _anchors(arrays, "carried", offsets) if "carried_centre" in arrays else None
    return CachedSequence(sequence, records, carried, arrays.get("r_wc"), arrays.get("t_wc"), int(arrays["skipped"]))


def write_manifest(root: Path, camera: str, selection: FrameSelection, sequences: list[CachedSequence]) -> None:
    atomic.write_json(root / MANIFEST, {
        "camera": camera,
        "selection": {f"train.{k}": v for k, v in dataclasses.asdict(selection).items()},
        "sequences": [s.name for s in sequences],
        "frames": {s.name: len(s.records) for s in sequences},
        "skipped": {s.name: s.skipped for s in sequences},
    })


def _manifest(root: Path) -> dict:
    return read_manifest(root / MANIFEST, "frame cache not found (run the frames stage first)",
                         keys=("camera", "selection", "sequences", "skipped"))


def check_manifest(root: Path, camera: str, selection: FrameSelection) -> dict:
    """The cache's manifest, after checking it was made for ``camera`` and ``selection``; else one line
    naming the first key that differs."""
    manifest = _manifest(root)
    where = root / MANIFEST
    if manifest["camera"] != camera:
        raise ValueError(f"{where}: made for camera {manifest['camera']!r}, this stage reads data.cameras[0] = "
                         f"{camera!r} (rerun the frames stage)")
    for key, value in dataclasses.asdict(selection).items():
        made = manifest["selection"].get(f"train.{key}")
        if made != value:
            raise ValueError(f"{where}: made with train.{key} = {made!r}, this stage needs {value!r} "
                             f"(rerun the frames stage with the same train params)")
    return manifest


def cached_sequences(root: Path) -> list[str]:
    """Every sequence the cache was built from (all of the raw data, sorted), for the split."""
    return list(_manifest(root)["sequences"])


def load_cached(root: Path, sequences: list[str], camera: str, selection: FrameSelection) -> list[CachedSequence]:
    """Cached ``sequences`` (in that order) after :func:`check_manifest`."""
    manifest = check_manifest(root, camera, selection)
    missing = [s for s in sequences if s not in manifest["sequences"]]
    if missing:
        raise ValueError(f"{root / MANIFEST}: sequence {missing[0]} is not in the frame cache")
    return [read_sequence(root, name, camera) for name in sequences]


def load_frames(root: Path, sequences: list[str], camera: str, selection: FrameSelection
                ) -> tuple[list[FrameRecord], int]:
    """The cached counterpart of :func:`pipeline.data.frames.load_frames`: (records with per-frame
    k-means anchors, frames skipped), the same arrays in the same order."""
    cached = load_cached(root, sequences, camera, selection)
    return [r for c in cached for r in c.records], sum(c.skipped for c in cached)
