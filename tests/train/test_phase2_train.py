"""Phase-two training: resuming equals an uninterrupted run; the stage and the report run end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from pipeline.data.frames import frame_selection
from pipeline.data.frames_cache import load_cached, load_frames
from pipeline.models.slots.config import SlotModelConfig
from pipeline.models.video.config import VideoModelConfig
from pipeline.models.video.forecaster import best_of_k
from pipeline.models.video.model import VideoSlotModel
from pipeline.models.video.sequences import load_sequences
from pipeline.steps.frames import build_frames
from pipeline.steps.pointclouds import build_pointclouds
from pipeline.train.phase1 import train_phase1
from pipeline.train.phase2 import clip_groups, load_video_model, sample_clip, train_phase2, with_guess0_detached
from tests.conftest import repo_params
from tests.curve_rows import Rows

REPO = Path(__file__).parents[2]
SEQ = "SYNTHIA-SEQS-01-GENERATED"
CAM = "Stereo_Left/Omni_F"
P1 = repo_params("train", slots=3, prototypes=2, ico_level=1, input_height=64, input_width=96, points="all", far_m=60.0,
                 min_points=8, points_per_frame=64, steps=1, batch_size=2, samples_per_slot=8, refine_steps_train=0,
                 log_every=1, val_every=100, checkpoint_every=100)
P2 = repo_params("video", guesses=2, hidden=16, time_features=2, context_frames=2, max_gap=1, max_delta=1, steps=4,
                 batch_size=2, points_per_frame=64, samples_per_slot=8, eval_clip_frames=2, eval_context_frames=2,
                 log_every=1, val_every=100, checkpoint_every=100,
                 fixed_guesses=[], weight_forecast=1.0,  # every guess learned: the winner-takes-all terms are tested
                 track_touch_m=0.0)  # one object per slot: the tracks then relabel each frame's slots one to one


@pytest.fixture(scope="module")
def tiny(generated_root, tmp_path_factory):
    """Point clouds and the frame cache of the fixture sequence, and a 1-step phase-one model."""
    root = tmp_path_factory.mktemp("phase2")
    clouds, frames = root / "clouds", root / "frames"
    build_pointclouds(generated_root, clouds, (CAM,), repo_params("pointcloud", max_points=256), workers=1, progress=False)
    build_frames(generated_root, clouds, frames, CAM, frame_selection(P1), progress=False)
    records, _ = load_frames(frames, [SEQ], CAM, frame_selection(P1))
    train_phase1(records, [], P1, root / "phase1.pt", root / "phase1_state.pt", device="cpu", progress=False)
    return generated_root, frames, root / "phase1.pt"


def test_clip_sampling_respects_gaps_and_reversal():
    import numpy as np

    params = repo_params("video", context_frames=4, max_gap=3, max_delta=10, reverse_fraction=0.5)
    rng = np.random.default_rng(0)
    reversed_seen = forward_seen = 0
    for _ in range(200):
        clip = sample_clip(rng, 40, params)
        context, target = clip[:-1], clip[-1]
        gaps = np.diff(context)
        assert np.all((gaps >= 1) & (gaps <= 3)) and 0 <= min(clip) and max(clip) < 40
        if target < context[0]:
            reversed_seen += 1
            assert 1 <= context[0] - target <= 10
        else:
            forward_seen += 1
            assert 1 <= target - context[-1] <= 10
    assert reversed_seen > 50 and forward_seen > 50


@pytest.mark.parametrize(("training", "finetune"), [("best_of_k", False), ("grpo", False), ("best_of_k", True)])
def test_resume_equals_uninterrupted(tiny, tmp_path, training, finetune):
    """stop_after = 2 then resume (a new run object, as a new process): same weights, same curves from step 0.
    GRPO starts after one warm-up step, so its frozen reference forecaster must come back from the state."""
    _, frames, phase1 = tiny
    seqs = load_sequences(frames, [SEQ], CAM, frame_selection(P1))
    params = P2.model_copy(update={"val_every": 2, "forecast_training": training, "grpo_warmup": 1,
                                   "finetune_slots": finetune,  # objects need frozen slots (validated below)
                                   "velocity_from": "slots" if finetune else "objects"})
    full, resumed = Rows(), Rows()
    train_phase2(seqs, seqs, params, phase1, tmp_path / "a/model.pt", tmp_path / "a/state.pt", run=full, device="cpu",
                 progress=False)
    part = train_phase2(seqs, seqs, params, phase1, tmp_path / "b/model.pt", tmp_path / "b/state.pt", run=Rows(),
                        device="cpu", progress=False, stop_after=2)
    assert part["stopped_early"] and not (tmp_path / "b/model.pt").exists()
    summary = train_phase2(seqs, seqs, params, phase1, tmp_path / "b/model.pt", tmp_path / "b/state.pt", run=resumed,
                           device="cpu", progress=False)
    assert summary["resumed_from_step"] == 2 and not (tmp_path / "b/state.pt").exists()
    a, _, _ = load_video_model(tmp_path / "a/model.pt")
    b, _, _ = load_video_model(tmp_path / "b/model.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert [(c, s) for c, s, _ in full.by_step()] == [("train", s) for s in range(4)] + [("val", 0), ("val", 2), ("val", 3)]
    assert resumed.by_step() == full.by_step()
    if training == "grpo":
        assert all(("grpo_kl" in v) == (step >= 1) for c, step, v in full.by_step() if c == "train")


def test_single_guess_term_trains_guess_zero_on_every_clip(tiny):
    """video.weight_single_guess adds guess 0's forecast Chamfer on every clip: the loss grows by exactly that term
    and only guess 0's outputs get the extra gradient (the others still learn only when they win)."""
    import numpy as np

    from pipeline.models.slots.batch import model_merge
    from pipeline.train.phase2 import build_model, clip_batch, clip_loss, draw_clips, loss_weights

    _, frames, phase1 = tiny
    seqs = load_sequences(frames, [SEQ], CAM, frame_selection(P1))
    losses, terms, grads = {}, {}, {}
    for weight in (0.0, 1.0):
        params = P2.model_copy(update={"weight_single_guess": weight})
        torch.manual_seed(0)
        model, p1 = build_model(phase1, params, torch.device("cpu"))
        rng = np.random.default_rng(0)
        batch = clip_batch(seqs, draw_clips(seqs, 2, params, rng), params.points_per_frame, rng, torch.device("cpu"),
                           model_merge(model.slots))
        loss, terms[weight] = clip_loss(model, batch, params, loss_weights(p1), 8, torch.Generator().manual_seed(0))
        loss.backward()
        losses[weight] = loss.item()
        grads[weight] = model.forecaster.head.bias.grad.view(params.guesses, 7).clone()  # per guess: α, step, turn
    assert terms[1.0]["forecast_first_m"] > 0
    assert losses[1.0] - losses[0.0] == pytest.approx(terms[1.0]["forecast_first_m"], rel=1e-5)
    assert torch.equal(grads[1.0][1:], grads[0.0][1:])  # the other guesses: unchanged
    assert not torch.allclose(grads[1.0][0], grads[0.0][0])  # guess 0: the extra term's gradient


