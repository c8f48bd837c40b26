"""Safe, atomic extraction of RAR, ZIP and TAR archives.

Safety model (applies to every format):

* Every entry of the archive is listed and checked **before anything is written**. One bad entry
  rejects the whole archive (:class:`UnsafeArchiveError`), so nothing is extracted at all:
  absolute paths (``/x``, ``C:x``), ``..`` components, NUL bytes, symbolic links, hard links,
  junctions, devices and FIFOs are refused. Only regular files and directories are accepted.
* A literal backslash in an entry name is treated as a path separator (some unrar versions and
  Windows-made archives produce ``a\\b\\c.png``), so ``..\\x`` is caught like ``../x``.
* Files are written into a fresh hidden temporary folder next to the target
  (:func:`pipeline.io.atomic.atomic_dir`) with ``O_EXCL | O_NOFOLLOW``, the number of bytes
  written is compared with the size declared by the archive, and only when everything succeeded
  is the folder renamed into place. Any failure or interruption (exception, Ctrl-C) removes the
  temporary folder; a hard kill leaves only a hidden ``.<target>.<random>.tmp`` folder, which the
  next call for the same target removes. The target therefore either does not exist or is
  complete.

RAR reading uses the ``rarfile`` package: it parses the headers in Python (listing, checks and
stored entries need no external program) and needs a backend program for compressed data. On
Debian install ``unar`` (free; reads RAR 1.5–5 including solid archives). Compressed RAR members
are unpacked with few ``unar`` calls into the temporary folder (``rarfile`` would start one
process per member, and re-decompress a solid archive from the start for each); the result is
checked against the validated listing.
"""

from __future__ import annotations

import abc
import os
import re
import shutil
import stat
import subprocess
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline.io import atomic
from pipeline.io.atomic import atomic_dir
from pipeline.progress import progress_bar

_CHUNK = 1 << 20
_RAR_MAGIC = (b"Rar!\x1a\x07\x00", b"Rar!\x1a\x07\x01\x00")
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveError(ValueError):
    """The archive is unreadable, truncated, corrupt or does not contain what was asked for."""


class UnsafeArchiveError(ArchiveError):
    """The archive contains an entry that could write outside the target or is not a plain file."""


@dataclass(frozen=True)
class Entry:
    """One archive entry after validation.

    name: normalised relative POSIX path ('' for the archive root itself).
    is_dir: True for a directory entry.
    size: declared uncompressed size in bytes (0 for directories).
    raw: the format's own info object (ZipInfo, TarInfo or rarfile.RarInfo).
    """

    name: str
    is_dir: bool
    size: int
    raw: Any


