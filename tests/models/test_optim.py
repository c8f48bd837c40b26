"""Our Adam against torch.optim.Adam: the same bits, step after step, and a state that survives a checkpoint."""

from __future__ import annotations

import io
import sys
import subprocess

import pytest
import torch

from pipeline.models.optim import Adam


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _groups(net: torch.nn.Module, lr: float) -> list[dict]:
    first, second = list(net[0].parameters()), list(net[2].parameters())
    return [{"params": first, "lr": lr}, {"params": second, "lr": lr * 3, "betas": (0.8, 0.99), "eps": 1e-6}]


def _train(net: torch.nn.Module, optimizer, steps: int, seed: int, start: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for step in range(start + steps):
        x = torch.randn(32, 5, generator=generator)
        if step < start:
            continue
        for i, group in enumerate(optimizer.param_groups):  # a schedule rewriting lr, as the training loops do
            group["lr"] = 1e-2 * (i + 1) * (1 + step % 7) / 7
        optimizer.zero_grad(set_to_none=True)
        loss = net(x).pow(2).mean() + (net(x)[:, 0] * x[:, 1]).mean()
        loss.backward()
        if step % 5 == 3:  # a parameter without a gradient this step keeps its state
            net[2].bias.grad = None
        optimizer.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_matches_torch_adam_bit_for_bit(weight_decay: float) -> None:
    ours_net, torch_net = _net(0), _net(0)
    ours = Adam(_groups(ours_net, 1e-2), weight_decay=weight_decay)
    reference = torch.optim.Adam(_groups(torch_net, 1e-2), weight_decay=weight_decay, foreach=False)
    _train(ours_net, ours, 60, seed=1)
    _train(torch_net, reference, 60, seed=1)
    for a, b in zip(ours_net.parameters(), torch_net.parameters()):
        assert torch.equal(a, b)
        assert torch.equal(ours.state[a]["exp_avg"], reference.state[b]["exp_avg"])
        assert torch.equal(ours.state[a]["exp_avg_sq"], reference.state[b]["exp_avg_sq"])
        assert ours.state[a]["step"] == int(reference.state[b]["step"])
    assert ours.state[ours_net[2].bias]["step"] < ours.state[ours_net[2].weight]["step"]


def test_adam_default_on_cpu_is_torch_default() -> None:
    """torch's own default on CPU tensors (no ``foreach`` given) is the path we copy."""
    ours_net, torch_net = _net(3), _net(3)
    _train(ours_net, Adam(ours_net.parameters(), lr=1e-2, betas=(0.9, 0.99)), 20, seed=2)
    _train(torch_net, torch.optim.Adam(torch_net.parameters(), lr=1e-2, betas=(0.9, 0.99)), 20, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(ours_net.parameters(), torch_net.parameters()))


def test_state_dict_round_trip_resumes_bit_identically_through_a_weights_only_checkpoint() -> None:
    straight_net, resumed_net = _net(4), _net(4)
    straight = Adam(_groups(straight_net, 1e-2))
    _train(straight_net, straight, 30, seed=5)

    first = Adam(_groups(resumed_net, 1e-2))
    _train(resumed_net, first, 12, seed=5)
    buffer = io.BytesIO()
    torch.save({"model": resumed_net.state_dict(), "optimizer": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_net = _net(99)
    resumed_net.load_state_dict(saved["model"])
    second = Adam(_groups(resumed_net, 0.5))
    second.load_state_dict(saved["optimizer"])
    assert second.param_groups[1]["betas"] == (0.8, 0.99) and second.param_groups[1]["eps"] == 1e-6
    _train(resumed_net, second, 18, seed=5, start=12)
    assert all(torch.equal(a, b) for a, b in zip(straight_net.parameters(), resumed_net.parameters()))


def test_load_state_dict_rejects_other_groups_and_shapes() -> None:
    net = _net(0)
    optimizer = Adam(_groups(net, 1e-2))
    _train(net, optimizer, 2, seed=0)
    with pytest.raises(ValueError, match="groups"):
        Adam(net.parameters()).load_state_dict(optimizer.state_dict())
    other = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    with pytest.raises(ValueError, match="shape"):
        Adam(_groups(other, 1e-2)).load_state_dict(optimizer.state_dict())


def test_bad_arguments_are_refused() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="lr"):
        Adam([p], lr=-1.0)
    with pytest.raises(ValueError, match="empty"):
        Adam([])
    with pytest.raises(ValueError, match="more than one group"):
        Adam([{"params": [p]}, {"params": [p]}])


def test_stepping_does_not_import_torch_dynamo() -> None:
    """The reason the class exists: torch.optim imports torch._dynamo (seconds) on first use; ours must not."""
    code = ("import sys, torch\n"
            "from pipeline.models.optim import Adam\n"
            "p = torch.nn.Parameter(torch.ones(3)); o = Adam([p])\n"
            "p.sum().backward(); o.step(); o.zero_grad(); o.load_state_dict(o.state_dict())\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
