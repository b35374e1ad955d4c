"""Pieces several algorithms share: imported, never copied."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterable, Iterator

import torch

# While a seed group's stacked update runs in a thread (offrl.train.seed_group), ``step`` and
# ``soft_update`` hand their work to it: it holds every seed's parameters on a leading axis.
stacked_update = threading.local()


class Adam(torch.optim.Adam):
    """torch's fused Adam (one kernel for all parameters), stepped by ``step(optimizer, loss)`` without
    ``torch.optim``'s per-call bookkeeping. Same update, same ``state_dict``; ``.step()`` still works.
    With ``decoupled_weight_decay`` it is AdamW (torch's ``AdamW`` is this class with that flag)."""

    def apply(self, grads: Iterable[torch.Tensor | None]) -> None:
        group = self.param_groups[0]
        params, kept, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for param, grad in zip(group["params"], grads):
            if grad is None:  # not reached by this loss: left alone, as torch.optim does with p.grad None
                continue
            state = self.state[param]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            params.append(param)
            kept.append(grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        kernel(
            params, kept, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
            weight_decay=group["weight_decay"], eps=group["eps"], maximize=False, grad_scale=None, found_inf=None,
        )


def adam(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0, *, decoupled: bool = False) -> Adam:
    """Adam with the fused kernel on CPU and CUDA; one parameter group. ``decoupled``: AdamW."""
    return Adam(list(params), lr=lr, weight_decay=weight_decay, fused=True, decoupled_weight_decay=decoupled)


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None = None) -> None:
    """One gradient step of ``optimizer``'s parameters on ``loss``: their ``.grad`` is reset, then the fused step.

    ``max_grad_norm`` clips the global gradient norm of those parameters first.
    """
    model = getattr(stacked_update, "model", None)
    if model is not None:
        model.step(optimizer, loss, max_grad_norm)
        return
    apply_gradients(optimizer, loss, max_grad_norm)


def apply_gradients(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None, seed_axis: bool = False) -> None:
    """``step`` itself. With ``seed_axis`` every parameter is stacked over seeds (dim 0) and clipping is per seed."""
    params = optimizer.param_groups[0]["params"]
    for param in params:
        param.grad = None
    loss.backward()
    if max_grad_norm is not None:
        clip_grad_norm([param for param in params if param.grad is not None], max_grad_norm, seed_axis)
    if isinstance(optimizer, Adam):
        optimizer.apply([param.grad for param in params])
    else:
        optimizer.step()
    # Under an autocast with its weight cache (torch's default; offrl.nn.precision.autocast turns it off), the
    # cache keeps one bfloat16 copy of each weight until the autocast exits and does not see the step change
    # the weight in place: a network read again later in the update (IQL's value network, BCQ's VAE, AWAC's and
    # CRR's critic in their advantage weights) would run on its weights from before the step. Dropped here.
    torch.clear_autocast_cache()


@torch.no_grad()
def clip_grad_norm(params: list[torch.Tensor], max_norm: float, seed_axis: bool = False) -> None:
    """Scale the ``.grad`` of ``params`` so their global L2 norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_``; with ``seed_axis``, one norm per seed (dim 0 of every parameter)."""
    if not seed_axis:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    if not params:
        return
    squares = torch.stack([p.grad.pow(2).reshape(len(p.grad), -1).sum(1) for p in params]).sum(0)  # [S]
    scale = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
    for param in params:
        param.grad.mul_(scale.view(-1, *([1] * (param.grad.dim() - 1))))


@torch.no_grad()
def soft_update(target: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) * target + tau * online`` in one foreach kernel."""
    model = getattr(stacked_update, "model", None)
    if model is not None:
        target, online = model.stacked(target), model.stacked(online)
    torch._foreach_lerp_(target, online, tau)


def parameter_lists(target: torch.nn.Module, online: torch.nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Matching parameter lists for ``soft_update`` (Parameter objects survive ``.to(device)``)."""
    return list(target.parameters()), list(online.parameters())


def td_target(rewards: torch.Tensor, terminals: torch.Tensor, discount: float, next_values: torch.Tensor) -> torch.Tensor:
    return rewards + discount * (1.0 - terminals) * next_values


@torch.no_grad()
def policy_td_targets(critic_target, actor, next_features: torch.Tensor, batch, discount: float) -> torch.Tensor:
    """TD targets from the minimum of the target critics at an action the policy samples in the next state."""
    next_q = critic_target(next_features, actor.sample(next_features)).min(dim=0).values
    return td_target(batch.rewards, batch.terminals, discount, next_q)


def critic_loss(critic, features: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The critics' TD regression: the sum over the ensemble of each member's MSE, as TD3's code."""
    q = critic(features, actions)
    loss = (q - targets).pow(2).mean(dim=1).sum()
    return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric squared loss: weight ``expectile`` where diff > 0, ``1 - expectile`` elsewhere."""
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff.pow(2)).mean()


def advantage_weights(advantages: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """``exp(temperature * A)`` clipped above, as in AWR / IQL / AWAC."""
    return torch.exp(temperature * advantages).clamp(max=max_weight)


def cosine_lr(base_lr: float, step_index: int, total_steps: int) -> float:
    """Cosine decay from ``base_lr`` to 0 over ``total_steps``; constant when ``total_steps`` is 0."""
    if total_steps <= 0:
        return base_lr
    progress = min(step_index, total_steps) / total_steps
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def repeat_rows(rows: torch.Tensor, count: int) -> torch.Tensor:
    """Each row ``count`` times in a row, ``[B, ...] -> [B * count, ...]``; reshape results to ``[B, count, ...]``."""
    return rows.repeat_interleave(count, dim=0)


@contextlib.contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) for the block, then back to the module's previous mode."""
    was_training = module.training
    module.train(False)
    try:
        yield
    finally:
        module.train(was_training)
