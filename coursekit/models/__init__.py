"""Denoisers: networks (U-Net, DiT, ...) and the analytic Gaussian-mixture oracle."""

from .analytic import MixtureDenoiser

__all__ = ["MixtureDenoiser"]
