"""Every method on Stable Diffusion equals diffusers, offline, on tiny random parts (``tiny_sd.py``) of SD 1.5's layout
(epsilon) and SD 2.1's (v-prediction, linear projections, upcast attention), with diffusers' U-Net and with the
course's own U-Net carrying the same weights.

Measured on CPU in float32 (torch 2.13, diffusers 0.42.1, transformers 5.25): every comparison below is exact (max abs
difference 0.0) except null-text inversion against the reference loop, which is exact too; the tests assert
equality. Where coursekit's rule differs from diffusers' by design (DiffEdit keeps the region outside the mask at the
level a step reaches, diffusers one level behind), the test shows equality with diffusers' rule emulated and keeps
ours.
"""

import warnings

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from coursekit.tiny_sd import LAYOUTS, SD15_SCHEDULER, SD21_SCHEDULER, diffusers_pipeline, tiny_parts

from coursekit.diffusion import from_diffusers, sample
from coursekit.editing import (diffedit, diffedit_mask, imagic, invert, null_text_invert, reconstruct, sdedit,
                               translate_captions)
from coursekit.editing.imagic import fine_tune, optimize_embedding
from coursekit.editing.sdedit import FromLevel, start_index
from coursekit.pipeline import Sampling
from coursekit.stable_diffusion import SD_DEFAULTS, from_parts, stable_diffusion

