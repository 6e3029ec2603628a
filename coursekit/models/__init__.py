"""Denoisers: the U-Net, DiT and U-ViT networks, eDiff-I experts, UniDiffuser's tasks, 2-D toy MLPs, and the analytic
Gaussian-mixture oracles; SIGE's engine that runs a U-Net sparsely where an input changed (``sparse``).

Every one is called as ``out = model(x_t, t, cond)`` (ARCHITECTURE.md, "The one protocol").
"""

from .analytic import JointMixtureDenoiser, MixtureDenoiser
from .counting import activation_shapes, count_macs, count_parameters
from .dit import DIT_SIZES, DiT, DiTConfig, dit_b2, dit_l2, dit_s2, dit_shapes, dit_size, dit_xl2
from .experts import ConditionSwitch, Experts, tree_boundaries
from .sparse import SparseUNet
from .toy import ToyMLP
from .unidiffuser import UniDiffuser, UniToyMLP, UniUViT
from .unet import UNet, UNetConfig, unet_ddpm_cifar10, unet_sd15, unet_shapes
from .uvit import UViT, UViTConfig, uvit_shapes, uvit_small

__all__ = [
    "ConditionSwitch", "DIT_SIZES", "DiT", "DiTConfig", "Experts", "JointMixtureDenoiser", "MixtureDenoiser", "SparseUNet", "ToyMLP",
    "UNet", "UNetConfig", "UniDiffuser", "UniToyMLP", "UniUViT", "UViT", "UViTConfig",
    "activation_shapes", "count_macs", "count_parameters", "dit_b2", "dit_l2", "dit_s2", "dit_shapes", "dit_size", "dit_xl2",
    "tree_boundaries", "unet_ddpm_cifar10", "unet_sd15", "unet_shapes", "uvit_shapes", "uvit_small",
]
