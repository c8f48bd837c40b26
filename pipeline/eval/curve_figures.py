"""Training curves as one static PNG per stage (``reports/<stage>/figures/curves.png``), readable offline.

Every column of every curve (``train``, ``val``, ``codebook``, ...) is drawn against its ``step``.
Columns are grouped into panels by unit (from the name's suffix: ``_m`` metres, ``_rad`` radians,
``_deg`` degrees) and then by magnitude, so that within one panel the largest ``|value|`` of any two
columns differ by less than a factor :data:`MAX_RATIO` (no curve is flattened by a bigger one); the same column of two curves (e.g. train and
val loss) shares a panel and a colour, told apart by line style.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


MAX_RATIO = 10.0
UNITS = {"_m": "metres", "_rad": "radians", "_deg": "degrees"}
STYLES = {"train": "-", "val": "--"}  # line style per curve; other curves (e.g. codebook) dotted


def unit_of(column: str) -> str:
    """Axis unit of a curve column from its suffix; other columns are unitless (losses, counts, rates)."""
    for suffix, unit in UNITS.items():
        if column.endswith(suffix):
            return unit
    return "unitless"


def series(curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """``{(curve, column): (steps, values)}`` with the finite values of every non-step column."""
    out = {}
    for curve, rows in curves.items():
        columns = sorted({k for row in rows for k in row} - {"step"})
        for column in columns:
            pairs = [(row["step"], float(row[column])) for row in rows
                     if row.get(column) is not None and math.isfinite(float(row[column]))]
            if pairs:
                steps, values = map(np.asarray, zip(*pairs, strict=True))
                out[(curve, column)] = (steps, values)
    return out


def scale_groups(magnitudes: Mapping[str, float], max_ratio: float = MAX_RATIO) -> list[list[str]]:
    """Group column names (by unit, then ascending magnitude) so that in each group the largest
    magnitude is less than ``max_ratio`` times the smallest (zero counts as a tiny positive magnitude)."""
    groups: list[list[str]] = []
    by_unit: dict[str, list[str]] = {}
    for column in sorted(magnitudes, key=lambda c: (unit_of(c), magnitudes[c], c)):
        by_unit.setdefault(unit_of(column), []).append(column)
    for columns in by_unit.values():
        start = None
        for column in columns:
            size = max(magnitudes[column], 1e-12)
            if start is None or size >= max_ratio * start:
                groups.append([])
                start = size
            groups[-1].append(column)
    return groups


def curves_figure(curves: Mapping[str, Sequence[Mapping[str, Any]]], stage: str, out: Path) -> Path:
    """PNG at ``out`` (written atomically): one panel per scale group, each column against its step,
    curves of one column in one colour (line style per curve), legend outside the data on the right."""
    from pipeline.eval import figure_kit

    plt = figure_kit.pyplot()
    from matplotlib.ticker import MaxNLocator

    data = series(curves)
    magnitudes: dict[str, float] = {}
    for (_, column), (_, values) in data.items():
        magnitudes[column] = max(magnitudes.get(column, 0.0), float(np.max(np.abs(values))))
    groups = scale_groups(magnitudes)
    names = sorted(curves)
    cols = 2 if len(groups) > 1 else 1
    rows = max(1, math.ceil(len(groups) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 3.4 * rows + 0.8), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, group in zip(axes.flat, groups, strict=False):
        for i, column in enumerate(group):
            for curve in names:
                if (curve, column) in data:
                    steps, values = data[(curve, column)]
                    style = STYLES.get(curve, ":")
                    ax.plot(steps, values, style, color=colours[i % len(colours)], lw=1.4,
                            marker="o" if len(steps) < 12 else None, ms=3, label=f"{curve}: {column}")
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(unit_of(group[0]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    if not groups:
        axes[0, 0].text(0.5, 0.5, "no logged steps", ha="center", va="center")
    fig.suptitle(f"{stage}: training curves ({', '.join(names)}; one panel per unit and scale)")
    fig.tight_layout()
    return figure_kit.save(fig, out, dpi=80)
