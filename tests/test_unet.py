"""The U-Net: diffusers' UNet2DModel and UNet2DConditionModel map onto it weight for weight and give
the same outputs (measured max abs difference: 1.6e-6 and 0.0 on CPU float32; the bound is 1e-5)."""

import inspect

import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel

from coursekit.models import unet as U

TOL = 1e-5


def compare(cfg, batch=2, size=32, tokens=7, seed=0):
    torch.manual_seed(seed)
    ref = U.diffusers_unet(cfg).eval()
    ours = U.from_diffusers(ref).eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, cfg.in_channels, size, size, generator=g)
    t = torch.tensor([3, 700][:batch])
    cond = None if cfg.context_dim is None else torch.randn(batch, tokens, cfg.context_dim, generator=g)
    with torch.no_grad():
        want = ref(x, t, encoder_hidden_states=cond).sample if cond is not None else ref(x, t).sample
        got = ours(x, t, cond)
    return (want - got).abs().max().item(), ours, ref


def test_ddpm_cifar10_unet_matches_diffusers_unet2dmodel():
    cfg = U.unet_ddpm_cifar10(dropout=0.0)
    err, ours, ref = compare(cfg)
    assert isinstance(ref, UNet2DModel) and err < TOL
    assert sum(p.numel() for p in ours.parameters()) == 35_746_307  # DDPM's 35.7M


@pytest.mark.parametrize("overrides", [{}, {"time_norm": "scale_shift", "linear_projection": True},
                                       {"layers_per_level": 2, "heads": (2, 4, 8)}])
def test_text_unet_matches_diffusers_unet2dconditionmodel(overrides):
    err, ours, ref = compare(U.unet_shapes(**overrides))
    assert isinstance(ref, UNet2DConditionModel) and err < TOL


def test_multi_head_ddpm_attention_and_padding_variants_match():
    err, _, _ = compare(U.unet_ddpm_cifar10(dropout=0.0, heads=(2, 4, 4, 4), downsample_padding=1,
                                            channels=(64, 128, 128, 128)))
    assert err < TOL


@pytest.mark.parametrize("cfg", [U.unet_ddpm_cifar10(), U.unet_shapes(time_norm="scale_shift")])
def test_config_round_trips_through_diffusers(cfg):
    assert U.config_from_diffusers(U.diffusers_unet(cfg).config) == cfg


def test_the_parity_check_can_fail():
    """Swapping the sin/cos order of the time embedding, a one-flag change, breaks parity by far."""
    cfg = U.unet_ddpm_cifar10(dropout=0.0, channels=(32, 64, 64, 64))
    torch.manual_seed(0)
    ref = U.diffusers_unet(cfg).eval()
    ours = U.UNet(U.unet_ddpm_cifar10(dropout=0.0, channels=(32, 64, 64, 64), flip_sin_to_cos=True)).eval()
    ours.load_state_dict(U.convert_diffusers_state_dict(ref.state_dict(), transformer=False))
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 700])
    with torch.no_grad():
        assert (ref(x, t).sample - ours(x, t)).abs().max() > 1e-3


