"""Per-stage benchmark table: wall time, throughput, peak RSS and data-wait share of every DVC stage.

    python -m pipeline.bench.stages --out reports/bench          # read the last `dvc repro`'s run facts
    python -m pipeline.bench.stages --run --out reports/bench    # run every stage's command once, measured

Without ``--run`` the table is read from ``reports/<stage>/run.json`` (the run facts the tracking layer
writes, :mod:`pipeline.tracking`). With ``--run`` every stage command of ``dvc.yaml`` runs once more in
order, in a child process whose wall time, CPU time and peak RSS are measured as ``/usr/bin/time`` does
(``os.wait4``: user + system seconds of the process and of the worker processes it waited for, ``ru_maxrss``; the
stage server is switched off for it, :mod:`pipeline.stage_server`), and the cores it kept busy on average (CPU
seconds / wall seconds: below the machine's count, a core waited); its run facts are read afterwards.
Throughput is taken in the stage's natural unit from its run facts (frames/s, points/s, clips/s, steps/s).
Training stages report the share of time waiting on data where their loops record ``data_seconds`` and
``compute_seconds`` (else "—").
Limits: ``pointclouds`` against the decode-only rate of ``reports/bench/pointclouds.json``
(:mod:`pipeline.bench.pointclouds`), ``train_phase1`` against the nearest-neighbour kernel's rate in
``reports/bench/nearest.json`` (target-source pairs per second of ``nearest_sq_dist``, fwd + bwd).
Writes ``stages.json`` and ``stages.md`` with the machine's load average (``os.getloadavg``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from pipeline.bench import bench_parser, write_report

THROUGHPUT_KEYS = (("frames_per_s", "frames/s"), ("model_frames_per_s", "frames/s"), ("points_per_s", "points/s"),
                   ("clips_per_s", "clips/s"), ("pairs_per_s", "pairs/s"), ("steps_per_s", "steps/s"))


def _find(facts: dict[str, Any], key: str) -> Any:
    """First value of leaf ``key`` in nested ``facts`` (depth first), else None."""
    for name, value in facts.items():
        if name == key:
            return value
        if isinstance(value, dict) and (found := _find(value, key)) is not None:
            return found
    return None


def throughput(facts: dict[str, Any]) -> tuple[float | None, str]:
    """(value, unit) in the stage's natural unit; steps/s from steps and train_seconds as a last resort."""
    for key, unit in THROUGHPUT_KEYS:
        if (value := _find(facts, key)) is not None:
            return float(value), unit
    steps = _find(facts, "steps_this_run") or _find(facts, "steps")
    seconds = _find(facts, "train_seconds") or _find(facts, "seconds_this_run")
    if steps and seconds:
        return float(steps) / float(seconds), "steps/s"
    return None, ""


def data_wait_share(facts: dict[str, Any]) -> float | None:
    """Share of a training loop's time spent building batches: data / (data + compute), if recorded."""
    data, compute = _find(facts, "data_seconds"), _find(facts, "compute_seconds")
    return None if data is None or compute is None else float(data) / max(float(data) + float(compute), 1e-9)


def limits(bench: Path) -> dict[str, str]:
    """Stage -> the limit it is compared against, from the committed kernel benchmarks in ``bench``."""
    found = {}
    if (path := bench / "pointclouds.json").is_file():
        report = json.loads(path.read_text())
        found["pointclouds"] = (f"decode-only {report['decode_only_frames_per_s']:.1f} frames/s "
                                f"(stage/decode {report['stage_vs_decode_only']:.2f}, pointclouds.md)")
    if (path := bench / "nearest.json").is_file():
        report = json.loads(path.read_text())
        config = report["config"]
        ours = [r for r in report["results"] if r["method"] == "ours" and r.get("status") == "ok"]
        if ours:
            best = max(ours, key=lambda r: r["M"])
            pairs = config["batch"] * config["points"] * best["M"] / (best["median_ms"] / 1e3)
            found["train_phase1"] = f"nearest kernel {pairs / 1e9:.2f} G pairs/s fwd+bwd (M={best['M']}, nearest.md)"
    return found


def run_measured(cmd: str, cwd: Path) -> dict[str, float]:
    """Run ``cmd`` (a dvc.yaml command) once in its own process (not in a child of the stage server, whose
    imports and memory the measurement would miss); wall seconds, CPU seconds (user + system, with the worker
    processes it waited for) and the process's peak RSS in MiB."""
    start = time.perf_counter()
    proc = subprocess.Popen(shlex.split(cmd), cwd=cwd, env={**os.environ, "PROTOSCENE_STAGE_SERVER": "0"})
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"error: {cmd}: exit {proc.returncode}")
    return {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024}


def table(root: Path, run: bool) -> dict[str, Any]:
    """Rows for every stage of ``root/dvc.yaml`` (see the module docstring)."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    bench_limits = limits(root / "reports" / "bench")
    load_start, rows = os.getloadavg(), []
    for name, stage in stages.items():
        measured = run_measured(stage["cmd"], root) if run else {}
        path = root / "reports" / name / "run.json"
        facts = json.loads(path.read_text()) if path.is_file() else {}
        value, unit = throughput(facts)
        cores = measured["cpu_s"] / measured["wall_s"] if measured.get("wall_s") else None
        rows.append({
            "stage": name,
            "wall_s": measured.get("wall_s", facts.get("process", {}).get("seconds")),
            "throughput": value, "unit": unit, "cores_busy": cores,
            # the stage's own peak RSS, else the process's
            "peak_rss_mb": measured.get("peak_rss_mb", _find(facts, "peak_rss_mb")),
            "data_wait_share": data_wait_share(facts),
            "limit": bench_limits.get(name, ""),
            "source": "measured run (wait4) + run.json" if run else ("run.json" if facts else "no run.json"),
        })
    return {"command": f"python -m pipeline.bench.stages{' --run' if run else ''}", "rows": rows,
            "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "cpus": os.cpu_count()}


def _cell(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Per-stage benchmark",
        "",
        f"Command: `{report['command']}`; load average (1 min) {report['loadavg_start'][0]:.1f} at start, "
        f"{report['loadavg_end'][0]:.1f} at end on {report['cpus']} CPUs (numbers from a loaded machine are slower "
        "than quiet ones). Wall time and throughput of a stage come from the same run; cores busy = CPU seconds / "
        "wall seconds of the measured process and its workers (`--run` only).",
        "",
        "| stage | wall s | cores busy | throughput | peak RSS MB | data wait | limit | source |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in report["rows"]:
        rate = "—" if r["throughput"] is None else f"{r['throughput']:.3g} {r['unit']}"
        wait = "—" if r["data_wait_share"] is None else f"{100 * r['data_wait_share']:.0f} %"
        lines.append(f"| {r['stage']} | {_cell(r['wall_s'], '.1f')} | {_cell(r.get('cores_busy'), '.2f')} | {rate} | "
                     f"{_cell(r['peak_rss_mb'], '.0f')} | "
                     f"{wait} | {r['limit']} | {r['source']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--run", action="store_true", help="run every stage's command once, measured")
    args = parser.parse_args(argv)
    report = table(Path.cwd(), args.run)
    write_report(args.out, "stages", report, markdown(report))


if __name__ == "__main__":
    main()
