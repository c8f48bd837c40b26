"""Whole-pipeline timings against the throughput goals: the default `dvc repro -f`, a no-op `dvc repro` and the
smoke test's `dvc repro`.

    python -m pipeline.bench.repro --out reports/bench    # ~6 min on 2 cores after a `dvc repro`

- ``default``: ``dvc repro -f`` in the repository (every stage reruns, the stage server as a user gets it), wall
  seconds of each of ``--default-runs`` runs. The run must reproduce the committed outputs: the bench stops if
  ``dvc.lock`` is not the same file afterwards (a run on another CPU may differ in float noise: commit its
  ``dvc.lock`` first, then bench).
- ``noop``: ``dvc repro`` ``--noop-runs`` times right after (nothing left to run): min / median / max.
- ``smoke``: ``pytest tests/test_pipeline_smoke.py::test_smoke_pipeline`` (its own temporary repository with the
  tiny sample), the ``dvc repro seconds`` it records, read from pytest's JUnit XML.

Goals (throughput issue): default <= 300 s, smoke <= 40 s, no-op <= 2 s, all on 2 quiet cores; the report
carries the CPU model and the load average, since the same code takes ~1.5x longer on some 2-core machines.
Writes ``repro.json`` and ``repro.md``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from pipeline.bench import bench_parser, write_report
from pipeline.machine import cpu_model

GOALS_S = {"default": 300.0, "smoke": 40.0, "noop": 2.0}
SMOKE_TEST = "tests/test_pipeline_smoke.py::test_smoke_pipeline"
SMOKE_PROPERTY = "dvc repro seconds"


def timed(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of ``cmd`` run to completion in ``cwd``, its output discarded; a failure stops the bench."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        raise SystemExit(f"error: `{' '.join(cmd)}` exited {done.returncode}: {tail[0]}")
    return time.perf_counter() - start


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max of ``values`` (seconds)."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def junit_property(xml_text: str, name: str) -> float | None:
    """The first ``<property name=name value=...>`` of a pytest JUnit XML report, as a float."""
    for prop in ET.fromstring(xml_text).iter("property"):
        if prop.get("name") == name:
            return float(prop.get("value", "nan"))
    return None


def smoke_seconds(root: Path) -> float:
    """The smoke test's recorded `dvc repro` seconds (the test must pass)."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "smoke.xml"
        timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SMOKE_TEST, f"--junitxml={xml}"],
              root)
        seconds = junit_property(xml.read_text(), SMOKE_PROPERTY)
    if seconds is None:
        raise SystemExit(f"error: {SMOKE_TEST} recorded no '{SMOKE_PROPERTY}' property")
    return seconds


def measure(root: Path, default_runs: int, noop_runs: int, smoke: bool) -> dict[str, Any]:
    """Run the three measurements in ``root`` (see the module docstring)."""
    lock = root / "dvc.lock"
    lock_before = lock.read_bytes()
    load_start = os.getloadavg()
    default = []
    for _ in range(default_runs):
        default.append(timed(["dvc", "repro", "-f"], root))
        if lock.read_bytes() != lock_before:
            raise SystemExit(f"error: {lock}: `dvc repro -f` changed the outputs' hashes (not the committed run; "
                             "commit this machine's dvc.lock first)")
    noop = [timed(["dvc", "repro"], root) for _ in range(noop_runs)]
    results: dict[str, Any] = {"default": spread(default), "noop": spread(noop)}
    if smoke:
        seconds = smoke_seconds(root)
        results["smoke"] = spread([seconds])
    return {"command": "python -m pipeline.bench.repro", "cpu": cpu_model(), "cpus": os.cpu_count(),
            "runs": {"default": default_runs, "noop": noop_runs, "smoke": int(smoke)}, "seconds": results,
            "goals_s": GOALS_S, "met": {k: v["median"] <= GOALS_S[k] for k, v in results.items()},
            "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table."""
    labels = {"default": "default `dvc repro -f` (every stage)", "noop": "no-op `dvc repro`",
              "smoke": "smoke test's `dvc repro` (tiny sample)"}
    lines = [
        "# Whole-pipeline timings vs the throughput goals",
        "",
        f"Command: `{report['command']}`; {report['date']}; {report['cpu']} ({report['cpus']} CPUs); load average "
        f"(1 min) {report['loadavg_start'][0]:.1f} at start, {report['loadavg_end'][0]:.1f} at end. Wall seconds of "
        "whole processes; `dvc.lock` was unchanged after every default run (outputs bit-identical).",
        "",
        "| run | runs | min s | median s | max s | goal s | met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, values in report["seconds"].items():
        lines.append(f"| {labels[key]} | {report['runs'][key]} | {values['min']:.2f} | {values['median']:.2f} | "
                     f"{values['max']:.2f} | {report['goals_s'][key]:.0f} | "
                     f"{'yes' if report['met'][key] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--default-runs", type=int, default=1, help="`dvc repro -f` runs (each ~4-6 min)")
    parser.add_argument("--noop-runs", type=int, default=8)
    parser.add_argument("--no-smoke", action="store_true", help="skip the smoke test's run")
    args = parser.parse_args(argv)
    if args.default_runs < 1 or args.noop_runs < 1:
        parser.error("--default-runs and --noop-runs must be >= 1")
    report = measure(Path.cwd(), args.default_runs, args.noop_runs, not args.no_smoke)
    write_report(args.out, "repro", report, markdown(report))


if __name__ == "__main__":
    main()
