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
    assert (project / "models/laq/model.pt").is_file()
    assert (project / "checkpoints/laq").is_dir() and not (project / "checkpoints/laq/state.pt").exists()
    metrics = json.loads((project / "reports/laq/metrics.json").read_text())
    assert json.loads((project / "reports/laq/run.json").read_text())["training"]["steps_this_run"] == 12
    assert metrics["data"]["held_out"] == ["SYNTHIA-SEQS-03-GENERATED", "SYNTHIA-SEQS-04-GENERATED"]
    assert metrics["pairs"] == {"train": 12, "held_out": 6}  # the test sequence's pairs
    for split in ("val", "test"):  # pose files but no manoeuvre labels: probes per component, no AMI
        actions = metrics["actions"][split]
        assert actions["pairs"] == 6 and "manoeuvre" not in actions
        assert set(actions["probe"]) == {"codes", "latent_before_nsvq", "token_diff", "global_feature_diff"}
        assert set(actions["probe"]["codes"]["r2"]) == {"forward_mps", "yaw_rate_radps", "lateral_mps"}
    assert metrics["targets_test"]["ami_code_tuple_manoeuvre"]["met"] is None
    assert len(metrics["usage_held_out"]["perplexity_per_position"]) == 4
    assert metrics["replacement"]["events"] == 2 and metrics["replacement"]["last_step"] == 6
    assert "r2" in metrics["probe"] and "delta_mse_shuffled" in metrics["controllability"]
    assert "note" not in metrics
    assert (project / "reports/laq/figures/code_usage.png").is_file() and (project / "reports/laq/figures/probe.png").is_file()
    header = (project / "reports/laq/train.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "step" and {"loss", "val_loss", "perplexity_0", "active_codes"} <= set(header)
    assert (project / "reports/laq/codebook.csv").read_text().splitlines()[0] == "step,active,replaced"
    # a forced rerun trains again (the resume state is gone once the model is written), to the same result
    code, output = run()
    assert code == 0, output
    again = json.loads((project / "reports/laq/metrics.json").read_text())
    facts = json.loads((project / "reports/laq/run.json").read_text())["training"]
    assert facts["steps_this_run"] == 12 and facts["resumed_from_step"] == 0
    assert again["probe"] == metrics["probe"]


def _train_until_step_7(project: str) -> None:
    """One rank of a LAQ training that stops after step 7, leaving the resume state."""
    from pipeline.config import load_params, parse_section
    from pipeline.distributed import init_distributed
    from pipeline.params.data import DataParams
    from pipeline.params.laq import LAQParams
    from pipeline.train.laq import load_laq_data, train_laq

    root = Path(project)
    params = load_params(root / "params.yaml")
    data, laq = parse_section(params, "data", DataParams), parse_section(params, "laq", LAQParams)
    pairs = load_laq_data(root / "data/features", laq.frame_offset, data.val_sequences, data.test_sequences)
    train_laq(pairs.train, pairs.val, laq, root / "models/laq/model.pt", root / "checkpoints/laq/state.pt",
              splits=pairs.splits, manifest=pairs.manifest, stop_after=7, progress=False,
              dist_info=init_distributed(laq.device))


def test_interrupted_run_resumes_after_dvc_deletes_the_model_output(project):
    """The resume state is outside the stage's DVC output: DVC deletes ``models/laq`` before a rerun, and the
    rerun still resumes, with the full curves and the metrics of an uninterrupted run."""
    code, output = run()
    assert code == 0, output
    full_metrics = json.loads((project / "reports/laq/metrics.json").read_text())
    full_curve = (project / "reports/laq/train.csv").read_text()
    full_codebook = (project / "reports/laq/codebook.csv").read_text()
    # an interrupted run: the state after 7 of 12 steps at the stage's default path, as a kill would leave it
    # (trained as the stage trains: laq.cpu_ranks processes)
    from pipeline.config import load_params, parse_section
    from pipeline.distributed import cpu_ranks_for, run_cpu_ranks
    from pipeline.params.laq import LAQParams

    laq = parse_section(load_params(project / "params.yaml"), "laq", LAQParams)
    run_cpu_ranks(_train_until_step_7, cpu_ranks_for(laq.cpu_ranks, laq.device), str(project))
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["laq"]["outs"]
    for out in stages:  # what `dvc repro` removes before running the stage again: every non-persisted output
        name, options = (out, {}) if isinstance(out, str) else next(iter(out.items()))
        if not options.get("persist"):
            shutil.rmtree(project / name, ignore_errors=True)
    code, output = run()
    assert code == 0, output
    metrics = json.loads((project / "reports/laq/metrics.json").read_text())
    facts = json.loads((project / "reports/laq/run.json").read_text())["training"]
    assert facts["resumed_from_step"] == 7 and facts["steps_this_run"] == 5
    for key in ("probe", "usage_held_out", "replacement", "controllability"):
        assert metrics[key] == full_metrics[key], key
    assert metrics["training"]["final_train_loss"] == full_metrics["training"]["final_train_loss"]
    assert (project / "reports/laq/train.csv").read_text() == full_curve
    assert (project / "reports/laq/codebook.csv").read_text() == full_codebook


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
