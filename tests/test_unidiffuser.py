"""UniDiffuser (models.unidiffuser): the exact joint oracle, the tasks as timestep choices, the loss, training."""

import pytest
import torch

from coursekit.data import toy2d
from coursekit.data.mixture import GaussianMixture
from coursekit.diffusion import ClassifierFreeGuidance, DDIMSampler, cosine, sample
from coursekit.diffusion.loss import unidiffuser_loss
from coursekit.models import MixtureDenoiser
from coursekit.models.analytic import JointMixtureDenoiser
from coursekit.models.unidiffuser import UniDiffuser, UniToyMLP
from coursekit.train import train, warmup_cosine

K = 8
SCHEDULE = cosine()


@pytest.fixture(scope="module")
def joint():
    return toy2d.paired_ring(K)


def test_paired_ring_is_the_ring_beside_label_codes(joint):
    ring = toy2d.gaussian_ring(K, 2.0, 0.5)
    assert joint.D == 2 + K and joint.eigvecs is None
    z, k = joint.sample(4000, torch.Generator().manual_seed(0))
    assert torch.equal(z[:, 2:].argmax(1), k)  # the code names the component
    assert torch.allclose(joint.means[:, :2], ring.means) and torch.allclose(joint.eigvals[:, :2], ring.eigvals)
    assert (z[:, 2:] - 1.5 * torch.eye(K)[k]).std().item() == pytest.approx(0.05, rel=0.05)
    with pytest.raises(ValueError, match="code and code_std must be > 0"):
        toy2d.paired_ring(K, code_std=0.0)


def test_per_coordinate_noise_levels(joint):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, joint.D, generator=g, dtype=torch.float64)
    abar = torch.rand(64, generator=g, dtype=torch.float64)
    # one level for every coordinate: the same as the scalar level
    assert torch.allclose(joint.eps(z, abar[:, None].expand(64, joint.D)), joint.eps(z, abar), atol=1e-12)
    # the text at abar = 0 carries nothing: the image's noise is the image marginal's, exactly
    ring = toy2d.gaussian_ring(K, 2.0, 0.5)
    levels = torch.cat([abar[:, None].expand(64, 2), torch.zeros(64, K, dtype=torch.float64)], 1)
    assert torch.allclose(joint.eps(z, levels)[:, :2], ring.eps(z[:, :2], abar), atol=1e-12)
    # the text clean (abar = 1) at a code: the image's noise is its component's (the class-conditional oracle)
    k = torch.arange(64) % K
    z[:, 2:] = 1.5 * torch.eye(K, dtype=torch.float64)[k]
    levels[:, 2:] = 1
    assert torch.allclose(joint.eps(z, levels)[:, :2], ring.eps(z[:, :2], abar, component=k), atol=1e-9)
    with pytest.raises(ValueError, match=r"abar must have shape \(64,\) or \(64, 10\)"):
        joint.eps(z, abar[:, None].expand(64, 3))
    full = GaussianMixture(torch.zeros(1, 2), torch.eye(2)[None])
    with pytest.raises(ValueError, match="only for diagonal covariances"):
        full.eps(torch.zeros(3, 2), torch.ones(3, 2))


def test_joint_mixture_denoiser_checks(joint):
    exact = JointMixtureDenoiser(joint, SCHEDULE, 2)
    assert (exact.dim_x, exact.dim_y) == (2, K)
    with pytest.raises(ValueError, match="diagonal covariances"):
        JointMixtureDenoiser(GaussianMixture(torch.zeros(1, 3), torch.eye(3)[None]), SCHEDULE, 1)
    with pytest.raises(ValueError, match="split must"):
        JointMixtureDenoiser(joint, SCHEDULE, joint.D)
    with pytest.raises(ValueError, match="y_t must have shape"):
        exact(torch.zeros(2, 2), torch.zeros(2, 3), torch.tensor(1), torch.tensor(1))
    with pytest.raises(ValueError, match="t_y must lie in"):
        exact(torch.zeros(2, 2), torch.zeros(2, K), torch.tensor(1), torch.tensor(SCHEDULE.T))


