"""DVC stage ``laq``: train Concerto-LAQ from cached features, then measure its codes on held-out sequences.

:func:`run` reads only ``data/features`` (the ``concerto`` stage) and the ground truth of its sequences: the
drives' ``data/drives/groundtruth.parquet`` (default, ``concerto.points_from: drives``) or the pose files in
``data/raw``; the metrics are on the test pairs, the action metrics (``pipeline/eval/laq_actions.py``) also on the
validation pairs, which are the ones to choose settings by;
writes ``models/laq/model.pt`` (``pipeline/train/laq.py``; the resume state of an interrupted run is
``checkpoints/laq/state.pt``, see ``pipeline/train/loop.py``),
``reports/laq/{metrics.json, train.csv, codebook.csv}`` and ``reports/laq/figures/{code_usage,probe}.png``
(plus ``manoeuvre_usage.png`` when the pairs have manoeuvre labels)
(metrics: ``pipeline/eval/laq_metrics.py``). Under torchrun every rank trains; rank 0 logs, evaluates and
writes the reports.

Features of videos (manifest ``input: videos``, ``download.source: videos``) have no camera poses: the pose
metrics are skipped with a note (``pipeline/eval/laq_video_metrics.py``), ``probe.png`` is replaced by
``label_usage.png`` when ``data/videos/labels.json`` (the ``videos`` stage) has labels, and
``laq.frame_offset`` must be a multiple of the videos' frame stride.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import runtime
from pipeline.config import parse_section
from pipeline.distributed import DistInfo, cpu_ranks_for, init_distributed, leave_cpu_ranks, run_cpu_ranks
from pipeline.eval.curve_figures import curves_figure
from pipeline.data import drives as drive_layout
from pipeline.data.camera import synthia_pair_motion
from pipeline.eval.laq_actions import (
    action_metrics,
    fit_component_probes,
    manoeuvre_usage_figure,
    pair_labels,
    targets,
)
from pipeline.eval.laq_metrics import (
    evaluate_laq,
    infer_codes_shared,
    headline,
    pair_motion,
    probe_figure,
    replacement_summary,
    usage_figure,
)
from pipeline.data.features_cache import load_manifest
from pipeline.eval.laq_motion_check import motion_in_tokens
from pipeline.eval.laq_video_metrics import evaluate_laq_videos, headline_videos, label_usage_figure
from pipeline.params.data import DataParams
from pipeline.params.laq import LAQParams
from pipeline.tracking import stage_run
from pipeline.io.synthia import FRAME_RATE_HZ
from pipeline.train.laq import FeaturePairs, LAQData, TrainResult, load_laq_data, standardise, train_laq

log = logging.getLogger("pipeline.steps.laq")

RANDOM_FEATURES_NOTE = ("features come from RANDOM backbone weights (no checkpoint): the feature channels are random "
                        "functions of the points and only the token geometry (bird's-eye occupancy, centroids) is "
                        "meaningful; numbers check the pipeline and the geometric motion signal, not Concerto")


class PairTruth:
    """Ground truth of frame pairs: relative camera motion (P, 6) and manoeuvre labels (None when unknown).

    Features of the ``drives`` stage (manifest ``input: drives``) read ``drives/groundtruth.parquet``
    (``pipeline/data/drives.py``); other features read the pose files and, when every sequence has one, the
    generator's ``groundtruth/manoeuvres.parquet`` under ``raw``.
    """

    def __init__(self, manifest: dict[str, Any], raw: Path, drives: Path):
        self.raw = raw
        self.from_drives = manifest.get("input") == "drives"
        truth = drive_layout.read_groundtruth(drives) if self.from_drives else None
        self.poses = {s: v[0] for s, v in truth.items()} if truth else None
        self.labels = {s: v[1] for s, v in truth.items()} if truth else drive_layout.sequence_manoeuvres(
            raw, list(manifest["sequences"]))

    def motion(self, pairs: FeaturePairs) -> np.ndarray:
        if self.poses is None:
            return pair_motion(self.raw, pairs.sequence, pairs.camera, pairs.frames)
        return np.asarray([synthia_pair_motion(self.poses[s][a], self.poses[s][b])
                           for s, (a, b) in zip(pairs.sequence, pairs.frames, strict=True)]).reshape(-1, 6)

    def manoeuvres(self, pairs: FeaturePairs) -> list[str] | None:
        return None if self.labels is None else pair_labels(self.labels, pairs.sequence, pairs.frames)


def stage_codes(result: TrainResult, data: LAQData, dist_info: DistInfo) -> dict[str, dict[str, np.ndarray]] | None:
    """Every split through the trained model once, the pairs shared among the training's processes
    (:func:`infer_codes_shared`; call it on every rank): ``train``, ``val``, ``test`` and, for bird's-eye tokens,
    their mirrored pairs (``train_mirrored`` ...). ``data.test`` is standardised here with the training's
    statistics (``data.val`` was by ``train_laq``). Rank 0 gets the codes, the other ranks None."""
    standardise(data.test, result.mean, result.std)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    # the decoder's errors only count on held-out pairs; mirrored pairs only give their codes
    codes = {name: infer_codes_shared(result.model, split, dist_info.device, predict=name != "train")
             for name, split in splits.items() if len(split)}
    if data.train.grid is not None:
        codes.update({f"{name}_mirrored": infer_codes_shared(result.model, split, dist_info.device, mirror=True,
                                                             predict=False)
                      for name, split in splits.items() if len(split)})
    return codes if dist_info.is_main else None


def stage_metrics(result: TrainResult, data: LAQData, truth: PairTruth, params: LAQParams,
                  dist_info: DistInfo, codes: dict[str, dict[str, np.ndarray]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stage's metrics: ``evaluate_laq`` (``pipeline/eval/laq_metrics.py``) on the test pairs, the action
    metrics (``pipeline/eval/laq_actions.py``) on the validation (for model choices) and test pairs with, for
    bird's-eye tokens, the check of whether the true motion shows in the tokens (``motion_in_tokens``,
    ``pipeline/eval/laq_motion_check.py``), the targets of the issue on the test pairs, plus training and data
    summaries.

    ``result``: the trained model, its feature statistics and its curves (``train_laq``; the curves give the
    replacement events and final losses); ``codes``: :func:`stage_codes` (on standardised splits). Returns
    (metrics, the figure arrays of ``evaluate_laq`` plus the test pairs' ``manoeuvre`` labels and codes).
    """
    model, train, test = result.model, data.train, data.test
    motion_train, motion_test = truth.motion(train), truth.motion(test)
    codes_train, mirrored, codes_test = codes["train"], codes.get("train_mirrored"), codes.get("test")
    metrics, figures = evaluate_laq(model, train, test, motion_train, motion_test,
                                    motion_bins=params.motion_bins, device=dist_info.device, seed=params.seed,
                                    codes={"train": codes_train, "train_mirrored": mirrored, "held_out": codes_test})
    seconds = params.frame_offset / FRAME_RATE_HZ
    probes = fit_component_probes(codes_train, mirrored, motion_train, np.asarray(train.sequence), seconds,
                                  params.seed)
    actions = {}
    for name, split in (("val", data.val), ("test", test)):
        if len(split) < 2:
            continue
        motion, labels = truth.motion(split), truth.manoeuvres(split)
        actions[name], indices = action_metrics(model, split, probes, motion, labels,
                                                seconds=seconds, device=dist_info.device, seed=params.seed,
                                                codes=codes.get(name), mirrored=codes.get(f"{name}_mirrored"))
        if name == "test":
            figures["manoeuvre"] = {"indices": indices, "labels": labels}
        if split.grid is not None:  # do the tokens move with the camera at all? (pipeline/eval/laq_motion_check.py)
            actions[name]["motion_in_tokens"] = motion_in_tokens(model, split, motion, dist_info.device,
                                                                 codes[name]["embeddings"] if name in codes else None)
    metrics["actions"] = actions
    if "test" in actions:
        metrics["targets_test"] = targets(actions["test"])
    metrics.update(run_summary(result, data, params, dist_info))
    return metrics, figures


