"""The results preset says what made each report: per-seed provenance records, the reports' "Made by", the index."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from pipeline.results import index, provenance, run
from pipeline.results.run import parse_override


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


def make_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "params.yaml").write_text("a: 1\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return root


def test_command_line_reruns_the_same_overrides():
    """The recorded command, split as a shell would, gives back every -S override with its YAML value."""
    overrides = {"video.fixed_guesses": [0.0, 1.5], "laq.code_seq_len": 1, "video.forecast_training": "grpo",
                 "train.prior_width": 0.15, "laq.warp": False}
    argv = shlex.split(provenance.command_line(overrides, ("evaluate",), [0, 1, 2], "x y"))
    assert argv[:3] == ["python", "-m", "pipeline.results.run"]
    parsed = dict(parse_override(argv[i + 1]) for i, arg in enumerate(argv) if arg == "-S")
    assert parsed == overrides
    assert argv[argv.index("--targets") + 1] == "evaluate" and argv[argv.index("--tag") + 1] == "x y"
    assert argv[argv.index("--seeds") + 1] == "0,1,2"


def test_record_names_the_commit_and_what_differed_from_it(tmp_path):
    root = make_repo(tmp_path)
    head = git(root, "rev-parse", "HEAD")
    rec = provenance.record(root, {"train.seed": 3}, {"data.sequences": 11}, ("evaluate", "laq"), [0], "t")
    assert rec["commit"] == head and rec["uncommitted"] == []
    assert rec["overrides"] == {"train.seed": 3} and rec["preset"] == {"data.sequences": 11}
    (root / "params.yaml").write_text("a: 2\n")
    (root / "new").mkdir()
    (root / "new" / "x.py").write_text("")
    (root / "venv-elsewhere").mkdir()
    (root / ".venv").symlink_to(root / "venv-elsewhere")  # a folder link: not a file the run copies
    assert provenance.record(root, {}, {}, ("evaluate",), [0], "t")["uncommitted"] == ["new/x.py", "params.yaml"]
    (root / "reports" / "results").mkdir(parents=True)
    (root / "reports" / "results" / "phase2.md").write_text("")  # an earlier set's report: an output, not an input
    outputs = Path("reports/results")
    assert provenance.record(root, {}, {}, ("evaluate",), [0], "t", outputs)["uncommitted"] == ["new/x.py",
                                                                                                  "params.yaml"]
    assert "reports/results/phase2.md" in provenance.record(root, {}, {}, ("evaluate",), [0], "t")["uncommitted"]
    git(root, "mv", "params.yaml", "renamed.yaml")  # a staged rename names both paths
    assert provenance.git_state(root)[1] == ["new/x.py", "params.yaml", "renamed.yaml",
                                             "reports/results/phase2.md"]
    outside = tmp_path / "plain"
    outside.mkdir()
    assert provenance.git_state(outside) == (None, [])


def test_markdown_says_when_records_are_missing_or_differ():
    rec = {"command": "python -m pipeline.results.run --tag t", "commit": "abc", "machine": "CPU A",
           "uncommitted": [], "started_utc": "2026-12-05T06:00:00+00:00", "python": "3.11.9", "torch": "2.13.0"}
    text = provenance.markdown({0: rec, 1: {**rec, "commit": "def", "started_utc": "2026-12-05T07:00:00+00:00"}})
    assert text.startswith("Made by: `python -m pipeline.results.run --tag t`")
    assert "commit abc / def (the seeds differ)" in text and "machine CPU A;" in text
    assert "2026-12-05T06:00:00+00:00 - 2026-12-05T07:00:00+00:00" in text
    assert "uncommitted" not in text
    assert "uncommitted changes to x.py" in provenance.markdown({0: {**rec, "uncommitted": ["x.py"]}})
    assert provenance.NOT_RECORDED in provenance.markdown({0: rec, 1: None})


def write_laq_run(folder: Path, seed: int) -> None:
    """A kept run with the LAQ section's input (numbers irrelevant here)."""
    folder.mkdir(parents=True)
    split = {"probe": {"forward_speed": {"r2": 0.6 + seed / 100}}}
    (folder / "laq.json").write_text(json.dumps({"pairs": 10, "data": {}, "test": split, "val": split}))


