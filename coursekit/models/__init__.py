"""Denoisers: the U-Net, DiT and U-ViT networks, eDiff-I experts, a 2-D toy MLP, and the analytic Gaussian-mixture oracle.

Every one is called as ``out = model(x_t, t, cond)`` (ARCHITECTURE.md, "The one protocol").
"""

from .analytic import MixtureDenoiser
from .counting import activation_shapes, count_macs, count_parameters
from .dit import DIT_SIZES, DiT, DiTConfig, dit_b2, dit_l2, dit_s2, dit_shapes, dit_size, dit_xl2
from .experts import ConditionSwitch, Experts
from .toy import ToyMLP
from .unet import UNet, UNetConfig, unet_ddpm_cifar10, unet_shapes
from .uvit import UViT, UViTConfig, uvit_shapes, uvit_small

__all__ = [
    "ConditionSwitch", "DIT_SIZES", "DiT", "DiTConfig", "Experts", "MixtureDenoiser", "ToyMLP", "UNet", "UNetConfig",
    "UViT", "UViTConfig",
    "activation_shapes", "count_macs", "count_parameters", "dit_b2", "dit_l2", "dit_s2", "dit_shapes", "dit_size", "dit_xl2",
    "unet_ddpm_cifar10", "unet_shapes", "uvit_shapes", "uvit_small",
]
