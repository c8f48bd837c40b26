"""DVC stage `laq`: train Concerto-LAQ from cached features, then measure its codes on held-out sequences.

Reads only ``data/features`` (the `concerto` stage) and the pose files in ``data/raw``; writes
``models/laq/checkpoint.pt`` (resumable), ``reports/laq/{metrics.json, train.csv, codebook.csv}`` and
``reports/laq/figures/code_usage.png``. Runs as ``python -m stages.laq`` or, for DDP, as
``torchrun --nproc_per_node N -m stages.laq`` (rank 0 logs, evaluates and writes the reports).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from pathlib import Path

import typer

from pipeline.config import load_params, parse_section
from pipeline.data.params import DataParams
from pipeline.errors import one_line_errors
from pipeline.train.laq import LAQParams

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
    from pipeline.data.splits import split_sequences
    from pipeline.eval import laq_metrics
    from pipeline.train import common
    from pipeline.train.laq import load_feature_pairs, read_manifest, standardise, train_laq
    from pipeline.tracking import stage_run

    manifest = read_manifest(features)
    splits = split_sequences(list(manifest["sequences"]), data.val_sequences, data.test_sequences)
    held_out_names = splits["val"] + splits["test"]
    if not splits["train"] or not held_out_names:
        raise ValueError(f"{features}: {len(manifest['sequences'])} sequences leave no training or no held-out "
                         f"sequence (data.val_sequences={data.val_sequences}, data.test_sequences={data.test_sequences})")
    train = load_feature_pairs(features, splits["train"], laq.frame_offset, manifest)
    val = load_feature_pairs(features, splits["val"], laq.frame_offset, manifest)
    held_out = load_feature_pairs(features, held_out_names, laq.frame_offset, manifest)
    info = common.init_distributed(laq.device)
    if manifest["random_weights"] and info.is_main:
        log.warning("features in %s come from RANDOM backbone weights (%s): LAQ metrics measure the pipeline, "
                    "not Concerto", features, manifest.get("weights_source"))
    context = stage_run("laq") if info.is_main else contextlib.nullcontext()
    with context as run:
        if run is not None:
            run.log_params({"laq": asdict(laq), "data.val_sequences": data.val_sequences,
                            "data.test_sequences": data.test_sequences})
        result = train_laq(train, val, laq, out, splits=splits, manifest=manifest,
                           log_fn=run.log_step if run is not None else None, resume=resume,
                           progress=progress, dist_info=info)
        if run is None:
            return
        standardise(held_out, result.mean, result.std)
        motion_train = laq_metrics.pair_motion(raw, train.sequence, train.camera, train.frames)
        motion_eval = laq_metrics.pair_motion(raw, held_out.sequence, held_out.camera, held_out.frames)
        metrics, codes = laq_metrics.evaluate_laq(result.model, train, held_out, motion_train, motion_eval,
                                                  motion_bins=laq.motion_bins,
                                                  device=info.device, seed=laq.seed)
        history = common.load_checkpoint(out / "checkpoint.pt")["history"]
        metrics["replacement"] = laq_metrics.replacement_summary(history["codebook"])
        final = history["train"][-1] if history["train"] else {}
        metrics["training"] = {"steps": laq.steps, "steps_this_run": result.steps_run,
                               "resumed_from_step": result.resumed_from,
                               "seconds_this_run": round(result.seconds, 2),
                               "final_train_loss": final.get("loss"), "final_val_loss": final.get("val_loss"),
                               "device": str(info.device), "world_size": info.world_size}
        metrics["data"] = {"splits": splits, "held_out": held_out_names, "frame_offset": laq.frame_offset,
                           "features_random_weights": bool(manifest["random_weights"]),
                           "features_weights_source": manifest.get("weights_source"),
                           "channels": int(manifest["channels"]), "tokens": int(manifest["tokens"])}
        if manifest["random_weights"]:
            metrics["note"] = ("features come from RANDOM backbone weights (no checkpoint): the codes describe "
                               "random-feature dynamics; numbers check the pipeline, not Concerto")
        figure = run.report_dir / "figures" / "code_usage.png"
        laq_metrics.usage_figure(codes, laq.codebook_size, figure)
        run.log_artifact(figure, "figures")
        run.log_metrics(metrics)
        usage = metrics["usage_held_out"]
        log.info("laq: held-out perplexity per position %s, probe R2 %.3f (shuffled labels %.3f), dMSE shuffled %.4f",
                 [round(p, 2) for p in usage["perplexity_per_position"]], metrics["probe"]["r2"],
                 metrics["probe"]["r2_shuffled_labels"], metrics["controllability"]["delta_mse_shuffled"])


if __name__ == "__main__":
    app()