def test_single_guess_loss_weights_each_clip_by_the_inverse_of_its_gap():
    """``single_guess_weighting``: uniform = the mean error; inverse_gap = mean of error x mean training gap / |Δ|,
    the mean gap of targets 1..max_delta frames at 5 Hz ((1 + 10) / 2 / 5 = 1.1 s), |Δ| floored at 0.1 s, signed
    gaps (time backwards) weighted by their size."""
    from pipeline.train.phase2 import single_guess_loss

    errors = torch.tensor([0.5, 2.0, 4.0, 1.0])
    gaps = torch.tensor([0.2, 1.0, -2.0, 0.05])
    params = repo_params("video", max_delta=10)
    assert single_guess_loss(errors, gaps, params).item() == pytest.approx(7.5 / 4)
    weighted = params.model_copy(update={"single_guess_weighting": "inverse_gap"})
    by_hand = (0.5 * 1.1 / 0.2 + 2.0 * 1.1 / 1.0 + 4.0 * 1.1 / 2.0 + 1.0 * 1.1 / 0.1) / 4
    assert single_guess_loss(errors, gaps, weighted).item() == pytest.approx(by_hand)
    # equal errors per second of gap: every clip counts the same
    assert single_guess_loss(torch.tensor([0.2, 2.0]), torch.tensor([0.2, 2.0]), weighted).item() == pytest.approx(1.1)


