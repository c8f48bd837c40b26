"""The real `dvc repro` on a tiny sample, in a temporary copy of the repository (CI smoke pipeline).

Checks: every stage's outputs exist and are valid; every declared figure is a readable image; metric
files hold quality numbers only (run facts are in the untracked run.json); the log has no warning but
the announced random weights; a second `dvc repro` does nothing
(the video folder and labels file are plain dependencies); an unknown key stops `dvc exp run` in
one line; a held-out split change marks only the stages that read it; changing one downstream param
with `dvc exp run -S` reruns only the stages that depend on it; MLflow got the runs; two queued
experiments run in parallel on a fresh MLflow store both succeed with their runs recorded;
`download.source=videos` on the embedded sample (with a corrupt clip) runs videos -> vggt -> concerto -> laq
and leaves the depth branch alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[1]
SMOKE = {
    "data": {"sequences": 3, "frames": 3, "height": 96, "width": 160},
    "pointcloud": {"max_points": 512},
    # 40 frames: two consecutive held-out drives hold every manoeuvre
    "drives": {"sequences": 5, "frames": 40, "height": 16, "width": 24, "max_points": 64, "val_sequences": 2,
               "test_sequences": 2, "extra_val_sequences": 0},
    "vggt": {"target_size": 70, "max_points": 256},
    "train": {"steps": 3, "batch_size": 2, "points": "all", "min_points": 8, "points_per_frame": 64, "refine_steps_train": 1,
              "refine_steps_eval": 2, "log_every": 1, "val_every": 2, "checkpoint_every": 2},
    "laq": {"steps": 3, "batch_size": 2, "frame_offset": 1, "log_every": 1, "checkpoint_every": 2},
    "video": {"steps": 2, "batch_size": 1, "context_frames": 2, "max_gap": 1, "max_delta": 1, "points_per_frame": 64,
              "samples_per_slot": 8, "eval_clip_frames": 3, "eval_context_frames": 2, "log_every": 1, "val_every": 2,
              "checkpoint_every": 2},
}
STAGES = ("check_params", "videos", "download", "drives", "pointclouds", "frames", "vggt", "concerto", "laq",
          "train_phase1", "train_phase2", "evaluate")
DEPTH_BRANCH = ("pointclouds", "frames", "train_phase1", "train_phase2", "evaluate")

pytestmark = [pytest.mark.slow]


def copy_repository(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files only: what a fresh clone would have."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def write_smoke_params(root: Path, overrides: dict) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def make_smoke_repo(tmp_path_factory, record_property):
    """A fresh repository with the smoke params after its first `dvc repro`, whose wall time goes to the
    test's ``dvc repro seconds`` property (printed in the terminal summary by ``tests/conftest.py``)."""
    root = tmp_path_factory.mktemp("smoke")
    copy_repository(root)
    for stale in ("dvc.lock",):  # reproduce from scratch
        (root / stale).unlink(missing_ok=True)
    write_smoke_params(root, SMOKE)
    # Python writes bytecode next to the code, as on a user's machine: the code folders are stage dependencies, so the
    # second `dvc repro` below stays a no-op only while .dvcignore keeps __pycache__ out of their hashes.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_", "PROTOSCENE_"))
           and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", DVC_NO_ANALYTICS="1",
               GIT_AUTHOR_NAME="ci", GIT_AUTHOR_EMAIL="ci@localhost", GIT_COMMITTER_NAME="ci",
               GIT_COMMITTER_EMAIL="ci@localhost", TYPER_USE_RICH="0")

    def run(*cmd: str, ok: bool = True, starts_daemons: bool = False) -> str:
        """``cmd``'s output; ``starts_daemons``: none (a daemon started with the test's output pipes would keep
        them open, and the captured run would wait for it to end)."""
        if starts_daemons:
            proc = subprocess.run(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=120)
            assert (proc.returncode == 0) == ok, f"{' '.join(cmd)} exit {proc.returncode}"
            return ""
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        assert (proc.returncode == 0) == ok, f"{' '.join(cmd)} exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    run("git", "init", "-q", "-b", "main")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "smoke")
    start = time.perf_counter()
    first = run("dvc", "repro")
    record_property("dvc repro seconds", round(time.perf_counter() - start, 1))
    return root, run, first


