"""The analytic Gaussian-mixture denoiser as a model-free oracle for samplers, inversion and guidance.

Thresholds come from measurements on this code (CPU, float32 x, float64 denoiser), quoted beside
each assertion.
"""


import pytest
import torch

import coursekit.diffusion as d
from coursekit.data import GaussianMixture, toy2d
from coursekit.models import MixtureDenoiser

SCHEDULE = d.linear()


def noised_mixture(gm, abar):
    """torch.distributions' density of the noised mixture, an independent route to the score."""
    comps = torch.distributions.MultivariateNormal(
        abar.sqrt() * gm.means,
        covariance_matrix=abar * gm.component_covariances() + (1 - abar) * torch.eye(gm.D, dtype=torch.float64),
    )
    return torch.distributions.MixtureSameFamily(torch.distributions.Categorical(gm.weights), comps)


def three_gaussians():
    means = torch.tensor([[-1.5, 0.5], [1.0, 1.0], [0.5, -1.5]])
    covs = torch.stack([torch.tensor([[0.1, 0.05], [0.05, 0.2]]), torch.eye(2) * 0.05,
                        torch.tensor([[0.3, -0.1], [-0.1, 0.1]])])
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))


@pytest.mark.parametrize("make", [three_gaussians, lambda: GaussianMixture.from_images(
    torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1, std=0.3)])
