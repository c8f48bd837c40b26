"""params.yaml validation: every section of the repository's file is valid, every problem is one line naming
the key, the models hold no defaults, and the check_params stage stops on a bad file with a stable output."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.config import ParamsError, load_params, parse_section
from pipeline.params.sections import SECTIONS, validate_all
from stages import check_params
from tests.conftest import REPO_PARAMS, repo_params


def test_every_section_of_the_repository_params_is_valid_and_reaches_the_code_unchanged():
    raw = load_params(REPO_PARAMS)
    assert set(raw) == set(SECTIONS)
    for name, model in validate_all(raw).items():
        dumped = json.loads(json.dumps(model.model_dump()))  # tuples -> lists, as YAML has them
        assert dumped == raw[name], name


def test_models_have_no_defaults():
    for name, cls in SECTIONS.items():
        with_default = [f for f, info in cls.model_fields.items() if not info.is_required()]
        assert not with_default, f"{name}: {with_default} have defaults (params.yaml is the only source)"


def test_digest_is_the_hash_of_the_section_values():
    """The resume identity of phases one and two: the same string as the former dataclass digest."""
    raw = load_params(REPO_PARAMS)["train"]
    expected = hashlib.sha256((json.dumps(raw, sort_keys=True) + "x").encode()).hexdigest()[:16]
    assert repo_params("train").digest("x") == expected
    assert repo_params("train", lr=0.001).digest("x") != expected


@pytest.mark.parametrize("section, override, message", [
    ("pointcloud", {"maxpoints": 10}, "params.yaml: unknown key 'pointcloud.maxpoints' (did you mean 'pointcloud.max_points'?)"),
    ("laq", {"zzz": 1}, "params.yaml: unknown key 'laq.zzz'"),
    ("train", {"slots": "x"}, "params.yaml: 'train.slots' = 'x': Input should be a valid integer"),
    ("data", {"frames": True}, "params.yaml: 'data.frames' = True: Input should be a valid integer"),
    ("train", {"lr": "0.1"}, "params.yaml: 'train.lr' = '0.1': Input should be a valid number"),
    ("pointcloud", {"sampling": "grid"}, "params.yaml: 'pointcloud.sampling' = 'grid': Input should be 'random' or 'fps'"),
    ("pointcloud", {"max_points": 4}, "params.yaml: 'pointcloud.max_points' = 4: Input should be greater than or equal to 16"),
    ("vggt", {"target_size": 250}, "params.yaml: 'vggt.target_size' = 250: Input should be a multiple of 14"),
    ("data", {"cameras": ["Stereo_Middle/Omni_F"]}, "params.yaml: 'data.cameras[0]' = 'Stereo_Middle/Omni_F': Input should be"),
    ("data", {"cameras": []}, "params.yaml: 'data.cameras' = []: Tuple should have at least 1 item"),
    ("download", {"synthia_sequences": ["SEQS-01"]}, "params.yaml: 'download.synthia_sequences[0]' = 'SEQS-01': String should match"),
    ("video", {"match_slots": "yes"}, "params.yaml: 'video.match_slots' = 'yes': Input should be a valid boolean"),
    ("train", {"min_points": 4}, "params.yaml: train: min_points = 4 must be >= slots = 8"),
    ("laq", {"dim": 128, "heads": 3}, "params.yaml: laq: dim = 128 must be divisible by heads = 3"),
    ("concerto", {"max_points": 8}, "params.yaml: 'concerto.max_points' = 8: max_points = 8 must be 0"),
    ("laq", {"device": "gpu"}, "params.yaml: 'laq.device' = 'gpu': String should match pattern"),
])
def test_bad_values_fail_in_one_line(section, override, message):
    with pytest.raises(ParamsError) as err:
        repo_params(section, **override)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_missing_key_section_and_file(tmp_path):
    raw = load_params(REPO_PARAMS)
    del raw["video"]["seed"]
    with pytest.raises(ParamsError, match=r"^params.yaml: missing key 'video.seed'$"):
        validate_all(raw)
    with pytest.raises(ParamsError, match="missing section 'pointcloud'"):
        parse_section({}, "pointcloud", SECTIONS["pointcloud"])
    with pytest.raises(ParamsError, match=r"unknown section 'pointclouds' \(known: data, "):
        validate_all({**load_params(REPO_PARAMS), "pointclouds": {}})
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_int_is_accepted_for_float_and_lists_become_tuples():
    cloud = repo_params("pointcloud", far_m=50)
    assert cloud.far_m == 50.0 and isinstance(cloud.far_m, float)
    assert repo_params("data", cameras=["Stereo_Right/Omni_B"]).cameras == ("Stereo_Right/Omni_B",)


def run_check(tmp_path, monkeypatch, params: dict):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(check_params.app, [])


def test_check_stage_output_does_not_change_with_values(tmp_path, monkeypatch):
    raw = load_params(REPO_PARAMS)
    assert run_check(tmp_path, monkeypatch, raw).exit_code == 0
    first = (tmp_path / "reports/params/sections.json").read_bytes()
    raw["train"]["slots"], raw["data"]["val_sequences"] = 12, 2
    assert run_check(tmp_path, monkeypatch, raw).exit_code == 0
    assert (tmp_path / "reports/params/sections.json").read_bytes() == first


def test_check_stage_stops_on_an_unknown_key_with_one_line(tmp_path, monkeypatch):
    raw = load_params(REPO_PARAMS)
    raw["pointcloud"]["maxpoints"] = 1
    result = run_check(tmp_path, monkeypatch, raw)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == ["error: params.yaml: unknown key 'pointcloud.maxpoints' (did you mean 'pointcloud.max_points'?)"]
    assert not (tmp_path / "reports/params").exists()


def test_params_package_sits_low():
    """The check stage can depend on the params package alone: no torch, no model, train or eval code."""
    import subprocess
    import sys

    code = ("import json, sys, pipeline.params.sections; "
            "print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('pipeline', 'torch')]))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=REPO_PARAMS.parent).stdout
    loaded = set(json.loads(out))
    assert {m for m in loaded if not m.startswith("pipeline.params")} <= {
        "pipeline", "pipeline.config", "pipeline.io", "pipeline.io.atomic", "pipeline.io.synthia"}
