"""ParAE parametric bottleneck (Eq. 4-11) against numpy/scipy references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp as np_logsumexp
from scipy.stats import multivariate_normal

from ssl3d.methods.losses.gmm import (
    GMMParams,
    ParametricBottleneckLoss,
    gmm_log_likelihood,
    gmm_parameters,
)

torch.set_num_threads(1)


def _numpy_parameters(points, logits, eps):
    """Eq. 4-7 written out with loops over partitions."""
    b, n, j = logits.shape
    pi, mu, sigma = np.zeros((b, j)), np.zeros((b, j, 3)), np.zeros((b, j, 3, 3))
    for bi in range(b):
        e = np.exp(logits[bi] - logits[bi].max(axis=1, keepdims=True))
        gamma = e / e.sum(axis=1, keepdims=True)
        for ji in range(j):
            w = gamma[:, ji]
            pi[bi, ji] = w.sum() / n
            mu[bi, ji] = (w[:, None] * points[bi]).sum(0) / (n * pi[bi, ji])
            acc = np.zeros((3, 3))
            for i in range(n):
                d = points[bi, i] - mu[bi, ji]
                acc += w[i] * np.outer(d, d)
            sigma[bi, ji] = acc / (n * pi[bi, ji]) + eps * np.eye(3)
    return pi, mu, sigma


def _scipy_log_likelihood(points, pi, mu, sigma):
    b, n, _ = points.shape
    out = np.zeros((b, n))
    for bi in range(b):
        comps = [
            np.log(pi[bi, ji]) + multivariate_normal(mu[bi, ji], sigma[bi, ji]).logpdf(points[bi])
            for ji in range(pi.shape[1])
        ]
        out[bi] = np_logsumexp(np.stack(comps), axis=0)
    return out


def _random_case(seed, b=2, n=50, j=4):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(b, n, 3)) * np.array([0.5, 0.3, 0.2])
    logits = rng.normal(scale=2.0, size=(b, n, j))
    return points, logits


def test_gmm_parameters_match_numpy_reference():
    points, logits = _random_case(0, b=2, n=40, j=5)
    params = gmm_parameters(torch.tensor(points), torch.tensor(logits), eps=1e-4)
    pi, mu, sigma = _numpy_parameters(points, logits, 1e-4)
    np.testing.assert_allclose(params.pi.numpy(), pi, rtol=1e-10)
    np.testing.assert_allclose(params.pi.sum(1).numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(params.mu.numpy(), mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(params.sigma.numpy(), sigma, rtol=1e-10, atol=1e-12)
    s = params.sigma.numpy()
    np.testing.assert_array_equal(s, np.swapaxes(s, -1, -2))
    assert (np.linalg.eigvalsh(s) > 0).all()


def test_single_partition_is_mean_and_population_covariance():
    points, _ = _random_case(1, b=1, n=30, j=1)
    params = gmm_parameters(torch.tensor(points), torch.zeros(1, 30, 1, dtype=torch.float64), eps=0.0)
    assert params.pi.item() == 1.0
    np.testing.assert_allclose(params.mu[0, 0].numpy(), points[0].mean(0), rtol=1e-12)
    np.testing.assert_allclose(params.sigma[0, 0].numpy(), np.cov(points[0].T, bias=True), rtol=1e-10)


def test_hard_partitions_recover_cluster_statistics():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(10, 3)) * 0.1 + np.array([0.5, 0.0, 0.0])
    c = rng.normal(size=(30, 3)) * 0.1 - np.array([0.5, 0.0, 0.0])
    points = torch.tensor(np.concatenate([a, c])[None])
    logits = torch.full((1, 40, 2), -50.0, dtype=torch.float64)
    logits[0, :10, 0] = 50.0
    logits[0, 10:, 1] = 50.0
    params = gmm_parameters(points, logits, eps=0.0)
    np.testing.assert_allclose(params.pi[0].numpy(), [0.25, 0.75], rtol=1e-12)
    np.testing.assert_allclose(params.mu[0].numpy(), [a.mean(0), c.mean(0)], rtol=1e-10)
    np.testing.assert_allclose(params.sigma[0, 1].numpy(), np.cov(c.T, bias=True), rtol=1e-10)


def test_log_likelihood_matches_scipy_mixture():
    points, logits = _random_case(3, b=2, n=50, j=4)
    params = gmm_parameters(torch.tensor(points), torch.tensor(logits))
    ll = gmm_log_likelihood(torch.tensor(points), params)
    assert ll.shape == (2, 50)
    ref = _scipy_log_likelihood(points, params.pi.numpy(), params.mu.numpy(), params.sigma.numpy())
    np.testing.assert_allclose(ll.numpy(), ref, rtol=1e-5)
    # float32 end to end stays close to the float64 reference
    params32 = gmm_parameters(torch.tensor(points).float(), torch.tensor(logits).float())
    ll32 = gmm_log_likelihood(torch.tensor(points).float(), params32)
    assert ll32.dtype == torch.float32
    np.testing.assert_allclose(ll32.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_log_likelihood_with_arbitrary_parameters():
    rng = np.random.default_rng(4)
    b, n, j = 2, 20, 3
    points = rng.normal(size=(b, n, 3))
    pi = rng.dirichlet(np.ones(j), size=b)
    mu = rng.normal(size=(b, j, 3))
    a = rng.normal(size=(b, j, 3, 3))
    sigma = a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(3)
    params = GMMParams(torch.tensor(pi), torch.tensor(mu), torch.tensor(sigma))
    ll = gmm_log_likelihood(torch.tensor(points), params)
    np.testing.assert_allclose(ll.numpy(), _scipy_log_likelihood(points, pi, mu, sigma), rtol=1e-5)


def test_loss_is_negative_mean_log_likelihood_of_the_same_points():
    points, logits = _random_case(5, b=2, n=50, j=4)
    pi, mu, sigma = _numpy_parameters(points, logits, 1e-4)
    ref = -_scipy_log_likelihood(points, pi, mu, sigma)
    p, s = torch.tensor(points), torch.tensor(logits)
    assert ParametricBottleneckLoss()(p, s).item() == pytest.approx(ref.mean(), rel=1e-6)
    summed = ParametricBottleneckLoss(reduction="sum")(p, s)
    assert summed.item() == pytest.approx(ref.sum(1).mean(), rel=1e-6)
    np.testing.assert_allclose(ParametricBottleneckLoss(reduction="none")(p, s).numpy(), ref, rtol=1e-6)
    perm = torch.randperm(50)
    shuffled = ParametricBottleneckLoss()(p[:, perm], s[:, perm])
    assert shuffled.item() == pytest.approx(ref.mean(), rel=1e-6)


@pytest.mark.parametrize("empty_logit", [-30.0, -1e4])
def test_gradients_finite_with_nearly_empty_partition(empty_logit):
    torch.manual_seed(0)
    points = torch.randn(2, 64, 3)
    logits = torch.randn(2, 64, 4)
    logits[..., 2] = empty_logit
    logits.requires_grad_()
    loss = ParametricBottleneckLoss()(points, logits)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    params = gmm_parameters(points, logits.detach())
    assert torch.isfinite(gmm_log_likelihood(points, params)).all()


def test_gradients_finite_when_all_points_coincide():
    points = torch.full((1, 16, 3), 0.25, requires_grad=True)
    logits = torch.randn(1, 16, 4, requires_grad=True)
    loss = ParametricBottleneckLoss(eps=1e-4)(points, logits)
    # every component is N(p, eps I) evaluated at its mean: -0.5 * 3 * log(2 pi eps)
    assert loss.item() == pytest.approx(1.5 * np.log(2 * np.pi * 1e-4), rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(points.grad).all()


def _clustered_points(seed):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.6, 0.0, 0.0], [-0.6, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, -0.6]])
    return (centres.repeat_interleave(16, 0) + 0.05 * torch.randn(64, 3, generator=gen))[None]


def test_adam_on_free_logits_lowers_nll():
    points = _clustered_points(0)
    logits = (0.01 * torch.randn(1, 64, 4, generator=torch.Generator().manual_seed(1))).requires_grad_()
    loss_fn = ParametricBottleneckLoss()
    opt = torch.optim.Adam([logits], lr=0.1)
    start = loss_fn(points, logits).item()
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(points, logits)
        loss.backward()
        opt.step()
    assert loss_fn(points, logits).item() < start - 0.5


def test_adam_on_mlp_logits_lowers_nll():
    torch.manual_seed(3)
    points = _clustered_points(2)
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    loss_fn = ParametricBottleneckLoss()
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    start = loss_fn(points, mlp(points)).item()
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(points, mlp(points))
        loss.backward()
        opt.step()
    assert loss_fn(points, mlp(points)).item() < start - 0.5


def _float32_case():
    points, logits = _random_case(6, b=2, n=400, j=8)
    return torch.tensor(points).float() + 0.3, torch.tensor(logits).float()  # off-centre, as real parts are


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_give_the_float32_statistics(dtype):
    points, logits = _float32_case()
    low = logits.to(dtype)
    got = gmm_parameters(points, low)
    expected = gmm_parameters(points, low.float())  # the same logit values, computed in float32
    for name, a, b in zip(GMMParams._fields, got, expected):
        assert a.dtype == torch.float32, name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=lambda m, name=name: f"{name}: {m}")


def test_autocast_leaves_the_statistics_and_nll_in_float32():
    # train.precision=bf16 runs the training step under autocast; the 3x3 statistics and the NLL must not follow it
    points, logits = _float32_case()
    expected = gmm_parameters(points, logits)
    expected_nll = ParametricBottleneckLoss(reduction="none")(points, logits)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gmm_parameters(points, logits)
        nll = ParametricBottleneckLoss(reduction="none")(points, logits)
        ll = gmm_log_likelihood(points, expected)
    for name, a, b in zip(GMMParams._fields, got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(nll, expected_nll, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ll, -expected_nll, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "call",
    [
        lambda: gmm_parameters(torch.randn(2, 10, 2), torch.randn(2, 10, 4)),
        lambda: gmm_parameters(torch.randn(10, 3), torch.randn(10, 4)),
        lambda: gmm_parameters(torch.randn(2, 10, 3), torch.randn(2, 9, 4)),
        lambda: gmm_parameters(torch.randn(2, 10, 3), torch.randn(2, 10, 0)),
        lambda: gmm_parameters(torch.randn(2, 10, 3), torch.randn(2, 10, 4), eps=-1e-3),
        lambda: ParametricBottleneckLoss(eps=-1.0),
        lambda: ParametricBottleneckLoss(reduction="avg"),
        lambda: ParametricBottleneckLoss()(torch.randn(2, 10, 3), torch.randn(3, 10, 4)),
        lambda: gmm_log_likelihood(
            torch.randn(2, 10, 3), GMMParams(torch.ones(2, 4) / 4, torch.zeros(2, 3, 3), torch.eye(3).repeat(2, 4, 1, 1))
        ),
        # eps = 0 on coincident points gives a zero covariance: no Cholesky
        lambda: ParametricBottleneckLoss(eps=0.0)(torch.zeros(1, 8, 3), torch.randn(1, 8, 2)),
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
