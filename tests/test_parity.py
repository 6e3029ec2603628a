"""The from-scratch samplers reproduce diffusers' schedulers, step by step, over a grid of settings.

Both sides see the same model outputs (a fixed nonlinear function of x and t) and the same noise
(two generators with one seed), and every intermediate x is compared. Measured on CPU with torch
2.13 and diffusers 0.42.1: the max abs difference is 0.0 on every configuration; the test allows
1e-6 (float32), the tolerance the foundation issue sets.
"""

import dataclasses
import itertools

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler

from coursekit.diffusion import from_diffusers, q_sample, sample, timesteps, v_from_x0_eps

TOL = 1e-6
BETAS = {
    "linear": {},
    "scaled_linear": dict(beta_start=0.00085, beta_end=0.012),
    "squaredcos_cap_v2": {},
}
STEPS = (7, 10, 50)  # 7 does not divide T = 1000


def fake_model(x, t, cond=None):
    """A fixed smooth function standing in for a network's output."""
    return torch.tanh(0.7 * x + t.float().reshape(-1, *[1] * (x.ndim - 1)) / 1000.0)


def run_both(reference, N, x, ours=None, **step_kwargs):
    """Step diffusers' ``reference`` and coursekit's equivalent (changed by ``ours``, if given) side by
    side; return the worst gap."""
    reference.set_timesteps(N)
    schedule, sampler = from_diffusers(reference, eta=step_kwargs.get("eta", 0.0))
    sampler = ours(sampler) if ours else sampler
    plan = sampler.plan(schedule.T)
    assert [t for t, _ in plan] == reference.timesteps.tolist()
    g_ref, g_ours = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x_ref, x_ours, worst = x.clone(), x.clone(), 0.0
    for t, other in plan:
        t_batch = torch.full((x.shape[0],), t)
        gen = {"generator": g_ref} if not isinstance(reference, DDIMInverseScheduler) else {}
        x_ref = reference.step(fake_model(x_ref, t_batch), t, x_ref, **gen, **step_kwargs).prev_sample
        x_ours, _ = sampler.step(fake_model(x_ours, t_batch), t, other, x_ours, schedule, g_ours)
        worst = max(worst, (x_ref - x_ours).abs().max().item())
    return worst, x_ours


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("beta_schedule", BETAS)
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddim_matches_diffusers(x, beta_schedule, spacing):
    grid = itertools.product(STEPS, (0.0, 1.0), (False, True), (False, True), (0, 1))
    for N, eta, clip, alpha_one, offset in grid:
        ref = DDIMScheduler(beta_schedule=beta_schedule, clip_sample=clip, set_alpha_to_one=alpha_one,
                            steps_offset=offset, timestep_spacing=spacing, **BETAS[beta_schedule])
        worst, _ = run_both(ref, N, x, eta=eta)
        assert worst <= TOL, (N, eta, clip, alpha_one, offset, worst)


def test_ddim_with_eps_rederived_from_the_clipped_x0_matches_diffusers(x):
    """diffusers' ``use_clipped_model_output=True`` is coursekit's option of the same name; a narrow clip
    range makes clipping happen at every step, and the option must change the trajectory."""
    rederive = lambda sampler: dataclasses.replace(sampler, use_clipped_model_output=True)
    for N, eta in itertools.product(STEPS, (0.0, 1.0)):
        ref = DDIMScheduler(clip_sample=True, clip_sample_range=0.5)
        worst, ours = run_both(ref, N, x, ours=rederive, eta=eta, use_clipped_model_output=True)
        assert worst <= TOL, (N, eta, worst)
        _, plain = run_both(DDIMScheduler(clip_sample=True, clip_sample_range=0.5), N, x, eta=eta)
        assert (ours - plain).abs().max() > 1e-2


