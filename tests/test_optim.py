"""proxmf_bench.solve.optim.ProxSGD: the functional kernel alone, then the optimizer in a torch loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from proxmf_bench.solve.optim import ProxSGD, prox_sgd
from proxmf_bench.solve.prox import prox_l1, prox_nonneg, prox_simplex


def _kernel(params, grads, buffers, **options):
    defaults = dict(lr=0.1, prox=None, prox_kwargs={}, momentum=0.0, dampening=0.0, nesterov=False)
    prox_sgd(params, grads, buffers, **{**defaults, **options})


def test_kernel_plain_step_is_prox_of_gradient_step():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    g = torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64)
    _kernel([x], [g], [None], lr=0.5, prox=prox_l1, prox_kwargs={"lam": 1.0})
    # v = x - 0.5 g = [-0.5, -2.5, 1.0]; soft threshold at 0.5 * 1.0
    torch.testing.assert_close(x, torch.tensor([0.0, -2.0, 0.5], dtype=torch.float64))


def test_kernel_momentum_buffers_are_created_then_updated():
    x = torch.zeros(2, dtype=torch.float64)
    g = torch.tensor([1.0, 2.0], dtype=torch.float64)
    buffers = [None]
    _kernel([x], [g], buffers, lr=1.0, momentum=0.9, dampening=0.5)
    torch.testing.assert_close(buffers[0], g)  # b_1 = g_1 (no dampening on the first step)
    torch.testing.assert_close(x, -g)
    _kernel([x], [g], buffers, lr=1.0, momentum=0.9, dampening=0.5)
    torch.testing.assert_close(buffers[0], 0.9 * g + 0.5 * g)
    torch.testing.assert_close(x, -g - 1.4 * g)


@pytest.mark.parametrize("options", [
    {}, {"momentum": 0.9}, {"momentum": 0.5, "dampening": 0.3}, {"momentum": 0.8, "nesterov": True},
])
def test_without_prox_it_matches_torch_sgd(options):
    torch.manual_seed(0)
    A = torch.randn(8, 4, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64)
    x0 = torch.randn(4, dtype=torch.float64)
    trajectories = []
    for cls in (ProxSGD, torch.optim.SGD):
        x = x0.clone().requires_grad_(True)
        opt = cls([x], lr=0.02, **options)
        for _ in range(15):
            opt.zero_grad()
            (0.5 * (A @ x - b).pow(2).sum()).backward()
            opt.step()
        trajectories.append(x.detach())
    torch.testing.assert_close(trajectories[0], trajectories[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"momentum": 0.5}, {"momentum": 0.5, "nesterov": True}])
def test_solves_nonnegative_least_squares_in_the_customary_loop(options):
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(30, generator=gen, dtype=torch.float64)
    expected, _ = nnls(A.numpy(), b.numpy())
    assert (expected == 0).any() and (expected > 0).any()  # the constraint is active
    x = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    lr = 1.0 / float(torch.linalg.eigvalsh(A.T @ A)[-1])
    opt = ProxSGD([x], lr=lr, prox=prox_nonneg, **options)
    for _ in range(500):
        opt.zero_grad()
        loss = 0.5 * (A @ x - b).pow(2).sum()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(x.detach().numpy(), expected, atol=1e-8)


def test_parameter_groups_carry_their_own_prox_and_step():
    W = torch.tensor([[-1.0, 2.0], [3.0, -4.0]], requires_grad=True)
    H = torch.tensor([[0.2, 0.9], [0.5, 0.3]], requires_grad=True)
    opt = ProxSGD([{"params": [W], "prox": prox_nonneg, "lr": 0.1},
               {"params": [H], "prox": prox_simplex, "prox_kwargs": {"s": 1.0}, "lr": 0.01}])
    opt.zero_grad()
    (W * H).sum().backward()
    W_expected = prox_nonneg(W.detach() - 0.1 * H.detach(), 0.1)
    H_expected = prox_simplex(H.detach() - 0.01 * W.detach(), 0.01, s=1.0)
    opt.step()
    torch.testing.assert_close(W.detach(), W_expected)
    torch.testing.assert_close(H.detach(), H_expected)
    assert W.grad is not None and H.detach().sum(0).allclose(torch.ones(2))


def test_closure_parameters_without_gradient_and_state():
    x = torch.ones(3, requires_grad=True)
    y = torch.ones(3, requires_grad=True)  # never gets a gradient: left alone
    opt = ProxSGD([x, y], lr=0.5, prox=prox_nonneg, momentum=0.9)

    def closure():
        opt.zero_grad()
        loss = (x * torch.tensor([1.0, 2.0, 3.0])).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure).detach()) == pytest.approx(6.0)
    torch.testing.assert_close(x.detach(), torch.tensor([0.5, 0.0, 0.0]))
    torch.testing.assert_close(y.detach(), torch.ones(3))
    assert "momentum_buffer" in opt.state[x] and y not in opt.state


def test_invalid_settings_are_rejected():
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="learning rate"):
        ProxSGD([x], lr=-1.0)
    with pytest.raises(ValueError, match="Nesterov"):
        ProxSGD([x], lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="callable"):
        ProxSGD([x], lr=0.1, prox="nonneg")


def test_an_in_place_prox_gives_what_the_out_of_place_one_gives():
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    g = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    results = []
    for prox in (prox_nonneg, lambda X, step: X.clamp_min_(0), lambda X, step: prox_nonneg(X.T, step).T):
        x = x0.clone()
        _kernel([x], [g], [None], lr=0.3, prox=prox)
        results.append(x)
    expected = (x0 - 0.3 * g).clamp_min(0)  # the definition: project the gradient step
    torch.testing.assert_close(results[0], expected, rtol=1e-15, atol=1e-15)
    for x in results[1:]:  # the same step, then the same clamp: bit for bit
        assert torch.equal(x, results[0])


def test_zero_grad_sets_to_none_or_zeroes():
    x = torch.ones(3, requires_grad=True)
    opt = ProxSGD([x], lr=0.1)
    (2 * x).sum().backward()
    opt.zero_grad(set_to_none=False)
    torch.testing.assert_close(x.grad, torch.zeros(3))
    (2 * x).sum().backward()
    opt.zero_grad()
    assert x.grad is None
