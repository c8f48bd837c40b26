"""Cached Concerto features on disk (written by the ``concerto`` stage, read by LAQ training).

Layout of ``<root>`` (default ``data/features``)::

    <root>/manifest.json                       what produced the cache (see MANIFEST_KEYS)
    <root>/<sequence>/<camera_dirname>.npz     one file per (sequence, camera)

``camera_dirname`` is the camera with "/" replaced by "_" (``Stereo_Left/Omni_F`` -> ``Stereo_Left_Omni_F``).
Arrays of one ``.npz`` (T frames, N tokens per frame, C channels):

===========  ==============  =====================================================================
frames       (T,) int32      frame indices, strictly increasing
time_s       (T,) float32    frame / 5 FPS (seconds)
global       (T, C) float32  one pooled feature per frame (pooling named in the manifest)
tokens       (T, N, C)       float32 spatial tokens; N is fixed; their order is the manifest's
                             ``token_layout``: ``bev`` = fixed bird's-eye cells, aligned across frames;
                             ``fps`` = farthest-point order, NOT aligned across frames
token_xyz    (T, N, 3)       float32 token centres, metres, OpenCV camera frame of that frame (x right,
                             y down, z forward) — or the input's units when the points came from VGGT
token_mask   (T, N) bool     False on empty tokens (an empty bird's-eye cell, or a padding repeat of a
                             frame with fewer occupied voxels than N); their features carry no information
===========  ==============  =====================================================================

All values are finite. Writers are atomic (temp file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import atomic
from pipeline.io.manifest import read_manifest, require_camera_frame
from pipeline.io.npz import write_npz
from pipeline.io.pointcloud_table import camera_dirname
from pipeline.io.synthia import FRAME_RATE_HZ

MANIFEST = "manifest.json"
ARRAYS = ("frames", "time_s", "global", "tokens", "token_xyz", "token_mask")
DTYPES = {"frames": np.int32, "time_s": np.float32, "global": np.float32, "tokens": np.float32,
          "token_xyz": np.float32, "token_mask": np.bool_}
MANIFEST_KEYS = {"weights_source": str, "random_weights": bool, "preset": str, "channels": int, "tokens": int,
                 "pooling": str, "points_from": str, "grid_size": float, "camera": list, "sequences": list}


class FeaturesCacheError(ValueError):
    """A malformed features cache; the message names the file."""


def features_path(root: Path | str, sequence: str, camera: str) -> Path:
    """``<root>/<sequence>/<camera_dirname>.npz``."""
    return Path(root) / sequence / f"{camera_dirname(camera)}.npz"


def validate_arrays(arrays: dict[str, np.ndarray], where: str, channels: int | None = None,
                    tokens: int | None = None) -> None:
    """Check names, dtypes, shapes (T, N, C consistent), finiteness and frame order; raise naming ``where``."""
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise FeaturesCacheError(f"{where}: missing array(s) {missing}")
    for key, dtype in DTYPES.items():
        if arrays[key].dtype != dtype:
            raise FeaturesCacheError(f"{where}: '{key}' has dtype {arrays[key].dtype}, expected {np.dtype(dtype)}")
    frames, tok = arrays["frames"], arrays["tokens"]
    if frames.ndim != 1 or len(frames) == 0:
        raise FeaturesCacheError(f"{where}: 'frames' must be a non-empty 1-D array, got shape {frames.shape}")
    if tok.ndim != 3:
        raise FeaturesCacheError(f"{where}: 'tokens' must be (T, N, C), got shape {tok.shape}")
    t, n, c = tok.shape
    expected = {"time_s": (t,), "global": (t, c), "token_xyz": (t, n, 3), "token_mask": (t, n), "frames": (t,)}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise FeaturesCacheError(f"{where}: '{key}' has shape {arrays[key].shape}, expected {shape}")
    if channels is not None and c != channels:
        raise FeaturesCacheError(f"{where}: {c} channels, manifest says {channels}")
    if tokens is not None and n != tokens:
        raise FeaturesCacheError(f"{where}: {n} tokens per frame, manifest says {tokens}")
    if len(frames) > 1 and not (np.diff(frames) > 0).all():
        raise FeaturesCacheError(f"{where}: 'frames' must be strictly increasing")
    for key in ("time_s", "global", "tokens", "token_xyz"):
        if not np.isfinite(arrays[key]).all():
            raise FeaturesCacheError(f"{where}: '{key}' contains NaN or inf")
    if not arrays["token_mask"].any():  # one frame may have none (bird's-eye cells of an open road, ground left out)
        raise FeaturesCacheError(f"{where}: no frame has a valid token")


def write_features(path: Path | str, frames: np.ndarray, global_: np.ndarray, tokens: np.ndarray,
                   token_xyz: np.ndarray, token_mask: np.ndarray) -> None:
    """Validate and write one (sequence, camera) file atomically; ``time_s`` is derived from ``frames``."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype.kind not in "iu":
        raise FeaturesCacheError(f"{path}: 'frames' must be integers, got dtype {frames.dtype}")
    arrays = {
        "frames": frames.astype(np.int32),
        "time_s": (frames / FRAME_RATE_HZ).astype(np.float32),
        "global": np.asarray(global_, dtype=np.float32),
        "tokens": np.asarray(tokens, dtype=np.float32),
        "token_xyz": np.asarray(token_xyz, dtype=np.float32),
        "token_mask": np.asarray(token_mask, dtype=np.bool_),
    }
    validate_arrays(arrays, str(path))

    atomic.write_with(path, lambda tmp: write_npz(tmp, arrays))