@pytest.mark.parametrize("beta_schedule", [*BETAS, "sigmoid"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddpm_matches_diffusers(x, beta_schedule, spacing):
    for N, clip, offset, variance in itertools.product(STEPS, (False, True), (0, 1), ("fixed_small", "fixed_large")):
        ref = DDPMScheduler(beta_schedule=beta_schedule, clip_sample=clip, steps_offset=offset,
                            timestep_spacing=spacing, variance_type=variance, **BETAS.get(beta_schedule, {}))
        worst, _ = run_both(ref, N, x)
        assert worst <= TOL, (N, clip, offset, variance, worst)


@pytest.mark.parametrize("beta_schedule", BETAS)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])  # the two DDIMInverseScheduler supports
def test_ddim_inverse_matches_diffusers(x, beta_schedule, spacing):
    for N, clip, alpha_one, offset in itertools.product(STEPS, (False, True), (False, True), (0, 1)):
        ref = DDIMInverseScheduler(beta_schedule=beta_schedule, clip_sample=clip, set_alpha_to_one=alpha_one,
                                   steps_offset=offset, timestep_spacing=spacing, **BETAS[beta_schedule])
        worst, _ = run_both(ref, N, x)
        assert worst <= TOL, (N, clip, alpha_one, offset, worst)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_prediction_types_match_diffusers(x, prediction_type):
    # set_alpha_to_one=False: with abar = 1 at the clean end, an x0-prediction's eps is 0 / 0.
    cases = [(DDIMScheduler, {"eta": 1.0}, {"set_alpha_to_one": False}), (DDPMScheduler, {}, {}),
             (DDIMInverseScheduler, {}, {"set_alpha_to_one": False})]
    for cls, kw, init in cases:
        ref = cls(prediction_type=prediction_type, clip_sample=False, **init)
        worst, _ = run_both(ref, 10, x, **kw)
        assert worst <= TOL, (cls.__name__, worst)


def test_the_parity_is_not_vacuous(x):
    """The comparison detects a change as small as the textbook 'next timestep' DDIM convention."""
    from coursekit.diffusion import DDIMSampler, make_schedule

    ref = DDIMScheduler(timestep_spacing="linspace", clip_sample=False)
    _, x_ref = run_both(ref, 10, x)
    x_next = sample(fake_model, make_schedule("linear"), x,
                    DDIMSampler(10, spacing="linspace", previous="next"), progress=False)
    assert (x_next - x_ref).abs().max() > 1e-3


def test_timesteps_match_diffusers():
    for spacing, N, offset in itertools.product(["leading", "trailing", "linspace"], (1, 7, 10, 50, 999, 1000), (0, 1)):
        ref = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
        if spacing == "leading" and N == 1000 and offset == 1:
            with pytest.raises(ValueError, match="offset"):
                timesteps(N, 1000, spacing, offset)
            continue
        ref.set_timesteps(N)
        ours = timesteps(N, 1000, spacing, offset if spacing == "leading" else 0)
        assert ours.dtype == torch.int64 and torch.equal(ours, ref.timesteps), (spacing, N, offset)


def test_forward_process_and_velocity_match_diffusers(x):
    ref = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    schedule, _ = from_diffusers(ref, 10)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 999])
    assert torch.equal(q_sample(x, t, noise, schedule), ref.add_noise(x, noise, t))
    abar = schedule.abar(t, x)
    assert (v_from_x0_eps(x, noise, abar) - ref.get_velocity(x, noise, t)).abs().max() <= TOL


def test_full_sampling_loop_matches_diffusers_ddim_pipeline():
    """The sampling loop (not only the step) reproduces a diffusers DDIM run with a seeded generator."""
    from coursekit.diffusion import DDIMSampler, make_schedule

    ref = DDIMScheduler(clip_sample=False)
    ref.set_timesteps(20)
    g = torch.Generator().manual_seed(7)
    x_ref = torch.randn(4, 3, 8, 8, generator=g)
    x_T = x_ref.clone()
    g_ref = torch.Generator().manual_seed(9)
    for t in ref.timesteps:
        x_ref = ref.step(fake_model(x_ref, t.expand(4)), t, x_ref, eta=0.5, generator=g_ref).prev_sample
    x_ours = sample(fake_model, make_schedule("linear"), x_T, DDIMSampler(20, eta=0.5),
                    generator=torch.Generator().manual_seed(9), progress=False)
    assert (x_ours - x_ref).abs().max() <= TOL
