"""Wide two-layer ReLU networks and their neural tangent kernel (NTK), for the KRR-as-wide-network check.

Network in NTK parameterisation, parameters ``W`` (``(width, d)``) and ``a`` (``(width,)``), all
standard normal at initialisation: ``f(x) = aᵀ relu(W x / sqrt(d)) / sqrt(width)``.
Under full-batch gradient descent on ``½ Σ (f(x_i) − y_i)²`` with step ``eta``, a wide network
follows its linearisation, whose predictions after ``t`` steps are, with ``Θ`` the empirical NTK
at initialisation,
``f_t(x) = f_0(x) − Θ(x, X) Θ(X, X)^{-1} (I − (I − eta Θ(X, X))^t) (f_0(X) − y)``:
kernel regression with the NTK. The gap between network and kernel shrinks like ``width^{-1/2}``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call, jacrev


class TwoLayerReLU(torch.nn.Module):
    """``f(x) = aᵀ relu(W x / sqrt(d)) / sqrt(width)``, NTK parameterisation."""

    def __init__(self, d: int, width: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.W = torch.nn.Parameter(torch.randn(width, d, generator=generator, dtype=dtype))
        self.a = torch.nn.Parameter(torch.randn(width, generator=generator, dtype=dtype))
        self.d, self.width = d, width

    def forward(self, x: Tensor) -> Tensor:
        """Scalar outputs, shape ``(B,)``."""
        h = torch.relu(x @ self.W.T / self.d**0.5)
        return h @ self.a / self.width**0.5


def empirical_ntk(model: torch.nn.Module, x1: Tensor, x2: Tensor) -> Tensor:
    """``Θ(x1, x2) = J(x1) J(x2)ᵀ`` with ``J`` the parameter Jacobian of the scalar output; ``(B1, B2)``."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    jac = jacrev(lambda p, x: functional_call(model, p, (x,)))
    j1, j2 = jac(params, x1), jac(params, x2)
    return sum(j1[k].reshape(len(x1), -1) @ j2[k].reshape(len(x2), -1).T for k in params)


def train_vs_kernel(X: Tensor, y: Tensor, x_test: Tensor, width: int, steps: int, seed: int) -> dict[str, float]:
    """Train a :class:`TwoLayerReLU` by full-batch GD and compare with NTK kernel regression.

    The step is ``eta = 1 / λ_max(Θ(X, X))``. Returns the relative L2 gap between the trained
    network and the kernel prediction on ``x_test``, and the relative training residual reached.
    """
    gen = torch.Generator().manual_seed(seed)
    net = TwoLayerReLU(X.shape[1], width, generator=gen, dtype=X.dtype)
    theta_xx = empirical_ntk(net, X, X)
    theta_tx = empirical_ntk(net, x_test, X)
    eta = 1.0 / float(torch.linalg.eigvalsh(theta_xx)[-1])
    with torch.no_grad():
        f0_train, f0_test = net(X), net(x_test)
    decay = torch.linalg.matrix_power(torch.eye(len(X), dtype=X.dtype) - eta * theta_xx, steps)
    kernel_test = f0_test - theta_tx @ torch.linalg.solve(theta_xx, (torch.eye(len(X), dtype=X.dtype) - decay) @ (f0_train - y))
    opt = torch.optim.SGD(net.parameters(), lr=eta)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((net(X) - y) ** 2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        net_test, net_train = net(x_test), net(X)
    return {
        "width": width,
        "rel_gap": float((net_test - kernel_test).norm() / kernel_test.norm()),
        "train_residual": float((net_train - y).norm() / y.norm()),
    }
