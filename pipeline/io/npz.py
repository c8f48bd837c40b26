"""``.npz`` archives whose bytes depend on the arrays alone: equal arrays give equal files and equal DVC hashes.

``np.savez`` opens every member with ``force_zip64=True``, and CPython 3.11's ``zipfile`` changed how it writes
such local headers between patch releases: on one machine, Python 3.11.2 and 3.11.7 wrote different bytes for
identical arrays (version needed 2.0 with the real sizes against 4.5 with ZIP64 placeholders). A cache written
by another Python then got another DVC hash, and every stage downstream of it re-ran and rewrote ``dvc.lock``.

:func:`write_npz` serialises each member first (``np.lib.format.write_array``, no pickles) and stores it with
its size known, uncompressed (``ZIP_STORED``), without ZIP64 records below 4 GiB, dated 1980-01-01 and marked as
made on Unix, so the bytes follow the zip specification rather than one Python release (checked: 3.11.2 and
3.11.7 write the same file; ``tests/io/test_npz.py`` holds them against a zip built by hand). ``np.load`` reads it
as any ``.npz``.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip header can hold
UNIX = 3  # zip "version made by" host system; zipfile sets 0 on Windows


def member_info(name: str) -> zipfile.ZipInfo:
    """The header of member ``<name>.npy``: fixed date, Unix host, stored, ``rw-r--r--``."""
    info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_DATE_TIME)
    info.create_system = UNIX
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def write_npz(path: Path | str, arrays: Mapping[str, ArrayLike]) -> None:
    """Write ``arrays`` (name -> array, in this order) to ``path`` as an uncompressed ``.npz``.

    Object arrays are refused (``allow_pickle=False``). Peak memory is the largest member's size once more.
    Write to a temporary path and rename (``pipeline.io.atomic``) to leave nothing partial.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            archive.writestr(member_info(name), buffer.getbuffer())
