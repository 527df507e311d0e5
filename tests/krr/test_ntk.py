import torch
from torch.func import functional_call, jacrev

from poisoncurv.krr.ntk import TwoLayerReLU, empirical_ntk, train_vs_kernel


def test_empirical_ntk_is_jacobian_gram():
    net = TwoLayerReLU(3, 50, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 3)
    params = dict(net.named_parameters())
    J = jacrev(lambda p: functional_call(net, p, (x,)))(params)
    flat = torch.cat([J[k].reshape(4, -1) for k in params], 1)
    torch.testing.assert_close(empirical_ntk(net, x, x), flat @ flat.T, rtol=1e-12, atol=1e-12)


def test_wide_network_tracks_kernel_regression():
    X = torch.nn.functional.normalize(torch.randn(8, 3), dim=1)
    y, xt = torch.sin(2 * X[:, 0]), torch.nn.functional.normalize(torch.randn(10, 3), dim=1)
    narrow = sum(train_vs_kernel(X, y, xt, 32, 100, s)["rel_gap"] for s in range(3))
    wide = sum(train_vs_kernel(X, y, xt, 4096, 100, s)["rel_gap"] for s in range(3))
    assert wide < 0.5 * narrow
    assert wide / 3 < 0.05
