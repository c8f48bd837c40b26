"""Resumable, verified HTTP downloads and the SYNTHIA-SEQS sequence fetcher.

* :func:`download_file` streams a URL into ``<dest>.part`` (standard library ``urllib`` only),
  resumes an interrupted transfer with an HTTP ``Range`` request, retries connection errors,
  timeouts and 5xx answers with exponential back-off, and renames the file into place only after
  its size and sha256 were verified.
* A checksums file (``sha256sum``-like, with the size) is "filled on first verified download and
  then enforced": :func:`load_checksums` / :func:`record_checksum`.
* :func:`download_sequences` fetches ``<base_url>/<SYNTHIA-SEQS-NN-WEATHER>.rar`` archives into a
  cache and extracts a camera/frame subset of each safely (see :mod:`pipeline.io.archive`).

SYNTHIA facts used here (from the dataset's download page and archives): one ``.rar`` per sequence whose top folder
is the sequence name; legacy host ``http://synthia-dataset.cvc.uab.cat/SYNTHIA_SEQS/``; licence
CC BY-NC-SA 3.0.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.io.archive import safe_extract
from pipeline.io.atomic import write_json, write_text
from pipeline.io.synthia import ALL_CAMERAS, SEQUENCE_PATTERN
from pipeline.progress import progress_bar

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://synthia-dataset.cvc.uab.cat/SYNTHIA_SEQS"
MARKER_NAME = "DOWNLOAD_COMPLETE.json"
ALWAYS_KEEP = ("README.txt", "CameraParams/intrinsics.txt")
LICENCE_NOTICE = (
    "SYNTHIA is licensed CC BY-NC-SA 3.0 (non-commercial use only, share-alike; see "
    "https://synthia-dataset.net/terms-of-use/). Do not redistribute the files. Cite: G. Ros, "
    "L. Sellart, J. Materzynska, D. Vazquez, A. M. Lopez, 'The SYNTHIA Dataset: A Large Collection "
    "of Synthetic Images for Semantic Segmentation of Urban Scenes', CVPR 2016."
)

_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_RETRY_STATUS = {408, 429}


class DownloadError(OSError):
    """A download failed for good (after retries, or a non-retryable HTTP status)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected size or sha256."""


class _Retry(Exception):
    """Internal: a transient failure worth another attempt."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _header_int(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def _check_disk(dest: Path, remaining: int | None, url: str) -> None:
    if remaining is None:
        return
    free = shutil.disk_usage(dest.parent).free
    if remaining > free:
        raise DownloadError(
            f"not enough disk space for {url}: need {remaining} more bytes in {dest.parent}, {free} free"
        )


def _verify(part: Path, url: str, size: int | None, sha256: str | None) -> None:
    """Check size and sha256 of the finished .part file; delete it on a mismatch."""
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise ChecksumError(f"size mismatch for {url} -> {part}: got {got} bytes, expected {size}")
    if sha256 is not None:
        digest = sha256_file(part)
        if digest != sha256.lower():
            part.unlink()
            raise ChecksumError(
                f"sha256 mismatch for {url} -> {part}: got {digest}, expected {sha256.lower()} "
                "(partial file deleted)"
            )