def run_summary(result: TrainResult, data: LAQData, params: LAQParams, dist_info: DistInfo) -> dict[str, Any]:
    """Replacement events, training and data summaries (both sources), the random-features note."""
    metrics: dict[str, Any] = {}
    manifest = data.manifest
    curves = result.curves
    metrics["replacement"] = replacement_summary(curves.get("codebook", []))
    final = curves["train"][-1] if curves.get("train") else {}
    metrics["training"] = {"steps": params.steps, "steps_this_run": result.steps_run,
                           "resumed_from_step": result.resumed_from, "seconds_this_run": round(result.seconds, 2),
                           "final_train_loss": final.get("loss"), "final_val_loss": final.get("val_loss"),
                           "device": str(dist_info.device), "world_size": dist_info.world_size,
                           "peak_rss_mb": round(runtime.peak_rss_mb(), 1)}
    metrics["data"] = {"splits": data.splits, "held_out": data.held_out_names, "frame_offset": params.frame_offset,
                       "features_random_weights": bool(manifest["random_weights"]),
                       "features_weights_source": manifest.get("weights_source"),
                       "channels": int(manifest["channels"]), "tokens": int(manifest["tokens"])}
    if manifest["random_weights"]:
        metrics["note"] = RANDOM_FEATURES_NOTE
    return metrics


def video_metrics(result: TrainResult, data: LAQData, labels: dict[str, str], params: LAQParams,
                  dist_info: DistInfo) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stage's metrics for video features: no poses (``evaluate_laq_videos``), labels when given."""
    held_out = standardise(data.held_out, result.mean, result.std)
    metrics, figures = evaluate_laq_videos(result.model, data.train, held_out, labels, device=dist_info.device,
                                           seed=params.seed)
    metrics.update(run_summary(result, data, params, dist_info))
    return metrics, figures


