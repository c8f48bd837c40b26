"""Deliberate benchmarks written to ``reports/bench/`` (``make bench``): ``pointclouds`` (per-frame work vs
PNG decode-only) and ``stages`` (per-stage table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.io import atomic


def write_report(out: Path, name: str, report: dict[str, Any], text: str) -> None:
    """Write ``<out>/<name>.json`` and ``<out>/<name>.md`` atomically and print the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / f"{name}.json", report)
    atomic.write_text(out / f"{name}.md", text)
    print(text)
