"""Schedules, parameterisations, the sampling loop's contract, and bad input."""


import re

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

import coursekit.diffusion as d
from coursekit.data import toy2d
from coursekit.models import MixtureDenoiser


@pytest.mark.parametrize("ours, theirs", [
    (d.linear(), DDPMScheduler()),
    (d.scaled_linear(), DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    (d.cosine(), DDPMScheduler(beta_schedule="squaredcos_cap_v2")),
    (d.sigmoid(), DDPMScheduler(beta_schedule="sigmoid")),
])
def test_schedules_equal_diffusers_bit_for_bit(ours, theirs):
    assert ours.betas.dtype == torch.float32
    assert torch.equal(ours.betas, theirs.betas) and torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)


def test_shifted_cosine_divides_the_snr_by_the_squared_resolution_ratio():
    u = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    base = d.logsnr_cosine(u)
    for res in (32, 64, 128, 256):
        shifted = d.logsnr_shifted_cosine(u, res, 64)
        assert torch.allclose((shifted - base).exp(), torch.full_like(u, (64 / res) ** 2), rtol=1e-12)
    # the discrete schedule follows the continuous one (float32 cumprod: 3e-6 relative)
    sch = d.shifted_cosine(1000, resolution=128)
    want = torch.sigmoid(d.logsnr_shifted_cosine(torch.arange(1, 1001, dtype=torch.float64) / 1000, 128))
    assert torch.allclose(sch.alphas_cumprod.double(), want, rtol=1e-4, atol=1e-7)
    # a bigger image is noisier at every level
    assert (d.shifted_cosine(1000, resolution=128).snr() < d.shifted_cosine(1000, resolution=64).snr()).all()


def test_parameterisations_round_trip():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    abar = torch.tensor([0.9, 0.5, 0.1, 1e-3], dtype=torch.float64)[:, None]
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    assert torch.allclose(d.x0_from_eps(x_t, eps, abar), x0)
    assert torch.allclose(d.eps_from_x0(x_t, x0, abar), eps)
    v = d.v_from_x0_eps(x0, eps, abar)
    for kind, out in (("epsilon", eps), ("sample", x0), ("v_prediction", v)):
        got_x0, got_eps = d.x0_eps_from_output(out, x_t, abar, kind)
        assert torch.allclose(got_x0, x0) and torch.allclose(got_eps, eps)


def test_ddim_with_eta_one_has_the_ddpm_posterior_variance():
    sch = d.linear()
    x = torch.zeros(1, 1)
    noise = torch.ones(1, 1)
    # with a zero model output and x = 0, x_prev = sigma_t * noise exactly
    x_ddim, _ = d.ddim_step(torch.zeros(1, 1), 500, x, sch, 480, eta=1.0, noise=noise)
    x_ddpm, _ = d.ddpm_step(torch.zeros(1, 1), 500, x, sch, 480, noise=noise)
    assert torch.allclose(x_ddim, x_ddpm, rtol=1e-5)


class _Oracle:
    """A denoiser that knows the answer: for inputs made by q_sample(x0, t, eps) it returns the true eps, or v."""

    def __init__(self, x0, eps, schedule, prediction_type):
        self.x0, self.eps, self.schedule, self.prediction_type = x0, eps, schedule, prediction_type

    def __call__(self, x_t, t, cond=None):
        abar = self.schedule.abar(t, x_t)
        return self.eps if self.prediction_type == "epsilon" else d.forward.v_from_x0_eps(self.x0, self.eps, abar)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_predict_x0_inverts_the_forward_process_given_the_true_output(prediction_type):
    schedule, g = d.linear(), torch.Generator().manual_seed(3)
    x0, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 250, 600, 999])
    oracle = _Oracle(x0, eps, schedule, prediction_type)
    assert torch.allclose(d.predict_x0(oracle, schedule, d.q_sample(x0, t, eps, schedule), t), x0, atol=2e-4)
    with pytest.raises(ValueError, match="^t"):
        d.predict_x0(oracle, schedule, x0, 1000)


