"""The shared training loop: schedule shape, resume identity, and resume state outside every model output."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.models.optim import Adam
from pipeline.distributed import DistInfo
from pipeline.train.loop import TrainLoop, WarmupCosine
from tests.curve_rows import Rows

REPO = Path(__file__).parents[2]
CPU = DistInfo(0, 1, 0, torch.device("cpu"))


@pytest.mark.parametrize("floor, progress_first", [(0.0, False), (0.1, True)])
def test_warmup_cosine_shape(floor, progress_first):
    schedule = WarmupCosine(total=100, warmup=10, floor=floor, progress_first=progress_first)
    lrs = [schedule(step, 2.0) for step in range(100)]
    assert lrs[:10] == pytest.approx([2.0 * (s + 1) / 10 for s in range(10)])  # linear warm-up to the base
    assert lrs[10] == pytest.approx(2.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # then decreasing
    halfway = 10 + 45  # cosine: half-way between base and floor
    assert lrs[halfway] == pytest.approx(2.0 * (floor + (1 - floor) * 0.5), rel=1e-12)
    assert lrs[-1] == pytest.approx(2.0 * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 89 / 90))))


def test_the_two_angle_roundings_differ_only_in_the_last_bit():
    plain, laq = WarmupCosine(800, 40), WarmupCosine(800, 40, progress_first=True)
    pairs = [(plain(s, 3e-4), laq(s, 3e-4)) for s in range(800)]
    assert any(a != b for a, b in pairs)  # why each loop keeps its own (bit-identical runs)
    assert all(abs(a - b) <= 1e-15 * 3e-4 for a, b in pairs)


def _loop(state: Path, identity: str, seed: int = 0, **kw) -> TrainLoop:
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = Adam(model.parameters(), lr=0.1)
    return TrainLoop("test", model, optimizer, steps=6, schedule=WarmupCosine(6, 2), state_path=state,
                     identity=identity, checkpoint_every=4, info=CPU, progress=False, **kw)


def _train(loop: TrainLoop, stop_after: int | None = None) -> None:
    for step in loop.steps(stop_after):
        x = torch.randn(5, 3)  # the global RNG: restored on resume
        loss = loop.model(x).square().mean()
        loop.optimizer.zero_grad()
        loss.backward()
        loop.optimizer.step()
        loop.log("train", step, {"loss": loss.item(), "lr": loop.optimizer.param_groups[0]["lr"]})


def test_resume_replays_curves_restores_rng_and_ignores_other_identities(tmp_path):
    full = _loop(tmp_path / "a/state.pt", "x", run=Rows())
    _train(full)
    full.finish(tmp_path / "a/model.pt", lambda: {"w": full.model.weight.detach()})
    assert not (tmp_path / "a/state.pt").exists() and (tmp_path / "a").is_dir()
    part = _loop(tmp_path / "b/state.pt", "x")
    _train(part, stop_after=3)
    assert part.stopped_at == 3 and (tmp_path / "b/state.pt").is_file()
    resumed = _loop(tmp_path / "b/state.pt", "x", seed=99, run=Rows())  # another process: other RNG state
    assert resumed.start == 3
    _train(resumed)
    assert resumed.run.rows == full.run.rows and len(full.run.rows) == 6
    assert [r[2]["lr"] for r in full.run.rows] == [WarmupCosine(6, 2)(s, 0.1) for s in range(6)]
    assert torch.equal(resumed.model.weight, full.model.weight)
    other = _loop(tmp_path / "b/state.pt", "y")
    assert other.start == 0 and other.curves == {}


def test_checkpoint_cadence_saves_the_next_step(tmp_path):
    loop = _loop(tmp_path / "state.pt", "x")
    for step in loop.steps():
        if step == 4:  # after step 3: 4 steps done, a multiple of checkpoint_every
            assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 4
    assert loop.due(0, 3) and not loop.due(1, 3) and loop.due(3, 3) and loop.due(5, 3)  # 0, 3 and the last
    assert loop.due(2, 3, offset=1) and not loop.due(3, 3, offset=1)  # after 3 steps done


@pytest.mark.parametrize("stage", ["train_phase1", "train_phase2", "laq"])
def test_resume_state_is_a_persisted_output_outside_the_model_output(stage):
    """DVC deletes a stage's outputs before rerunning it, except ``persist: true`` ones: the resume state must
    sit in a persisted, uncached output and in no other output of the stage."""
    module = __import__(f"stages.{stage}", fromlist=["main"])
    state = Path(inspect.signature(module.main).parameters["state"].default.default)
    outs = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["outs"]
    holders = []
    for out in outs:
        name, options = (out, {}) if isinstance(out, str) else next(iter(out.items()))
        if state.is_relative_to(name):
            holders.append((name, options))
    assert holders == [(f"checkpoints/{stage.removeprefix('train_')}", {"persist": True, "cache": False})]


class FactRows(Rows):
    """Rows that also keep run facts, as ``StageRun.log_run_facts`` receives them."""

    def __init__(self) -> None:
        super().__init__()
        self.facts: dict = {}

    def log_run_facts(self, facts: dict) -> None:
        self.facts.update(facts)


def test_data_clock_splits_each_step_at_the_first_forward_and_leaves_no_hook(tmp_path, monkeypatch):
    now = [100.0]

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            return now[0]

    monkeypatch.setattr("pipeline.train.loop.time", Clock)
    loop = _loop(tmp_path / "state.pt", "x", run=FactRows())
    reference = _loop(tmp_path / "other.pt", "x")  # same seed: same initial weights
    torch.manual_seed(1)
    for step in loop.steps():
        now[0] += 2.0  # building the batch
        x = torch.randn(5, 3)
        loss = loop.model(x).square().mean()  # first forward: the split
        now[0] += 3.0  # forward, backward, step
        loss = loss + 0 * loop.model(x).sum()  # a second forward in the same step moves nothing
        loop.optimizer.zero_grad()
        loss.backward()
        loop.optimizer.step()
        now[0] += 1.0
    assert loop.run.facts["train_loop"] == {"data_seconds": 12.0, "compute_seconds": 24.0, "data_share": 0.3333}
    assert all(not m._forward_pre_hooks for m in loop.model.modules())  # noqa: SLF001
    torch.manual_seed(1)
    for step in range(6):  # the same steps without the loop's clock: bit-identical weights
        for i, group in enumerate(reference.optimizer.param_groups):
            group["lr"] = reference.learning_rate(step, i)
        x = torch.randn(5, 3)
        loss = reference.model(x).square().mean()
        loss = loss + 0 * reference.model(x).sum()
        reference.optimizer.zero_grad()
        loss.backward()
        reference.optimizer.step()
    assert torch.equal(loop.model.weight, reference.model.weight)
