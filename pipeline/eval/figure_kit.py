"""Shared pieces of the report figures: a headless pyplot, legends for slot and class colours, colour bars
with units, wrapped titles, and an atomic PNG save. Figures are meant to be read at 100 % zoom:
titles wrap instead of being clipped, legends sit outside the data."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import atomic


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (stages run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def wrap(text: str, width: int = 60) -> str:
    """``text`` broken into lines of at most ``width`` characters (existing line breaks kept)."""
    return "\n".join(textwrap.fill(line, width) for line in text.splitlines())


def colour_legend(ax: Any, colours: Sequence[Any], labels: Sequence[str], title: str, outside: bool = True,
                  **kwargs: Any) -> Any:
    """Legend of filled patches (one per colour/label) on ``ax``; ``outside`` puts it right of the axes."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c, edgecolor="none", label=label) for c, label in zip(colours, labels, strict=True)]
    where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0} if outside else {}
    return ax.legend(handles=handles, title=title, fontsize=8, title_fontsize=8, **{**where, **kwargs})


def slot_legend(ax: Any, colours: np.ndarray, outside: bool = True, **kwargs: Any) -> Any:
    """Legend "slot 0 .. slot K-1" for the (K, 3) slot colours."""
    return colour_legend(ax, list(colours), [f"slot {k}" for k in range(len(colours))], "slot id", outside, **kwargs)


def colorbar(fig: Any, image: Any, ax: Any, label: str) -> Any:
    """Colour bar of ``image`` beside ``ax`` with its quantity and unit, e.g. ``"depth (m)"``."""
    bar = fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02)
    bar.set_label(label)
    return bar


def image_axes(*axes: Any) -> None:
    """Image panels: no ticks, but a thin frame, so a mostly white image (e.g. a segmentation) shows its extent."""
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_linewidth(0.5)
            spine.set_color("0.6")


def png_bytes(fig: Any, dpi: int = 80) -> bytes:
    """``fig`` encoded as PNG (the bytes :func:`save` writes), then closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    pyplot().close(fig)
    return buffer.getvalue()


def save(fig: Any, out: Path, dpi: int = 80) -> Path:
    """Write ``fig`` as a PNG at ``out`` (atomically: nothing partial on failure) and close it."""
    atomic.write_bytes(out, png_bytes(fig, dpi))
    return out
