"""Figure of the ``vggt`` stage: one frame's RGB, ground-truth depth, VGGT depth and confidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.io import atomic


def depth_figure(path: Path, title: str, rgb: np.ndarray, gt_model: np.ndarray | None, depth: np.ndarray,
                 conf: np.ndarray, scale: float, note: str) -> Path:
    """PNG at ``path`` (written atomically): RGB, ground-truth depth, median-scaled VGGT depth, VGGT confidence.

    ``rgb`` (H, W, 3) uint8 original image; ``gt_model`` (h, w) ground-truth depth in metres resampled to the
    model grid (NaN = sky/invalid; None without ground truth); ``depth`` / ``conf`` (h, w) VGGT depth (VGGT
    units) and confidence; ``scale`` the frame's median scale VGGT -> metres (NaN: none, depth shown
    unscaled); ``note`` (e.g. the random-weights warning) is printed in red above the panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title(f"{title}: RGB")
    shown = depth * (scale if np.isfinite(scale) else 1.0)  # unscaled when there is no ground truth
    finite = gt_model[np.isfinite(gt_model)] if gt_model is not None else np.zeros(0)
    lo, hi = np.percentile(finite if finite.size else shown[np.isfinite(shown)], [2, 98])
    if gt_model is not None:
        im = axes[0, 1].imshow(gt_model, cmap="magma_r", vmin=lo, vmax=hi)
        fig.colorbar(im, ax=axes[0, 1], fraction=0.03)
        axes[0, 1].set_title("ground-truth depth (m, model grid; white = sky/invalid)")
    else:
        axes[0, 1].set_title("no ground-truth depth")
    im = axes[1, 0].imshow(shown, cmap="magma_r", vmin=lo, vmax=hi)
    fig.colorbar(im, ax=axes[1, 0], fraction=0.03)
    axes[1, 0].set_title(f"VGGT depth x {scale:.3g} (median-scaled)")
    im = axes[1, 1].imshow(conf, cmap="viridis")
    fig.colorbar(im, ax=axes[1, 1], fraction=0.03)
    axes[1, 1].set_title("VGGT depth confidence (>= 1)")
    for ax in axes.flat:
        ax.axis("off")
    if note:
        fig.suptitle(note.upper(), color="red", fontsize=14)
    fig.tight_layout()
    atomic.write_with(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
    return path
