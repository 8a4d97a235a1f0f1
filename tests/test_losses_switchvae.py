"""SwitchVAE losses (Eq. 1-4) against hand-computed values of the equations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssl3d.methods.losses.switchvae import (
    SwitchVAELoss,
    beta_tc_kl,
    gaussian_kl,
    kl_anneal_weight,
    latent_contrastive,
    weighted_bce,
)

torch.set_num_threads(1)

# A 2x2x2 grid for two samples: known probabilities and occupancy.
PROBS = [
    [0.9, 0.2, 0.6, 0.1, 0.7, 0.4, 0.05, 0.99],
    [0.5, 0.5, 0.3, 0.8, 0.95, 0.01, 0.25, 0.6],
]
TARGET = [
    [1, 0, 1, 0, 0, 1, 0, 1],
    [0, 1, 1, 0, 1, 0, 0, 1],
]


def _hand_weighted_bce(probs, target, gamma):
    """Eq. 2 with plain Python math, summed over voxels, mean over the batch."""
    per_sample = []
    for ps, ts in zip(probs, target):
        total = 0.0
        for p, t in zip(ps, ts):
            total += -gamma * t * math.log(p) - (1 - gamma) * (1 - t) * math.log(1 - p)
        per_sample.append(total)
    return per_sample


def _grid(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype).reshape(2, 2, 2, 2)


def test_weighted_bce_matches_eq2_by_hand_probs_and_logits():
    probs, target = _grid(PROBS), _grid(TARGET)
    expected = _hand_weighted_bce(PROBS, TARGET, 0.8)
    got = weighted_bce(probs, target, gamma=0.8, from_logits=False)
    assert got.item() == pytest.approx(sum(expected) / 2, rel=1e-12)
    logits = torch.log(probs) - torch.log1p(-probs)
    got_logits = weighted_bce(logits, target, gamma=0.8, from_logits=True)
    assert got_logits.item() == pytest.approx(sum(expected) / 2, rel=1e-10)
    none = weighted_bce(logits, target, gamma=0.8, reduction="none")
    np.testing.assert_allclose(none.numpy(), expected, rtol=1e-10)
    summed = weighted_bce(probs, target, gamma=0.8, from_logits=False, reduction="sum")
    assert summed.item() == pytest.approx(sum(expected), rel=1e-12)


def test_weighted_bce_one_voxel_worked_example():
    # p = 0.9 occupied: -0.8 * log(0.9); p = 0.2 empty: -0.2 * log(0.8)
    probs = torch.tensor([[0.9, 0.2]])
    target = torch.tensor([[1.0, 0.0]])
    expected = -0.8 * math.log(0.9) - 0.2 * math.log(0.8)
    got = weighted_bce(probs, target, gamma=0.8, from_logits=False)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_weighted_bce_gamma_half_is_half_plain_bce():
    probs, target = _grid(PROBS), _grid(TARGET)
    plain = torch.nn.functional.binary_cross_entropy(probs, target, reduction="sum") / 2
    got = weighted_bce(probs, target, gamma=0.5, from_logits=False)
    assert got.item() == pytest.approx(0.5 * plain.item(), rel=1e-12)


def test_weighted_bce_gamma_extremes_ignore_one_class():
    probs, target = _grid(PROBS), _grid(TARGET)
    occupied_only = _hand_weighted_bce(PROBS, TARGET, 1.0)
    empty_only = _hand_weighted_bce(PROBS, TARGET, 0.0)
    got1 = weighted_bce(probs, target, gamma=1.0, from_logits=False, reduction="none")
    got0 = weighted_bce(probs, target, gamma=0.0, from_logits=False, reduction="none")
    np.testing.assert_allclose(got1.numpy(), occupied_only, rtol=1e-12)
    np.testing.assert_allclose(got0.numpy(), empty_only, rtol=1e-12)


def test_weighted_bce_is_stable_at_extreme_logits():
    logits = torch.tensor([[100.0, -100.0, 100.0, -100.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    loss = weighted_bce(logits, target, gamma=0.8)
    # two confident hits cost ~0; a false positive costs 0.2 * 100, a false negative 0.8 * 100
    assert loss.item() == pytest.approx(0.2 * 100 + 0.8 * 100, rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # probability input at exactly 0/1 is clamped to 1e-7 as in the official code
    p = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    t = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    clamped = weighted_bce(p, t, gamma=0.8, from_logits=False)
    assert clamped.item() == pytest.approx(-0.8 * math.log(1e-7) - 0.2 * math.log(1e-7), rel=1e-6)


def test_gaussian_kl_zero_at_prior_and_hand_value():
    zero = gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5))
    assert zero.item() == 0.0
    # mu = (1, 2), sigma^2 = (1, 4): -0.5 * [(1 + 0 - 1 - 1) + (1 + log 4 - 4 - 4)] = 4 - log 2
    mu = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]], dtype=torch.float64)
    none = gaussian_kl(mu, logvar, reduction="none")
    np.testing.assert_allclose(none.numpy(), [4.0 - math.log(2.0), 0.0], rtol=1e-12)
    assert gaussian_kl(mu, logvar).item() == pytest.approx((4.0 - math.log(2.0)) / 2, rel=1e-12)


def test_gaussian_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    logvar = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(dim=1).mean()
    assert gaussian_kl(mu, logvar).item() == pytest.approx(ref.item(), rel=1e-12)


def test_latent_contrastive_parallel_and_cosine():
    z = torch.tensor([[1.0, 2.0, 2.0], [0.5, -1.0, 0.0]], dtype=torch.float64)
    assert latent_contrastive(z, 3.0 * z).item() == pytest.approx(0.0, abs=1e-12)
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [-1.0, -1.0], [4.0, 3.0]])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    expected = 2.0 - 2.0 * cos  # = [2, 4, 2 - 48/25]
    ta, tb = torch.tensor(a), torch.tensor(b)
    np.testing.assert_allclose(latent_contrastive(ta, tb, reduction="none").numpy(), expected)
    assert latent_contrastive(ta, tb).item() == pytest.approx(expected.mean(), rel=1e-12)
    raw = latent_contrastive(ta, tb, normalize=False, reduction="none")
    np.testing.assert_allclose(raw.numpy(), ((a - b) ** 2).sum(1))  # [5, 8, 2]


def test_switchvae_loss_combines_eq1():
    probs, target = _grid(PROBS), _grid(TARGET)
    mu = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]], dtype=torch.float64)
    z_img = torch.tensor([[1.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    z_vox = torch.tensor([[0.0, 2.0], [4.0, 3.0]], dtype=torch.float64)
    rec = sum(_hand_weighted_bce(PROBS, TARGET, 0.8)) / 2
    kl = (4.0 - math.log(2.0)) / 2
    con = ((2.0 - 2.0 * 0.0) + (2.0 - 2.0 * 24.0 / 25.0)) / 2
    loss = SwitchVAELoss(lambda_kl=0.5, lambda_contras=2.0, from_logits=False)
    out = loss(probs, target, mu, logvar, z_img, z_vox)
    assert set(out) == {"total", "recon", "kl", "contras"}
    assert out["recon"].item() == pytest.approx(rec, rel=1e-12)
    assert out["kl"].item() == pytest.approx(kl, rel=1e-12)
    assert out["contras"].item() == pytest.approx(con, rel=1e-12)
    assert out["total"].item() == pytest.approx(rec + 0.5 * kl + 2.0 * con, rel=1e-12)
    annealed = loss(probs, target, mu, logvar, z_img, z_vox, lambda_kl=0.0)
    assert annealed["total"].item() == pytest.approx(rec + 2.0 * con, rel=1e-12)


def test_switchvae_loss_default_weights_and_gradients():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 4, 4, requires_grad=True)
    target = (torch.rand(3, 4, 4, 4) > 0.5).float()
    mu = torch.randn(3, 8, requires_grad=True)
    logvar = torch.randn(3, 8, requires_grad=True)
    z_img, z_vox = torch.randn(3, 8, requires_grad=True), torch.randn(3, 8, requires_grad=True)
    out = SwitchVAELoss()(logits, target, mu, logvar, z_img, z_vox)
    expected = out["recon"] + out["kl"] + out["contras"]  # lambda_KL = lambda_contras = 1
    assert out["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    out["total"].backward()
    for t in (logits, mu, logvar, z_img, z_vox):
        assert t.grad is not None and torch.isfinite(t.grad).all()


def test_beta_tc_kl_matches_numpy_loops():
    rng = np.random.default_rng(1)
    m, d, n_data, beta = 3, 2, 10, 5.0
    mu, logvar = rng.normal(size=(m, d)), rng.normal(scale=0.5, size=(m, d))
    z = mu + np.exp(0.5 * logvar) * rng.normal(size=(m, d))

    def log_n(x, mean, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (x - mean) ** 2 / math.exp(lv))

    mi = tc = dim_kl = 0.0
    for j in range(m):
        log_qzx = sum(log_n(z[j, l], mu[j, l], logvar[j, l]) for l in range(d))
        log_pz = sum(log_n(z[j, l], 0.0, 0.0) for l in range(d))
        joint = [sum(log_n(z[j, l], mu[i, l], logvar[i, l]) for l in range(d)) for i in range(m)]
        log_qz = math.log(sum(math.exp(v) for v in joint)) - math.log(n_data * m)
        log_prod = sum(
            math.log(sum(math.exp(log_n(z[j, l], mu[i, l], logvar[i, l])) for i in range(m)))
            - math.log(n_data * m)
            for l in range(d)
        )
        mi += (log_qzx - log_qz) / m
        tc += (log_qz - log_prod) / m
        dim_kl += (log_prod - log_pz) / m
    out = beta_tc_kl(torch.tensor(z), torch.tensor(mu), torch.tensor(logvar), n_data, beta=beta)
    assert out["mi"].item() == pytest.approx(mi, rel=1e-10)
    assert out["tc"].item() == pytest.approx(tc, rel=1e-10)
    assert out["dim_kl"].item() == pytest.approx(dim_kl, rel=1e-10)
    assert out["total"].item() == pytest.approx(mi + beta * tc + dim_kl, rel=1e-10)


def test_beta_tc_kl_beta_one_is_the_kl_estimator():
    gen = torch.Generator().manual_seed(2)
    mu = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    logvar = 0.5 * torch.randn(4, 3, generator=gen, dtype=torch.float64)
    std = torch.exp(0.5 * logvar)
    q = torch.distributions.Normal(mu, std)
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    totals = []
    for _ in range(400):
        z = mu + std * torch.randn(mu.shape, generator=gen, dtype=torch.float64)
        total = beta_tc_kl(z, mu, logvar, dataset_size=100, beta=1.0)["total"]
        # exact telescoping: MI + TC + dimKL = log q(z|x) - log p(z) sample by sample
        mc = (q.log_prob(z) - prior.log_prob(z)).sum(dim=1).mean()
        assert total.item() == pytest.approx(mc.item(), rel=1e-9, abs=1e-12)
        totals.append(total.item())
    # ... whose expectation is the analytic KL of Eq. 3
    mean, sem = np.mean(totals), np.std(totals) / math.sqrt(len(totals))
    assert abs(mean - gaussian_kl(mu, logvar).item()) < 5 * sem


def test_kl_anneal_weight_ramp():
    assert kl_anneal_weight(0) == 0.0
    assert kl_anneal_weight(50) == 0.5
    assert kl_anneal_weight(100) == 1.0
    assert kl_anneal_weight(250) == 1.0
    assert kl_anneal_weight(3, warmup_epochs=0) == 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: weighted_bce(torch.rand(2, 3), torch.rand(2, 3), gamma=-0.1),
        lambda: weighted_bce(torch.rand(2, 3), torch.rand(2, 3), gamma=1.5),
        lambda: weighted_bce(torch.rand(2, 3), torch.rand(2, 4)),
        lambda: weighted_bce(torch.rand(3), torch.rand(3)),
        lambda: weighted_bce(torch.rand(2, 3), torch.rand(2, 3), reduction="avg"),
        lambda: gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4)),
        lambda: gaussian_kl(torch.zeros(3), torch.zeros(3)),
        lambda: latent_contrastive(torch.zeros(2, 3), torch.zeros(3, 3)),
        lambda: SwitchVAELoss(gamma=2.0),
        lambda: SwitchVAELoss(lambda_kl=-1.0),
        lambda: SwitchVAELoss(lambda_contras=float("nan")),
        lambda: SwitchVAELoss()(
            torch.rand(2, 3), torch.rand(2, 3), torch.zeros(2, 4), torch.zeros(2, 4),
            torch.zeros(2, 4), torch.zeros(2, 4), lambda_kl=-0.5,
        ),
        lambda: SwitchVAELoss()(
            torch.rand(3, 3), torch.rand(3, 3), torch.zeros(2, 4), torch.zeros(2, 4),
            torch.zeros(2, 4), torch.zeros(2, 4),
        ),
        lambda: beta_tc_kl(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 2), dataset_size=3),
        lambda: beta_tc_kl(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 2), 10, beta=-1),
        lambda: kl_anneal_weight(-1),
        lambda: kl_anneal_weight(1, warmup_epochs=-5),
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
