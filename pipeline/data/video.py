"""Folders of RGB videos (.webm / .mp4), decoded with PyAV (``av``): listing, decoding, frame pairs, writing.

- :func:`list_videos` / :func:`sequence_name`: the videos under a folder (recursive, sorted by path) and the
  partition name each gets in the point-cloud and feature tables (its path relative to the folder, without
  suffix, ``/`` -> ``__``; for Something-Something-v2 the video id).
- :func:`decode_frames`: frames of one video as (H, W, 3) uint8 RGB, native size or resized to a square.
- :class:`VideoPairs`: the decodable videos of a list (undecodable ones are skipped and kept in
  ``skipped`` with the reason), the frames on a stride grid (frames 0, s, 2s, ...; frame indices are those
  of the video) and the pairs (t, t + frame_offset) of grid frames; a map-style dataset of pairs. The
  ``vggt`` stage reads a video folder through it (``pipeline/steps/vggt.py``).
- :func:`write_video`: encode frames to .webm (VP8 / VP9) or .mp4, e.g. the embedded sample of
  ``protoscene sample-videos``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".webm", ".mp4")
CODECS = {".webm": "libvpx", ".mp4": "mpeg4"}


def list_videos(root: Path) -> list[Path]:
    """Videos (.webm / .mp4, any case) under ``root``, sorted."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: video folder not found")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def sequence_name(path: Path, root: Path) -> str:
    """Partition name of a video: relative path without suffix, ``/`` -> ``__``, other unsafe characters -> ``_``."""
    stem = path.relative_to(root).with_suffix("").as_posix().replace("/", "__")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def decode_frames(path: Path, indices: set[int] | None = None, frame_size: int | None = None) -> dict[int, np.ndarray]:
    """Decode ``path`` in order; return {index: (H, W, 3) uint8 RGB} for ``indices`` (all if None).

    Decoding stops after the largest requested index. ``frame_size`` None keeps the native size, else frames
    are resized to ``frame_size`` x ``frame_size`` (OpenCV area / linear interpolation).
    Raises ValueError naming the file when it cannot be decoded.
    """
    import av
    import cv2

    out: dict[int, np.ndarray] = {}
    last = max(indices) if indices else None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            for i, frame in enumerate(container.decode(video=0)):
                if last is not None and i > last:
                    break
                if indices is None or i in indices:
                    rgb = frame.to_ndarray(format="rgb24")
                    if frame_size is not None and rgb.shape[:2] != (frame_size, frame_size):
                        shrink = rgb.shape[0] > frame_size and rgb.shape[1] > frame_size
                        rgb = cv2.resize(rgb, (frame_size, frame_size),
                                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
                    out[i] = rgb
    except av.FFmpegError as err:
        raise ValueError(f"{path}: not a decodable video ({err})") from None
    return out


def count_frames(path: Path) -> int:
    """Number of decodable frames (decodes the stream; container metadata is unreliable for webm).

    Raises ValueError naming the file when it cannot be decoded or holds no frame.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            count = sum(1 for _ in container.decode(video=0))
    except av.FFmpegError as err:
        raise ValueError(f"{path}: not a decodable video ({err})") from None
    if count == 0:
        raise ValueError(f"{path}: no decodable frame")
    return count


class VideoPairs:
    """(frame t, frame t + ``frame_offset``) pairs of the decodable videos of a folder or list.

    ``videos``: a folder (every .webm / .mp4 under it) or a list of paths. Undecodable videos are skipped:
    ``skipped`` lists (path, reason). Grid frames of video v (:meth:`grid_frames`) are 0, ``stride``,
    2 ``stride``, ... (at most ``max_frames``, 0 = all); pairs start at grid frames and end ``frame_offset``
    frames later (frame indices of the video). ``frame_size`` None keeps the native size in items;
    ``max_pairs_per_video`` keeps evenly spaced pairs per video (None = all). A map-style dataset
    (``len`` and indexing) for ``torch.utils.data.DataLoader``; torch is imported on first item only, so
    listing stays light. Raises FileNotFoundError when there is no video and ValueError when none is decodable.
    """

    def __init__(self, videos: Path | str | Sequence[Path], frame_size: int | None = 224, frame_offset: int = 5,
                 max_pairs_per_video: int | None = None, stride: int = 1, max_frames: int = 0):
        if (frame_size is not None and frame_size < 1) or frame_offset < 1 or stride < 1 or max_frames < 0:
            raise ValueError(f"frame_size = {frame_size}, frame_offset = {frame_offset} and stride = {stride} must "
                             f"be >= 1, max_frames = {max_frames} >= 0")
        if isinstance(videos, str | Path):
            self.root = Path(videos)
            paths = list_videos(self.root)
            where = str(self.root)
        else:
            paths, where = list(videos), "video list"
        if not paths:
            raise FileNotFoundError(f"{where}: no .webm or .mp4 videos")
        self.frame_size, self.frame_offset, self.stride, self.max_frames = frame_size, frame_offset, stride, max_frames
        self.videos: list[Path] = []
        self.frame_counts: list[int] = []
        self.skipped: list[tuple[Path, str]] = []
        for path in paths:
            try:
                count = count_frames(path)
            except ValueError as err:
                self.skipped.append((path, str(err)))
                continue
            self.videos.append(path)
            self.frame_counts.append(count)
        if not self.videos:
            raise ValueError(f"{where}: none of the {len(paths)} videos is decodable (first: {self.skipped[0][1]})")
        self.items: list[tuple[int, int]] = []
        for v, n in enumerate(self.frame_counts):
            starts = np.asarray([t for t in self.grid_frames(v) if t + frame_offset < n], dtype=np.int64)
            if max_pairs_per_video is not None and len(starts) > max_pairs_per_video:
                starts = starts[np.linspace(0, len(starts) - 1, max_pairs_per_video).round().astype(int)]
            self.items.extend((v, int(t)) for t in starts)

    def grid_frames(self, v: int) -> list[int]:
        """Frame indices 0, stride, 2 stride, ... of video ``v`` (the first ``max_frames`` of them if set)."""
        frames = list(range(0, self.frame_counts[v], self.stride))
        return frames[:self.max_frames] if self.max_frames else frames

    def read_grid(self, v: int) -> tuple[list[int], np.ndarray]:
        """Grid frames of video ``v``: (frame indices, (S, H, W, 3) uint8 RGB at ``frame_size`` or native size)."""
        frames = self.grid_frames(v)
        decoded = decode_frames(self.videos[v], set(frames), self.frame_size)
        missing = [f for f in frames if f not in decoded]
        if missing:
            raise ValueError(f"{self.videos[v]}: frames {missing[:3]} could not be decoded")
        return frames, np.stack([decoded[f] for f in frames])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        """{"frames": (2, 3, S, S) float32 in [0, 1], "video": str, "index": t, "offset": frame_offset}."""
        import torch

        v, t = self.items[i]
        frames = decode_frames(self.videos[v], {t, t + self.frame_offset}, self.frame_size)
        pair = np.stack([frames[t], frames[t + self.frame_offset]])  # (2, S, S, 3)
        return {"frames": torch.from_numpy(pair).permute(0, 3, 1, 2).float() / 255.0,
                "video": str(self.videos[v]), "index": t, "offset": self.frame_offset}


def write_video(path: Path, frames: np.ndarray, fps: int = 5, codec: str | None = None) -> None:
    """Encode (T, H, W, 3) uint8 RGB ``frames`` (H, W even) to ``path`` (codec from the suffix: .webm VP8,
    .mp4 MPEG-4 Part 2, or ``codec``, e.g. ``libvpx-vp9``). The caller handles atomicity."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"{path}: frames must be (T, H, W, 3) uint8 with even H and W, got {frames.shape} {frames.dtype}")
    with av.open(str(path), mode="w", format="webm" if path.suffix.lower() == ".webm" else None) as container:
        stream = container.add_stream(codec or CODECS[path.suffix.lower()], rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_video_labels(path: Path) -> dict[str, str]:
    """Video id -> label from a labels file: a JSON list of objects with ``id`` and ``template`` (preferred:
    Something-Something-v2's action class, placeholders as ``[something]``) or ``label``, or a JSON object
    id -> label. Raises ValueError naming the file when it has neither form."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON labels file ({type(err).__name__}: {err})") from None
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return {str(k): v for k, v in data.items()}
    if isinstance(data, list) and all(isinstance(d, dict) and "id" in d and ("template" in d or "label" in d)
                                      for d in data):
        return {str(d["id"]): str(d.get("template", d.get("label"))).replace("[", "").replace("]", "")
                for d in data}
    raise ValueError(f"{path}: expected a JSON list of {{id, template|label}} objects or an object id -> label")