def _attempt(
    url: str, part: Path, total: int | None, timeout: float, progress: bool
) -> int | None:
    """One GET, resuming from the current .part size. Returns the total size if known.

    Raises _Retry for transient failures, DownloadError for permanent ones.
    """
    offset = part.stat().st_size if part.exists() else 0
    if total is not None and offset > total:
        part.unlink()
        offset = 0
    if total is not None and offset == total:
        return total
    headers = {"User-Agent": "protoscene-downloader/1", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            # Our .part is at/after the end. Complete if the server's size equals it, else restart.
            m = re.match(r"^bytes\s+\*/(\d+)$", exc.headers.get("Content-Range", "") or "")
            if m and int(m.group(1)) == offset and (total is None or total == offset):
                return offset
            part.unlink()
            raise _Retry(f"HTTP 416 at offset {offset}; restarting from 0") from exc
        if exc.code >= 500 or exc.code in _RETRY_STATUS:
            raise _Retry(f"HTTP {exc.code}") from exc
        raise DownloadError(f"HTTP {exc.code} {exc.reason} for {url}") from exc
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}") from exc

    with resp:
        length = _header_int(resp.headers.get("Content-Length"))
        if resp.status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "") or "")
            if not m or int(m.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _Retry(f"bad Content-Range {resp.headers.get('Content-Range')!r}; restarting")
            server_total = None if m.group(3) == "*" else int(m.group(3))
            mode = "ab"
        else:
            if offset:
                log.info("server ignored the Range request for %s; restarting from 0", url)
                offset = 0
            server_total = length
            mode = "wb"
        if server_total is not None:
            if total is not None and server_total != total:
                part.unlink(missing_ok=True)
                raise ChecksumError(
                    f"size mismatch for {url}: server reports {server_total} bytes, expected {total}"
                )
            total = server_total
        _check_disk(part, None if total is None else total - offset, url)
        expect_body = None if total is None else total - offset
        got = 0
        bar = None
        if progress:
            bar = progress_bar(total=total, initial=offset, unit="B", unit_scale=True,
                       desc=part.name.removesuffix(".part"), leave=False)
        try:
            with open(part, mode) as out:
                while True:
                    try:
                        chunk = resp.read1(_CHUNK)  # returns what has arrived: a timeout loses nothing
                    except (http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
                        raise _Retry(f"{type(exc).__name__} after {offset + got} bytes: {exc}") from exc
                    if not chunk:
                        break
                    out.write(chunk)
                    got += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    if expect_body is not None and got < expect_body:
        raise _Retry(f"connection closed after {offset + got} of {total} bytes")
    return total if total is not None else offset + got


def download_file(
    url: str,
    dest: Path,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 30,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest`, resumably, and verify it before it appears at `dest`.

    The bytes go to ``dest + '.part'``; an existing .part is resumed with ``Range: bytes=N-``
    (206 = appended; 200 = the server ignored Range, start over; 416 = .part already complete
    or stale). Connection errors, timeouts, truncated bodies, 408/429 and 5xx are retried up to
    `retries` times, sleeping backoff·2^k seconds. After the transfer the size (expected_size and
    the server's Content-Length) and sha256 (if given) are checked; on a mismatch the .part is
    deleted and ChecksumError is raised. An existing `dest` that passes the checks is returned
    without any network access (one that fails them is deleted and downloaded again).

    Returns `dest`. Raises DownloadError / ChecksumError with a one-line message naming the URL.
    """
    dest = Path(dest)
    if expected_sha256 is not None and not _SHA256.match(expected_sha256.lower()):
        raise ValueError(f"expected_sha256 is not a 64-digit hex sha256: {expected_sha256!r}")
    if expected_size is not None and expected_size < 0:
        raise ValueError(f"expected_size must be >= 0, got {expected_size}")
    if retries < 0 or backoff < 0 or timeout <= 0:
        raise ValueError("retries and backoff must be >= 0 and timeout > 0")
    if dest.exists():
        ok = (expected_size is None or dest.stat().st_size == expected_size) and (
            expected_sha256 is None or sha256_file(dest) == expected_sha256.lower()
        )
        if ok:
            return dest
        log.warning("existing %s does not match the expected size/sha256; downloading again", dest)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    total = expected_size
    failures = 0
    while True:
        try:
            total = _attempt(url, part, total, timeout, progress)
            break
        except _Retry as exc:
            failures += 1
            if failures > retries:
                raise DownloadError(
                    f"download of {url} -> {dest} failed after {retries} retries: {exc}"
                ) from None
            delay = backoff * 2 ** (failures - 1)
            log.warning("download of %s: %s; retry %d/%d in %.2fs", url, exc, failures, retries, delay)
            time.sleep(delay)
    _verify(part, url, total if expected_size is None else expected_size, expected_sha256)
    os.replace(part, dest)
    return dest


# ---------------------------------------------------------------------------------------------
# Checksums file: lines "<sha256>  <size>  <name>", sorted by name; '#' starts a comment.


def load_checksums(path: Path) -> dict[str, tuple[int, str]]:
    """Read a checksums file into {name: (size_bytes, sha256_hex)}; a missing file gives {}."""
    path = Path(path)
    if not path.exists():
        return {}
    out: dict[str, tuple[int, str]] = {}
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or not _SHA256.match(parts[0]) or not parts[1].isdigit():
            raise ValueError(f"{path}:{no}: expected '<sha256>  <size>  <name>', got {line!r}")
        sha, size, name = parts
        if name in out:
            raise ValueError(f"{path}:{no}: duplicate entry for {name!r}")
        out[name] = (int(size), sha)
    return out


def record_checksum(path: Path, name: str, size: int, sha256: str) -> None:
    """Add one entry to the checksums file (atomic rewrite, sorted by name).

    Re-recording identical values is a no-op; a different value for a known name is a ValueError
    (the file is the reference and is never silently overwritten).
    """
    path = Path(path)
    sha256 = sha256.lower()
    if not _SHA256.match(sha256):
        raise ValueError(f"not a 64-digit hex sha256: {sha256!r}")
    if not name or any(c.isspace() for c in name) or size < 0:
        raise ValueError(f"invalid checksum entry: name={name!r} size={size}")
    entries = load_checksums(path)
    if name in entries:
        if entries[name] == (size, sha256):
            return
        raise ValueError(f"{path} already has a different checksum for {name!r}: {entries[name]}")
    entries[name] = (size, sha256)
    lines = ["# sha256  size_bytes  name  (filled on first verified download, then enforced)"]
    lines += [f"{sha}  {sz}  {n}" for n, (sz, sha) in sorted(entries.items())]
    write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# SYNTHIA-SEQS sequences.


def validate_sequence_name(name: str) -> str:
    """Return `name` if it looks like SYNTHIA-SEQS-NN-WEATHER, else raise ValueError."""
    if not isinstance(name, str) or not SEQUENCE_PATTERN.match(name):
        raise ValueError(
            f"invalid SYNTHIA sequence name {name!r}: expected SYNTHIA-SEQS-NN-WEATHER, "
            "e.g. SYNTHIA-SEQS-01-SPRING"
        )
    return name


def _camera_of(parts: list[str]) -> str | None:
    for i in range(len(parts) - 1):
        if parts[i].startswith("Stereo_") and parts[i + 1].startswith("Omni_"):
            return f"{parts[i]}/{parts[i + 1]}"
    return None


def sequence_filter(
    cameras: Sequence[str] | None, frame_limit: int | None
) -> Callable[[str], bool]:
    """Predicate on a path inside a sequence folder (e.g. 'Depth/Stereo_Left/Omni_F/000012.png').

    A file below a camera folder (Stereo_X/Omni_Y) is kept only if that camera is requested
    (cameras None = all); a file whose name is a frame number is kept only if number < frame_limit
    (None = all). Everything else (README.txt, CameraParams/intrinsics.txt, ...) is kept.
    """
    cams = None if cameras is None else set(cameras)

    def keep(rel: str) -> bool:
        if rel in ALWAYS_KEEP:
            return True
        parts = rel.split("/")
        cam = _camera_of(parts[:-1])
        if cams is not None and cam is not None and cam not in cams:
            return False
        stem = parts[-1].split(".", 1)[0]
        if frame_limit is not None and stem.isdigit() and int(stem) >= frame_limit:
            return False
        return True

    return keep


def _marker_payload(name: str, sha: str, cameras: Sequence[str] | None, frame_limit: int | None,
                    n_files: int) -> dict:
    return {
        "sequence": name,
        "archive_sha256": sha,
        "cameras": None if cameras is None else sorted(cameras),
        "frame_limit": frame_limit,
        "files": n_files,
    }


def _is_complete(seq_dir: Path, sha: str | None, cameras, frame_limit) -> bool:
    marker = seq_dir / MARKER_NAME
    if not marker.is_file():
        return False
    try:
        got = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    want_cams = None if cameras is None else sorted(cameras)
    return (
        got.get("cameras") == want_cams
        and got.get("frame_limit") == frame_limit
        and (sha is None or got.get("archive_sha256") == sha)
    )


def download_sequences(
    names: list[str],
    base_url: str,
    dest_root: Path,
    checksums_path: Path,
    cameras: list[str] | None,
    frame_limit: int | None,
    archive_cache: Path,
    *,
    progress: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 30,
) -> list[Path]:
    """Download and extract SYNTHIA-SEQS sequences; returns the sequence folders.

    names: e.g. ['SYNTHIA-SEQS-01-SPRING'] (validated against SYNTHIA-SEQS-NN-WEATHER).
    base_url: folder URL; the archive is '<base_url>/<name>.rar'.
    dest_root: the sequences end up in dest_root/<name>/ (the archive's top folder <name>/ is
        stripped), with a DOWNLOAD_COMPLETE.json marker written last.
    checksums_path: checksums file; an entry for '<name>.rar' is enforced, a missing one is
        recorded once the archive downloaded completely and extracted without error (trust on
        first use, logged); an unrecorded archive that fails to extract is deleted.
    cameras: e.g. ['Stereo_Left/Omni_F']; None = all 8. frame_limit: keep frames < N; None = all.
    archive_cache: folder that keeps the downloaded .rar files (resume and re-use).

    A sequence whose marker matches the archive checksum and the selection is skipped; a
    different selection re-extracts from the cached archive and replaces the folder atomically.
    """
    print(LICENCE_NOTICE, flush=True)
    names = [validate_sequence_name(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate sequence names in {names}")
    if cameras is not None:
        cameras = list(cameras)
        bad = [c for c in cameras if c not in ALL_CAMERAS]
        if bad or not cameras:
            raise ValueError(
                f"invalid cameras {bad or cameras}: expected e.g. ['Stereo_Left/Omni_F'] "
                "(Stereo_Left|Stereo_Right / Omni_F|Omni_B|Omni_L|Omni_R)"
            )
    if frame_limit is not None and (isinstance(frame_limit, bool) or not isinstance(frame_limit, int)
                                    or frame_limit <= 0):
        raise ValueError(f"frame_limit must be a positive integer or None, got {frame_limit!r}")
    dest_root, archive_cache = Path(dest_root), Path(archive_cache)
    dest_root.mkdir(parents=True, exist_ok=True)
    archive_cache.mkdir(parents=True, exist_ok=True)
    keep = sequence_filter(cameras, frame_limit)
    out = []
    for name in names:
        seq_dir = dest_root / name
        archive_name = f"{name}.rar"
        known = load_checksums(checksums_path).get(archive_name)
        if _is_complete(seq_dir, known[1] if known else None, cameras, frame_limit):
            log.info("%s already complete in %s; skipped", name, seq_dir)
            out.append(seq_dir)
            continue
        url = f"{base_url.rstrip('/')}/{archive_name}"
        archive = download_file(
            url, archive_cache / archive_name,
            expected_sha256=known[1] if known else None,
            expected_size=known[0] if known else None,
            retries=retries, backoff=backoff, timeout=timeout, progress=progress,
        )
        sha = known[1] if known else sha256_file(archive)
        try:
            files = safe_extract(archive, seq_dir, root=name, keep=keep, overwrite=True,
                                 progress=progress)
        except Exception:
            if not known:  # never keep (or record) an unverified archive that does not extract
                archive.unlink(missing_ok=True)
            raise
        if not known:
            size = archive.stat().st_size
            record_checksum(checksums_path, archive_name, size, sha)
            log.warning("no checksum for %s in %s: recorded sha256 %s (%d bytes) from this "
                        "download (trust on first use)", archive_name, checksums_path, sha, size)
        if cameras is not None:
            present = {_camera_of(f.split("/")[:-1]) for f in files}
            missing = [c for c in cameras if c not in present]
            if missing:
                shutil.rmtree(seq_dir)
                raise ValueError(f"cameras {missing} not found in {archive}")
        write_json(seq_dir / MARKER_NAME,
                           _marker_payload(name, sha, cameras, frame_limit, len(files)))
        out.append(seq_dir)
    return out
