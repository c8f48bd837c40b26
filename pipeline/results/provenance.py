"""Where a result set came from: the command, the params it changed, the commit and the machine of each seed's run.

The results preset (:mod:`pipeline.results.run`) writes one record per seed next to that seed's kept reports
(``reports/results/runs/<tag>/seed<N>/provenance.json``, with the ``params.yaml`` the run used), and every section
report carries the records of its seeds: the JSON under ``provenance``, the Markdown as a "Made by" paragraph.
A report aggregated from runs made before records were kept says so instead of guessing.

A record (:func:`record`): ``command`` (the preset's command line that reruns this set), ``overrides`` (the
user's ``-S`` keys; the preset's own sizes are in ``preset``), ``targets``, ``commit`` (``git rev-parse HEAD``
of the checkout, or None outside git), ``uncommitted`` (tracked or untracked files that differed from that commit:
the run copied the working tree, so a non-empty list means the commit alone does not reproduce it),
``started_utc`` (ISO 8601), ``machine`` (CPU model), ``python``, ``torch``.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from pipeline.machine import cpu_model

FILE = "provenance.json"  # a seed's record in its kept folder, reports/results/runs/<tag>/seed<N>/
NOT_RECORDED = "not recorded (the runs were made before the preset kept their provenance)"


def changed_paths(root: Path, pathspec: str | None = None) -> set[str] | None:
    """Paths (relative to ``root``) that differ from HEAD: modified, deleted, renamed (both paths) or untracked and
    not ignored, limited to ``pathspec`` if given; None outside a git checkout."""
    args = ["git", "status", "--porcelain", "-z", "--untracked-files=all", *(["--", pathspec] if pathspec else [])]
    status = subprocess.run(args, cwd=root, capture_output=True, text=True)
    if status.returncode != 0:
        return None
    paths, entries = set(), iter(status.stdout.split("\0"))
    for entry in entries:
        if entry:
            paths.add(entry[3:])
            if entry[0] in "RC":  # a rename or copy: its source path follows as an entry of its own
                paths.add(next(entries))
    return paths


def git_state(root: Path, outputs: Path | None = None) -> tuple[str | None, list[str]]:
    """(HEAD's commit hash or None outside a git checkout, the files that differ from it (:func:`changed_paths`), as
    the run copies the working tree; a folder or a link to one is not a file the run copies, e.g. a ``.venv`` link;
    nor is anything under ``outputs``, the preset's own reports folder, an input)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if head.returncode != 0:
        return None, []
    skip = None if outputs is None else (root / outputs).resolve()
    return head.stdout.strip(), sorted(p for p in changed_paths(root) or () if not (root / p).is_dir()
                                       and not (skip and (root / p).resolve().is_relative_to(skip)))


def command_line(overrides: dict[str, Any], targets: tuple[str, ...], seeds: list[int], tag: str) -> str:
    """The shell command of the results preset that makes this result set again (``-S`` values as YAML flow)."""
    parts = ["python", "-m", "pipeline.results.run"]
    for key, value in overrides.items():
        parts += ["-S", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
    parts += ["--targets", ",".join(targets), "--seeds", ",".join(map(str, seeds)), "--tag", tag]
    return shlex.join(parts)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def record(root: Path, overrides: dict[str, Any], preset: dict[str, Any], targets: tuple[str, ...],
           seeds: list[int], tag: str, outputs: Path | None = None) -> dict[str, Any]:
    """The provenance of one seed's run, taken when it starts (see the module docstring for the keys; ``outputs``:
    the reports folder, whose files are not counted as uncommitted inputs)."""
    commit, uncommitted = git_state(root, outputs)
    return {"command": command_line(overrides, targets, seeds, tag), "overrides": dict(overrides),
            "preset": dict(preset), "targets": list(targets), "commit": commit, "uncommitted": uncommitted,
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": cpu_model(),
            "python": platform.python_version(), "torch": _version("torch")}


def load(runs_dir: Path, seeds: list[int]) -> dict[int, dict[str, Any] | None]:
    """The records of a result set's kept runs ``runs_dir/seed<N>/`` (None for a run that kept none)."""
    paths = {seed: runs_dir / f"seed{seed}" / FILE for seed in seeds}
    return {seed: json.loads(path.read_text()) if path.is_file() else None for seed, path in paths.items()}


def markdown(records: dict[int, dict[str, Any] | None]) -> str:
    """A "Made by" paragraph for per-seed ``records`` (seed -> record or None when the run kept none)."""
    missing = [seed for seed, rec in records.items() if rec is None]
    if missing:
        return f"Made by: {NOT_RECORDED}; seeds {missing}."
    recs = list(records.values())
    lines = [f"Made by: `{recs[0]['command']}`"]
    for field in ("commit", "machine"):
        values = sorted({str(rec[field]) for rec in recs})
        lines.append(f"{field} {' / '.join(values)}" + (" (the seeds differ)" if len(values) > 1 else ""))
    dirty = sorted({path for rec in recs for path in rec["uncommitted"]})
    if dirty:
        lines.append(f"with uncommitted changes to {', '.join(dirty)}")
    started = sorted(rec["started_utc"] for rec in recs)
    lines.append(f"runs started {started[0]} - {started[-1]} UTC; python {recs[0]['python']}, "
                 f"torch {recs[0]['torch']}")
    return "; ".join(lines) + "."
