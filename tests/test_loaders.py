"""The diffusers loaders implement or refuse every config key: each key of the installed diffusers' U-Net,
DiT and scheduler configs is classified, each refused key raises a ValueError naming it, and a key the
loaders do not know is refused unless it holds diffusers' default."""

import pytest
import torch
from diffusers import (DDIMInverseScheduler, DDIMScheduler, DDPMScheduler, DiTTransformer2DModel, UNet2DConditionModel,
                       UNet2DModel)

from coursekit._checks import init_defaults
from coursekit.diffusion import from_diffusers, interop
from coursekit.models import dit as D
from coursekit.models import unet as U

TABLES = {
    UNet2DModel: (U._MAPPED_2D, U._REQUIRED_2D, U._INERT),
    UNet2DConditionModel: (U._MAPPED_CONDITION, U._REQUIRED_CONDITION, U._INERT_CONDITION),
    DiTTransformer2DModel: (D._MAPPED, D._REQUIRED, D._INERT),
    **{cls: (interop._MAPPED, interop._REQUIRED, interop._INERT)
       for cls in (DDIMScheduler, DDPMScheduler, DDIMInverseScheduler)},
}


@pytest.mark.parametrize("cls", list(TABLES), ids=lambda c: c.__name__)
def test_every_key_of_the_installed_diffusers_is_implemented_inert_or_refused(cls):
    mapped, required, inert = TABLES[cls]
    assert not set(mapped) & set(inert) and not set(required) & (set(mapped) | set(inert))
    unclassified = set(init_defaults(cls)) - set(mapped) - set(required) - set(inert)
    assert not unclassified, f"{cls.__name__} keys the loader neither implements nor refuses: {sorted(unclassified)}"


def other_value(value):
    """A value unlike ``value`` of the same kind."""
    if value is None:
        return "something"
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return f"{value}-other"


UNET_2D = dict(U.diffusers_unet(U.unet_ddpm_cifar10(channels=(32, 64, 64, 64))).config)
UNET_CONDITION = dict(U.diffusers_unet(U.unet_shapes()).config)
DIT = dict(D.diffusers_dit(D.dit_s2(input_size=8, depth=2, freq_shift=1.0, mlp_norm_eps=1e-5)).config)
CASES = ([("unet-2d", UNET_2D, U.config_from_diffusers, k, v) for k, v in U._REQUIRED_2D.items()]
         + [("unet-condition", UNET_CONDITION, U.config_from_diffusers, k, v) for k, v in U._REQUIRED_CONDITION.items()]
         + [("dit", DIT, D.config_from_diffusers, k, v) for k, v in D._REQUIRED.items()])


@pytest.mark.parametrize("config, load, key, value", [c[1:] for c in CASES], ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_each_refused_key_is_named(config, load, key, value):
    load(config)  # the base config loads
    with pytest.raises(ValueError, match=rf"^config\.{key}=.* is not supported"):
        load({**config, key: other_value(value)})


@pytest.mark.parametrize("key, value", [("thresholding", True), ("rescale_betas_zero_snr", True)])
@pytest.mark.parametrize("cls", [DDIMScheduler, DDPMScheduler])
def test_each_refused_scheduler_key_is_named(cls, key, value):
    with pytest.raises(ValueError, match=rf"^config\.{key}=True is not supported"):
        from_diffusers(cls(**{key: value}), 10)


def test_the_refused_options_do_change_diffusers_outputs():
    """What the loader refuses matters: on the course's text U-Net layout, a mid-block scale factor of 2 and a
    SiLU after the time embedding change diffusers' outputs (measured max abs 0.25 and 0.067 at random init)."""
    torch.manual_seed(0)
    base = U.diffusers_unet(U.unet_shapes()).eval()
    x, t, text = torch.randn(1, 3, 16, 16), torch.tensor([500]), torch.randn(1, 4, 128)
    with torch.no_grad():
        want = base(x, t, encoder_hidden_states=text).sample
        for change in (dict(mid_block_scale_factor=2), dict(time_embedding_act_fn="silu")):
            settings = {k: v for k, v in base.config.items() if not k.startswith("_")}  # "_use_default_values" resets
            other = UNet2DConditionModel(**{**settings, **change}).eval()
            other.load_state_dict(base.state_dict())
            assert (other(x, t, encoder_hidden_states=text).sample - want).abs().max() > 1e-3, change
            with pytest.raises(ValueError, match=rf"^config\.{next(iter(change))}"):
                U.from_diffusers(other)


def test_an_unknown_key_passes_only_at_the_librarys_default():
    with pytest.raises(ValueError, match=r"^config\.new_option=2 is unknown"):
        U.config_from_diffusers({**UNET_2D, "new_option": 2}, {"new_option": 1})
    assert U.config_from_diffusers({**UNET_2D, "new_option": 1}, {"new_option": 1}) == U.config_from_diffusers(UNET_2D)
    with pytest.raises(ValueError, match=r"^config\.new_option=1 is unknown"):
        U.config_from_diffusers({**UNET_2D, "new_option": 1})  # no defaults given: every unknown key is refused


def test_a_step_count_below_one_is_refused():
    with pytest.raises(ValueError, match="^num_inference_steps must be >= 1"):
        from_diffusers(DDIMScheduler(), 0)


def test_from_diffusers_refuses_other_schedulers_eta_off_ddim_and_no_step_count():
    from diffusers import EulerDiscreteScheduler

    with pytest.raises(ValueError, match=r"^scheduler must be one of \['DDIMScheduler'"):
        from_diffusers(EulerDiscreteScheduler(), 10)
    with pytest.raises(ValueError, match=r"^scheduler_class must be one of \['DDIMScheduler'"):
        interop.sampler_settings_from_diffusers(DDIMScheduler().config, EulerDiscreteScheduler)
    for cls in (DDPMScheduler, DDIMInverseScheduler):
        with pytest.raises(ValueError, match=f"^eta applies to DDIMScheduler only, got eta=0.5 for {cls.__name__}"):
            from_diffusers(cls(), 10, eta=0.5)
    with pytest.raises(ValueError, match="^num_inference_steps must be given, or set on the scheduler"):
        from_diffusers(DDIMScheduler())  # no set_timesteps yet
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(7)
    assert from_diffusers(scheduler)[1].num_steps == 7 and from_diffusers(scheduler, 3)[1].num_steps == 3


def test_trained_betas_give_the_schedulers_own_alphas_cumprod():
    """A schedule that is none of the named ones (sorted random betas): read as given, exactly."""
    from coursekit.diffusion import linear

    betas = torch.sort(torch.rand(1000, generator=torch.Generator().manual_seed(0)) * 0.02 + 1e-4).values
    scheduler = DDIMScheduler(trained_betas=betas.numpy())
    schedule, _ = from_diffusers(scheduler, 10)
    assert schedule.name == "trained" and torch.equal(schedule.betas, scheduler.betas)
    assert torch.equal(schedule.alphas_cumprod, scheduler.alphas_cumprod)  # measured max gap 0.0
    # not the linear schedule the scheduler's beta_schedule still names (they differ by up to 0.0062)
    assert (linear(1000).alphas_cumprod - scheduler.alphas_cumprod).abs().max() > 1e-3