def test_eps_is_minus_scaled_score_of_the_noised_density(make):
    gm = make()
    x = torch.randn(6, gm.D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for t in (0, 10, 300, 700, 999):
        abar = SCHEDULE.alphas_cumprod.double()[t]
        xr = x.clone().requires_grad_()
        (score,) = torch.autograd.grad(noised_mixture(gm, abar).log_prob(xr).sum(), xr)
        eps = gm.eps(x, abar.expand(6))
        assert (eps + (1 - abar).sqrt() * score).abs().max() < 1e-10  # measured 7e-16


def test_denoiser_meets_the_protocol_and_conditions_on_components():
    gm = three_gaussians()
    den = MixtureDenoiser(gm, SCHEDULE)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([5, 50, 500, 900])
    eps = den(x, t, None)
    assert eps.shape == x.shape and eps.dtype == torch.float32
    k = torch.tensor([0, 1, 2, 1])
    single = [GaussianMixture(gm.means[j:j + 1], gm.component_covariances()[j:j + 1]) for j in range(3)]
    want = torch.stack([MixtureDenoiser(single[int(k[i])], SCHEDULE)(x[i:i + 1], t[i:i + 1])[0] for i in range(4)])
    assert torch.allclose(den(x, t, k), want, atol=1e-6)


def test_ddim_on_a_gaussian_converges_to_its_mean_and_covariance_at_first_order():
    """For one Gaussian the DDIM map is affine, so its output law N(b, A A^T) is computed exactly by
    pushing the points 0, e1, e2 through the sampler: no sampling noise at all."""
    gm = GaussianMixture(torch.tensor([[0.8, -0.5]]), torch.tensor([[[0.3, 0.12], [0.12, 0.1]]]))
    den = MixtureDenoiser(gm, SCHEDULE)
    probe = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    cov_err = {}
    for S in (25, 50, 100, 200):
        y = d.sample(den, SCHEDULE, probe, d.DDIMSampler(S, spacing="trailing"), progress=False)
        A = (y[1:] - y[0]).T
        cov_err[S] = (A @ A.T - gm.covariance()).abs().max().item()
        # the mean's bias, 2.2e-3 at every S, is the prior's: x_T ~ N(0, I), not N(sqrt(abar_T) mu, ...)
        assert (y[0] - gm.mean()).abs().max() < 5e-3
    assert cov_err[100] < 0.02  # measured 0.016 (0.030 at S = 50, 0.0080 at S = 200)
    for S in (25, 50, 100):  # Euler: halving the step halves the error (measured ratios 2.0-2.1)
        assert 1.7 < cov_err[S] / cov_err[2 * S] < 2.4


@pytest.mark.slow
@pytest.mark.parametrize("sampler", [d.DDPMSampler(1000), d.DDIMSampler(200, spacing="trailing")],
                         ids=["ddpm-1000", "ddim-200"])
def test_samples_match_the_mixture_mean_and_covariance(sampler):
    """8 Gaussians on a ring (total variance 2.04 per axis), 10,000 samples.

    Sampling noise alone gives max errors of 0.008-0.019 (mean) and 0.010-0.036 (covariance) for
    true samples (three seeds); DDPM-1000 measured 0.015-0.022 / 0.010-0.025 and DDIM-200
    0.016-0.033 / 0.010-0.026. The bounds are 3 standard errors: 0.045 and 0.09.
    """
    gm = toy2d.gaussian_ring()
    g = torch.Generator().manual_seed(0)
    x = d.sample(MixtureDenoiser(gm, SCHEDULE), SCHEDULE, torch.randn(10_000, 2, generator=g), sampler,
                 generator=g, progress=False).double()
    assert (x.mean(0) - gm.mean()).abs().max() < 0.045
    assert (torch.cov(x.T) - gm.covariance()).abs().max() < 0.09
    # and the modes are all used: every component gets 12.5% +- 2% of the samples
    share = torch.bincount(gm.posterior(x).argmax(1), minlength=8) / len(x)
    assert (share - 1 / 8).abs().max() < 0.02


def test_the_moment_check_detects_a_wrong_denoiser():
    """The same check fails when the denoiser assumes a different schedule than the sampler."""
    gm = toy2d.gaussian_ring()
    g = torch.Generator().manual_seed(0)
    wrong = MixtureDenoiser(gm, d.cosine())
    x = d.sample(wrong, SCHEDULE, torch.randn(10_000, 2, generator=g), d.DDIMSampler(50), progress=False).double()
    assert (torch.cov(x.T) - gm.covariance()).abs().max() > 0.09


def inversion_errors(steps, n=500, seed=0):
    gm = toy2d.gaussian_ring()
    den = MixtureDenoiser(gm, SCHEDULE)
    x0, _ = gm.sample(n, torch.Generator().manual_seed(seed))
    errors = []
    for S in steps:
        x_T = d.invert(den, SCHEDULE, x0, d.DDIMInverter(S), progress=False)
        x_rec = d.sample(den, SCHEDULE, x_T, d.DDIMSampler(S), progress=False)
        errors.append(((x_rec - x0) ** 2).mean().item())
    return errors


def log_log_slope(xs, ys):
    lx, ly = torch.tensor(xs, dtype=torch.float64).log(), torch.tensor(ys, dtype=torch.float64).log()
    return (((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum()).item()


@pytest.mark.slow
def test_inversion_round_trip_error_falls_as_one_over_steps_squared():
    """DDIM inversion then DDIM sampling with S steps each. Measured MSE on the ring (three seeds):
    7.3e-4..8.9e-4 at S=50 down to 2.2e-6..2.5e-6 at S=1000, a log-log slope of -1.94..-1.98."""
    steps = (50, 100, 200, 500, 1000)
    errors = inversion_errors(steps)
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert -2.3 < log_log_slope(steps, errors) < -1.7
    assert errors[-1] < 1e-5


def test_guidance_scale_one_is_conditional_zero_is_unconditional():
    gm = three_gaussians()
    den = MixtureDenoiser(gm, SCHEDULE)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    t, k = torch.tensor([10, 400, 800]), torch.tensor([2, 0, 1])
    assert torch.equal(d.ClassifierFreeGuidance(den, 1.0)(x, t, k), den(x, t, k))
    assert torch.equal(d.ClassifierFreeGuidance(den, 0.0)(x, t, k), den(x, t, None))
    e_u, e_c = den(x, t, None), den(x, t, k)
    assert torch.allclose(d.ClassifierFreeGuidance(den, 3.0)(x, t, k), e_u + 3 * (e_c - e_u))


@pytest.mark.slow
def test_guidance_trades_diversity_for_class_accuracy():
    """Two overlapping Gaussians at (+-0.6, 0), std 0.5; samples conditioned on class 0 and judged
    by the mixture's own posterior. Measured accuracy: 0.49-0.51 (s=0), 0.90 (s=1), 0.999 (s=2)."""
    gm = GaussianMixture(torch.tensor([[-0.6, 0.0], [0.6, 0.0]]), torch.full((2, 2), 0.25))
    den = MixtureDenoiser(gm, SCHEDULE)
    x_T = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    k = torch.zeros(4000, dtype=torch.long)
    acc = {}
    for s in (0.0, 1.0, 2.0):
        x = d.sample(d.ClassifierFreeGuidance(den, s), SCHEDULE, x_T, d.DDIMSampler(50), cond=k, progress=False)
        acc[s] = (gm.posterior(x).argmax(1) == k).double().mean().item()
    assert abs(acc[0.0] - 0.5) < 0.05 and 0.87 < acc[1.0] < 0.93 and acc[2.0] > 0.99
