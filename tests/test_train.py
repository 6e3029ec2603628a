"""The training objective and the minimal training loop."""

import pytest
import torch

import coursekit.diffusion as d
from coursekit.data import ShapesWorld, toy2d
from coursekit.models import DiT, DiTConfig, MixtureDenoiser
from coursekit.train import make_optimizer, train

SCHEDULE = d.cosine()
WORLD = ShapesWorld(resolution=8, max_objects=1)


def batches(step):
    scenes = WORLD.sample(16, seed=step)
    return WORLD.render(scenes)[0], scenes.colour[:, 0]


def small_dit():
    torch.manual_seed(0)
    return DiT(DiTConfig(input_size=8, patch_size=2, in_channels=3, out_channels=3, hidden=32, depth=2, heads=2,
                         num_classes=6))


def test_loss_of_the_exact_denoiser_is_below_predicting_zero():
    ring = toy2d.gaussian_ring()
    x0, _ = ring.sample(4000, torch.Generator().manual_seed(0))
    exact = d.diffusion_loss(MixtureDenoiser(ring, SCHEDULE), SCHEDULE, x0, generator=torch.Generator().manual_seed(1))
    zero = d.diffusion_loss(lambda x, t, c: torch.zeros_like(x), SCHEDULE, x0, generator=torch.Generator().manual_seed(1))
    assert 0 < exact < 0.5 and abs(zero - 1) < 0.05  # E||eps||^2 per coordinate is 1


def test_loss_draws_t_inside_t_range_and_is_seeded():
    seen = []

    def spy(x, t, c):
        seen.append(t.clone())
        return torch.zeros_like(x)

    x0 = torch.zeros(256, 2)
    a = d.diffusion_loss(spy, SCHEDULE, x0, generator=torch.Generator().manual_seed(3), t_range=(200, 300))
    b = d.diffusion_loss(spy, SCHEDULE, x0, generator=torch.Generator().manual_seed(3), t_range=(200, 300))
    assert a == b and torch.equal(seen[0], seen[1])
    assert seen[0].min() >= 200 and seen[0].max() < 300 and len(seen[0].unique()) > 50


@pytest.mark.slow
def test_training_lowers_the_loss_and_is_deterministic():
    def run():
        return train(small_dit(), SCHEDULE, batches, 60, lr=3e-3, seed=0, progress=False)

    losses = run()
    assert losses == run()
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10  # measured: 0.45x


@pytest.mark.parametrize("call, name", [
    (lambda: d.diffusion_loss(lambda x, t, c: x, SCHEDULE, torch.zeros(4, 2), t_range=(10, 10)), r"t_range\[1\]"),
    (lambda: d.diffusion_loss(lambda x, t, c: x, SCHEDULE, torch.zeros(4, 2), t_range=(-1, 10)), r"t_range\[0\]"),
    (lambda: train(torch.nn.Linear(2, 2), SCHEDULE, lambda s: (torch.zeros(2, 2), None), 0), "steps"),
    (lambda: train("model", SCHEDULE, lambda s: (torch.zeros(2, 2), None), 1), "model"),
])
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=rf"^{name}"):
        call()


def forward_dtypes(model, precision, steps):
    """The dtype of every forward's output during ``train``, and the losses."""
    seen = []
    hook = model.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    try:
        losses = train(model, SCHEDULE, batches, steps, lr=3e-3, precision=precision, progress=False)
    finally:
        hook.remove()
    return seen, losses


def test_bf16_training_runs_in_bf16_and_learns():
    model = small_dit()
    seen, losses = forward_dtypes(model, "bf16", 40)
    assert seen == [torch.bfloat16] * 40  # every forward ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay fp32
    assert sum(losses[-10:]) < 0.4 * sum(losses[:10])  # measured 0.197 (last 10 / first 10, seeded); bound 2x
    seen, _ = forward_dtypes(small_dit(), "fp32", 2)
    assert seen == [torch.float32] * 2  # and without it, float32


def test_weight_decay_shrinks_only_linear_and_convolution_weights():
    """One AdamW step with zero gradients and lr 0.1, decay 0.5: decayed tensors shrink by 5%, the others
    (biases, norms, the label embedding, position embeddings) stay as they were."""
    model = small_dit()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = make_optimizer(model, 0.1, weight_decay=0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    shrunk = {k for k, p in model.named_parameters() if not torch.equal(p, before[k])}
    kept = set(before) - shrunk
    assert shrunk and all(k.endswith(".weight") for k in shrunk)
    assert "y_embed.weight" in kept and any(k.endswith(".bias") for k in kept)
    assert all(torch.allclose(dict(model.named_parameters())[k], 0.95 * before[k]) for k in shrunk)