@pytest.mark.parametrize("weight_forecast", [0.0, 1.0])
def test_with_fixed_guesses_only_guess_zero_learns(tiny, weight_forecast):
    """Fixed guesses [0, 1] (copy-last, the whole velocity) get no gradient even where one wins a clip under the
    winner-takes-all term (``weight_forecast`` 1: some clip is won by one here); guess 0 always learns. With
    ``weight_forecast`` 0 (the default) guess 0's Chamfer on every clip is the whole forecast term."""
    import numpy as np

    from pipeline.models.slots.batch import model_merge
    from pipeline.train.phase2 import build_model, clip_batch, clip_loss, draw_clips, loss_weights

    _, frames, phase1 = tiny
    seqs = load_sequences(frames, [SEQ], CAM, frame_selection(P1))
    params = P2.model_copy(update={"guesses": 3, "fixed_guesses": [0.0, 1.0], "weight_forecast": weight_forecast,
                                   "weight_confidence": 0.0, "max_delta": 3})
    torch.manual_seed(0)
    model, p1 = build_model(phase1, params, torch.device("cpu"))
    assert model.forecaster.config.fixed_guesses == (0.0, 1.0)
    with torch.no_grad():  # guess 0 away from copy-last, so that the fixed guesses can win
        model.forecaster.head.bias.view(3, 7)[0, 0] = 0.5
    rng = np.random.default_rng(0)
    batch = clip_batch(seqs, draw_clips(seqs, 8, params, rng), params.points_per_frame, rng, torch.device("cpu"),
                       model_merge(model.slots))
    loss, terms = clip_loss(model, batch, params, loss_weights(p1), 8, torch.Generator().manual_seed(0))
    model.zero_grad()
    loss.backward()
    grads = model.forecaster.head.bias.grad.view(3, 7)
    assert grads[1:].abs().max() == 0 and grads[0].abs().max() > 0
    assert terms["forecast_best_m"] < terms["forecast_first_m"]  # a fixed guess won at least one clip


def test_phase_two_feeds_the_slot_model_the_merged_anchors_phase_one_uses(tiny):
    """The slot model inside phase two (training cache and evaluation alike) merges clusters with the phase-one
    model's own setting: with a setting that merges every cluster of a frame into one shared slot, all slots of a
    frame share one mesh (aliases copy their parent), as phase one's prediction does."""
    import dataclasses

    from pipeline.eval.phase2_eval import infer_sequence
    from pipeline.models.slots.batch import make_batch, model_merge, predict
    from pipeline.train.phase2 import build_model, encode_sequences

    _, frames, phase1 = tiny
    seq = load_sequences(frames, [SEQ], CAM, frame_selection(P1))[0]
    model, _ = build_model(phase1, P2, torch.device("cpu"))
    model.slots.config = dataclasses.replace(model.slots.config, merge_gap_m=100.0, merge_max_semi_axis_m=1000.0,
                                             merge_geometry="shared")
    model.eval()
    expected = predict(model.slots, make_batch(seq.records, 1, None, torch.device("cpu"), model_merge(model.slots))).verts
    assert torch.allclose(expected, expected[:, :1].expand_as(expected))  # one mesh per frame
    cached = encode_sequences(model, [seq], torch.device("cpu"))[0].slots.verts
    evaluated = torch.from_numpy(infer_sequence(model, seq, P2.model_copy(update={"camera": "gt"})).verts)
    for verts in (cached, evaluated):
        assert torch.allclose(verts, expected, atol=1e-6)


