"""`python -m pipeline.analysis.laq_ceiling`: how far can the LAQ codes go on the default run's drives?

Two questions of the LAQ v2 issue's AMI target (AMI(code tuple, manoeuvre) >= 0.3 beside per-position perplexity
>= 16), answered with the *true* motion of the pairs (the drives' ground truth), on the test drives of the
default run (``data/features``, ``data/drives``, ``reports/laq/metrics.json``):

1. Does the decoder need more than the ego-motion? The LAQ decoder trained with codes that carry only the pair's
   motion (:mod:`pipeline.train.laq_motion_oracle`) for each motion code of :data:`MOTION_CODES` and training seed;
   its test error and shuffled-code gain beside the learned model's (``reports/laq/metrics.json``).
2. How well must the encoder read the motion? AMI of one code made from a noisy read of the motion
   (:func:`pipeline.eval.laq_ami_reference.noisy_read_agreement`) at several read qualities and code counts,
   beside the references of the stage's metrics.

Writes ``reports/results/laq-ceiling.md`` and ``.json``. About 35 s of CPU per decoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import typer
import yaml

from pipeline.config import parse_section
from pipeline.errors import one_line_errors
from pipeline.eval.laq_actions import label_ids, motion_components
from pipeline.eval.laq_ami_reference import noisy_read_agreement, quantile_cuts, true_motion_agreement
from pipeline.eval.laq_metrics import derangement
from pipeline.io import atomic
from pipeline.io.synthia import FRAME_RATE_HZ
from pipeline.params.data import DataParams
from pipeline.params.laq import LAQParams
from pipeline.steps.laq import PairTruth
from pipeline.train.laq import load_laq_data, model_config, standardise, token_statistics
from pipeline.train.laq_motion_oracle import held_out_errors, train_motion_decoder

app = typer.Typer(add_completion=False)

READ_R2 = (1.0, 0.9, 0.8, 0.7, 0.6)  # read qualities of question 2
READ_CODES = (16, 32, 64)


def kmeans_centroids(train: np.ndarray, held_out: np.ndarray, levels: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's motion replaced by its k-means centroid (``levels`` clusters fitted on ``train``)."""
    from sklearn.cluster import KMeans

    km = KMeans(levels, n_init=4, random_state=0).fit(train)
    return km.cluster_centers_[km.predict(train)], km.cluster_centers_[km.predict(held_out)]


def bin_means(train: np.ndarray, held_out: np.ndarray, levels: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Each component replaced by the mean of its equal-count bin (``levels`` bins cut on ``train``)."""
    out_train, out_held = train.copy(), held_out.copy()
    for c in range(train.shape[1]):
        cuts = quantile_cuts(train[:, c], levels)
        bins = np.searchsorted(cuts, train[:, c], side="right")
        # a bin left empty by tied values (cuts that coincide) stands for its lower cut
        means = np.asarray([train[bins == b, c].mean() if (bins == b).any() else cuts[max(b - 1, 0)]
                            for b in range(levels)])
        out_train[:, c] = means[bins]
        out_held[:, c] = means[np.searchsorted(cuts, held_out[:, c], side="right")]
    return out_train, out_held


def forward_and_yaw(train: np.ndarray, held_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The motion without its lateral component (column 2)."""
    return train[:, :2], held_out[:, :2]


MOTION_CODES: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "exact (forward, yaw rate, lateral)": lambda a, b: (a, b),
    "forward and yaw rate only": forward_and_yaw,
    "16 equal-count bins per component": bin_means,
    "one code: k-means cluster of 16": kmeans_centroids,
}