def test_tasks_are_timestep_choices(joint):
    """Through UniDiffuser, the exact joint gives the exact conditional, marginal and joint denoisers."""
    uni = UniDiffuser(JointMixtureDenoiser(joint, SCHEDULE, 2), SCHEDULE.T)
    ring = toy2d.gaussian_ring(K, 2.0, 0.5)
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(32, 2, generator=g), torch.randint(0, SCHEDULE.T, (32,), generator=g)
    k = torch.arange(32) % K
    conditional = uni.image()(x, t, joint.means[k, 2:].float())
    assert torch.allclose(conditional, MixtureDenoiser(ring, SCHEDULE)(x, t, k), atol=1e-5)
    marginal = uni.image(torch.Generator().manual_seed(0))(x, t)  # the text at t = T - 1 on fresh noise
    assert torch.allclose(marginal, MixtureDenoiser(ring, SCHEDULE)(x, t), atol=1e-3)
    z = torch.randn(32, 2 + K, generator=g)
    abar = SCHEDULE.alphas_cumprod.double()[t]
    assert torch.allclose(uni.joint()(z, t), joint.eps(z, abar).float(), atol=1e-6)
    # the text side: p(y | x_0) at high noise predicts the posterior mixture of codes
    y = uni.text()(torch.randn(32, K, generator=g), t, x)
    assert y.shape == (32, K)
    with pytest.raises(ValueError, match="cond must have shape"):
        uni.image()(x, t, torch.zeros(32, 3))
    with pytest.raises(ValueError, match="cond must be None for the joint"):
        uni.joint()(z, t, x)
    with pytest.raises(ValueError, match="network must be callable"):
        UniDiffuser(torch.nn.Linear(2, 2), SCHEDULE.T)


def test_free_guidance_and_marginals_sample_right(joint):
    """Sampled with DDIM, the exact tasks give what their distributions say; the marginal is seeded."""
    uni = UniDiffuser(JointMixtureDenoiser(joint, SCHEDULE, 2), SCHEDULE.T)
    ring = toy2d.gaussian_ring(K, 2.0, 0.5)
    n, k = 400, torch.arange(400) % K
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(3))
    codes = joint.means[k, 2:].float()
    sampler = DDIMSampler(num_steps=25)
    x = sample(uni.image(), SCHEDULE, x_T, sampler, cond=codes, progress=False)
    asked = ring.posterior(x)[torch.arange(n), k].mean().item()
    guided = sample(ClassifierFreeGuidance(uni.image(torch.Generator().manual_seed(0)), 3.0), SCHEDULE, x_T, sampler,
                    cond=codes, progress=False)
    asked_guided = ring.posterior(guided)[torch.arange(n), k].mean().item()
    # E over x ~ component k of p(k | x) is 0.818 (20,000 draws); guidance concentrates the samples on their component
    assert 0.76 < asked < 0.88 and asked_guided > asked + 0.1
    marginal = [sample(uni.image(torch.Generator().manual_seed(5)), SCHEDULE, x_T, sampler, progress=False)
                for _ in range(2)]
    assert torch.equal(*marginal)
    mass = torch.bincount(ring.posterior(marginal[0]).argmax(1), minlength=K) / n
    assert (mass - 1 / K).abs().max() < 0.07  # binomial sd 0.017


def test_unidiffuser_loss_draws_two_independent_levels(joint):
    seen = {}

    class Spy(UniToyMLP):
        def forward(self, x_t, y_t, t_x, t_y):
            seen["t"] = (t_x, t_y)
            return super().forward(x_t, y_t, t_x, t_y)

    torch.manual_seed(0)
    net = Spy(2, K)
    z, _ = joint.sample(256, torch.Generator().manual_seed(4))
    loss = unidiffuser_loss(net, SCHEDULE, z[:, :2], z[:, 2:], generator=torch.Generator().manual_seed(0))
    t_x, t_y = seen["t"]
    assert (t_x != t_y).float().mean() > 0.99 and abs(torch.corrcoef(torch.stack([t_x, t_y]).float())[0, 1]) < 0.2
    again = unidiffuser_loss(net, SCHEDULE, z[:, :2], z[:, 2:], generator=torch.Generator().manual_seed(0))
    assert torch.equal(loss, again)
    # the exact denoiser's loss is the irreducible part: far below an untrained network's (about 1)
    exact = unidiffuser_loss(JointMixtureDenoiser(joint, SCHEDULE, 2), SCHEDULE, z[:, :2], z[:, 2:],
                             generator=torch.Generator().manual_seed(0))
    assert exact < 0.3 < loss
    # clean="x": a bespoke image-to-text model of the same network: x given clean at t_x = 0, the loss on eps_y only
    seen.clear()
    x_only = unidiffuser_loss(net, SCHEDULE, z[:, :2], z[:, 2:], generator=torch.Generator().manual_seed(0), clean="x")
    t_x, t_y = seen["t"]
    assert int(t_x.abs().max()) == 0 and torch.equal(t_y, torch.randint(0, SCHEDULE.T, (512,),
                                                                     generator=torch.Generator().manual_seed(0))[256:])
    assert not torch.isclose(x_only, loss)
    with pytest.raises(ValueError, match="clean must be one of"):
        unidiffuser_loss(net, SCHEDULE, z[:, :2], z[:, 2:], clean="both")
    with pytest.raises(ValueError, match="y0 must hold one row per row of x0"):
        unidiffuser_loss(net, SCHEDULE, z[:, :2], z[:5, 2:])