def test_ddim_inverse_step_lands_on_the_forward_process_given_the_true_noise():
    """With the true eps a DDIM step up is exact: from the clean data (source_t < 0) or from any lower level it gives
    q_sample(x0, t, eps); and it is the step DDIMInverter takes."""
    schedule, g = d.linear(), torch.Generator().manual_seed(4)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    for source_t, t in ((-1, 100), (100, 300), (300, 900)):
        x_s = x0 if source_t < 0 else d.q_sample(x0, source_t, eps, schedule)
        x_t, x0_hat = d.ddim_inverse_step(eps, t, x_s, schedule, source_t)
        assert torch.allclose(x_t, d.q_sample(x0, t, eps, schedule), atol=1e-5) and torch.allclose(x0_hat, x0, atol=1e-4)
        assert all(torch.equal(a, b) for a, b in zip(d.DDIMInverter(10).step(eps, t, source_t, x_s, schedule),
                                                     (x_t, x0_hat)))


def test_sampling_loop_is_seeded_and_reports_every_step():
    sch = d.linear()
    den = MixtureDenoiser(toy2d.gaussian_ring(), sch)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    seen = []
    sampler = d.DDIMSampler(10, eta=1.0)

    def run(seed, callback=None):
        return d.sample(den, sch, x_T, sampler, generator=torch.Generator().manual_seed(seed), callback=callback,
                        progress=False)

    a = run(1, lambda i, t, x, x0: seen.append((i, t, x.shape, x0.shape)))
    assert torch.equal(a, run(1)) and not torch.equal(a, run(2))
    assert [s[1] for s in seen] == [t for t, _ in sampler.plan(1000)] and [s[0] for s in seen] == list(range(10))
    assert all(s[2] == s[3] == (16, 2) for s in seen)


def test_ddpm_plan_and_ddim_previous_conventions():
    assert d.DDPMSampler(4).plan(1000) == [(750, 500), (500, 250), (250, 0), (0, -1)]
    assert d.DDIMSampler(10, spacing="linspace").plan(1000)[0] == (999, 899)  # diffusers: fixed stride
    assert d.DDIMSampler(10, spacing="linspace", previous="next").plan(1000)[0] == (999, 888)
    assert d.DDIMInverter(4, offset=1).plan(1000) == [(1, -249), (251, 1), (501, 251), (751, 501)]


# --- bad input: a ValueError that names the argument -------------------------------------------


class PredictsV:
    """A denoiser that declares it predicts v."""

    prediction_type = "v_prediction"

    def __call__(self, x, t, cond):
        return x


