"""U-ViT (tokens and long skips) and eDiff-I's expert ensemble."""

import pytest
import torch

from coursekit.models import ConditionSwitch, Experts, UViT, tree_boundaries, uvit_small
from coursekit.models.counting import count_parameters


def small(**kw):
    return uvit_small(hidden=64, depth=5, heads=4, **kw)


def test_uvit_s2_size_and_protocol():
    torch.manual_seed(0)
    with torch.device("meta"):
        assert round(count_parameters(UViT(uvit_small())) / 1e6) == 44  # U-ViT-S/2 on CIFAR-10: 44M
    for kw, cond in [({}, None), ({"num_classes": 10}, torch.tensor([3, 10])),
                     ({"context_dim": 32, "context_len": 5}, torch.randn(2, 5, 32))]:
        model = UViT(small(**kw))
        assert model(torch.randn(2, 3, 32, 32), torch.tensor([1, 999]), cond).shape == (2, 3, 32, 32)


def test_long_skips_add_one_fusing_linear_per_out_block():
    torch.manual_seed(0)
    model = UViT(small()).eval()
    assert [b.skip is None for b in model.in_blocks] == [True, True]
    assert all(b.skip.in_features == 128 for b in model.out_blocks)
    no_skip = UViT(small(skip=False))
    assert count_parameters(model) - count_parameters(no_skip) == 2 * (128 * 64 + 64)


def test_uvit_tokens_condition_the_output():
    torch.manual_seed(0)
    model = UViT(small(context_dim=16, context_len=3)).eval()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([5, 500])
    with torch.no_grad():
        a, b = model(x, t, torch.randn(2, 3, 16)), model(x, t, torch.randn(2, 3, 16))
    assert (a - b).abs().max() > 1e-4


def test_experts_route_each_sample_to_its_interval():
    calls = []

    class Tag(torch.nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, x, t, cond):
            calls.append((self.k, t.tolist()))
            return torch.full_like(x, float(self.k))

    experts = Experts([Tag(0), Tag(1), Tag(2)], boundaries=[300, 700], T=1000)
    out = experts(torch.zeros(5, 2), torch.tensor([0, 299, 300, 699, 999]))
    assert out[:, 0].tolist() == [0, 0, 1, 1, 2]
    assert sorted(calls) == [(0, [0, 299]), (1, [300, 699]), (2, [999])]
    assert experts.interval(1) == (300, 700)


def test_split_experts_start_equal_to_the_model_and_train_independently():
    torch.manual_seed(0)
    base = UViT(small(num_classes=4)).eval()
    experts = Experts.split(base, [500], T=1000).eval()
    x, t, y = torch.randn(4, 3, 32, 32), torch.tensor([1, 400, 600, 999]), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        assert torch.allclose(experts(x, t, y), base(x, t, y), atol=1e-6)
        experts.experts[1].decoder.bias.add_(1.0)
        out = experts(x, t, y)
    assert torch.allclose(out[:2], base(x[:2], t[:2], y[:2]), atol=1e-6) and not torch.allclose(out[2:], base(x[2:], t[2:], y[2:]))


def test_tree_of_experts_halves_the_extreme_intervals():
    assert tree_boundaries(1000, 1) == [500]
    assert tree_boundaries(1000, 2) == [500, 750] and tree_boundaries(1000, 3, "high") == [500, 750, 875]
    assert tree_boundaries(1000, 2, "low") == [250, 500] and tree_boundaries(1000, 2, "both") == [250, 500, 750]
    model = torch.nn.Linear(2, 2)
    model.prediction_type = "epsilon"
    tree = Experts.tree(model, 1000, 2, "both")
    assert [tree.interval(k) for k in range(4)] == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert all(torch.equal(e.weight, model.weight) and e.weight is not model.weight for e in tree.experts)
    with pytest.raises(ValueError, match="side must be one of"):
        tree_boundaries(1000, 2, "middle")
    with pytest.raises(ValueError, match="levels must leave every interval"):
        tree_boundaries(4, 3)


def test_a_condition_switch_gives_each_level_its_condition_and_samples_as_one_denoiser_when_they_agree():
    from coursekit import zoo
    from coursekit.diffusion import sample

    echo = lambda x, t, cond: x * 0 + cond[:, None]  # noqa: E731  (returns the condition it was given)
    echo.prediction_type = "v_prediction"
    low, high = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0])
    switch = ConditionSwitch(echo, boundaries=[500], conds=[low, high], T=1000)
    assert switch.prediction_type == "v_prediction"
    out = switch(torch.zeros(3, 2), torch.tensor([999, 500, 499]))
    assert out[:, 0].tolist() == [10.0, 20.0, 3.0]  # sample i takes row i of its interval's condition
    # on the shipped model, guided: the same caption on both sides is the guided denoiser itself, bit for bit;
    # another caption late changes the image
    pipe = zoo.load("shapes-unet")
    a, b = pipe.text_features(["a red circle on a white background"]), pipe.text_features(["a blue square"])
    x_T = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    guided, sampler = pipe.guided(3.0), pipe.sampler(4)
    plain = sample(guided, pipe.schedule, x_T, sampler, cond=a, progress=False)
    same = sample(ConditionSwitch(guided, [400], [a, a], 1000), pipe.schedule, x_T, sampler, progress=False)
    other = sample(ConditionSwitch(guided, [400], [b, a], 1000), pipe.schedule, x_T, sampler, progress=False)
    assert torch.equal(same, plain) and (other - plain).abs().mean() > 0.03  # measured 0.074 (steps at t = 250, 0)
    with pytest.raises(ValueError, match="^cond must be None"):
        switch(torch.zeros(3, 2), torch.tensor([1, 2, 3]), cond=low)


def predicting_v():
    module = torch.nn.Identity()
    module.prediction_type = "v_prediction"
    return module


@pytest.mark.parametrize("call, name", [
    (lambda: uvit_small(patch_size=3), "patch_size"),
    (lambda: uvit_small(heads=7), "heads"),
    (lambda: uvit_small(depth=12), "depth"),
    (lambda: uvit_small(context_len=3), "context_len"),
    (lambda: UViT(small(context_dim=16, context_len=3))(torch.zeros(1, 3, 32, 32), torch.tensor([1]),
                                                         torch.zeros(1, 3, 8)), "cond"),
    (lambda: UViT(small(num_classes=4))(torch.zeros(1, 3, 32, 32), torch.tensor([1]), torch.tensor([5])), "cond"),
    (lambda: UViT(small()).trunk(torch.zeros(1, 256, 64)), "h"),
    (lambda: UViT(small()).decode(torch.zeros(1, 257, 32)), "h"),
    (lambda: Experts([torch.nn.Identity()], [500], T=1000), "experts"),
    (lambda: Experts([torch.nn.Identity()] * 2, [1000], T=1000), "boundaries"),
    (lambda: Experts([torch.nn.Identity(), predicting_v()], [500], T=1000), "experts"),
    (lambda: ConditionSwitch("unet", [500], [1, 2], T=1000), "denoiser"),
    (lambda: ConditionSwitch(predicting_v(), [500], [1], T=1000), "conds"),
    (lambda: ConditionSwitch(predicting_v(), [500, 400], [1, 2, 3], T=1000), "boundaries"),
])
def test_bad_config_or_input(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()
