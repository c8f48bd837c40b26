"""write_npz: np.load reads back every array, and the bytes are exactly those the zip format prescribes (no ZIP64
records, fixed date, Unix host), built here by hand from the specification, independent of CPython's zipfile."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from pipeline.io.npz import write_npz

DOS_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1  # years since 1980, month, day
ZIP_VERSION_2_0 = 20  # "version needed": stored members, no ZIP64


def reference_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """The uncompressed zip of ``<name>.npy`` members as PKWARE's APPNOTE lays it out: a local header and the data
    per member, then the central directory and its end record (sections 4.3.7, 4.3.12, 4.3.16)."""
    body, directory = b"", b""
    for name, array in arrays.items():
        npy = io.BytesIO()
        np.lib.format.write_array(npy, array, allow_pickle=False)
        data, filename = npy.getvalue(), f"{name}.npy".encode()
        crc = zlib.crc32(data)
        common = struct.pack("<HHHHHIIIHH", ZIP_VERSION_2_0, 0, 0, 0, DOS_DATE_1980_01_01, crc, len(data), len(data),
                             len(filename), 0)
        directory += (b"PK\x01\x02" + struct.pack("<BB", ZIP_VERSION_2_0, 3) + common
                      + struct.pack("<HHHII", 0, 0, 0, 0o644 << 16, len(body)) + filename)
        body += b"PK\x03\x04" + common + filename + data
    count = len(arrays)
    return body + directory + b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, count, count, len(directory), len(body), 0)


ARRAYS = {
    "depth": np.linspace(0.5, 80.0, 6 * 5, dtype=np.float32).reshape(6, 5),
    "frame": np.arange(4, dtype=np.int64),
    "mask": np.array([True, False, True]),
    "scalar": np.asarray(3.25),
    "empty": np.zeros((0, 3), dtype=np.float64),
    "weights_source": np.asarray("random"),
    "fortran": np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
}


def test_arrays_read_back_equal_with_their_dtype_and_shape(tmp_path):
    path = tmp_path / "a.npz"
    write_npz(path, ARRAYS)
    with np.load(path, allow_pickle=False) as npz:
        assert list(npz.files) == list(ARRAYS)
        for name, array in ARRAYS.items():
            assert npz[name].dtype == array.dtype and npz[name].shape == array.shape, name
            np.testing.assert_array_equal(npz[name], array)


def test_bytes_are_the_zip_specifications_not_the_python_releases(tmp_path):
    path = tmp_path / "a.npz"
    write_npz(path, ARRAYS)
    assert path.read_bytes() == reference_npz(ARRAYS)


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        write_npz(tmp_path / "a.npz", {"bad": np.array([{"a": 1}], dtype=object)})