@pytest.mark.parametrize("call, name", [
    (lambda: d.timesteps(10, 1000, "cosine"), "spacing"),
    (lambda: d.timesteps(0, 1000), "num_steps"),
    (lambda: d.timesteps(1001, 1000), "num_steps"),
    (lambda: d.timesteps(10, 1000, "trailing", offset=1), "offset"),
    (lambda: d.DDIMSampler(10, spacing="uniform"), "spacing"),
    (lambda: d.DDIMInverter(10, spacing="trailing", offset=1), "offset"),
    (lambda: d.DDIMSampler(10, eta=-1), "eta"),
    (lambda: d.DDIMSampler(10, prediction_type="score"), "prediction_type"),
    (lambda: d.DDPMSampler(10, variance_type="learned"), "variance_type"),
    (lambda: d.make_schedule("quadratic"), "name"),
    (lambda: d.linear(1000, 0.02, 1e-4), "beta_end"),
    (lambda: d.NoiseSchedule(torch.tensor([0.1])), "betas"),
    (lambda: d.NoiseSchedule(torch.tensor([0.1, float("nan")])), "betas"),
    (lambda: d.NoiseSchedule(torch.tensor([0.1, 0.2], dtype=torch.float64)), "betas"),
    (lambda: d.NoiseSchedule(torch.ones(3, 2) * 0.1), "betas"),
    (lambda: d.schedule_from_diffusers({**DDIMScheduler().config, "trained_betas": [0.1] * 10}), "config.trained_betas"),
    (lambda: d.q_sample(torch.zeros(2, 3), torch.tensor([0, 1000]), torch.zeros(2, 3), d.linear()), "t"),
    (lambda: d.q_sample(torch.zeros(2, 3), torch.tensor([0, -1]), torch.zeros(2, 3), d.linear()), "t"),
    (lambda: d.q_sample(torch.zeros(2, 3), torch.tensor([0.0, 1.0]), torch.zeros(2, 3), d.linear()), "t"),
    (lambda: d.q_sample(torch.zeros(2, 3), torch.tensor([0, 1, 2]), torch.zeros(2, 3), d.linear()), "t"),
    (lambda: d.q_sample(torch.zeros(2, 3), 5, torch.zeros(2, 4), d.linear()), "noise"),
    (lambda: d.q_sample(torch.full((2, 3), float("inf")), 5, torch.zeros(2, 3), d.linear()), "x0"),
    (lambda: d.ddim_step(torch.zeros(2, 3), 1000, torch.zeros(2, 3), d.linear(), 980), "t"),
    (lambda: d.ddim_step(torch.zeros(2, 3), 500, torch.zeros(2, 3), d.linear(), 520), "prev_t"),
    (lambda: d.ddim_step(torch.zeros(2, 4), 500, torch.zeros(2, 3), d.linear(), 480), "model_output"),
    (lambda: d.ddpm_step(torch.zeros(2, 3), 500, torch.zeros(2, 3, dtype=torch.long), d.linear(), 480), "x_t"),
    (lambda: d.sample(lambda x, t, c: x, d.linear(), torch.tensor([[float("nan"), 0.0]])), "x"),
    (lambda: d.sample(lambda x, t, c: x, d.linear(), torch.zeros(3)), "x"),
    (lambda: d.sample(lambda x, t, c: x[:, :1], d.linear(), torch.zeros(3, 2), progress=False), "denoiser"),
    (lambda: d.sample(lambda x, t, c: x, "linear", torch.zeros(3, 2)), "schedule"),
    (lambda: d.sample(lambda x, t, c: x, d.linear(), torch.zeros(3, 2), 50), "sampler"),
    (lambda: d.sample(lambda x, t, c: x, d.linear(), torch.zeros(3, 2), generator=0), "generator"),
    (lambda: d.ClassifierFreeGuidance(lambda x, t, c: x, float("nan")), "scale"),
    (lambda: setattr(d.ClassifierFreeGuidance(lambda x, t, c: x, 3.0), "scale", "7"), "scale"),
    (lambda: d.diffusion_loss(PredictsV(), d.linear(), torch.zeros(2, 3), prediction_type="epsilon"), "prediction_type"),
    (lambda: d.sample(PredictsV(), d.linear(), torch.zeros(2, 3), d.DDPMSampler(5)), "sampler.prediction_type"),
    (lambda: d.ddim_step(torch.zeros(2, 3), 500, torch.zeros(2, 3), d.linear(), 480, noise=torch.zeros(3)), "noise"),
    (lambda: d.x0_from_eps(torch.zeros(2, 3), torch.zeros(3, 2), torch.tensor(0.5)), "eps"),
    (lambda: d.x0_eps_from_output(torch.zeros(2, 3), torch.zeros(2, 3), "0.5"), "abar"),
    (lambda: toy2d.gaussian_ring().eps(torch.zeros(2, 2), torch.tensor([0.5, 1.5])), "abar"),
    (lambda: MixtureDenoiser(toy2d.gaussian_ring(), d.linear())(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long)),
     "x_t"),
    (lambda: MixtureDenoiser(toy2d.gaussian_ring(), d.linear())(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long),
                                                                torch.tensor([0, 1, 8])), "component"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_progress_shows_a_bar_for_sample_and_invert(capsys):
    sch, zero = d.linear(), lambda x, t, c: torch.zeros_like(x)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    d.sample(zero, sch, x, d.DDIMSampler(3), progress=False)
    d.invert(zero, sch, x, d.DDIMInverter(3), progress=False)
    assert capsys.readouterr() == ("", "")
    d.sample(zero, sch, x, d.DDIMSampler(3), progress=True)
    d.invert(zero, sch, x, d.DDIMInverter(4), progress=True)
    err = capsys.readouterr().err
    assert re.search(r"sample: 100%.*\| 3/3 ", err) and re.search(r"invert: 100%.*\| 4/4 ", err), err
