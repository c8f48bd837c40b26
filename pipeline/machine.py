"""What machine this is, for benchmark reports (standard library only: benchmarks import it before torch)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model(cpuinfo: str | None = None) -> str:
    """The first CPU's model name with its family and model numbers, from /proc/cpuinfo's text ``cpuinfo`` (read
    when None; virtual machines often name only the brand, e.g. "AMD EPYC (family 25, model 17)"), else
    ``platform.processor()``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields:
        return platform.processor() or "unknown"
    numbers = [f"{label} {fields[key]}" for key, label in (("cpu family", "family"), ("model", "model"))
               if fields.get(key)]
    return fields["model name"] + (f" ({', '.join(numbers)})" if numbers else "")
