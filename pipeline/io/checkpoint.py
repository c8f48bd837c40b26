"""Checkpoint files: byte-reproducible, atomic saves and safe loads (``weights_only=True``), errors naming the file.

``torch.save`` to a path records that path's base name inside the zip (``<name>/data.pkl``); saving to a
temporary file with a random name would make equal tensors give different bytes on every run (and DVC see a
changed output). :func:`save` serialises into memory (fixed record name) and writes the bytes atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from pipeline.io import atomic


def to_bytes(payload: Any) -> bytes:
    """``torch.save`` of ``payload`` into memory: the same bytes for the same tensors and plain values."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save(path: Path | str, payload: Any) -> None:
    """Write ``payload`` (tensors and plain types only) to ``path`` atomically, byte-reproducibly."""
    atomic.write_bytes(path, to_bytes(payload))


def load(path: Path | str, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)``; a missing file, a truncated archive or a pickle carrying code is one
    error naming the file (FileNotFoundError / ValueError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - unpickling errors have many types; one line naming the file
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{path}: not a readable checkpoint, refused by torch.load(weights_only=True) "
                         f"({type(err).__name__}: {reason})") from None
