"""Frame pairs from folders of RGB videos (.webm / .mp4), decoded with PyAV (``av``).

Every video under ``root`` (recursive, sorted by path) contributes the pairs (t, t + frame_offset)
for t = 0 .. n_frames - 1 - frame_offset; frames are resized to ``frame_size`` x ``frame_size`` (the
seed's VGGT input; use a multiple of 14 for VGGT) with OpenCV area / linear interpolation. Items are
float32 tensors (2, 3, S, S) in [0, 1], RGB, plus the video path and the first frame index, so the
`vggt` → `concerto` → `laq` path can run on RGB-only videos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

VIDEO_SUFFIXES = (".webm", ".mp4")


def list_videos(root: Path) -> list[Path]:
    """Videos (.webm / .mp4, any case) under ``root``, sorted."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: video folder not found")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def decode_frames(path: Path, indices: set[int] | None = None, frame_size: int | None = None) -> dict[int, np.ndarray]:
    """Decode ``path`` in order; return {index: (S, S, 3) uint8 RGB} for ``indices`` (all if None).

    Decoding stops after the largest requested index. ``frame_size`` None keeps the native size.
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
    """Number of decodable frames (decodes the stream; container metadata is unreliable for webm)."""
    import av

    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except av.FFmpegError as err:
        raise ValueError(f"{path}: not a decodable video ({err})") from None


class VideoPairs(torch.utils.data.Dataset):
    """(frame t, frame t + ``frame_offset``) pairs of every video in a folder, resized to ``frame_size``.

    ``max_pairs_per_video`` keeps evenly spaced pairs per video (None = all).
    """

    def __init__(self, root: Path | str, frame_size: int = 224, frame_offset: int = 5,
                 max_pairs_per_video: int | None = None):
        if frame_size < 1 or frame_offset < 1:
            raise ValueError(f"frame_size = {frame_size} and frame_offset = {frame_offset} must be >= 1")
        self.root = Path(root)
        self.frame_size = frame_size
        self.frame_offset = frame_offset
        self.videos = list_videos(self.root)
        if not self.videos:
            raise FileNotFoundError(f"{self.root}: no .webm or .mp4 videos")
        self.frame_counts = [count_frames(v) for v in self.videos]
        self.items: list[tuple[int, int]] = []
        for v, n in enumerate(self.frame_counts):
            starts = np.arange(max(0, n - frame_offset))
            if max_pairs_per_video is not None and len(starts) > max_pairs_per_video:
                starts = starts[np.linspace(0, len(starts) - 1, max_pairs_per_video).round().astype(int)]
            self.items.extend((v, int(t)) for t in starts)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        """{"frames": (2, 3, S, S) float32 in [0, 1], "video": str, "index": t, "offset": frame_offset}."""
        v, t = self.items[i]
        frames = decode_frames(self.videos[v], {t, t + self.frame_offset}, self.frame_size)
        pair = np.stack([frames[t], frames[t + self.frame_offset]])  # (2, S, S, 3)
        return {"frames": torch.from_numpy(pair).permute(0, 3, 1, 2).float() / 255.0,
                "video": str(self.videos[v]), "index": t, "offset": self.frame_offset}