NETWORKS = ("coursekit", "diffusers")
STEPS = 10
PROMPTS = ["a photo of a cat", "a red dog on the grass"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return {layout: tiny_parts(tmp_path_factory.mktemp(layout), layout, seed=i) for i, layout in enumerate(LAYOUTS)}


@pytest.fixture(scope="module")
def pipes(parts):
    return {(layout, network): from_parts(**p, network=network) for layout, p in parts.items() for network in NETWORKS}


@pytest.fixture(scope="module")
def oracles(parts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # DiffEdit's pipeline is deprecated (still exported)
        return {(layout, name): diffusers_pipeline(p, name) for layout, p in parts.items()
                for name in ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline",
                             "StableDiffusionDiffEditPipeline")}


def images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_shipped_scheduler_configs_load():
    """SD 1.5's PNDM config and SD 2.1's DDIM config, read by DDIM: skip_prk_steps (a key DDIM does not take) is
    ignored as diffusers ignores it, and the plan is diffusers' (981 ... 1 for offset 1)."""
    for config, prediction_type in ((SD15_SCHEDULER, "epsilon"), (SD21_SCHEDULER, "v_prediction")):
        for cls in (DDIMScheduler, DDIMInverseScheduler):
            scheduler = cls.from_config(config)
            scheduler.set_timesteps(STEPS)
            schedule, sampler = from_diffusers(scheduler)
            assert [t for t, _ in sampler.plan(1000)] == scheduler.timesteps.tolist()
            assert torch.equal(schedule.alphas_cumprod, scheduler.alphas_cumprod)
            assert sampler.prediction_type == prediction_type and sampler.offset == 1
        assert Sampling.from_diffusers(config) == Sampling(offset=1, set_alpha_to_one=False, clip_sample=None,
                                                           use_clipped_model_output=False)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_pipeline_reads_the_model(pipes, layout, network):
    pipe = pipes[layout, network]
    assert pipe.model_shape == (4, 16, 16) and pipe.resolution == 32 and pipe.defaults == SD_DEFAULTS
    assert pipe.prediction_type == {"sd15": "epsilon", "sd21": "v_prediction"}[layout]
    assert pipe.sampler(STEPS).plan(1000)[0] == (901, 801) and pipe.sampling.clip_sample is None


@pytest.mark.parametrize("layout", LAYOUTS)
def test_text_features_and_codec_equal_diffusers(pipes, oracles, parts, layout):
    pipe, ref = pipes[layout, "coursekit"], oracles[layout, "StableDiffusionPipeline"]
    cond, uncond = ref.encode_prompt(PROMPTS, "cpu", 1, True, [""] * 2)
    assert torch.equal(pipe.text_features(PROMPTS), cond) and torch.equal(pipe.text_features([""] * 2), uncond)
    vae, x = parts[layout]["vae"], images()
    with torch.no_grad():
        z = pipe.encode(x)
        assert torch.equal(z, vae.encode(x).latent_dist.mode() * vae.config.scaling_factor)
        assert torch.equal(pipe.decode(z), vae.decode(z / vae.config.scaling_factor).sample)


@pytest.mark.parametrize("guidance_scale", [1.0, 7.5])
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_generate_equals_stable_diffusion_pipeline(pipes, oracles, layout, network, guidance_scale):
    pipe, ref = pipes[layout, network], oracles[layout, "StableDiffusionPipeline"]
    ours = pipe.generate(PROMPTS, guidance_scale=guidance_scale, num_inference_steps=STEPS, seed=3)
    theirs = ref(PROMPTS, guidance_scale=guidance_scale, num_inference_steps=STEPS, generator=generator(3),
                 output_type="latent").images
    assert torch.equal(ours, pipe.decode(theirs))


@pytest.mark.parametrize("strength", [0.3, 0.6, 1.0])
@pytest.mark.parametrize("network", NETWORKS)
def test_sdedit_equals_img2img(pipes, oracles, network, strength):
    pipe, ref = pipes["sd15", network], oracles["sd15", "StableDiffusionImg2ImgPipeline"]
    x = images()
    ours = sdedit(pipe, x, PROMPTS, strength=strength, num_inference_steps=STEPS, guidance_scale=7.5, seed=5)
    with torch.no_grad():  # latents in: img2img then draws nothing from the generator before its noise
        theirs = ref(PROMPTS, image=pipe.encode(x), strength=strength, num_inference_steps=STEPS, guidance_scale=7.5,
                     generator=generator(5), output_type="latent").images
    assert torch.equal(ours, pipe.decode(theirs))


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_invert_equals_a_ddim_inverse_scheduler_loop(pipes, parts, layout, network):
    pipe, p = pipes[layout, network], parts[layout]
    x = images()
    inversion = invert(pipe, x, PROMPTS, num_inference_steps=STEPS)
    scheduler = DDIMInverseScheduler.from_config(p["scheduler_config"])
    scheduler.set_timesteps(STEPS)
    with torch.no_grad():
        latent, cond = pipe.encode(x), pipe.text_features(PROMPTS)
        for i, t in enumerate(scheduler.timesteps):
            latent = scheduler.step(p["unet"](latent, t, encoder_hidden_states=cond).sample, t, latent).prev_sample
            assert inversion.timesteps[i + 1] == t and torch.equal(inversion.latents[i + 1], latent)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_ddib_is_invert_then_generate(pipes, oracles, layout, network):
    """DDIB's second half is diffusers' pipeline started from the inverted noise, without guidance."""
    pipe, ref = pipes[layout, network], oracles[layout, "StableDiffusionPipeline"]
    x = images()
    ours = translate_captions(pipe, x, source_prompt=PROMPTS, target_prompt=PROMPTS[::-1], num_inference_steps=STEPS)
    noise = invert(pipe, x, PROMPTS, num_inference_steps=STEPS).noise
    theirs = ref(PROMPTS[::-1], latents=noise, guidance_scale=1.0, num_inference_steps=STEPS,
                 output_type="latent").images
    assert torch.equal(ours, pipe.decode(theirs))


@pytest.mark.parametrize("network", NETWORKS)
def test_diffedit_equals_diffusers_with_its_lag_emulated(pipes, oracles, network):
    pipe, ref = pipes["sd15", network], oracles["sd15", "StableDiffusionDiffEditPipeline"]
    x, source, target = images(1, seed=2), ["a photo of a cat"], ["a photo of a dog"]
    with torch.no_grad():
        z = pipe.encode(x)
    # step 1, the mask (batch 1: diffusers normalises over the batch, coursekit per image)
    mask = diffedit_mask(pipe, x, target_prompt=target, source_prompt=source, num_inference_steps=STEPS,
                         guidance_scale=7.5, seed=4)
    theirs = ref.generate_mask(image=z, target_prompt=target, source_prompt=source, num_inference_steps=STEPS,
                               guidance_scale=7.5, generator=generator(4), output_type="np")
    assert torch.equal(mask, torch.from_numpy(theirs).float()[:, None]) and 0 < mask.mean() < 1
    # step 2, the encoding at guidance 1 to inpaint strength 0.5
    encoded = ref.invert(prompt=source, image=z, num_inference_steps=STEPS, inpaint_strength=0.5,
                         guidance_scale=1.0).latents  # (1, k, 4, h, w), the noisiest first
    inversion = invert(pipe, x, source, num_inference_steps=STEPS)
    k = encoded.shape[1]
    assert torch.equal(torch.stack(inversion.latents[1:k + 1][::-1], 1), encoded)
    # step 3, the decoding: diffusers' keeps the inverted latent of the level a step starts from, ours the level reached
    decoded = ref(prompt=target, mask_image=mask, image_latents=encoded, inpaint_strength=0.5, num_inference_steps=STEPS,
                  guidance_scale=7.5, output_type="latent").images
    _, sampler = pipe.inversion_samplers(STEPS)
    plan, start = sampler.plan(1000), start_index(STEPS, 0.5)
    levels = dict(zip(inversion.timesteps, inversion.latents))
    came_from = {prev: t for t, prev in plan}

    def decode(keep):
        return sample(pipe.guided(7.5), pipe.schedule, levels[plan[start][0]], FromLevel(sampler, start, keep, mask),
                      cond=pipe.text_features(target), progress=False)

    assert torch.equal(decode(lambda level: levels[came_from[level]]), decoded)
    ours = diffedit(pipe, x, target_prompt=target, source_prompt=source, mask_image=mask, inpaint_strength=0.5,
                    num_inference_steps=STEPS, guidance_scale=7.5)
    assert torch.equal(ours.images, pipe.decode(decode(lambda level: levels[max(level, -1)])))
    assert torch.equal(ours.mask, mask)


def reference_null_text(pipe, unet, scheduler, trajectory, cond, uncond, guidance_scale, num_inner_steps, epsilon):
    """Null-text inversion's ``null_optimization`` as the authors' notebook (null_text_w_ptp.ipynb) writes it, on
    diffusers' U-Net and scheduler: Adam at 1e-2 (1 - i / 100), stop after an update once the loss before it was below
    epsilon + 2e-5 i, then the guided step with [uncond, cond] in one batch. Returns the per-step unconditional
    features and the final latent."""
    T = scheduler.config.num_train_timesteps

    def prev_step(model_output, t, sample):
        prev_t = t - T // scheduler.num_inference_steps
        abar = scheduler.alphas_cumprod[t]
        abar_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
        x0 = (sample - (1 - abar) ** 0.5 * model_output) / abar ** 0.5
        return abar_prev ** 0.5 * x0 + (1 - abar_prev) ** 0.5 * model_output

    nulls, latent = [], trajectory[-1]
    for i, t in enumerate(scheduler.timesteps):
        uncond = uncond.clone().detach().requires_grad_(True)
        optimizer = torch.optim.Adam([uncond], lr=1e-2 * (1.0 - i / 100.0))
        latent_prev = trajectory[len(trajectory) - i - 2]
        with torch.no_grad():
            noise_cond = unet(latent, t, encoder_hidden_states=cond).sample
        for _ in range(num_inner_steps):
            noise_uncond = unet(latent, t, encoder_hidden_states=uncond).sample
            noise = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
            loss = torch.nn.functional.mse_loss(prev_step(noise, t, latent), latent_prev)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if loss.item() < epsilon + i * 2e-5:
                break
        nulls.append(uncond.detach())
        with torch.no_grad():
            both = unet(torch.cat([latent] * 2), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
            noise_uncond, noise_cond = both.chunk(2)
            latent = prev_step(noise_uncond + guidance_scale * (noise_cond - noise_uncond), t, latent)
    return nulls, latent


@pytest.mark.slow
@pytest.mark.parametrize("network", NETWORKS)
def test_null_text_inversion_equals_the_reference_loop(pipes, parts, network):
    """50 steps at guidance 7.5 (the paper's), 3 inner iterations, the paper's learning rate. With diffusers' U-Net the
    arithmetic is the reference's: equal. The course's U-Net computes the same forward pass but a different backward
    one (k and v are one fused projection, so the gradient into the text features is one matrix product, not a sum
    of two): its gradients differ in the last bits (1.8e-8 here), which Adam's normalisation turns into null features
    up to 1.2e-3, 7.5e-3 and 1.6e-3 apart and reconstructions 3.0e-5, 2.7e-5 and 4.2e-5 apart (images 6, 7, 8,
    measured), hence the tolerances. That null-text inversion restores the guided round trip is measured on a trained
    model, the shapes U-Net (``test_inversion.py``): a random one has nothing to restore."""
    pipe, p = pipes["sd15", network], parts["sd15"]
    x, prompt, steps = images(1, seed=6), ["a photo of a cat"], 50
    ours = null_text_invert(pipe, x, prompt, num_inference_steps=steps, guidance_scale=7.5, num_inner_steps=3)
    assert pipe.defaults.null_text_lr == 1e-2 and ours.guidance_scale == 7.5
    scheduler = DDIMScheduler.from_config(p["scheduler_config"])
    scheduler.set_timesteps(steps)
    nulls, latent = reference_null_text(pipe, p["unet"], scheduler, ours.latents, pipe.text_features(prompt),
                                        pipe.text_features([""]), 7.5, 3, 1e-5)
    with torch.no_grad():
        back, theirs = reconstruct(pipe, ours), pipe.decode(latent)
    gaps = [(ours.null_embeds[int(t)] - null).abs().max().item() for t, null in zip(scheduler.timesteps, nulls)]
    if network == "diffusers":
        assert max(gaps) == 0 and torch.equal(back, theirs)
    else:
        assert max(gaps) < 1e-2 and (back - theirs).abs().max() < 1e-4


def fixed_loss(denoiser, pipe, z, embedding, draws: int = 32) -> float:
    """The denoising loss on the same ``draws`` (t, noise) pairs: a measure that does not move with the draws."""
    from coursekit.diffusion import diffusion_loss

    with torch.no_grad():
        return diffusion_loss(denoiser, pipe.schedule, z.expand(draws, -1, -1, -1), embedding.expand(draws, -1, -1),
                              generator=generator(123)).item()


def hooks(module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


@pytest.mark.slow
@pytest.mark.parametrize("network", NETWORKS)
def test_imagic_fits_the_image_and_leaves_the_callers_model_as_it_was(pipes, network):
    """Stage 1 moves only the embedding; stage 2 (SD's default: LoRA adapters beside the network, or a full copy)
    never changes the caller's pipeline (its weights bitwise, no hook left behind, the text encoder shared, not
    copied); both stages lower the loss on fixed draws (measured on the tiny SD 1.5, 20 steps each: stage 1 1.107 ->
    1.105, a random U-Net reads little of its text; stage 2 from there, LoRA at 1e-2 to 1.092 with the course's U-Net
    and 1.089 with diffusers', whose adapters sit on separate q, k, v; a full copy at 1e-4 to 0.875)."""
    pipe = pipes["sd15", network]
    x, weights = images(1, seed=9), {k: v.clone() for k, v in pipe.denoiser.state_dict().items()}
    with torch.no_grad():
        z, target = pipe.encode(x), pipe.text_features(["a photo of a dog"])
    e_opt, _ = optimize_embedding(pipe, x, target, steps=20, lr=1e-1, seed=0)
    assert all(torch.equal(v, weights[k]) for k, v in pipe.denoiser.state_dict().items())
    assert fixed_loss(pipe.denoiser, pipe, z, e_opt) < fixed_loss(pipe.denoiser, pipe, z, target)
    for trainable, lr in (("lora", 1e-2), ("full", 1e-4)):
        tuned, _ = fine_tune(pipe, x, e_opt, steps=20, lr=lr, trainable=trainable, seed=1)
        assert all(torch.equal(v, weights[k]) for k, v in pipe.denoiser.state_dict().items()) and hooks(pipe.denoiser) == 0
        assert tuned.denoiser.encoder is pipe.denoiser.encoder and tuned.codec is pipe.codec
        assert fixed_loss(tuned.denoiser, pipe, z, e_opt) < fixed_loss(pipe.denoiser, pipe, z, e_opt)
    result = imagic(pipe, x, "a photo of a dog", embed_steps=2, tune_steps=2)  # SD's defaults: LoRA
    assert result.generate([0.0, 1.0], num_inference_steps=3).shape == (2, 3, 32, 32) and hooks(pipe.denoiser) == 0


def test_a_pipeline_loads_from_a_folder_and_from_a_diffusers_pipeline(parts, pipes, oracles, tmp_path):
    """What ``stable_diffusion(name)`` does after the download, offline: the parts saved in diffusers' layout, loaded
    back, give the same images as the parts themselves; a diffusers pipeline object is read as its parts."""
    p = parts["sd21"]
    oracles["sd21", "StableDiffusionPipeline"].save_pretrained(tmp_path)
    want = pipes["sd21", "coursekit"].generate(PROMPTS, num_inference_steps=3, seed=1)
    for network in NETWORKS:
        loaded = stable_diffusion(tmp_path, network=network, local_files_only=True)
        assert loaded.prediction_type == "v_prediction" and loaded.model_shape == (4, 16, 16)
        assert torch.equal(loaded.generate(PROMPTS, num_inference_steps=3, seed=1), want)
    from_object = stable_diffusion(oracles["sd21", "StableDiffusionPipeline"], network="diffusers")
    assert from_object.denoiser.network.unet is p["unet"]
    assert torch.equal(from_object.generate(PROMPTS, num_inference_steps=3, seed=1), want)


def test_half_precision_weights_sample_in_float32(parts):
    """float16 weights (SD 2.1's layout: its attention upcast to float32): the networks run in 16 bits, the latents
    and the steps stay float32, and the images come out float32 and near the float32 pipeline's (measured on the CPU:
    max abs 0.0072)."""
    p = parts["sd21"]
    full = from_parts(**p, network="coursekit")
    half = from_parts(**{**p, "unet": _cast(p["unet"]), "vae": _cast(p["vae"]),
                         "text_encoder": _cast(p["text_encoder"])}, network="coursekit")
    assert half.denoiser.network.dtype == torch.float16 and half.text_features(PROMPTS).dtype == torch.float32
    ours, want = half.generate(PROMPTS, num_inference_steps=5), full.generate(PROMPTS, num_inference_steps=5)
    assert ours.dtype == torch.float32 and (ours - want).abs().max() < 0.02


def _cast(module):
    import copy

    return copy.deepcopy(module).to(torch.float16)


@pytest.mark.parametrize("call, name", [
    (lambda pipe: pipe.generate(["a cat " * 40]), r"prompt\[0\] has 80 tokens"),
    (lambda pipe: sdedit(pipe, images()[..., :16, :16], PROMPTS), "image"),
    (lambda pipe: sdedit(pipe, images() * 2, PROMPTS), "image"),
    (lambda pipe: sdedit(pipe, images(), PROMPTS, mask_image=torch.ones(2, 1, 8, 8)), "mask_image"),
    (lambda pipe: invert(pipe, images(), ["a cat"]), "prompt"),
    (lambda pipe: imagic(pipe, images(1), "a cat", trainable="full"), "tune_lr"),
    (lambda pipe: imagic(pipe, images(1), "a cat", trainable="some", tune_lr=1e-3), "trainable"),
])
def test_bad_input_raises_value_error_naming_the_argument(pipes, call, name):
    with pytest.raises(ValueError, match=rf"^{name}"):
        call(pipes["sd15", "coursekit"])


def test_masks_at_the_images_resolution_come_to_the_latents(pipes):
    """A mask drawn on the 32 x 32 images is averaged over each latent cell's 2 x 2 pixels; one at the latents'
    16 x 16 is used as it is; where it is 0 SDEdit keeps the image's latents exactly."""
    pipe, x = pipes["sd15", "coursekit"], images()
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :, 17:] = 1  # the right half and one pixel column more: that latent column is half covered
    latent_mask = pipe.mask_to_model(mask, 2)
    assert latent_mask.shape == (1, 1, 16, 16) and latent_mask[0, 0, 0, 8].item() == 0.5
    assert torch.equal(pipe.mask_to_model(latent_mask, 2), latent_mask)
    back = pipe.mask_to_image(latent_mask)  # each cell's value on its 2 x 2 pixels
    assert back.shape == (1, 1, 32, 32) and torch.equal(back[..., ::2, ::2], latent_mask)
    assert torch.equal(back[..., 1::2, 1::2], latent_mask) and back[0, 0, 5, 17].item() == 0.5
    with pytest.raises(ValueError, match="^mask"):
        pipe.mask_to_image(mask)  # already at the images' resolution: not a latent mask
    out = sdedit(pipe, x, PROMPTS, strength=0.6, num_inference_steps=STEPS, mask_image=mask)
    with torch.no_grad():
        kept = pipe.encode(x)
    edited = sdedit(pipe, x, PROMPTS, strength=0.6, num_inference_steps=STEPS, mask_image=torch.zeros(1, 1, 32, 32))
    assert torch.equal(edited, pipe.decode(kept)) and not torch.equal(out, edited)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sparse_sdedit_runs_on_stable_diffusions_unet(pipes, layout):
    """SIGE on SD's blocks (spatial transformers: self- and cross-attention, GEGLU; SD 2.1's linear projections and
    upcast attention): an unchanged image replays the dense edit exactly; a corner edit, computed on the latent
    tiles its pixels reach, stays close to the dense edit of the same image."""
    from coursekit.editing import sparse_sdedit
    from coursekit.evaluate import psnr

    pipe = pipes[layout, "coursekit"]
    original = images(1, seed=3)
    edited = original.clone()
    edited[..., 2:8, 3:9] = torch.tensor([1.0, -1.0, -1.0])[:, None, None]  # a red patch, 3.5% of the image
    options = dict(prompt=PROMPTS[:1], strength=0.6, num_inference_steps=STEPS, guidance_scale=7.5, seed=5)
    assert torch.equal(sparse_sdedit(pipe, original, original_image=original, **options), sdedit(pipe, original, **options))
    dense = sdedit(pipe, edited, **options)
    # the tiny random decoder hardly shows the patch: the original's own edit is already 52.7 / 48.3 dB (sd15 / sd21)
    # from the dense edit of the patched image; the sparse edits are 59.3-59.4 / 55.2 dB from it: they computed the
    # patch's effect (without which they would sit at the original's figure)
    unedited = psnr(sdedit(pipe, original, **options), dense).item()
    for norms in ("fresh", "frozen"):
        sparse = sparse_sdedit(pipe, edited, original_image=original, norms=norms, **options)
        assert psnr(sparse, dense).item() > unedited + 4, (layout, norms)
    with pytest.raises(ValueError, match="pipe.denoiser must be a TextConditioned coursekit UNet"):
        sparse_sdedit(pipes[layout, "diffusers"], edited, original_image=original, **options)


def test_tiny_parts_make_a_pipeline_offline_with_no_folder_given():
    a, b = (from_parts(**tiny_parts(seed=7)) for _ in range(2))  # a temporary folder each; the same seed, the same parts
    x = a.generate(PROMPTS[:1], num_inference_steps=2, seed=0)
    assert x.shape == (1, 3, 32, 32) and torch.equal(x, b.generate(PROMPTS[:1], num_inference_steps=2, seed=0))
    with pytest.raises(ValueError, match="layout must be one of"):
        tiny_parts(layout="sdxl")


def test_tiny_parts_take_a_resolution():
    pipe = from_parts(**tiny_parts(resolution=64))
    assert pipe.resolution == 64 and pipe.model_shape == (4, 32, 32)
    assert pipe.generate(PROMPTS[:1], num_inference_steps=2).shape == (1, 3, 64, 64)
    for bad in (30, 4, 64.0):
        with pytest.raises(ValueError, match="^resolution"):
            tiny_parts(resolution=bad)


def test_find_pipeline_without_a_gpu_runs_offline_and_loads_real_weights_only_when_asked(oracles, tmp_path, monkeypatch):
    """No CUDA: the tiny parts, with the reason; use="real" loads a folder on the CPU (the route a downloaded model
    takes), and refuses, naming the model, what it cannot load. With CUDA but a name not on the machine and no
    download, it falls back offline without touching the network (the cache only)."""
    from coursekit.stable_diffusion import find_pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    found = find_pipeline(tiny_resolution=32)
    assert found.name == "offline" and "no CUDA GPU" in found.reason and found.pipe.resolution == 32
    assert torch.equal(found.pipe.generate(PROMPTS, num_inference_steps=3, seed=1),
                       from_parts(**found.parts).generate(PROMPTS, num_inference_steps=3, seed=1))
    assert find_pipeline(use="tiny").name == "offline"
    oracles["sd21", "StableDiffusionPipeline"].save_pretrained(tmp_path / "sd")
    real = find_pipeline(tmp_path / "sd", use="real")
    assert real.name == "cpu" and real.parts is None and real.pipe.prediction_type == "v_prediction"
    with pytest.raises(ValueError, match="^model 'nobody/no-such-model' could not be loaded"):
        find_pipeline("nobody/no-such-model", use="real")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fallback = find_pipeline("nobody/no-such-model")
    assert fallback.name == "offline" and "download=True" in fallback.reason
    for options, name in ((dict(use="gpu"), "use"), (dict(download="yes"), "download"), (dict(model=3), "model")):
        with pytest.raises(ValueError, match=f"^{name}"):
            find_pipeline(**options)


def test_keep_outside_gives_the_photo_back_outside_the_regenerated_cells(pipes):
    """A masked edit behind the tiny VAE differs from the image everywhere (the decoder reaches across cells);
    keep_outside restores the image exactly outside the latent cells the mask touches, and keeps the edit inside."""
    from coursekit.editing import keep_outside

    pipe, x = pipes["sd15", "coursekit"], images()
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 4:9, 4:9] = 1  # touches latent rows and columns 2 to 4: pixels 4 to 9
    edited = sdedit(pipe, x, PROMPTS, strength=0.6, num_inference_steps=STEPS, mask_image=mask)
    kept = keep_outside(pipe, x, edited, mask)
    cells = torch.zeros(1, 1, 32, 32)
    cells[..., 4:10, 4:10] = 1
    assert not torch.equal(edited * (1 - cells), x * (1 - cells))
    assert torch.equal(kept * (1 - cells), x * (1 - cells)) and torch.equal(kept * cells, edited * cells)
    with pytest.raises(ValueError, match="^edited"):
        keep_outside(pipe, x, edited[:1], mask)
    with pytest.raises(ValueError, match="^mask_image"):
        keep_outside(pipe, x, edited, mask[..., :20])


@pytest.mark.slow
def test_every_method_runs_with_half_precision_weights(parts):
    """What lesson 10 runs on a GPU (SD in float16), run here on the CPU with the tiny SD 1.5 cast to float16:
    every method goes through, with float32 images out (the sampling arithmetic stays float32) and nothing
    non-finite, LoRA and null-text gradients through the float16 network included."""
    from coursekit.editing import keep_outside

    p = parts["sd15"]
    pipe = from_parts(**{**p, "unet": _cast(p["unet"]), "vae": _cast(p["vae"]), "text_encoder": _cast(p["text_encoder"])})
    x, prompt, target = images(1, seed=4), ["a photo of a cat"], ["a photo of a dog"]
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:16, 8:16] = 1
    edited = sdedit(pipe, x, prompt, strength=0.5, num_inference_steps=4, mask_image=mask)
    outs = [edited, keep_outside(pipe, x, edited, mask),
            reconstruct(pipe, invert(pipe, x, prompt, num_inference_steps=4)),
            reconstruct(pipe, null_text_invert(pipe, x, prompt, num_inference_steps=4, num_inner_steps=2)),
            diffedit(pipe, x, target_prompt=target, source_prompt=prompt, num_inference_steps=4).images,
            imagic(pipe, x, target[0], embed_steps=2, tune_steps=2).generate([0.0, 1.0], num_inference_steps=3),
            translate_captions(pipe, x, source_prompt=prompt, target_prompt=target, num_inference_steps=4)]
    for out in outs:
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