def normalise_name(raw: str, archive: Path | str = "") -> str:
    """Return the entry name as a relative POSIX path, or raise UnsafeArchiveError.

    Backslashes count as separators; empty and '.' components are dropped; '..' components,
    absolute paths, Windows drive prefixes and NUL bytes are refused.
    """
    where = f" in {archive}" if archive else ""
    if "\x00" in raw:
        raise UnsafeArchiveError(f"entry name contains a NUL byte{where}: {raw!r}")
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchiveError(f"absolute entry path{where}: {raw!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"entry path with '..'{where}: {raw!r}")
    return "/".join(parts)


def _check_mode(mode: int, raw_name: str, archive: Path) -> None:
    """Refuse a Unix mode that is neither a regular file nor a directory (links, devices, FIFOs)."""
    kind = stat.S_IFMT(mode)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(
            f"entry is not a regular file or directory (mode {oct(mode)}) in {archive}: {raw_name!r}"
        )


# ---------------------------------------------------------------------------------------------
# Format readers: each yields validated entries and opens a file entry as a binary stream.


class _Reader(abc.ABC):
    """Common interface of the three format readers."""

    kind = ""

    @abc.abstractmethod
    def entries(self) -> list[Entry]:
        """Validated entries of the archive."""

    @abc.abstractmethod
    def open(self, entry: Entry) -> IO[bytes]:
        """A binary stream of a file entry."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the archive."""


class _ZipReader(_Reader):
    kind = "zip"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zf = zipfile.ZipFile(path)

    def entries(self) -> list[Entry]:
        out = []
        for info in self.zf.infolist():
            name = normalise_name(info.filename, self.path)
            if info.create_system == 3:  # Unix: the high 16 bits of external_attr are st_mode
                _check_mode(info.external_attr >> 16, info.filename, self.path)
            if info.flag_bits & 0x1:
                raise ArchiveError(f"encrypted entry in {self.path}: {info.filename!r}")
            is_dir = info.is_dir()
            out.append(Entry(name, is_dir, 0 if is_dir else info.file_size, info))
        return out

    def open(self, entry: Entry) -> IO[bytes]:
        return self.zf.open(entry.raw)

    def close(self) -> None:
        self.zf.close()


class _TarReader(_Reader):
    kind = "tar"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tf = tarfile.open(path, "r:*")

    def entries(self) -> list[Entry]:
        out = []
        for info in self.tf.getmembers():
            name = normalise_name(info.name, self.path)
            if info.issym() or info.islnk():
                raise UnsafeArchiveError(
                    f"link entry in {self.path}: {info.name!r} -> {info.linkname!r}"
                )
            if not (info.isfile() or info.isdir()):
                raise UnsafeArchiveError(
                    f"entry is not a regular file or directory (tar type {info.type!r}) "
                    f"in {self.path}: {info.name!r}"
                )
            out.append(Entry(name, info.isdir(), 0 if info.isdir() else info.size, info))
        return out

    def open(self, entry: Entry) -> IO[bytes]:
        f = self.tf.extractfile(entry.raw)
        if f is None:  # cannot happen for a validated regular file
            raise ArchiveError(f"cannot read entry {entry.raw.name!r} of {self.path}")
        return f

    def close(self) -> None:
        self.tf.close()


def _rarfile():
    """Import rarfile lazily and pick a backend that really reads RAR.

    Debian's ``7zip`` package (bookworm: ``7zz``) has no RAR handler at all (checked: "Cannot
    open the file as archive" on a RAR5 file), so the 7z backends are not offered; unrar
    (non-free), unar (free) and bsdtar (non-solid only) are, in that order.
    """
    try:
        import rarfile
    except ImportError as exc:  # pragma: no cover - rarfile is a project dependency
        raise ArchiveError("reading RAR needs the Python package 'rarfile' (pip install rarfile)") from exc
    if rarfile.CURRENT_SETUP is None:
        try:
            rarfile.tool_setup(sevenzip=False, sevenzip2=False)
        except rarfile.RarCannotExec:
            pass  # stored entries still work; compressed ones raise a clear error in open()
    return rarfile


def rar_backend() -> str | None:
    """Name of the program rarfile will use for compressed RAR data, or None if none is installed."""
    rf = _rarfile()
    setup = rf.CURRENT_SETUP
    return None if setup is None else setup.get_cmdline("check_cmd", None)[0]


class _RarReader(_Reader):
    kind = "rar"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rarfile = _rarfile()
        self.rf = self.rarfile.RarFile(path, errors="strict")

    def entries(self) -> list[Entry]:
        rf, mod = self.rf, self.rarfile
        if rf.needs_password():
            raise ArchiveError(f"password-protected RAR is not supported: {self.path}")
        out = []
        for info in rf.infolist():
            name = normalise_name(info.filename, self.path)
            redir = getattr(info, "file_redir", None)
            if redir and redir[0] != mod.RAR5_XREDIR_FILE_COPY:
                raise UnsafeArchiveError(
                    f"link entry in {self.path}: {info.filename!r} -> {redir[2]!r}"
                )
            if info.is_symlink():
                raise UnsafeArchiveError(f"symlink entry in {self.path}: {info.filename!r}")
            if info.host_os == mod.RAR_OS_UNIX and info.mode:
                _check_mode(info.mode, info.filename, self.path)
            if info.flags & (mod.RAR_FILE_SPLIT_BEFORE | mod.RAR_FILE_SPLIT_AFTER):
                raise ArchiveError(f"multi-volume RAR is not supported: {self.path}")
            is_dir = info.is_dir()
            out.append(Entry(name, is_dir, 0 if is_dir else info.file_size, info))
        return out

    def open(self, entry: Entry) -> IO[bytes]:
        info = entry.raw
        if info.compress_type != self.rarfile.RAR_M0 and self.rarfile.CURRENT_SETUP is None:
            raise ArchiveError(
                f"{self.path} has compressed entries and no RAR backend is installed "
                "(Debian: apt-get install unar)"
            )
        return self.rf.open(info)

    def is_solid(self) -> bool:
        return bool(self.rf.is_solid())

    def close(self) -> None:
        self.rf.close()


def _open_reader(path: Path) -> _Reader:
    """Pick the reader from the file's magic bytes (not its extension)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if any(head.startswith(m) for m in _RAR_MAGIC):
        return _RarReader(path)
    if zipfile.is_zipfile(path):
        return _ZipReader(path)
    if tarfile.is_tarfile(path):
        return _TarReader(path)
    raise ArchiveError(f"not a RAR, ZIP or TAR archive: {path}")


def _format_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [
        zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError
    ]
    try:
        import rarfile

        errs.append(rarfile.Error)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


@contextmanager
def open_archive(path: Path) -> Iterator[_Reader]:
    """Open a RAR/ZIP/TAR archive for validated listing; format errors become ArchiveError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"archive not found: {path}")
    try:
        reader = _open_reader(path)
    except ArchiveError:
        raise
    except _format_errors() as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc}") from exc
    try:
        yield reader
    finally:
        reader.close()


