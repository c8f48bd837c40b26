"""Minimal RAR 5.0 *store-only* archive writer, for test fixtures.

No free tool here can create RAR archives (WinRAR/`rar` is proprietary), but RAR 5.0's block
layout is publicly documented by RARLAB ("RAR 5.0 archive format" technote), and store mode (no
compression) needs no codec. This writer emits: signature, main header, one file header + data
area per entry, end-of-archive header. It supports plain files, directories, Unix modes
(e.g. devices/FIFOs for negative tests) and file-system redirection records (symlinks, hard
links) so the extraction safety checks can be tested on real RAR bytes. The output is checked in
the tests by three independent readers: rarfile (Python), `unar` and `bsdtar` when installed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

SIGNATURE = b"Rar!\x1a\x07\x01\x00"
HEAD_MAIN, HEAD_FILE, HEAD_END = 1, 2, 5
HFL_EXTRA, HFL_DATA = 0x1, 0x2
FILE_DIR, FILE_CRC = 0x1, 0x4
MAIN_SOLID = 0x4
HOST_UNIX = 1
EXTRA_REDIR = 5
REDIR_UNIX_SYMLINK, REDIR_HARD_LINK = 1, 4


def vint(n: int) -> bytes:
    """RAR5 variable-length integer: 7 bits per byte, little-endian, high bit = more bytes."""
    if n < 0:
        raise ValueError("vint must be non-negative")
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _block(htype: int, body: bytes, extra: bytes = b"", data: bytes | None = None) -> bytes:
    """CRC32 | size | type | flags | [extra size] | [data size] | body | extra, then data."""
    flags = (HFL_EXTRA if extra else 0) | (HFL_DATA if data is not None else 0)
    fields = vint(htype) + vint(flags)
    if extra:
        fields += vint(len(extra))
    if data is not None:
        fields += vint(len(data))
    fields += body + extra
    header = vint(len(fields)) + fields
    return struct.pack("<I", zlib.crc32(header)) + header + (data or b"")


@dataclass
class RarEntry:
    """name: stored as given (may contain '..', '/', backslashes); data None = directory."""

    name: str
    data: bytes | None = b""
    mode: int | None = None  # Unix st_mode; default 0o100644 / 0o040755
    redirect: tuple[int, str] | None = None  # (REDIR_* type, target)


def write_rar5(path: Path, entries: list[RarEntry], solid: bool = False) -> Path:
    """Write a store-mode RAR5 archive with the given entries to `path`."""
    out = bytearray(SIGNATURE)
    out += _block(HEAD_MAIN, vint(MAIN_SOLID if solid else 0))
    for e in entries:
        is_dir = e.data is None
        data = b"" if is_dir else e.data
        mode = e.mode if e.mode is not None else (0o040755 if is_dir else 0o100644)
        fflags = FILE_DIR if is_dir else FILE_CRC
        name = e.name.encode("utf-8")
        body = vint(fflags) + vint(len(data)) + vint(mode)
        if not is_dir:
            body += struct.pack("<I", zlib.crc32(data))
        body += vint(0) + vint(HOST_UNIX) + vint(len(name)) + name  # compression 0 = store
        extra = b""
        if e.redirect is not None:
            rtype, target = e.redirect
            t = target.encode("utf-8")
            rec = vint(EXTRA_REDIR) + vint(rtype) + vint(0) + vint(len(t)) + t
            extra = vint(len(rec)) + rec
        out += _block(HEAD_FILE, body, extra, data)  # data size field even for folders (libarchive needs it)
    out += _block(HEAD_END, vint(0))
    path.write_bytes(bytes(out))
    return path