def metrics(root: Path, stage: str) -> dict:
    return json.loads((root / "reports" / stage / "metrics.json").read_text())


def check_outputs_exist_and_are_valid(smoke_repo):
    root, _, log = smoke_repo
    for stage in STAGES:
        assert f"Running stage '{stage}'" in log
    assert metrics(root, "download")["sequences"] == 3
    assert json.loads((root / "reports/download/run.json").read_text())["frames_per_s"] > 0  # 9 depth images
    cloud = metrics(root, "pointclouds")
    assert cloud["frames"] == 9 and cloud["points"] == 9 * 512
    assert metrics(root, "frames")["frames"] + metrics(root, "frames")["skipped_frames"] == 9
    evaluation = metrics(root, "evaluate")
    assert evaluation["dataset"]["points_per_frame"] == 512.0
    assert set(evaluation["dataset"]["class_fraction"]) >= {"road", "building", "car"}
    assert len(list((root / "reports/evaluate/figures").glob("SYNTHIA-*.png"))) == 3
    manifest = json.loads((root / "data/pointclouds/manifest.json").read_text())
    assert [p["frames"] for p in manifest["partitions"]] == [3, 3, 3]
    assert metrics(root, "vggt")["random_weights"] is True
    phase1 = evaluation["phase1"]
    for method in ("model", "model_refined", "kmeans_spheres", "pca_ellipsoids"):
        assert phase1[method]["frames"] >= 1 and phase1[method]["acc_m"] >= 0
    assert (root / "models/phase1/model.pt").is_file()
    assert metrics(root, "train_phase1")["train"]["steps"] == 3
    assert list((root / "reports/evaluate/meshes").glob("*.ply"))
    assert metrics(root, "concerto")["random_weights"] is True
    assert (root / "models/laq").is_dir() and "usage_held_out" in metrics(root, "laq")
    laq = metrics(root, "laq")
    assert laq["data"]["splits"]["test"] == ["DRIVE-0003", "DRIVE-0004"] and laq["actions"]["test"]["pairs"] == 2 * 39
    assert set(laq["actions"]["test"]["manoeuvre_pairs"]) >= {"left", "right", "stop"}
    assert (root / "reports/laq/figures/manoeuvre_usage.png").is_file()
    assert (root / "models/phase2/model.pt").is_file() and "phase2" in evaluation