def write_manifest(root: Path | str, manifest: dict[str, Any]) -> None:
    """Validate the keys/types of MANIFEST_KEYS (extra keys allowed) and write ``<root>/manifest.json``."""
    path = Path(root) / MANIFEST
    _check_manifest(manifest, path)
    atomic.write_json(path, manifest)


def _check_manifest(manifest: Any, path: Path) -> None:
    if not isinstance(manifest, dict):
        raise FeaturesCacheError(f"{path}: expected a JSON object")
    for key, kind in MANIFEST_KEYS.items():
        if key not in manifest:
            raise FeaturesCacheError(f"{path}: missing key '{key}'")
        value = manifest[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            raise FeaturesCacheError(f"{path}: '{key}' = {value!r} should be {kind.__name__}")
    if manifest["channels"] < 1 or manifest["tokens"] < 1:
        raise FeaturesCacheError(f"{path}: 'channels' and 'tokens' must be >= 1")


def load_manifest(root: Path | str) -> dict[str, Any]:
    """``<root>/manifest.json`` as a dict, checked for the keys and types of MANIFEST_KEYS and for features of
    camera-coordinate clouds (caches written before the manifest recorded ``coordinates`` count as camera)."""
    path = Path(root) / MANIFEST
    manifest = read_manifest(path, "features manifest not found (run the concerto stage)")
    _check_manifest(manifest, path)
    require_camera_frame(manifest, path, default="camera")
    return manifest


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (no pickles); a truncated or corrupt file is one error naming it."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise FeaturesCacheError(f"{path}: not a readable .npz ({type(err).__name__}: {err})") from None


def load_features(root: Path | str, sequence: str, camera: str, check_manifest: bool = True) -> dict[str, np.ndarray]:
    """The arrays of ``<root>/<sequence>/<camera_dirname>.npz`` (see module docstring), validated.

    With ``check_manifest`` the channel and token counts must match ``<root>/manifest.json``.
    """
    path = features_path(root, sequence, camera)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no cached features for {sequence} {camera} (run the concerto stage)")
    arrays = read_npz(path)
    channels = tokens = None
    if check_manifest:
        manifest = load_manifest(root)
        channels, tokens = manifest["channels"], manifest["tokens"]
    validate_arrays(arrays, str(path), channels, tokens)
    return arrays
