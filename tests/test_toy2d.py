"""2-D toy distributions: seeded, and each has the geometry its name promises."""

import pytest
import torch

from coursekit.data import toy2d
from coursekit.models import ToyMLP


@pytest.mark.parametrize("name", toy2d.TOYS)
def test_seeded_float32_points(name):
    a, b = toy2d.sample(name, 500, seed=0), toy2d.sample(name, 500, seed=0)
    assert a.shape == (500, 2) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, toy2d.sample(name, 500, seed=1))
    assert 0.5 < a.std(0).min() and a.std(0).max() < 2.0  # roughly unit spread (measured 0.80-1.44)


def test_each_toy_has_its_geometry():
    r = toy2d.sample("circles", 4000, seed=0).norm(dim=1)
    assert ((r - 1.5).abs() < 0.2).float().mean() > 0.45 and ((r - 0.75).abs() < 0.2).float().mean() > 0.45
    p = toy2d.sample("checkerboard", 4000, seed=0)
    cells = ((p + 2) // 1).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all() and p.abs().max() <= 2
    ring = toy2d.gaussian_ring()
    x = toy2d.sample("gaussians", 4000, seed=0)
    assert ((x.norm(dim=1) - 2).abs() < 0.8).all()
    assert torch.bincount(ring.posterior(x).argmax(1), minlength=8).min() > 400
    roll = toy2d.sample("swiss_roll", 4000, seed=0).norm(dim=1)
    assert roll.min() > 1.5 * 3.14159 / 7 - 0.25 and roll.max() < 4.5 * 3.14159 / 7 + 0.25
    moons = toy2d.sample("moons", 4000, seed=0)
    assert (moons[:, 0].min() < -2) and (moons[:, 0].max() > 2)


@pytest.mark.slow
def test_a_toy_mlp_trained_in_seconds_samples_its_toy():
    """fit_toy: 1000 steps on the Gaussian ring (about 6 s); measured: 91% of 1000 DDIM samples within 0.6 of
    a mean (untrained: 0%, 300 steps: 71%). The same call gives the same weights."""
    import coursekit.diffusion as d
    from coursekit.train import fit_toy

    schedule = d.linear()
    a, b = fit_toy("gaussians", schedule, 20), fit_toy("gaussians", schedule, 20)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    model = fit_toy("gaussians", schedule, 1000)
    x = d.sample(model, schedule, torch.randn(1000, 2, generator=torch.Generator().manual_seed(1)), progress=False)
    near = (torch.cdist(x.double(), toy2d.gaussian_ring().means).min(1).values < 0.6).float().mean()
    assert near > 0.85, near


def test_a_class_conditional_toy_reads_its_label_and_none_is_the_null_class():
    torch.manual_seed(0)
    model = ToyMLP(dim=4, classes=3)
    x, t = torch.randn(3, 4), torch.tensor([5, 500, 999])
    with torch.no_grad():
        model.label.weight.normal_()
        by_label = [model(x, t, torch.full((3,), k)) for k in range(4)]
        assert torch.equal(model(x, t, None), by_label[3])
    assert all(not torch.allclose(by_label[i], by_label[j]) for i in range(4) for j in range(i))


@pytest.mark.parametrize("call, name", [
    (lambda: toy2d.sample("spiral", 10, seed=0), "name"),
    (lambda: __import__("coursekit.train").train.fit_toy("spiral", None, 1), "name"),
    (lambda: __import__("coursekit.models").models.ToyMLP()(torch.zeros(3, 3), torch.zeros(3).long()), "x"),
    (lambda: ToyMLP()(torch.zeros(3, 2), torch.zeros(3).long(), torch.zeros(3).long()), "cond must be None"),
    (lambda: ToyMLP(classes=4)(torch.zeros(3, 2), torch.zeros(3).long(), torch.tensor([0, 1, 5])), "cond must lie"),
    (lambda: ToyMLP(classes=4)(torch.zeros(3, 2), torch.zeros(3).long(), torch.zeros(3)), "cond"),
    (lambda: ToyMLP(classes=0), "classes"),
    (lambda: toy2d.sample("moons", 0, seed=0), "n"),
    (lambda: toy2d.sample("moons", 10), "give exactly one"),
    (lambda: toy2d.gaussian_ring(std=0), "std"),
])
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=rf"^{name}"):
        call()