def declared_figure_folders(root: Path) -> list[Path]:
    """Every ``reports/<stage>/figures`` folder that a stage of dvc.yaml declares as an output."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for stage in stages.values() for o in stage.get("outs", [])]
    return [root / o for o in outs if o.startswith("reports/") and o.endswith("/figures")]


def check_figures_metrics_and_log(smoke_repo, assert_readable):
    from pipeline.config import flatten
    from pipeline.tracking import RUN_FACT_KEYS

    root, _, log = smoke_repo
    folders = declared_figure_folders(root)
    assert {f.parent.name for f in folders} >= {"vggt", "laq", "train_phase1", "train_phase2", "evaluate"}
    for folder in folders:
        images = sorted(folder.glob("*.png")) + sorted(folder.glob("*.gif"))
        assert images, folder
        for image in images:
            assert_readable(image)
    for stage in (s for s in STAGES if s not in ("videos", "check_params")):  # these two write no metrics
        keys = {k.rsplit(".", 1)[-1] for k in flatten(metrics(root, stage))}
        assert not keys & RUN_FACT_KEYS, stage
        assert "host" in json.loads((root / "reports" / stage / "run.json").read_text())
    assert "run.json" not in subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=root,
                                            capture_output=True, text=True).stdout
    warnings = [line for line in log.splitlines() if "warn" in line.lower() and "RANDOM" not in line]
    assert not warnings, warnings
    for noise in ("Could not load library", "is empty", "not writable"):
        assert noise not in log


def check_second_repro_is_a_no_op(smoke_repo):
    _, run, _ = smoke_repo
    log = run("dvc", "repro")
    assert re.findall(r"Running stage '(\w+)'", log) == []
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in log


def check_mlflow_recorded_the_stages(smoke_repo):
    root, _, _ = smoke_repo
    with sqlite3.connect(root / "mlflow.db") as db:
        names = [r[0] for r in db.execute("select name from runs")]
        metric_keys = {r[0] for r in db.execute("select distinct key from metrics")}
    parent = next(n for n in names if n.startswith("repro-") and "/" not in n)  # the parent run of `dvc repro`
    assert {f"{parent}/{stage}" for stage in ("download", "pointclouds", "evaluate")} <= set(names)
    assert "stats/dataset.points_per_frame" in metric_keys and "headline/phase1.chamfer_l1_m" in metric_keys
    assert list((root / "mlartifacts").rglob("*.png"))  # figures logged as artifacts


def check_unknown_key_stops_the_pipeline(smoke_repo):
    """Even in a section that dvc.yaml lists key by key: check_params tracks the whole file."""
    _, run, _ = smoke_repo
    run("git", "add", "-A")
    run("git", "commit", "-qm", "lock")
    log = run("dvc", "exp", "run", "-S", "+pointcloud.maxpoints=1", ok=False)
    errors = [line for line in log.splitlines() if line.startswith("error: params.yaml")]
    assert errors == ["error: params.yaml: unknown key 'pointcloud.maxpoints' (did you mean 'pointcloud.max_points'?)"]
    assert "Running stage 'pointclouds'" not in log
    run("git", "checkout", "--", "params.yaml")  # the typo fixed: only the check reruns (DVC removed its output)
    log = run("dvc", "repro")
    assert re.findall(r"Running stage '(\w+)'", log) == ["check_params"]
    assert json.loads(run("dvc", "status", "--json")) == {}  # nothing else to do


def check_split_change_marks_only_its_stages(smoke_repo):
    """A data.val_sequences edit touches the shared `data` section; download and point clouds stay valid."""
    root, run, _ = smoke_repo
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["val_sequences"] = 0
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = set(json.loads(run("dvc", "status", "--json")))
    assert changed == {"check_params", "laq", "train_phase1", "train_phase2", "evaluate"}
    run("git", "checkout", "--", "params.yaml")


def check_downstream_param_reruns_only_downstream(smoke_repo):
    root, run, _ = smoke_repo
    log = run("dvc", "exp", "run", "-n", "fewer-points", "-S", "pointcloud.max_points=256")
    for upstream in ("download", "vggt"):
        assert f"Stage '{upstream}' didn't change, skipping" in log
        assert f"Running stage '{upstream}'" not in log
    assert "Running stage 'check_params'" in log  # its output did not change: no cascade
    for downstream in ("pointclouds", "frames", "concerto", "train_phase1", "train_phase2", "evaluate"):
        assert f"Running stage '{downstream}'" in log
    # concerto encodes the drives (concerto.points_from: drives): same features, so laq does not rerun
    assert "Stage 'laq' didn't change, skipping" in log and "Running stage 'drives'" not in log
    assert metrics(root, "pointclouds")["points"] == 9 * 256
    with sqlite3.connect(root / "mlflow.db") as db:
        assert db.execute("select count(*) from runs where name = 'fewer-points'").fetchone()[0] == 1


def check_parallel_queued_experiments_on_a_fresh_store(smoke_repo):
    """Two queued experiments run at once (`dvc queue start -j 2`) against a store that does not exist
    yet: both succeed, and both log into the main checkout's store (they run in temporary copies)."""
    root, run, _ = smoke_repo
    (root / "mlflow.db").unlink()
    shutil.rmtree(root / "mlartifacts", ignore_errors=True)
    for name, steps in (("par-a", 1), ("par-b", 3)):  # reruns train_phase2 and evaluate only
        run("dvc", "exp", "run", "--queue", "-n", name, "-S", f"video.steps={steps}")
    run("dvc", "queue", "start", "-j", "2", starts_daemons=True)
    deadline = time.time() + 900
    while time.time() < deadline:
        status = run("dvc", "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    for name in ("par-a", "par-b"):
        assert re.search(rf"{name}\s.*Success", status), status
    with sqlite3.connect(root / "mlflow.db") as db:
        names = {r[0]: r[1] for r in db.execute("select name, status from runs")}
    for name in ("par-a", "par-b"):
        assert names[name] == "FINISHED" and names[f"{name}/evaluate"] == "FINISHED", names
        assert names[f"{name}/train_phase2"] == "FINISHED", names
    assert list((root / "mlartifacts").rglob("metrics.json"))  # artifacts in the main checkout


def check_video_source(smoke_repo, tmp_path_factory):
    """The video branch on the embedded sample: 3 clips + a corrupt one, outside the repository, with labels."""
    root, run, _ = smoke_repo
    clips = tmp_path_factory.mktemp("clips")
    run(sys.executable, "-m", "pipeline.cli", "sample-videos", str(clips), "--videos", "3", "--frames", "4",
        "--corrupt", "--labels")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "fewer points")
    log = run("dvc", "exp", "run", "-n", "videos", "-S", "download.source=videos", "-S", f"videos.dir={clips}",
              "-S", f"videos.labels={clips / 'labels.json'}")
    for stage in ("videos", "vggt", "concerto", "laq"):
        assert f"Running stage '{stage}'" in log
    for stage in DEPTH_BRANCH:  # data/raw is the same synthetic default
        assert f"Stage '{stage}' didn't change, skipping" in log
    skipped = [line for line in log.splitlines() if "skipped" in line and "corrupt.webm" in line]
    assert len(skipped) == 1, log[-3000:]
    vggt = metrics(root, "vggt")
    assert vggt["videos"] == 3 and vggt["videos_skipped"] == 1 and vggt["random_weights"] is True
    assert metrics(root, "concerto")["points_from"] == "vggt" and metrics(root, "concerto")["sequences"] == 3
    laq = metrics(root, "laq")
    assert "probe" not in laq and "skipped_note" in laq and laq["labels"]["labelled_pairs"] >= 2
    assert len(laq["usage_held_out"]["perplexity_per_position"]) == 4 and "delta_mse_random" in laq["controllability"]
    assert (root / "reports/laq/figures/label_usage.png").is_file()
    shutil.copy(clips / "sample-01.webm", clips / "sample-04.webm")  # the folder is a dependency: a new video ...
    assert set(json.loads(run("dvc", "status", "--json"))) == {"videos"}  # ... reruns the listing (and what it changes)


def test_smoke_pipeline(tmp_path_factory, assert_readable, record_property):
    """One test, so the steps run in order on one worker: the last one changes the repository."""
    smoke_repo = make_smoke_repo(tmp_path_factory, record_property)
    check_outputs_exist_and_are_valid(smoke_repo)
    check_figures_metrics_and_log(smoke_repo, assert_readable)
    check_second_repro_is_a_no_op(smoke_repo)
    check_mlflow_recorded_the_stages(smoke_repo)
    check_unknown_key_stops_the_pipeline(smoke_repo)
    check_split_change_marks_only_its_stages(smoke_repo)
    check_downstream_param_reruns_only_downstream(smoke_repo)
    check_parallel_queued_experiments_on_a_fresh_store(smoke_repo)
    check_video_source(smoke_repo, tmp_path_factory)