def list_entries(path: Path) -> list[Entry]:
    """Validated entries of an archive (raises UnsafeArchiveError / ArchiveError)."""
    with open_archive(path) as reader:
        try:
            return reader.entries()
        except ArchiveError:
            raise
        except _format_errors() as exc:
            raise ArchiveError(f"cannot list archive {path}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Extraction.


def _select(
    entries: list[Entry], root: str | None, keep: Callable[[str], bool] | None, archive: Path
) -> list[tuple[str, Entry]]:
    """(relative name, entry) of the file entries to write, after root stripping and filtering."""
    prefix = normalise_name(root) + "/" if root else ""
    chosen: dict[str, Entry] = {}
    for e in entries:
        if e.is_dir:
            continue
        if not e.name.startswith(prefix) or e.name == prefix.rstrip("/"):
            continue
        rel = e.name[len(prefix):]
        if not rel:
            raise UnsafeArchiveError(f"file entry with an empty name in {archive}")
        if keep is not None and not keep(rel):
            continue
        if rel in chosen:
            raise ArchiveError(f"duplicate entry {e.name!r} in {archive}")
        chosen[rel] = e
    names = set(chosen)
    for rel in names:  # a file that is also a parent folder of another file
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        while parent:
            if parent in names:
                raise ArchiveError(f"entry {parent!r} is both a file and a folder in {archive}")
            parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
    return sorted(chosen.items())


def _dest(tmp: Path, rel: str) -> Path:
    dest = tmp.joinpath(*rel.split("/"))
    if not dest.resolve().is_relative_to(tmp.resolve()):  # defence in depth; names are validated
        raise UnsafeArchiveError(f"entry escapes the target: {rel!r}")
    return dest


def _write_stream(src: IO[bytes], dest: Path, size: int, label: str) -> None:
    """Copy src into a new file dest (must not exist, never follows links); check the byte count."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    n = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
            n += len(chunk)
    if n != size:
        raise ArchiveError(f"truncated entry {label}: got {n} of {size} bytes")


_UNAR_BATCH = 500  # member names per unar call (keeps the command line far below ARG_MAX)


def _run_unar(exe: str, archive: Path, scratch: Path, names: list[str]) -> None:
    proc = subprocess.run(
        [exe, "-q", "-f", "-D", "-nr", "-o", str(scratch), str(archive), *names],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise ArchiveError(f"unar failed on {archive}: {msg[-1] if msg else proc.returncode}")


def _unar_bulk(
    reader: "_RarReader", selected: list[tuple[str, Entry]], n_files: int, tmp: Path, exe: str
) -> None:
    """Unpack compressed RAR members with few `unar` calls, then move the selected files.

    rarfile would start one backend process per member (about 40 ms each here) and, for a solid
    archive, decompress from the start every time. Instead: a solid archive, or a selection of
    every file, is unpacked with one call; otherwise the selected names are passed in batches.
    Everything lands in tmp/.unar and is checked against the validated listing (regular file,
    declared size) before it is moved; a member unar did not produce (e.g. a name with literal
    backslashes, which unar turns into folders and cannot select by name) is streamed through
    rarfile instead.
    """
    archive = reader.path
    scratch = tmp / ".unar"
    scratch.mkdir()
    if reader.is_solid() or len(selected) == n_files:
        _run_unar(exe, archive, scratch, [])
    else:
        names = [e.raw.filename for _, e in selected]
        for i in range(0, len(names), _UNAR_BATCH):
            _run_unar(exe, archive, scratch, names[i:i + _UNAR_BATCH])
    for rel, e in selected:
        dest = _dest(tmp, rel)
        cands = [scratch.joinpath(*e.name.split("/")), scratch / e.raw.filename]
        src = next((c for c in cands if os.path.lexists(c)), None)
        if src is None:
            with reader.open(e) as stream:
                _write_stream(stream, dest, e.size, f"{archive}:{e.name}")
            continue
        st = os.lstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeArchiveError(f"unar produced a non-regular file for {e.name!r} from {archive}")
        if st.st_size != e.size:
            raise ArchiveError(f"truncated entry {archive}:{e.name}: got {st.st_size} of {e.size} bytes")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
    shutil.rmtree(scratch)


def _use_unar(reader: _Reader, selected: list[tuple[str, Entry]]) -> str | None:
    """Path of `unar` if this extraction should go through it (RAR, solid or compressed)."""
    if not isinstance(reader, _RarReader):
        return None
    solid = reader.is_solid()
    compressed = any(e.raw.compress_type != reader.rarfile.RAR_M0 for _, e in selected)
    if not (solid or compressed or _FORCE_UNAR):
        return None
    exe = shutil.which("unar")
    if exe is None and solid:
        raise ArchiveError(f"{reader.path} is a solid RAR: install `unar` (Debian: apt-get install unar)")
    return exe


_FORCE_UNAR = False  # tests set this to run stored (uncompressed) fixtures through unar


def safe_extract(
    archive: Path,
    target: Path,
    *,
    root: str | None = None,
    keep: Callable[[str], bool] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    _after_file: Callable[[int], None] | None = None,
) -> list[str]:
    """Extract the regular files of `archive` into the folder `target`, atomically.

    archive: a RAR, ZIP or TAR(.gz/.bz2/.xz) file (format detected from its bytes).
    target: folder to create; it must not exist unless overwrite=True (then it is replaced).
    root: if given, only entries below this archive folder are extracted and the folder itself
        becomes `target` (e.g. root='SYNTHIA-SEQS-01-SPRING'); entries elsewhere are ignored
        (but still validated).
    keep: predicate on the entry's path relative to `root` (POSIX, e.g.
        'RGB/Stereo_Left/Omni_F/000000.png'); entries for which it is False are not written.
    _after_file: test hook called with the number of files written so far.

    Returns the sorted relative paths written. Raises UnsafeArchiveError (nothing written) for a
    dangerous entry, ArchiveError for a corrupt/truncated archive or an empty selection,
    FileExistsError if target exists and overwrite is False.
    """
    archive, target = Path(archive), Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"extraction target already exists: {target}")
    errors = _format_errors()
    with open_archive(archive) as reader:
        try:
            entries = reader.entries()
        except ArchiveError:
            raise
        except errors as exc:
            raise ArchiveError(f"cannot list archive {archive}: {exc}") from exc
        selected = _select(entries, root, keep, archive)
        if not selected:
            where = f" under {root!r}" if root else ""
            tops = sorted({e.name.split("/")[0] for e in entries if e.name})
            raise ArchiveError(f"no file entries{where} matched the selection in {archive} "
                               f"(top-level names: {tops[:5]})")

        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.remove_stale_partials(target.parent)  # left by a killed extraction
        bar = None
        if progress:
            bar = progress_bar(total=len(selected), unit="file", desc=f"extract {archive.name}")
        try:
            with atomic_dir(target) as tmp:  # removed on any exception, swapped in on success
                os.chmod(tmp, 0o755)  # mkdtemp creates 0700
                exe = _use_unar(reader, selected)
                if exe is not None:
                    n_files = sum(1 for e in entries if not e.is_dir)
                    _unar_bulk(reader, selected, n_files, tmp, exe)
                    if bar is not None:
                        bar.update(len(selected))
                else:
                    for i, (rel, e) in enumerate(selected, 1):
                        with reader.open(e) as src:
                            _write_stream(src, _dest(tmp, rel), e.size, f"{archive}:{e.name}")
                        if bar is not None:
                            bar.update(1)
                        if _after_file is not None:
                            _after_file(i)
        except ArchiveError:
            raise
        except errors as exc:
            raise ArchiveError(f"extraction of {archive} failed: {exc}") from exc
        finally:
            if bar is not None:
                bar.close()
    return [rel for rel, _ in selected]

