"""DVC stage `laq`: train Concerto-LAQ from cached features, then measure its codes on held-out sequences.

Reads only ``data/features`` (the `concerto` stage) and the pose files in ``data/raw``; writes
``models/laq/checkpoint.pt`` (resumable), ``reports/laq/{metrics.json, train.csv, codebook.csv}`` and
``reports/laq/figures/{code_usage,probe}.png``. Runs as ``python -m stages.laq`` or, for DDP, as
``torchrun --nproc_per_node N -m stages.laq`` (rank 0 logs, evaluates and writes the reports).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import typer

from pipeline.config import load_params, parse_section
from pipeline.errors import one_line_errors
from pipeline.params.data import DataParams
from pipeline.params.laq import LAQParams

app = typer.Typer(add_completion=False)
log = logging.getLogger("stages.laq")


@app.command()
@one_line_errors
def main(
    features: Path = typer.Option(Path("data/features"), help="Cached features (concerto stage output)."),
    raw: Path = typer.Option(Path("data/raw"), help="SYNTHIA-SEQS sequences with the camera poses."),
    out: Path = typer.Option(Path("models/laq"), help="Checkpoint folder."),
    resume: bool = typer.Option(True, help="Continue from out/checkpoint.pt if it was written with the same params."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    params = load_params()
    data = parse_section(params, "data", DataParams)
    laq = parse_section(params, "laq", LAQParams)
    from pipeline.eval import laq_metrics
    from pipeline.train import common
    from pipeline.train.laq import CHECKPOINT, load_laq_data, train_laq
    from pipeline.tracking import stage_run

    pairs = load_laq_data(features, laq.frame_offset, data.val_sequences, data.test_sequences)
    info = common.init_distributed(laq.device)
    if pairs.manifest["random_weights"] and info.is_main:
        log.warning("features in %s come from RANDOM backbone weights (%s): LAQ metrics measure the pipeline, "
                    "not Concerto", features, pairs.manifest.get("weights_source"))
    with stage_run("laq") if info.is_main else contextlib.nullcontext() as run:
        if run is not None:
            run.declare_curve("codebook", ["replaced", "active"])  # a DVC output even without replacements
            run.log_params({"laq": laq.model_dump(), "data.val_sequences": data.val_sequences,
                            "data.test_sequences": data.test_sequences})
        result = train_laq(pairs.train, pairs.val, laq, out, splits=pairs.splits, manifest=pairs.manifest,
                           log_fn=run.log_step if run is not None else None, resume=resume,
                           progress=progress, dist_info=info)
        if run is None:
            return
        metrics, figures = laq_metrics.stage_metrics(result, pairs, raw, laq, out / CHECKPOINT, info)
        usage, probe = run.report_dir / "figures" / "code_usage.png", run.report_dir / "figures" / "probe.png"
        laq_metrics.usage_figure(figures["indices"], laq.codebook_size, usage)
        laq_metrics.probe_figure(figures["probe"], probe)
        for figure in (usage, probe):
            run.log_artifact(figure, "figures")
        run.log_metrics(metrics)
        log.info("laq: %s", laq_metrics.headline(metrics))


if __name__ == "__main__":
    app()
