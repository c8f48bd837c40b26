"""Point-cloud parquet readers: a file without a column, with NaN coordinates or corrupt is one error naming it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io import pointcloud_table as pt

SEQ, CAM = "SYNTHIA-SEQS-01-SPRING", "Stereo_Left/Omni_F"


def frames(n: int = 6) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{name: rng.uniform(1, 5, n) if name in pt.FINITE else np.full(n, f) for name in pt.SCHEMA.names}
            for f in range(2)]


@pytest.fixture
def root(tmp_path):
    pt.write_partition(pt.partition_path(tmp_path, SEQ, CAM), pt.to_table(frames()))
    return tmp_path


def test_good_partition_reads_back(root):
    cloud = pt.read_partition(root, SEQ, CAM, columns=["frame", "x"])
    assert len(cloud) == 12 and np.isfinite(cloud["x"]).all()
    assert len(pt.read_frame(root, SEQ, CAM, 1)) == 6


def test_missing_column_names_file_and_column(root):
    path = pt.partition_path(root, SEQ, CAM)
    pq.write_table(pq.read_table(path).drop_columns(["z"]), path)
    with pytest.raises(ValueError, match=rf"{path.name}: missing column\(s\) \['z'\]"):
        pt.read_partition(root, SEQ, CAM, columns=["x", "y", "z"])
    assert len(pt.read_partition(root, SEQ, CAM, columns=["x"])) == 12  # columns not asked for do not matter


def test_nan_coordinates_name_file_and_column(root):
    path = pt.partition_path(root, SEQ, CAM)
    table = pq.read_table(path)
    y = table.column("y").to_numpy().copy()
    y[3] = np.nan
    pq.write_table(table.set_column(table.schema.get_field_index("y"), "y", pa.array(y, pa.float32())), path)
    with pytest.raises(ValueError, match=r"points\.parquet: column 'y' holds NaN or inf"):
        pt.read_partition(root, SEQ, CAM, columns=["x", "y", "z"])
    with pytest.raises(ValueError, match=r"column 'y' holds NaN"):
        pt.read_frame(root, SEQ, CAM, 0)


def test_truncated_file_is_named(root):
    path = pt.partition_path(root, SEQ, CAM)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=r"points\.parquet: not a readable parquet file"):
        pt.read_partition(root, SEQ, CAM)
