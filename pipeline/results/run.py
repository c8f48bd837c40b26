"""`python -m pipeline.results.run`: the results preset (``make results``).

For each training seed, a temporary copy of the project (the working tree's tracked and untracked,
not ignored files; the DVC cache shared, so data stages are restored, not recomputed, once built)
gets ``params.yaml`` with the preset's overrides, the user's ``-S section.key=value`` overrides and the
seed of every trained model (``SEED_KEYS``: ``train.seed``, ``video.seed``, ``laq.seed``), and runs
``dvc repro evaluate laq`` (download, pointclouds, frames, train_phase1, train_phase2, evaluate; drives, concerto,
laq; the data stages do not depend on the seeds, so they are restored from the shared cache after the first). The stages' reports are kept in ``reports/results/runs/<tag>/seed<N>/`` and every section
(``SECTIONS``) writes ``reports/results/<section>[-<tag>].md`` and ``.json``. MLflow runs go to the
project's store, named ``results-<tag>-seed<N>``.

The preset enlarges the held-out set (``PRESET``: 11 sequences of 60 frames, 6 of them for test, 1 for validation;
since session 34, when the phase-two targets moved to block intervals, which three test sequences left too wide; the
first 5 sequences, and so the trained models, are those of the earlier 8-sequence preset: the generator builds each
sequence from (``data.seed``, its index) alone); everything else is params.yaml's default. ``--aggregate-only`` rebuilds the
reports from the kept runs.

Each seed's kept folder also holds the ``params.yaml`` its run used and its provenance record (the command that reruns
the set, the commit and any uncommitted files, the machine: :mod:`pipeline.results.provenance`); every report carries
its seeds' records ("Made by"), and ``reports/results/README.md`` (:mod:`pipeline.results.index`) lists all reports
with what made them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer
import yaml

from pipeline.config import project_root
from pipeline.errors import one_line_errors
from pipeline.io import atomic
from pipeline.results import index, laq, phase1, phase2, provenance

PRESET: dict[str, Any] = {
    "data.sequences": 11,
    "data.frames": 60,
    "data.val_sequences": 1,
    "data.test_sequences": 6,
}
KEPT = {  # report file in the run copy -> name in the kept run folder
    "reports/evaluate/phase1_frames.csv": "phase1_frames.csv",
    "reports/evaluate/metrics.json": "evaluate.json",
    "reports/train_phase1/metrics.json": "train_phase1.json",
    "reports/train_phase1/val.csv": "train_phase1_val.csv",
    "reports/train_phase2/metrics.json": "train_phase2.json",
    "reports/train_phase1/run.json": "train_phase1_run.json",  # run facts: training seconds
    "reports/train_phase2/run.json": "train_phase2_run.json",
    "reports/evaluate/figures/phase1_prototypes.png": "phase1_prototypes.png",
    "reports/evaluate/phase2_forecasts.csv": "phase2_forecasts.csv",
    "reports/evaluate/phase2_camera.csv": "phase2_camera.csv",
    "reports/laq/metrics.json": "laq.json",
    "reports/laq/figures/manoeuvre_usage.png": "laq_manoeuvre_usage.png",
}
SECTIONS = {"phase1": (phase1.summarise, phase1.markdown, "Phase one: slots vs k-means spheres and PCA ellipsoids"),
            "phase2": (phase2.summarise, phase2.markdown, "Phase two: forecasts vs baselines, camera, identity"),
            "laq": (laq.summarise, laq.markdown, "Concerto-LAQ: latent actions on the test drives")}
SECTION_INPUT = {"phase1": "evaluate.json", "phase2": "evaluate.json", "laq": "laq.json"}  # kept file each needs
TARGETS = ("evaluate", "laq")
SEED_KEYS = ("train.seed", "video.seed", "laq.seed")  # every trained model's seed follows the preset's seed

app = typer.Typer(add_completion=False)


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value`` (value parsed as YAML) -> (dotted key, value)."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise ValueError(f"-S {text}: expected section.key=value")
    return key, yaml.safe_load(value)


def apply_overrides(params: dict, overrides: dict[str, Any]) -> dict:
    """A copy of ``params`` with dotted-key overrides; unknown keys are errors."""
    out = yaml.safe_load(yaml.safe_dump(params))
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        if section not in out or key not in out[section]:
            raise ValueError(f"params.yaml: unknown key {dotted!r}")
        out[section][key] = value
    return out


def project_files(root: Path) -> list[str]:
    """Tracked and untracked, not ignored files of the working tree (relative paths)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True,
                            check=True).stdout.decode().split("\0")
    return [f for f in listed if f and (root / f).is_file()]