def test_frozen_slots_keep_phase_one_weights_and_cache_the_evaluation_encoding(tiny, tmp_path):
    """finetune_slots = false: the slot model leaves training with the phase-one weights, the heads change, and the
    cached encoding equals the evaluation's encoder pass (all points, eval mode) of the same frames."""
    from pipeline.eval.phase2_eval import infer_sequence
    from pipeline.train.common import load_checkpoint
    from pipeline.train.phase2 import encode_sequences

    _, frames, phase1 = tiny
    seqs = load_sequences(frames, [SEQ], CAM, frame_selection(P1))
    params = P2.model_copy(update={"finetune_slots": False})
    train_phase2(seqs, [], params, phase1, tmp_path / "model.pt", tmp_path / "state.pt", device="cpu", progress=False)
    model, _, _ = load_video_model(tmp_path / "model.pt")
    start = load_checkpoint(phase1)["state_dict"]
    for name, value in model.slots.state_dict().items():
        assert torch.equal(value, start[name]), name
    assert model.forecaster.head.weight.abs().sum() > 0  # zero-initialised, trained
    encoded = encode_sequences(model, seqs, torch.device("cpu"))[0]
    reference = infer_sequence(model, seqs[0], params.model_copy(update={"camera": "gt"}))
    assert torch.allclose(encoded.slots.verts, torch.from_numpy(reference.verts), atol=1e-6)