def check_video_offset(manifest: dict[str, Any], frame_offset: int) -> None:
    """Video features hold every ``frame_stride``-th frame: the pair offset must land on those frames."""
    stride = int(manifest.get("frame_stride", 1))
    if frame_offset % stride:
        raise ValueError(f"params.yaml: 'laq.frame_offset' = {frame_offset} is not a multiple of the videos' frame "
                         f"stride {stride} (videos.stride): no frame pairs")


def run(params: dict[str, Any], features: Path, raw: Path, out: Path, state: Path, resume: bool = True,
        progress: bool = True, videos: Path = Path("data/videos"), drives: Path = Path("data/drives")) -> None:
    """The stage: train ``out`` (model file) from ``features``, then (rank 0) metrics and figures into ``reports/laq``.

    ``params``: the whole params.yaml (sections ``data`` and ``laq``); ``raw``: the sequences with the camera
    poses; ``state``: resume state of an interrupted run; ``resume``: continue from it when it was written with
    the same params and data; ``videos``: the ``videos`` stage's folder (its ``labels.json``), read for video
    features; ``drives``: the ``drives`` stage's folder (its ground truth), read for drive features.
    On the CPU, training runs as ``laq.cpu_ranks`` data-parallel processes of one thread each
    (:func:`pipeline.distributed.run_cpu_ranks`; this process is rank 0 and alone evaluates and reports).
    """
    laq = parse_section(params, "laq", LAQParams)
    run_cpu_ranks(_rank_run, cpu_ranks_for(laq.cpu_ranks, laq.device), params, features, raw, out, state, resume,
                  progress, videos, drives)


def _rank_run(params: dict[str, Any], features: Path, raw: Path, out: Path, state: Path, resume: bool,
              progress: bool, videos: Path, drives: Path) -> None:
    """:func:`run` in one rank: every rank trains its share; rank 0 then evaluates and writes the reports."""
    data = parse_section(params, "data", DataParams)
    laq = parse_section(params, "laq", LAQParams)
    from_videos = features_from_videos(features)
    if from_videos:
        check_video_offset(load_manifest(features), laq.frame_offset)
    pairs = load_laq_data(features, laq.frame_offset, data.val_sequences, data.test_sequences, laq.offset_jitter)
    info = init_distributed(laq.device)
    if pairs.manifest["random_weights"] and info.is_main:
        log.warning("features in %s come from RANDOM backbone weights (%s): LAQ metrics measure the pipeline, "
                    "not Concerto", features, pairs.manifest.get("weights_source"))
    with stage_run("laq") if info.is_main else contextlib.nullcontext() as stage:
        if stage is not None:
            stage.declare_curve("codebook", ["replaced", "active"])  # a DVC output even without replacements
            stage.log_params({"laq": laq.model_dump(), "data.val_sequences": data.val_sequences,
                              "data.test_sequences": data.test_sequences})
        result = train_laq(pairs.train, pairs.val, laq, out, state, splits=pairs.splits, manifest=pairs.manifest,
                           run=stage, resume=resume, progress=progress, dist_info=info)
        pairs.train = pairs.train.at_offset(laq.frame_offset)  # the metrics' training pairs: frame_offset apart only
        codes = None if from_videos else stage_codes(result, pairs, info)  # every rank infers its share
        if stage is None:
            return
        leave_cpu_ranks()  # the evaluation below runs in this process alone, on all its threads
        folder = stage.report_dir / "figures"
        usage = folder / "code_usage.png"
        if from_videos:
            labels = json.loads((videos / "labels.json").read_text())["labels"]
            metrics, figures = video_metrics(result, pairs, labels, laq, info)
            written = [usage] + ([folder / "label_usage.png"] if labels else [])
            if labels:
                label_usage_figure(figures["indices"]["held_out"], figures["labels"], laq.codebook_size, written[1])
        else:
            metrics, figures = stage_metrics(result, pairs, PairTruth(pairs.manifest, raw, drives), laq, info, codes)
            written = [usage, folder / "probe.png"]
            probe_figure(figures["probe"], written[1])
            if figures.get("manoeuvre", {}).get("labels") is not None:
                written.append(folder / "manoeuvre_usage.png")
                manoeuvre_usage_figure(figures["manoeuvre"]["indices"], figures["manoeuvre"]["labels"],
                                       laq.codebook_size, written[-1])
        usage_figure(figures["indices"], laq.codebook_size, usage)
        curves = curves_figure(stage.curves, "laq", stage.report_dir / "figures" / "curves.png")
        for figure in (*written, curves):
            stage.log_artifact(figure, "figures")
        stage.log_metrics(metrics)
        log.info("laq: %s", headline_videos(metrics) if from_videos else headline(metrics))


def features_from_videos(features: Path) -> bool:
    """True when the cached features come from the video source (no camera poses)."""
    return load_manifest(features).get("input") == "videos"