@pytest.mark.parametrize("call, name", [
    (lambda: U.UNetConfig(channels=(64, 100)), "attention"),
    (lambda: U.UNetConfig(channels=(64, 100), attention=(False, False), heads=(1, 1)), "channels"),
    (lambda: U.UNetConfig(channels=(64, 96), attention=(False, True), heads=(1, 5)), "heads"),
    (lambda: U.UNetConfig(context_dim=64), "context_dim"),
    (lambda: U.UNetConfig(time_norm="film"), "time_norm"),
    (lambda: U.UNet(U.unet_shapes())(torch.zeros(1, 3, 32, 32), torch.tensor([1]), torch.zeros(1, 4, 64)), "cond"),
    (lambda: U.UNet(U.unet_shapes())(torch.zeros(1, 3, 32, 32), torch.tensor([1])), "cond"),
    (lambda: U.UNet(U.unet_shapes())(torch.zeros(1, 3, 30, 30), torch.tensor([1]), torch.zeros(1, 4, 128)), "x"),
    (lambda: U.UNet(U.unet_shapes())(torch.zeros(1, 1, 32, 32), torch.tensor([1]), torch.zeros(1, 4, 128)), "x"),
    (lambda: U.UNet(U.unet_shapes())(torch.zeros(2, 3, 32, 32), torch.tensor([1, 2, 3]), torch.zeros(2, 4, 128)), "t"),
    (lambda: U.config_from_diffusers(UNet2DModel(num_class_embeds=10, block_out_channels=(32, 64),
                                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                                 up_block_types=("UpBlock2D", "UpBlock2D")).config),
     "config.num_class_embeds"),
])
def test_bad_config_or_input_raises_value_error_naming_the_field(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_macs_by_module_adds_up_and_matches_the_reference_count():
    from coursekit.models.counting import count_macs, macs_by_module

    model = U.UNet(U.unet_ddpm_cifar10()).eval()
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([1])
    total = count_macs(model, x, t)
    parts = macs_by_module(model, x, t)
    assert round(total / 1e7) == 622  # 6.22 GMACs, as diffusers' UNet2DModel counted in methods.md 7.6
    assert sum(v for k, v in parts.items() if "." not in k) == total
    assert parts["down"] == sum(parts[f"down.{i}"] for i in range(4))


def test_macs_by_kind_splits_the_count_into_convolutions_projections_and_the_attention_matrix():
    from coursekit.models.counting import count_macs, macs_by_kind
    from coursekit.models.layers import Attention

    attention, x = Attention(64, 4).eval(), torch.randn(2, 16, 64)  # 2 x 16 tokens, 64 wide
    assert macs_by_kind(attention, x) == {"convolution": 0, "projection": 2 * 16 * 64 * (3 * 64 + 64),
                                          "attention": 2 * 2 * 16 * 16 * 64}  # Q K^T and A V, each N^2 D per image
    model = U.UNet(U.unet_shapes()).eval()
    inputs = torch.randn(1, 3, 32, 32), torch.tensor([1]), torch.randn(1, 16, 128)
    kinds = macs_by_kind(model, *inputs)
    assert sum(kinds.values()) == count_macs(model, *inputs) and min(kinds.values()) > 0
    with pytest.raises(ValueError, match="^fn"):
        macs_by_kind("unet")


def test_upcast_attention_computes_attention_in_float32_under_16_bit_weights():
    """diffusers' ``upcast_attention`` (SD 2.1's config sets it: its attention logits overflow float16): mapped from the
    config, and in a float16 network the attention itself runs in float32."""
    import torch.nn.functional as F

    from coursekit.models.layers import Attention

    cfg = U.config_from_diffusers(U.diffusers_unet(U.unet_shapes(upcast_attention=True)).config)
    assert cfg.upcast_attention and U.UNet(cfg).down[1].attn[0].block.attn2.upcast
    torch.manual_seed(0)
    attention = Attention(64, 4, upcast=True).half()
    x = torch.randn(2, 16, 64).half()
    q, k, v = (z.unflatten(-1, (4, -1)).transpose(1, 2) for z in attention.qkv(x).chunk(3, dim=-1))
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).half()
    assert torch.equal(attention(x), attention.out(want.transpose(1, 2).reshape(2, 16, 64)))


def test_unet_sd15_is_stable_diffusion_15s_published_config():
    from diffusers import UNet2DConditionModel

    # stable-diffusion-v1-5's unet/config.json, as published (the keys that are not diffusers' defaults)
    published = {"attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768,
                 "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                      "DownBlock2D"],
                 "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                 "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4,
                 "out_channels": 4, "layers_per_block": 2, "norm_eps": 1e-05, "norm_num_groups": 32, "sample_size": 64}
    defaults = {k: p.default for k, p in inspect.signature(UNet2DConditionModel.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert U.config_from_diffusers({**defaults, **published}, defaults) == U.unet_sd15()