def decoder_table(params: dict[str, Any], seeds: list[int], features: Path, raw: Path, drives: Path,
                  progress: bool) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Question 1 (module docstring): {motion code: {seed: errors}}, plus the test pairs' motion components
    (P, 3) and label classes (P,) for question 2."""
    laq, data_params = parse_section(params, "laq", LAQParams), parse_section(params, "data", DataParams)
    data = load_laq_data(features, laq.frame_offset, data_params.val_sequences, data_params.test_sequences)
    truth = PairTruth(data.manifest, raw, drives)
    labels = truth.manoeuvres(data.test)
    if labels is None:
        raise ValueError(f"{features}: the pairs have no manoeuvre labels (needs the drives' features)")
    seconds = laq.frame_offset / FRAME_RATE_HZ
    train_y, test_y = (motion_components(truth.motion(split), seconds) for split in (data.train, data.test))
    mean, std = train_y.mean(0), train_y.std(0)
    train_z, test_z = (train_y - mean) / std, (test_y - mean) / std
    token_mean, token_std = token_statistics(data.train)  # as train_laq
    standardise(data.train, token_mean, token_std)
    standardise(data.test, token_mean, token_std)
    config = model_config(data.train, data.manifest, laq)
    table: dict[str, Any] = {}
    for name, make in MOTION_CODES.items():
        codes_train, codes_test = make(train_z, test_z)
        table[name] = {}
        for seed in seeds:
            decoder = train_motion_decoder(data.train, codes_train, config, laq.model_copy(update={"seed": seed}),
                                           progress=progress)
            errors = held_out_errors(decoder, data.test, codes_test,
                                     derangement(len(data.test), np.random.default_rng(seed)))
            table[name][seed] = {**vars(errors), "shuffled_gain": errors.shuffled_gain}
    return table, test_y, label_ids(labels)


def learned_reference(metrics_path: Path) -> dict[str, float] | None:
    """The learned model's test MSE and shuffled-code gain (``reports/laq/metrics.json``), None when absent."""
    if not metrics_path.is_file():
        return None
    test = json.loads(metrics_path.read_text())["actions"]["test"]
    return {"mse": test["prediction"]["mse"], "shuffled_gain": test["controllability"]["relative_gain_shuffled"],
            "ami": test["manoeuvre"]["tuple"]["ami"], "distinct_tuples": test["usage"]["distinct_tuples"]}


def markdown(result: dict[str, Any]) -> str:
    lines = ["# LAQ codes: what the decoder needs, and what the AMI target needs (test drives)", "",
             "Analysis with the drives' true motion (`python -m pipeline.analysis.laq_ceiling`; "
             "`pipeline/train/laq_motion_oracle.py`, `pipeline/eval/laq_ami_reference.py`).", "",
             "## 1. The LAQ decoder given only the true motion as its codes", "",
             "| codes given to the decoder | test MSE (per seed) | shuffled-code gain (per seed) |", "|---|---|---|"]
    for name, seeds in result["decoder"].items():
        mse = " / ".join(f"{v['true']:.3f}" for v in seeds.values())
        gain = " / ".join(f"{100 * v['shuffled_gain']:.1f} %" for v in seeds.values())
        lines.append(f"| {name} | {mse} | {gain} |")
    learned = result.get("learned")
    if learned:
        lines.append(f"| the learned model's codes (`reports/laq/metrics.json`; {learned['distinct_tuples']} "
                     f"distinct tuples) | {learned['mse']:.3f} | {100 * learned['shuffled_gain']:.1f} % |")
    lines += ["", "## 2. AMI(code, manoeuvre) of one code made from a noisy read of the true motion", "",
              "The read explains about R² of each standardised motion component; the code is its k-means cluster.", "",
              "| read R² | " + " | ".join(f"{k} codes" for k in READ_CODES) + " |",
              "|---|" + "---|" * len(READ_CODES)]
    for r2 in READ_R2:
        row = [f"{result['noisy_read'][f'{r2}'][str(k)]['ami']:.3f}" for k in READ_CODES]
        lines.append(f"| {r2} | " + " | ".join(row) + " |")
    ref = result["references"]
    lines += ["", "Reference tuples of the exact motion (16 codes per position): "
              + "; ".join(f"{name} AMI {v['ami']:.3f} ({v['distinct_tuples']} distinct)" for name, v in ref.items())
              + (f"; the learned model's 4-code tuple: AMI {learned['ami']:.3f}." if learned else ".")]
    return "\n".join(lines) + "\n"


@app.command()
@one_line_errors
def main(
    seeds: str = typer.Option("0,1", help="Training seeds of the motion-code decoders, comma-separated."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Params of the run (laq, data)."),
    features: Path = typer.Option(Path("data/features"), help="The concerto stage's features (drives)."),
    raw: Path = typer.Option(Path("data/raw")),
    drives: Path = typer.Option(Path("data/drives"), help="The drives stage's folder (ground truth)."),
    metrics: Path = typer.Option(Path("reports/laq/metrics.json"), help="The learned model's metrics."),
    out: Path = typer.Option(Path("reports/results/laq-ceiling"), help="Output stem (.md and .json)."),
    progress: bool = typer.Option(True, help="Progress bars."),
) -> None:
    params = yaml.safe_load(params_file.read_text())
    decoder, components, classes = decoder_table(params, [int(s) for s in seeds.split(",")], features, raw, drives,
                                                 progress)
    result = {"decoder": decoder, "learned": learned_reference(metrics),
              "references": true_motion_agreement(components, classes),
              "noisy_read": {f"{r2}": {str(k): noisy_read_agreement(components, classes, r2, levels=k)
                                       for k in READ_CODES} for r2 in READ_R2}}
    atomic.write_json(out.with_suffix(".json"), result)
    atomic.write_text(out.with_suffix(".md"), markdown(result))
    typer.echo(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    app()