def test_train_with_a_loss_fn_and_a_learning_rate_factor(joint):
    data = torch.Generator().manual_seed(0)

    def batches(step):
        z, _ = joint.sample(256, data)
        return z[:, :2], z[:, 2:]

    torch.manual_seed(0)
    net = UniToyMLP(2, K, width=64)
    losses = train(net, SCHEDULE, batches, 300, lr=3e-3, loss_fn=unidiffuser_loss, progress=False,
                   lr_factor=warmup_cosine(0, 300))
    assert sum(losses[-50:]) / 50 < 0.6 * sum(losses[:10]) / 10
    frozen = {k: v.clone() for k, v in net.state_dict().items()}
    train(net, SCHEDULE, batches, 3, loss_fn=unidiffuser_loss, progress=False, lr_factor=lambda step: 0.0)
    assert all(torch.equal(frozen[k], v) for k, v in net.state_dict().items())  # factor 0: no step moves anything
    with pytest.raises(ValueError, match="t_range and prediction_type must be None with a loss_fn"):
        train(net, SCHEDULE, batches, 1, loss_fn=unidiffuser_loss, t_range=(0, 10), progress=False)
    with pytest.raises(ValueError, match="lr_factor must be callable"):
        train(net, SCHEDULE, batches, 1, loss_fn=unidiffuser_loss, lr_factor=0.5, progress=False)
    with pytest.raises(ValueError, match="y_t must have shape"):
        net(torch.zeros(2, 2), torch.zeros(2, 3), torch.tensor(0), torch.tensor(0))


def test_modality_mean_weighs_each_modality_alike():
    from coursekit.models import UniUViT, UViTConfig

    torch.manual_seed(0)
    net = UniUViT(UViTConfig(image_size=8, patch_size=4, hidden=32, depth=1, heads=2, context_dim=5, context_len=1))
    x, y = torch.randn(6, 3, 8, 8), torch.randn(6, 5)
    draws = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    plain = unidiffuser_loss(net, SCHEDULE, x, y, generator=draws())
    balanced = unidiffuser_loss(net, SCHEDULE, x, y, generator=draws(), modality_mean=True)
    # the same draws, by hand: t_x, t_y, then eps_x, eps_y
    g = draws()
    t_x, t_y = (torch.randint(0, SCHEDULE.T, (6,), generator=g) for _ in range(2))
    eps_x, eps_y = torch.randn(x.shape, generator=g), torch.randn(y.shape, generator=g)
    from coursekit.diffusion.forward import q_sample

    out_x, out_y = net(q_sample(x, t_x, eps_x, SCHEDULE), q_sample(y, t_y, eps_y, SCHEDULE), t_x, t_y)
    ex, ey = (out_x - eps_x).pow(2), (out_y - eps_y).pow(2)
    assert torch.allclose(balanced, ex.mean() + ey.mean(), atol=1e-6)
    assert torch.allclose(plain, (ex.sum() + ey.sum()) / (ex.numel() + ey.numel()), atol=1e-6)


def test_uni_uvit_tasks_run_on_images():
    from coursekit.models import UniUViT, UViTConfig

    torch.manual_seed(0)
    cfg = UViTConfig(image_size=8, patch_size=4, hidden=32, depth=3, heads=2, context_dim=5, context_len=1)
    net = UniUViT(cfg).eval()
    assert (net.x_shape, net.y_shape) == ((3, 8, 8), (5,))
    x, y, t = torch.randn(4, 3, 8, 8), torch.randn(4, 5), torch.tensor([0, 10, 500, 999])
    eps_x, eps_y = net(x, y, t, t.flip(0))
    assert eps_x.shape == x.shape and eps_y.shape == y.shape
    # t_y reaches eps_x through the text token: the image's prediction depends on the text's level
    assert not torch.allclose(net(x, y, t, t)[0], eps_x)
    uni = UniDiffuser(net, 1000)
    with torch.no_grad():
        assert torch.equal(uni.image()(x, t, y), net(x, y, t, torch.zeros(4, dtype=torch.long))[0])
        assert torch.equal(uni.text()(y, t, x), net(x, y, torch.zeros(4, dtype=torch.long), t)[1])
        joint = uni.joint()(torch.cat([x.flatten(1), y], 1), t)
        assert torch.equal(joint, torch.cat([a.flatten(1) for a in net(x, y, t, t)], 1))
        images = sample(uni.image(torch.Generator().manual_seed(0)), SCHEDULE, x, DDIMSampler(num_steps=3),
                        progress=False)  # the marginal: the text at T - 1
        assert images.shape == x.shape and torch.isfinite(images).all()
    with pytest.raises(ValueError, match="z_t must have shape"):
        uni.image()(x[:, :, :4], t, y)
    with pytest.raises(ValueError, match="cond must have shape"):
        uni.text()(y, t, x[:, :1])
    with pytest.raises(ValueError, match="context_len = 1"):
        UniUViT(UViTConfig(image_size=8, patch_size=4, hidden=32, depth=1, heads=2))
    with pytest.raises(ValueError, match="x_shape and y_shape"):
        UniDiffuser(lambda *a: a, 1000)
