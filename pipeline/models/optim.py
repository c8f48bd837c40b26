"""Adam as a plain class: the arithmetic of ``torch.optim.Adam`` without ``torch.optim.Optimizer``.

Why not ``torch.optim.Adam``: constructing any ``torch.optim.Optimizer`` (and every ``step()``) imports
``torch._dynamo`` through the base class's compile guards, ~2.5 s per training process on our 2-core CPUs,
which is a large share of a short stage (README, "Where the time goes"). This class does the same element-wise
updates in the same order as torch's single-tensor Adam (the CPU default: ``foreach`` is only chosen for CUDA
tensors), so on the CPU a run is bit-identical to one with ``torch.optim.Adam``
(``tests/models/test_optim.py`` checks parameters and state bit for bit over many steps and groups).

What it has of the optimizer interface, and all that the training loops use: ``param_groups`` (a list of dicts
with ``params`` and ``lr``; the loops rewrite ``lr`` every step), ``zero_grad``, ``step``, ``state_dict`` /
``load_state_dict`` (plain tensors, numbers and lists, so checkpoints load with ``weights_only=True``).
No amsgrad, no maximize, no closures, no complex parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

ParamsLike = Iterable[Tensor] | Iterable[dict[str, Any]]


class Adam:
    """Adam (Kingma & Ba) with L2 ``weight_decay`` added to the gradient, as ``torch.optim.Adam``.

    ``params``: tensors, or dicts with ``params`` and any of ``lr``, ``betas``, ``eps``, ``weight_decay``
    (parameter groups). State per parameter: ``step`` (int), ``exp_avg`` and ``exp_avg_sq`` (its shape).
    """

    def __init__(self, params: ParamsLike, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adam: invalid lr={lr}, betas={betas}, eps={eps} or weight_decay={weight_decay}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        items = list(params)
        if not items:
            raise ValueError("Adam: got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[dict[str, Any]] = []
        seen: set[int] = set()
        for group in groups:
            tensors = list(group["params"])
            if any(id(p) in seen for p in tensors):
                raise ValueError("Adam: a parameter appears in more than one group")
            seen.update(id(p) for p in tensors)
            self.param_groups.append({**defaults, **group, "params": tensors})
        self.state: dict[Tensor, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient (``None``), or zero it in place with ``set_to_none=False``."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (the others and their state are left alone)."""
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Adam does not support sparse gradients")
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {"step": 0,
                                             "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                             "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
                state["step"] += 1
                grad = p.grad if decay == 0 else p.grad.add(p, alpha=decay)
                exp_avg, exp_avg_sq, step = state["exp_avg"], state["exp_avg_sq"], state["step"]
                # The order of torch's `_single_tensor_adam` (non-capturable branch), so that results match bit
                # for bit: lerp for the first moment, mul + addcmul for the second, Python-float corrections.
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = lr / (1 - beta1 ** step)
                denom = (exp_avg_sq.sqrt() / (1 - beta2 ** step) ** 0.5).add_(eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [...]}``, parameters numbered across the groups in order."""
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        state = {index[id(p)]: {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in s.items()}
                 for p, s in self.state.items()}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "betas": list(g["betas"]),
                   "params": [index[id(p)] for p in g["params"]]} for g in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output onto the same parameters (same groups and sizes, else ValueError)."""
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("Adam state: its parameter groups do not match this optimizer's")
        params = [p for g in self.param_groups for p in g["params"]]
        for mine, saved in zip(self.param_groups, groups):
            mine.update({k: (tuple(v) if k == "betas" else v) for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, saved in state_dict["state"].items():
            p = params[int(i)]
            moments = {k: saved[k].to(device=p.device, dtype=p.dtype) for k in ("exp_avg", "exp_avg_sq")}
            if any(m.shape != p.shape for m in moments.values()):
                raise ValueError(f"Adam state: parameter {i} has shape {tuple(p.shape)}, its saved moments "
                                 f"{tuple(moments['exp_avg'].shape)}")
            self.state[p] = {"step": int(saved["step"]), **moments}
