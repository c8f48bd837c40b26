"""One reader for the ``manifest.json`` files between stages: a JSON object, or one error line naming the file.

- :func:`read_manifest`: any manifest (missing file, invalid JSON, not an object, missing keys -> the path);
- :func:`require_camera_frame`: the check every consumer of point clouds (or features built from them)
  makes: the models expect each frame's OpenCV camera axes (``coordinates: camera``), not SYNTHIA world.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_manifest(path: Path | str, missing: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """``path`` parsed as a JSON object holding ``keys``; ``missing`` says what to run when the file is absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: a manifest must be a JSON object, got {type(manifest).__name__}")
    for key in keys:
        if key not in manifest:
            raise ValueError(f"{path}: manifest lacks key '{key}'")
    return manifest


def require_camera_frame(manifest: dict[str, Any], path: Path | str, default: str | None = None) -> None:
    """Refuse point clouds (or features) that are not in per-frame camera coordinates.

    ``default``: the frame assumed when the manifest has no ``coordinates`` key (None: the key is required).
    """
    coordinates = manifest.get("coordinates", default)
    if coordinates != "camera":
        raise ValueError(f"{path}: needs point clouds in camera coordinates (pointcloud.coordinates=camera), "
                         f"got coordinates={coordinates!r}")
