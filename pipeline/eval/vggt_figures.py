"""Figure of the ``vggt`` stage: one frame's RGB, ground-truth depth, VGGT depth and confidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def depth_figure(path: Path, title: str, rgb: np.ndarray, gt_model: np.ndarray | None, depth: np.ndarray,
                 conf: np.ndarray, scale: float, note: str) -> Path:
    """PNG at ``path`` (written atomically): RGB, ground-truth depth, median-scaled VGGT depth, VGGT confidence.

    ``rgb`` (H, W, 3) uint8 original image; ``gt_model`` (h, w) ground-truth depth in metres resampled to the
    model grid (NaN = sky/invalid; None without ground truth); ``depth`` / ``conf`` (h, w) VGGT depth (VGGT
    units) and confidence; ``scale`` the frame's median scale VGGT -> metres (NaN: none, depth shown
    unscaled); ``note`` (e.g. the random-weights warning) is printed in red above the panels.
    """
    from pipeline.eval import figure_kit

    plt = figure_kit.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title(figure_kit.wrap(f"{title}: RGB", 50))
    shown = depth * (scale if np.isfinite(scale) else 1.0)  # unscaled when there is no ground truth
    finite = gt_model[np.isfinite(gt_model)] if gt_model is not None else np.zeros(0)
    lo, hi = np.percentile(finite if finite.size else shown[np.isfinite(shown)], [2, 98])
    if gt_model is not None:
        im = axes[0, 1].imshow(gt_model, cmap="magma_r", vmin=lo, vmax=hi)
        figure_kit.colorbar(fig, im, axes[0, 1], "depth (m)")
        axes[0, 1].set_title(figure_kit.wrap("ground-truth depth (model grid; white = sky/invalid)", 50))
    else:
        axes[0, 1].set_title("no ground-truth depth")
    im = axes[1, 0].imshow(shown, cmap="magma_r", vmin=lo, vmax=hi)
    figure_kit.colorbar(fig, im, axes[1, 0], "depth (m)" if np.isfinite(scale) else "depth (VGGT units)")
    axes[1, 0].set_title(f"VGGT depth x {scale:.3g} (median-scaled to the ground truth)")
    im = axes[1, 1].imshow(conf, cmap="viridis")
    figure_kit.colorbar(fig, im, axes[1, 1], "confidence (unitless, >= 1)")
    axes[1, 1].set_title("VGGT depth confidence")
    for ax in axes.flat:
        ax.axis("off")
    if note:
        fig.suptitle(figure_kit.wrap(note.upper(), 110), color="red", fontsize=12)
    fig.tight_layout()
    return figure_kit.save(fig, path, dpi=80)