def run_stage(module, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(module.app, list(args))
    text = result.stderr if result.stderr_bytes else result.output
    return result.exit_code, [line for line in text.splitlines() if line.startswith("error:")]


def test_stage_and_report_end_to_end(tiny, tmp_path, monkeypatch):
    raw, frames, phase1 = tiny
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update({"val_sequences": 0, "test_sequences": 0})
    params["video"] = P2.model_dump()
    params["train"] = P1.model_dump()  # the params the phase-one model was trained with
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "models/phase1").mkdir(parents=True)
    shutil.copy(phase1, tmp_path / "models/phase1/model.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    from stages import train_phase2 as stage

    result = CliRunner().invoke(stage.app, ["--frames", str(frames), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models/phase2/model.pt").is_file()
    rows = (tmp_path / "reports/train_phase2/train.csv").read_text().splitlines()
    assert len(rows) == 1 + P2.steps and "forecast_best_m" in rows[0]
    metrics = json.loads((tmp_path / "reports/train_phase2/metrics.json").read_text())
    assert metrics["train"]["steps"] == P2.steps and metrics["train"]["camera"] == "predicted"

    from pipeline.steps.evaluate import phase2_report

    cached = load_cached(frames, [SEQ], CAM, frame_selection(P1))
    out, figures = phase2_report(tmp_path / "models/phase2/model.pt", tmp_path / "models/phase1/model.pt", raw, cached,
                                 CAM, tmp_path / "figures", tmp_path / "forecasts.csv", tmp_path / "camera.csv")
    identity = out["identity"]
    assert set(identity) == {"phase2_carried", "phase2_tracked", "phase1_per_frame_kmeans",
                             "phase1_per_frame_kmeans_tracked"}
    for ids in identity.values():
        assert ids["clip_frames"] == 2 and ids["identity_switches"] >= 0
    # with track_touch_m = 0, track ids relabel each frame one to one: the same partition per frame, only the labels
    # across frames differ (grouping touching slots: tests/models/video/test_object_tracks.py)
    for key in ("tracked_instances", "fg_ari_per_frame"):
        assert identity["phase2_tracked"][key] == identity["phase2_carried"][key]
    delta1 = out["forecast_chamfer_m"]["delta_1"]
    assert delta1["forecasts"] >= 1
    assert delta1["model_best_of_k"] <= min(delta1["model_best_of_1"], delta1["model_most_confident"]) + 1e-9
    assert out["best_of_1"].startswith("guess 0, trained on every clip")  # params.yaml: weight_single_guess 1
    assert {"copy_last", "constant_velocity", "constant_acceleration", "speed_scalings_best_of_2",
            "context_lengths_best_of_2", "target_frame_slots"} <= set(delta1)
    assert out["camera_error"]["pairs"] == 2
    assert out["world_frame"].startswith("camera head refined by ICP")  # params.yaml: camera_refine = icp
    assert out["camera_error_head_only"]["pairs"] == 2
    assert out["camera_error_self_supervised"]["pairs"] == 2  # depth odometry reported beside the head
    import pandas as pd

    table = pd.read_csv(tmp_path / "forecasts.csv")
    assert (table[table.delta == 1].groupby("method").size() == delta1["forecasts"]).all()
    camera = pd.read_csv(tmp_path / "camera.csv")
    assert len(camera) == 3 and camera.drift_m.iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert {p.suffix for p in figures} == {".png", ".gif"} and all(p.is_file() for p in figures)

    # Mismatched models: params.yaml now asks for 4 slots; both consumers name the key and refuse.
    from stages import evaluate

    params["train"]["slots"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for module, args in ((stage, ["--frames", str(frames), "--device", "cpu"]),
                         (evaluate, ["--raw", str(raw), "--frames", str(frames)])):
        code, errors = run_stage(module, *args)
        assert code == 1 and len(errors) == 1, errors
        assert "models/phase1/model.pt: trained with train.slots=3 but params.yaml has 4" in errors[0]


def test_evaluate_on_an_empty_dataset_folder_is_one_line(tmp_path, monkeypatch):
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data/raw").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROTOSCENE_MLFLOW", "off")
    from stages import evaluate

    code, errors = run_stage(evaluate)
    assert code == 1 and errors == ["error: data/raw: no SYNTHIA-SEQS-NN-WEATHER sequence folders (run the download "
                                    "stage first)"]
    assert not (tmp_path / "reports/evaluate").exists()


def test_missing_phase1_model_is_one_line_error(tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    from stages import train_phase2 as stage

    result = CliRunner().invoke(stage.app, ["--phase1", "nowhere/model.pt"])
    assert result.exit_code == 1
    assert "nowhere/model.pt: phase-one model not found" in (result.stderr or result.output)


def test_error_confidence_prefers_the_guess_with_the_lowest_expected_error():
    """Guess 0 wins 60 % of the clips by a hair but misses by 2 m otherwise; guess 1 is always 0.1 m off the
    winner. Fitted on these clips, the ``winner`` logits prefer guess 0 (it wins most often), the ``error`` logits
    guess 1 (expected error 0.5 + 0.1 vs 0.5 * 0.6 + 2.0 * 0.4 m) and equal minus each guess's mean error."""
    from pipeline.train.phase2 import confidence_loss

    wins = torch.arange(100) % 5 < 3  # 60 % of the clips
    errors = torch.stack([torch.where(wins, 0.5, 2.0), torch.where(wins, 0.6, 0.4)], dim=1)  # (B, 2) metres
    winner = errors.argmin(dim=1)
    fitted = {}
    for target in ("winner", "error"):
        logits = torch.zeros(2, requires_grad=True)  # one logit per guess, the same for every clip
        optimiser = torch.optim.SGD([logits], lr=0.5)
        for _ in range(500):
            optimiser.zero_grad()
            confidence_loss(logits.expand(len(errors), 2), errors, winner, target).backward()
            optimiser.step()
        fitted[target] = logits.detach()
    assert fitted["winner"].argmax() == 0
    assert fitted["error"].argmax() == 1
    assert torch.allclose(fitted["error"], -errors.mean(dim=0), atol=1e-4)


def test_correction_bound_and_its_unit_reach_the_forecaster():
    """``video.max_step_m`` and ``video.step_per_second`` of params.yaml become the forecaster's config."""
    from pipeline.models.slots.config import SlotModelConfig
    from pipeline.train.phase2 import video_model_config

    slots = SlotModelConfig()
    for bound, per_second in ((5.0, False), (1.5, True)):
        config = video_model_config(repo_params("video", max_step_m=bound, step_per_second=per_second), slots)
        assert (config.max_step_m, config.step_per_second) == (bound, per_second)


def test_fixed_guesses_reach_the_forecaster_and_are_checked():
    """``video.fixed_guesses`` becomes the forecaster's config; it must leave guess 0 learned and needs best-of-k."""
    from pipeline.config import ParamsError
    from pipeline.models.slots.config import SlotModelConfig
    from pipeline.train.phase2 import video_model_config

    config = video_model_config(repo_params("video", guesses=3, fixed_guesses=[0.0, 1.0]), SlotModelConfig())
    assert config.fixed_guesses == (0.0, 1.0)
    assert video_model_config(repo_params("video", guess0_start_alpha=1.0), SlotModelConfig()).guess0_start_alpha == 1.0
    with pytest.raises(ParamsError, match="at most video.guesses - 1"):
        repo_params("video", guesses=2, fixed_guesses=[0.0, 1.0])
    with pytest.raises(ParamsError, match="needs video.forecast_training = best_of_k"):
        repo_params("video", fixed_guesses=[0.0], forecast_training="grpo")
    with pytest.raises(ParamsError, match="grpo needs video.weight_forecast > 0"):
        repo_params("video", fixed_guesses=[], forecast_training="grpo", weight_forecast=0.0)
    with pytest.raises(ParamsError, match="the forecaster learns nothing"):
        repo_params("video", weight_forecast=0.0, weight_single_guess=0.0)
    sources = repo_params("video", fixed_guesses=[1.0, 0.75], fixed_guess_velocity=["velocity_from", "slots"])
    assert video_model_config(sources, SlotModelConfig()).fixed_guess_velocity == ("velocity_from", "slots")
    with pytest.raises(ParamsError, match="fixed_guess_velocity has 1 entries: one per video.fixed_guesses entry"):
        repo_params("video", fixed_guesses=[0.0, 1.0], fixed_guess_velocity=["slots"])
    without = repo_params("video", fixed_slot_fallback=False)
    assert not video_model_config(without, SlotModelConfig()).fixed_slot_fallback
    # no fixed guesses (GRPO) or the slots' own velocity: the fallback changes nothing, so it is not refused
    assert repo_params("video", fixed_guesses=[], forecast_training="grpo", weight_forecast=1.0).fixed_slot_fallback


def test_winner_takes_all_can_leave_guess0_untrained():
    errors = torch.tensor([[0.1, 0.5, 0.9], [0.7, 0.2, 0.4]], requires_grad=True)  # guess 0 wins row 0, guess 1 row 1
    best, winner = best_of_k(with_guess0_detached(errors))
    assert winner.tolist() == [0, 1]
    torch.testing.assert_close(best, torch.tensor([0.1, 0.2]))
    best.sum().backward()
    torch.testing.assert_close(errors.grad, torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    errors.grad = None
    best_of_k(errors)[0].sum().backward()  # the plain term trains the winner, guess 0 included
    torch.testing.assert_close(errors.grad, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def test_per_module_clip_groups_partition_the_parameters_and_keep_one_module_from_scaling_another():
    model = VideoSlotModel(VideoModelConfig(camera_head=True, prototypes=2, hidden=16, time_features=2),
                           SlotModelConfig(slots=2, prototypes=2, ico_level=1))
    everything = list(model.parameters())
    assert [len(g) for g in clip_groups(model, "global")] == [len(everything)]
    groups = clip_groups(model, "per_module")
    ids = [id(p) for g in groups for p in g]
    assert sorted(ids) == sorted(id(p) for p in everything)  # each parameter in exactly one group
    confidence = {id(p) for p in model.forecaster.confidence.parameters()}
    assert any({id(p) for p in g} == confidence for g in groups)  # the confidence layer alone
    assert len(groups) == 4  # slots, camera head, confidence layer, the rest of the forecaster
    # a huge gradient on the confidence layer: one global norm shrinks the forecaster's small one, per module it stays
    for mode, kept in (("global", False), ("per_module", True)):
        for p in everything:
            p.grad = None
        head = model.forecaster.head.weight
        head.grad = torch.full_like(head, 1e-3)
        model.forecaster.confidence.weight.grad = torch.full_like(model.forecaster.confidence.weight, 1e3)
        for group in clip_groups(model, mode):
            torch.nn.utils.clip_grad_norm_(group, 5.0)
        assert torch.allclose(head.grad, torch.full_like(head, 1e-3)) is kept
        assert float(model.forecaster.confidence.weight.grad.norm()) == pytest.approx(5.0, rel=1e-4)
