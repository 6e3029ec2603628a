"""coursekit: applications of denoising diffusion models on images, from scratch."""

__version__ = "0.1.0"
