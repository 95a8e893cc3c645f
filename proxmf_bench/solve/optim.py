r"""``ProxSGD``: a proximal gradient optimizer for the customary torch training loop.

It is ``torch.optim.SGD`` (momentum, dampening, Nesterov; no weight decay) followed by a
proximal operator per parameter group, so constraints and nonsmooth penalties work with
autograd gradients::

    from proxmf_bench.solve.optim import ProxSGD
    from proxmf_bench.solve.prox import prox_nonneg, prox_l1

    opt = ProxSGD([{"params": [W], "prox": prox_nonneg, "lr": 1e-2},
               {"params": [H], "prox": prox_l1, "prox_kwargs": {"lam": 0.1}, "lr": 1e-1}],
              momentum=0.5)
    for _ in range(n_iter):
        opt.zero_grad()
        loss = 0.5 * (Y - W @ H).pow(2).sum()
        loss.backward()
        opt.step()

The arithmetic lives in the functional kernel :func:`prox_sgd`, testable alone (as
``torch.optim.SGD`` keeps its own in ``torch.optim.sgd.sgd``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer

Prox = Callable[..., torch.Tensor]


def prox_sgd(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor | None],
    *,
    lr: float,
    prox: Prox | None,
    prox_kwargs: Mapping[str, Any],
    momentum: float,
    dampening: float,
    nesterov: bool,
) -> None:
    """One proximal gradient update of every tensor in ``params``, in place (see :class:`ProxSGD` for the math).

    ``momentum_buffers[i]`` is ``None`` before the first step with momentum; it is then
    created from the gradient and stored back into the list, which the caller keeps.
    The gradient step is taken in ``param`` itself and ``prox`` is given ``param``: an
    operator that works in place (``BoundProx.apply_``) saves a copy; one that returns a new
    tensor has it copied back.
    """
    for i, (param, grad) in enumerate(zip(params, grads)):
        direction = grad
        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = torch.clone(grad).detach()
                momentum_buffers[i] = buf
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            direction = grad.add(buf, alpha=momentum) if nesterov else buf
        param.add_(direction, alpha=-lr)
        if prox is not None:
            result = prox(param, lr, **prox_kwargs)
            if result is not param:
                param.copy_(result)  # free when result is a view of param's own memory


class ProxSGD(Optimizer):
    r"""Proximal gradient method with optional (Nesterov) momentum.

    For a parameter :math:`\theta` with gradient :math:`g_t`, step :math:`\gamma` (``lr``),
    momentum :math:`\mu`, dampening :math:`\tau` and the group's proximal operator
    :math:`\operatorname{prox}_{\gamma h}` (``prox``):

    .. math::
        \begin{aligned}
        b_t &= \begin{cases} g_t & t = 1 \\ \mu\, b_{t-1} + (1 - \tau)\, g_t & t > 1 \end{cases}
        \qquad
        d_t = \begin{cases} g_t + \mu\, b_t & \text{Nesterov} \\ b_t & \text{otherwise} \end{cases}
        \\
        \theta_t &= \operatorname{prox}_{\gamma h}\!\big(\theta_{t-1} - \gamma\, d_t\big)
                  = \arg\min_z \tfrac12 \|z - \theta_{t-1} + \gamma d_t\|^2 + \gamma\, h(z).
        \end{aligned}

    With :math:`\mu = 0` (the default) :math:`d_t = g_t`: the plain proximal gradient step.
    The momentum recursion is exactly that of ``torch.optim.SGD``.

    Parameters
    ----------
    params : iterable of tensors or of dicts (parameter groups)
        Each group may set its own ``lr``, ``prox``, ``prox_kwargs``, ``momentum``,
        ``dampening`` and ``nesterov``.
    lr : float
        Step size :math:`\gamma`, in ``[0, inf)``.
    prox : callable, optional
        ``prox(X, step, **prox_kwargs) -> X``, e.g. any registered prox operator
        (``proxmf_bench.solve.prox``), or its in-place variant: it is given the parameter
        after the gradient step, which it may overwrite. ``None``: no proximal step.
    prox_kwargs : mapping, optional
        Parameters passed to ``prox``.
    momentum, dampening : float
        As in ``torch.optim.SGD``.
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        prox: Prox | None = None,
        prox_kwargs: Mapping[str, Any] | None = None,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(lr=lr, prox=prox, prox_kwargs=dict(prox_kwargs or {}), momentum=momentum,
                        dampening=dampening, nesterov=nesterov)
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        _check_group(self.param_groups[-1])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As :meth:`torch.optim.Optimizer.zero_grad`, without its profiler label when the
        gradients are set to ``None``: the label costs 10 us a call, as much as a small
        problem's gradient step."""
        if not set_to_none:
            super().zero_grad(set_to_none=False)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, buffers = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("ProxSGD does not support sparse gradients")
                params.append(p)
                grads.append(p.grad)
                buffers.append(self.state[p].get("momentum_buffer"))
            prox_sgd(params, grads, buffers, lr=group["lr"], prox=group["prox"], prox_kwargs=group["prox_kwargs"],
                momentum=group["momentum"], dampening=group["dampening"], nesterov=group["nesterov"])
            if group["momentum"] != 0:
                for p, buf in zip(params, buffers):
                    self.state[p]["momentum_buffer"] = buf
        return loss


def _check_group(group: dict[str, Any]) -> None:
    if not group["lr"] >= 0:
        raise ValueError(f"invalid learning rate: {group['lr']}")
    if not group["momentum"] >= 0:
        raise ValueError(f"invalid momentum value: {group['momentum']}")
    if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    if group["prox"] is not None and not callable(group["prox"]):
        raise TypeError(f"prox must be callable or None, got {type(group['prox']).__name__}")
