"""Stage `laq` end to end on a tiny generated feature fixture in a throw-away project."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from laq_fixtures import write_features
from stages import laq as laq_stage

REPO = Path(__file__).parents[3]
SMALL = {"dim": 16, "heads": 2, "spatial_depth": 1, "temporal_depth": 1, "decoder_depth": 1, "codebook_size": 16,
         "quant_dim": 4, "frame_offset": 2, "steps": 12, "batch_size": 8, "replace_every": 3, "replace_until": 0.5,
         "log_every": 4, "checkpoint_every": 5, "device": "cpu"}


def make_project(root: Path, random_weights: bool = False) -> Path:
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["laq"].update(SMALL)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    write_features(root, sequences=4, frames=8, n_side=3, channels=4, seed=2, random_weights=random_weights)
    return root


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    return make_project(tmp_path)


def run(*args):
    result = CliRunner().invoke(laq_stage.app, ["--no-progress", *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_stage_writes_checkpoint_metrics_curves_and_figure(project):
    code, output = run()
    assert code == 0, output
    assert (project / "models/laq/checkpoint.pt").is_file()
    metrics = json.loads((project / "reports/laq/metrics.json").read_text())
    assert json.loads((project / "reports/laq/run.json").read_text())["training"]["steps_this_run"] == 12
    assert metrics["data"]["held_out"] == ["SYNTHIA-SEQS-03-GENERATED", "SYNTHIA-SEQS-04-GENERATED"]
    assert metrics["pairs"] == {"train": 12, "held_out": 12}
    assert len(metrics["usage_held_out"]["perplexity_per_position"]) == 4
    assert metrics["replacement"]["events"] == 2 and metrics["replacement"]["last_step"] == 6
    assert "r2" in metrics["probe"] and "delta_mse_shuffled" in metrics["controllability"]
    assert "note" not in metrics
    assert (project / "reports/laq/figures/code_usage.png").is_file() and (project / "reports/laq/figures/probe.png").is_file()
    header = (project / "reports/laq/train.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "step" and {"loss", "val_loss", "perplexity_0", "active_codes"} <= set(header)
    assert (project / "reports/laq/codebook.csv").read_text().splitlines()[0] == "step,active,replaced"
    # a second run with the same params resumes the finished checkpoint and trains no further steps
    code, output = run()
    assert code == 0, output
    again = json.loads((project / "reports/laq/metrics.json").read_text())
    facts = json.loads((project / "reports/laq/run.json").read_text())["training"]
    assert facts["steps_this_run"] == 0 and facts["resumed_from_step"] == 12
    assert again["probe"] == metrics["probe"]


def test_random_weight_features_are_announced(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    make_project(tmp_path, random_weights=True)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["laq"]["steps"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, output = run()
    assert code == 0, output
    metrics = json.loads((tmp_path / "reports/laq/metrics.json").read_text())
    assert "RANDOM" in metrics["note"] and metrics["data"]["features_random_weights"] is True
    assert any("RANDOM" in r.getMessage() for r in caplog.records)


def test_missing_features_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["laq"].update(SMALL)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, output = run()
    assert code == 1 and "error: data/features/manifest.json: features manifest not found" in output
    params["laq"]["codebok_size"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, output = run()
    assert code == 1 and "unknown key 'laq.codebok_size'" in output


def truncate_one_npz(root: Path) -> str:
    path = sorted((root / "data/features").rglob("*.npz"))[0]
    path.write_bytes(path.read_bytes()[:200])
    return rf"error: {re.escape(str(path.relative_to(root)))}: not a readable \.npz"


def world_features(root: Path) -> str:
    path = root / "data/features/manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "coordinates": "world"}))
    return r"error: data/features/manifest\.json: needs point clouds in camera coordinates"


def corrupt_manifest(root: Path) -> str:
    (root / "data/features/manifest.json").write_text('{"channels": 4,')
    return r"error: data/features/manifest\.json: not valid JSON"


@pytest.mark.parametrize("corrupt", [truncate_one_npz, world_features, corrupt_manifest])
def test_bad_features_one_line_error(project, corrupt):
    pattern = corrupt(project)
    code, output = run()
    assert code == 1 and re.search(pattern, output), output
    assert not (project / "reports/laq/metrics.json").exists()