def run_seed(root: Path, params: dict, seed: int, out_dir: Path, name: str, targets: tuple[str, ...] = TARGETS,
             record: dict[str, Any] | None = None) -> None:
    """Train and evaluate one seed in a temporary copy; keep its reports in ``out_dir``, with the ``params.yaml``
    the run used and, when given, its provenance ``record`` (:mod:`pipeline.results.provenance`)."""
    with tempfile.TemporaryDirectory(prefix="protoscene-results-") as tmp:
        copy = Path(tmp)
        for f in project_files(root):
            (copy / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / f, copy / f)
        cache = subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
        (copy / ".dvc/config.local").write_text(f"[core]\n    no_scm = true\n[cache]\n    dir = {cache}\n")
        for src in KEPT:  # the checkout's committed reports: only what this run writes may be kept
            (copy / src).unlink(missing_ok=True)
        seeded = apply_overrides(params, dict.fromkeys(SEED_KEYS, seed))
        (copy / "params.yaml").write_text(yaml.safe_dump(seeded, sort_keys=False))
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "DVC_EXP_NAME": name, "PROTOSCENE_TRACKING_ROOT": str(root), "DVC_NO_ANALYTICS": "1"}
        # The checkout's MLflow store and artifact folder, not the copy's: the copy is deleted below, and a store
        # first created from a copy would keep sending every later run's artifacts into that deleted folder.
        subprocess.run([sys.executable, "-m", "dvc", "repro", *targets], cwd=copy, env=env, check=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        for src, dst in KEPT.items():
            if (copy / src).is_file():
                shutil.copy2(copy / src, out_dir / dst)
        shutil.copy2(copy / "params.yaml", out_dir / "params.yaml")
        if record is not None:
            atomic.write_json(out_dir / provenance.FILE, record)


def aggregate(runs_dir: Path, seeds: list[int], reports: Path, tag: str) -> list[Path]:
    """Write every section's Markdown and JSON from the kept runs."""
    dirs = [runs_dir / f"seed{s}" for s in seeds]
    records = provenance.load(runs_dir, seeds)
    made_by = provenance.markdown(records)
    written = []
    for section, (summarise, markdown, title) in SECTIONS.items():
        if not all((d / SECTION_INPUT[section]).is_file() for d in dirs):
            continue  # not run for this result set (e.g. --targets evaluate)
        summary = {**summarise(dirs, seeds), "provenance": {str(s): rec for s, rec in records.items()}}
        stem = reports / (section if tag == "default" else f"{section}-{tag}")
        atomic.write_json(stem.with_suffix(".json"), summary)
        title_line, _, body = markdown(summary, f"{title} ({tag})").partition("\n\n")
        atomic.write_text(stem.with_suffix(".md"), f"{title_line}\n\n{made_by}\n\n{body}")
        written += [stem.with_suffix(".md"), stem.with_suffix(".json")]
    return written


@app.command()
@one_line_errors
def main(
    seeds: str = typer.Option("0,1,2", help="Training seeds, comma-separated."),
    set_param: list[str] = typer.Option([], "-S", "--set-param", help="section.key=value on top of the preset."),
    tag: str = typer.Option("", help="Name of this result set (default: from the -S overrides, else 'default')."),
    reports: Path = typer.Option(Path("reports/results"), help="Output folder."),
    aggregate_only: bool = typer.Option(False, help="Only rebuild the reports from kept runs."),
    targets: str = typer.Option(",".join(TARGETS), help="dvc repro targets, comma-separated: 'evaluate' alone "
                                "skips LAQ, whose drives do not depend on data.seed (another world: -S drives.seed=N)."),
) -> None:
    root = project_root()
    user_overrides = dict(parse_override(s) for s in set_param)
    overrides = {**PRESET, **user_overrides}
    tag = tag or ("_".join(s.replace("=", "").replace(".", "-") for s in set_param) or "default")
    seed_list = [int(s) for s in seeds.split(",")]
    params = apply_overrides(yaml.safe_load((root / "params.yaml").read_text()), overrides)
    runs_dir = reports / "runs" / tag
    target_list = tuple(t for t in targets.split(",") if t)
    if not aggregate_only:
        for seed in seed_list:
            record = provenance.record(root, user_overrides, PRESET, target_list, seed_list, tag, reports)
            run_seed(root, params, seed, runs_dir / f"seed{seed}", f"results-{tag}-seed{seed}", target_list, record)
    for path in aggregate(runs_dir, seed_list, reports, tag):
        typer.echo(f"wrote {path}")
    typer.echo(f"wrote {index.write(reports, root)}")


if __name__ == "__main__":
    app()
