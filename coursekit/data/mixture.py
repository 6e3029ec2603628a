"""Gaussian mixtures: the one data distribution whose noised score is known in closed form.

If x_0 ~ sum_k pi_k N(mu_k, Sigma_k), then x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps is again a
mixture, sum_k pi_k N(sqrt(abar) mu_k, abar Sigma_k + (1 - abar) I), so the exact noise prediction
E[eps | x_t] = -sqrt(1 - abar) grad log p_t(x_t) (Tweedie's formula; Vincent 2011; Song & Ermon
2019) needs no network. That makes the mixture the course's model-free oracle for samplers and
inversion, in 2-D and in image shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_float, check_generator, check_int, check_tensor


class GaussianMixture:
    """p(x) = sum_k pi_k N(x; mu_k, Sigma_k) on R^D, whose samples are viewed with ``event_shape``.

    means: (K, D). covariances: (K, D, D) full, or (K, D) diagonal (what image-shaped mixtures
    use: a D x D matrix per component would not fit). weights: (K,) positive, normalised here;
    uniform when None. event_shape: e.g. (3, 32, 32) for images; (D,) when None.
    Internally each Sigma_k = U_k diag(lambda_k) U_k^T is kept in eigen form, in float64.
    """

    def __init__(
        self,
        means: torch.Tensor,
        covariances: torch.Tensor,
        weights: torch.Tensor | None = None,
        event_shape: Sequence[int] | None = None,
    ):
        check_tensor("means", means, ndim=2)
        K, D = means.shape
        check_tensor("covariances", covariances, ndim=(2, 3))
        if covariances.ndim == 3 and covariances.shape != (K, D, D):
            raise ValueError(f"covariances must have shape ({K}, {D}, {D}) or ({K}, {D}), got {tuple(covariances.shape)}")
        if covariances.ndim == 2 and covariances.shape != (K, D):
            raise ValueError(f"covariances must have shape ({K}, {D}, {D}) or ({K}, {D}), got {tuple(covariances.shape)}")
        if weights is None:
            weights = torch.ones(K, dtype=torch.float64)
        check_tensor("weights", weights, shape=(K,))
        if bool((weights <= 0).any()):
            raise ValueError("weights must all be > 0")
        event_shape = (D,) if event_shape is None else tuple(event_shape)
        if torch.Size(event_shape).numel() != D:
            raise ValueError(f"event_shape must hold D = {D} values, got {event_shape}")

        self.means = means.detach().double().cpu()
        self.weights = (weights / weights.sum()).detach().double().cpu()
        self.event_shape = event_shape
        cov = covariances.detach().double().cpu()
        if cov.ndim == 3:
            if not torch.allclose(cov, cov.transpose(1, 2), atol=1e-10):
                raise ValueError("covariances must be symmetric")
            self.eigvals, self.eigvecs = torch.linalg.eigh(cov)  # (K, D), (K, D, D)
        else:
            self.eigvals, self.eigvecs = cov, None  # diagonal: U_k = I
        if bool((self.eigvals <= 0).any()):
            raise ValueError("covariances must be positive definite")

    @classmethod
    def from_images(cls, images: torch.Tensor, std: float, weights: torch.Tensor | None = None) -> GaussianMixture:
        """One isotropic component N(image, std^2 I) per image of ``images`` (K, C, H, W)."""
        check_tensor("images", images, ndim=4)
        std = check_float("std", std, 0.0)
        if std == 0:
            raise ValueError("std must be > 0")
        K = images.shape[0]
        means = images.reshape(K, -1)
        return cls(means, torch.full_like(means, std**2, dtype=torch.float64), weights, images.shape[1:])

    @property
    def K(self) -> int:
        return self.means.shape[0]

    @property
    def D(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` float32 samples (n, *event_shape) and their component labels (n,)."""
        check_int("n", n, 1)
        check_generator("generator", generator)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.D, generator=generator, dtype=torch.float64) * self.eigvals[k].sqrt()
        if self.eigvecs is not None:
            z = torch.einsum("nde,ne->nd", self.eigvecs[k], z)
        x = self.means[k] + z
        return x.float().reshape(n, *self.event_shape), k

    def mean(self) -> torch.Tensor:
        """E[x], float64 (D,)."""
        return self.weights @ self.means

    def component_covariances(self) -> torch.Tensor:
        """Sigma_k, float64 (K, D, D)."""
        if self.eigvecs is None:
            return torch.diag_embed(self.eigvals)
        return self.eigvecs @ torch.diag_embed(self.eigvals) @ self.eigvecs.transpose(1, 2)

    def covariance(self) -> torch.Tensor:
        """Cov[x] = sum_k pi_k (Sigma_k + mu_k mu_k^T) - m m^T, float64 (D, D)."""
        second = self.component_covariances() + self.means[:, :, None] * self.means[:, None, :]
        m = self.mean()
        return torch.einsum("k,kde->de", self.weights, second) - m[:, None] * m[None, :]

    def posterior(self, x_t: torch.Tensor, abar: torch.Tensor | None = None) -> torch.Tensor:
        """p(component k | x_t) at noise level ``abar`` (B,), or (B, D) per coordinate as in ``eps`` (clean data
        when None), (B, K) float64."""
        return torch.softmax(self._noised(x_t, abar)[2], dim=1)

    def eps(self, x_t: torch.Tensor, abar: torch.Tensor, component: torch.Tensor | None = None) -> torch.Tensor:
        """The exact E[eps | x_t] at noise level ``abar`` (B,), for x_t (B, D); float64.

        eps = sqrt(1 - abar) sum_k w_k(x_t) (abar Sigma_k + (1 - abar) I)^-1 (x_t - sqrt(abar) mu_k),
        with w_k the posterior responsibility of component k, or, given ``component`` (B,) long,
        the one-hot choice of that component (the class-conditional denoiser).
        With diagonal covariances ``abar`` may be (B, D), one level per coordinate: coordinates noised
        independently (UniDiffuser's image and text at two timesteps); abar = 1 on a coordinate conditions on
        its clean value, abar = 0 leaves it out.
        """
        pz, a, logp = self._noised(x_t, abar)
        if component is None:
            w = torch.softmax(logp, dim=1)
        else:
            check_tensor("component", component, shape=(x_t.shape[0],), floating=False)
            if int(component.min()) < 0 or int(component.max()) >= self.K:
                raise ValueError(f"component must lie in [0, {self.K}), got values outside")
            w = torch.nn.functional.one_hot(component.to(pz.device), self.K).double()
        U = None if self.eigvecs is None else self.eigvecs.to(pz.device)
        pdiff = pz if U is None else torch.einsum("kde,bke->bkd", U, pz)  # back to the data basis
        return (1 - a[:, 0, :]).sqrt() * torch.einsum("bk,bkd->bd", w, pdiff)

    def _noised(self, x_t: torch.Tensor, abar: torch.Tensor | None):
        """For each component of the noised mixture: precision times (x_t - mean) in its eigenbasis
        (B, K, D), abar (B, 1, 1) or per coordinate (B, 1, D), and log pi_k + log N(x_t; component k) up to a
        constant (B, K)."""
        check_tensor("x_t", x_t, shape=(None, self.D))
        B = x_t.shape[0]
        x = x_t.double()
        if abar is None:
            abar = torch.ones(B, dtype=torch.float64)
        check_tensor("abar", abar, ndim=(1, 2))
        if abar.shape not in ((B,), (B, self.D)):
            raise ValueError(f"abar must have shape ({B},) or ({B}, {self.D}), got {tuple(abar.shape)}")
        if abar.ndim == 2 and self.eigvecs is not None:
            raise ValueError("abar may hold one level per coordinate (B, D) only for diagonal covariances")
        if bool((abar < 0).any()) or bool((abar > 1).any()):
            raise ValueError("abar must lie in [0, 1]")
        a = abar.double().to(x.device).reshape(B, 1, -1)  # (B, 1, 1) or (B, 1, D)
        var = a * self.eigvals.to(x.device) + (1 - a)  # (B, K, D) eigenvalues of the noised covariance
        diff = x[:, None, :] - a.sqrt() * self.means.to(x.device)  # (B, K, D)
        z = diff if self.eigvecs is None else torch.einsum("bkd,kde->bke", diff, self.eigvecs.to(x.device))
        pz = z / var
        logp = self.weights.to(x.device).log() - 0.5 * (z * pz).sum(-1) - 0.5 * var.log().sum(-1)  # (B, K)
        return pz, a, logp

    def __repr__(self) -> str:
        kind = "diagonal" if self.eigvecs is None else "full"
        return f"GaussianMixture(K={self.K}, D={self.D}, {kind} covariances, event_shape={self.event_shape})"