def test_aggregate_carries_each_seeds_record_into_the_reports(tmp_path, monkeypatch):
    runs = tmp_path / "runs" / "t"
    summaries = []

    def summarise(dirs, seeds):
        summaries.append([d.name for d in dirs])
        return {"seeds": seeds}

    monkeypatch.setattr(run, "SECTIONS", {"laq": (summarise, lambda s, title: f"# {title}\n\nbody\n", "LAQ")})
    for seed in (0, 1):
        write_laq_run(runs / f"seed{seed}", seed)
    run.aggregate(runs, [0, 1], tmp_path, "t")
    assert provenance.NOT_RECORDED in (tmp_path / "laq-t.md").read_text()
    assert json.loads((tmp_path / "laq-t.json").read_text())["provenance"] == {"0": None, "1": None}
    rec = {"command": "python -m pipeline.results.run --tag t", "commit": "abc", "machine": "m", "uncommitted": [],
           "started_utc": "2026-12-05T06:00:00+00:00", "python": "3", "torch": "2"}
    for seed in (0, 1):
        (runs / f"seed{seed}" / provenance.FILE).write_text(json.dumps(rec))
    run.aggregate(runs, [0, 1], tmp_path, "t")
    text = (tmp_path / "laq-t.md").read_text()
    assert text.startswith("# LAQ (t)\n\nMade by: `python -m pipeline.results.run --tag t`; commit abc;")
    assert text.endswith("\n\nbody\n") and summaries == [["seed0", "seed1"]] * 2
    assert json.loads((tmp_path / "laq-t.json").read_text())["provenance"]["1"] == rec


def test_run_seed_keeps_the_params_and_the_record(tmp_path, monkeypatch):
    root = tmp_path / "project"
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc/config").write_text("")

    def fake_run(cmd, cwd=None, **kwargs):
        return subprocess.CompletedProcess(cmd, 0, stdout="/cache\n" if "cache" in cmd else "")

    monkeypatch.setattr(run, "project_files", lambda _: [".dvc/config"])
    monkeypatch.setattr(run.subprocess, "run", fake_run)
    params = {"train": {"seed": 0}, "video": {"seed": 0}, "laq": {"seed": 0}}
    run.run_seed(root, params, 2, tmp_path / "kept", "results-x-seed2", ("evaluate",), {"command": "c"})
    assert "seed: 2" in (tmp_path / "kept/params.yaml").read_text()
    assert json.loads((tmp_path / "kept" / provenance.FILE).read_text()) == {"command": "c"}


def test_index_lists_each_report_with_its_command_and_history(tmp_path):
    root = make_repo(tmp_path)
    reports = root / "reports" / "results"
    reports.mkdir(parents=True)
    for stem in ("phase2", "phase2-data-seed7", "laq-one-code"):
        (reports / f"{stem}.md").write_text("# r\n")
    rec = {"command": "python -m pipeline.results.run -S 'laq.code_seq_len=1' --tag one-code"}
    (reports / "laq-one-code.json").write_text(json.dumps({"provenance": {"0": rec, "1": rec}}))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "laq: one code | not adopted")
    (reports / "phase2-data-seed7.md").write_text("# changed\n")
    (reports / "compare-b-vs-a.md").write_text("# c\n")
    (reports / "compare-b-vs-a.json").write_text(json.dumps({"a": "a", "b": "b", "provenance": {"a": {"0": rec},
                                                                                                 "b": {"0": None}}}))
    path = index.write(reports, root)
    text = path.read_text()
    head = git(root, "rev-parse", "--short", "HEAD")
    rows = {line.split("](")[0][3:]: line for line in text.splitlines() if line.startswith("| [")}
    assert set(rows) == {"phase2", "phase2-data-seed7", "laq-one-code", "compare-b-vs-a"}
    assert f"{head}: laq: one code \\| not adopted |" in rows["phase2"]
    assert rows["phase2-data-seed7"].endswith("not adopted (changed since) |")
    assert "`python -m pipeline.results.run -S 'laq.code_seq_len=1' --tag one-code`" in rows["laq-one-code"]
    assert rows["compare-b-vs-a"].endswith("| not committed yet |") and rec["command"] in rows["compare-b-vs-a"]
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## phase2 (2)", "## laq (1)", "## compare (1)"]
    assert text.count("| [") == 4
