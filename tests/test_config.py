"""params.yaml validation: every problem is one line naming the key."""

from __future__ import annotations

import pytest

from pipeline.config import ParamsError, load_params, parse_section
from pipeline.data.params import DataParams
from pipeline.data.pointcloud import PointcloudParams


def test_repository_params_are_valid():
    from pathlib import Path

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    parse_section(params, "data", DataParams)
    cloud = parse_section(params, "pointcloud", PointcloudParams)
    assert cloud.max_points > 0


@pytest.mark.parametrize("section, values, message", [
    ("pointcloud", {"maxpoints": 10}, "unknown key 'pointcloud.maxpoints'"),
    ("pointcloud", {"max_points": "many"}, "'pointcloud.max_points' = 'many' should be int"),
    ("pointcloud", {"sampling": "grid"}, "'pointcloud.sampling' = 'grid' should be one of"),
    ("pointcloud", {"max_points": 4}, "max_points = 4 must be >= 16"),
    ("data", {"cameras": ["Stereo_Middle/Omni_F"]}, "unknown camera 'Stereo_Middle/Omni_F'"),
    ("data", {"frames": True}, "'data.frames' = True should be int"),
])
def test_bad_values(section, values, message):
    cls = {"pointcloud": PointcloudParams, "data": DataParams}[section]
    with pytest.raises(ParamsError, match=message.replace("(", r"\(")):
        parse_section({section: values}, section, cls)


def test_missing_section_and_file(tmp_path):
    with pytest.raises(ParamsError, match="missing section 'pointcloud'"):
        parse_section({}, "pointcloud", PointcloudParams)
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_int_is_accepted_for_float():
    assert parse_section({"pointcloud": {"far_m": 50}}, "pointcloud", PointcloudParams).far_m == 50.0
