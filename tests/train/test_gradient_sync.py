"""CPU ranks average gradients without DistributedDataParallel (TrainLoop.wrap / sync_gradients): the same bits
as DDP's averaging, checked against DDP itself in two forked gloo ranks."""

from __future__ import annotations

import copy
import gc
import json
from pathlib import Path

import torch

from pipeline import distributed
from pipeline.models.optim import Adam
from pipeline.train.loop import TrainLoop, average_gradients


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    model.register_parameter("frozen", torch.nn.Parameter(torch.ones(3), requires_grad=False))
    return model


def _grads_both_ways(out: str) -> None:
    info = distributed.init_distributed("cpu")
    plain = _model()
    wrapped = torch.nn.parallel.DistributedDataParallel(copy.deepcopy(plain))
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(10 + info.rank)) * (1 + 100 * info.rank)
    for net in (plain, wrapped):
        (net(x).sin().sum() * 1e-3).backward()
    local = [p.grad.clone() for p in plain.parameters() if p.requires_grad]
    average_gradients(plain)
    same = all(torch.equal(a.grad, b.grad) for a, b in zip(plain.parameters(), wrapped.module.parameters())
               if a.requires_grad)
    changed = any(not torch.equal(g, p.grad) for g, p in zip(local, (p for p in plain.parameters() if p.requires_grad)))
    record = {"same_as_ddp": same, "changed": changed, "frozen_grad": plain.frozen.grad is not None}
    Path(out, f"rank{info.rank}.json").write_text(json.dumps(record))
    # Free DDP while the process group lives: were its last reference dropped after leave_cpu_ranks, the group's
    # destructor would join gloo's work thread while holding the GIL that thread waits for (a hang seen in CI).
    del wrapped
    gc.collect()
    if info.is_main:
        distributed.leave_cpu_ranks()


def test_average_gradients_equals_ddp_bit_for_bit(tmp_path):
    distributed.run_cpu_ranks(_grads_both_ways, 2, str(tmp_path))
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["changed"] for r in records)  # the ranks' gradients differed before averaging
    assert all(r["same_as_ddp"] for r in records)
    assert not any(r["frozen_grad"] for r in records)  # a frozen parameter gets no gradient


def test_one_process_leaves_gradients_alone():
    model = _model()
    model(torch.randn(5, 6)).sum().backward()
    before = [p.grad for p in model.parameters()]
    average_gradients(model)
    assert all(a is b for a, b in zip(before, (p.grad for p in model.parameters())))


def _wrap_on_ranks(out: str) -> None:
    info = distributed.init_distributed("cpu")
    torch.manual_seed(info.rank)  # ranks built differently on purpose
    model = torch.nn.Linear(4, 2)
    own = model.weight.detach().clone()
    loop = TrainLoop("t", model, Adam(model.parameters()), steps=1, schedule=lambda step, base: base,
                     state_path=Path(out, f"state{info.rank}.pt"), identity="t", checkpoint_every=0, info=info,
                     progress=False, resume=False)
    net = loop.wrap()
    torch.save({"own": own, "after": net.weight.detach().clone(), "wrapped": net is not model},
               Path(out, f"rank{info.rank}.pt"))
    if info.is_main:
        distributed.leave_cpu_ranks()


def test_cpu_ranks_start_from_rank_zero_parameters_without_ddp(tmp_path):
    distributed.run_cpu_ranks(_wrap_on_ranks, 2, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(r0["own"], r1["own"])
    assert torch.equal(r1["after"], r0["own"]) and torch.equal(r0["after"], r0["own"])
    assert not r0["wrapped"] and not r1["wrapped"]  # no DistributedDataParallel on the CPU
