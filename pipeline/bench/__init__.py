"""Deliberate benchmarks written to ``reports/bench/`` (``make bench``): ``pointclouds`` (per-frame work vs
PNG decode-only), ``stages`` (per-stage table) and ``repro`` (default, no-op and smoke `dvc repro` vs the goals)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.io import atomic


def write_report(out: Path, name: str, report: dict[str, Any], text: str) -> None:
    """Write ``<out>/<name>.json`` and ``<out>/<name>.md`` atomically and print the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / f"{name}.json", report)
    atomic.write_text(out / f"{name}.md", text)
    print(text)


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A bench's argument parser: described by the first paragraph of its module docstring ``doc``, with the
    ``--out`` folder of the reports (default ``reports/bench``)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    return parser
