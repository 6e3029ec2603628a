"""DiT: diffusers parity, the paper's compute table, adaLN-Zero's identity start, the four conditioning variants."""

import math

import pytest
import torch

from coursekit.models import dit as D
from coursekit.models.counting import count_parameters
from coursekit.models.layers import timestep_embedding

PAPER_GFLOPS = {  # Peebles & Xie, Table 4 (fvcore multiply-adds at 256x256)
    "DiT-S/8": 0.36, "DiT-S/4": 1.41, "DiT-S/2": 6.06, "DiT-B/8": 1.42, "DiT-B/4": 5.57, "DiT-B/2": 23.01,
    "DiT-L/8": 5.01, "DiT-L/4": 19.70, "DiT-L/2": 80.70, "DiT-XL/8": 7.39, "DiT-XL/4": 29.04, "DiT-XL/2": 118.62,
}


def test_gflops_table_reproduces_the_paper_within_two_percent():
    ours = D.gflops_table(256)
    for name, paper in PAPER_GFLOPS.items():
        assert abs(ours[name] / paper - 1) < 0.02, (name, ours[name], paper)  # measured worst: 0.8% (B/8)


def test_parameter_counts_match_the_paper():
    for name, millions in {"DiT-S/2": 33, "DiT-B/2": 130, "DiT-L/2": 458, "DiT-XL/2": 675}.items():
        with torch.device("meta"):
            model = D.DiT(D.dit_size(name, out_channels=8))
        assert round(count_parameters(model) / 1e6) == millions


def test_matches_diffusers_dit_transformer():
    torch.manual_seed(0)
    cfg = D.dit_s2(input_size=16, depth=3, freq_shift=1.0, mlp_norm_eps=1e-5, out_channels=8)
    ref = D.diffusers_dit(cfg).eval()
    with torch.no_grad():  # leave the zero-initialised layers non-zero so the outputs say something
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        first = ref.transformer_blocks[0].norm1.emb.state_dict()
        for block in ref.transformer_blocks[1:]:
            block.norm1.emb.load_state_dict(first)
    ours = D.from_diffusers(ref).eval()
    x, t, y = torch.randn(2, 4, 16, 16), torch.tensor([3, 700]), torch.tensor([1, 1000])
    with torch.no_grad():
        want, got = ref(x, t, y).sample, ours(x, t, y)
    assert want.abs().max() > 0.1 and (want - got).abs().max() < 1e-5  # measured 0.0


def test_diffusers_per_block_embedders_must_agree():
    ref = D.diffusers_dit(D.dit_s2(input_size=8, depth=2, freq_shift=1.0, mlp_norm_eps=1e-5))
    with torch.no_grad():
        ref.transformer_blocks[1].norm1.emb.class_embedder.embedding_table.weight.add_(1.0)
    with pytest.raises(ValueError, match="different condition embedders"):
        D.from_diffusers(ref)


def test_timestep_embedding_official_and_diffusers_formulas():
    t = torch.tensor([10, 250, 999])
    official = timestep_embedding(t, 256, flip_sin_to_cos=True, freq_shift=0)
    freqs = torch.exp(-math.log(10000) * torch.arange(128) / 128)
    args = t[:, None].float() * freqs[None]
    assert torch.allclose(official, torch.cat([torch.cos(args), torch.sin(args)], dim=1))
    shifted = timestep_embedding(t, 256, flip_sin_to_cos=True, freq_shift=1)
    gap = (official - shifted).abs().max(dim=1).values  # methods.md 7.1: 0.03, 0.70, 1.94
    assert gap[0] < 0.05 and 0.5 < gap[1] < 0.9 and gap[2] > 1.5


def test_adaln_zero_blocks_start_as_the_identity_and_the_model_outputs_zero():
    torch.manual_seed(0)
    model = D.DiT(D.dit_s2(input_size=8, depth=2, num_classes=10)).eval()
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([5, 500]), torch.tensor([1, 2])
    h = torch.randn(2, 16, 384)
    c, tokens = model.embed_condition(t, y)
    with torch.no_grad():
        assert torch.equal(model.blocks[0](h, c, tokens), h)
        assert torch.equal(model(x, t, y), torch.zeros_like(x))


@pytest.mark.parametrize("conditioning", D.CONDITIONING)
def test_every_conditioning_variant_runs_and_uses_the_condition(conditioning):
    torch.manual_seed(0)
    model = D.DiT(D.dit_s2(input_size=8, depth=2, num_classes=10, conditioning=conditioning)).eval()
    with torch.no_grad():
        for p in model.parameters():  # move off the zero initialisation
            p.add_(torch.randn_like(p) * 0.05)
        x, t = torch.randn(2, 4, 8, 8), torch.tensor([5, 500])
        a, b = model(x, t, torch.tensor([1, 2])), model(x, t, torch.tensor([3, 4]))
    assert a.shape == x.shape and (a - b).abs().max() > 1e-4


def test_vector_condition_and_null_class():
    torch.manual_seed(0)
    model = D.DiT(D.dit_s2(input_size=8, depth=1, num_classes=None, cond_dim=32)).eval()
    x, t, v, w = torch.randn(2, 4, 8, 8), torch.tensor([1, 2]), torch.randn(2, 32), torch.randn(2, 32)
    with torch.no_grad():
        for p in model.parameters():  # move off the zero initialisation (the model starts by outputting 0)
            p.add_(torch.randn_like(p) * 0.05)
        a = model(x, t, v)
        assert a.shape == (2, 4, 8, 8) and torch.equal(a, model(x, t, v.clone()))
        assert (model(x, t, w) - a).abs().mean() > 0.1  # measured 0.601 (seed 0); bound 1/6 of it
        # each sample reads its own vector: changing sample 1's leaves sample 0's output as it was
        mixed = model(x, t, torch.stack([v[0], w[1]]))
        assert torch.allclose(mixed[0], a[0], atol=1e-6) and (mixed[1] - a[1]).abs().max() > 0.1  # measured 1.80
    with pytest.raises(ValueError, match=r"^cond must have shape \(2, 32\)"):
        model(x, t, torch.zeros(3, 32))
    with pytest.raises(ValueError, match="^cond must be a torch.Tensor"):
        model(x, t, None)
    labelled = D.DiT(D.dit_s2(input_size=8, depth=1, num_classes=10))
    c_null, _ = labelled.embed_condition(torch.tensor([1]), None)
    c_ten, _ = labelled.embed_condition(torch.tensor([1]), torch.tensor([10]))
    assert torch.equal(c_null, c_ten)  # None means the null class, row num_classes


@pytest.mark.parametrize("call, name", [
    (lambda: D.dit_s2(input_size=30, patch_size=4), "patch_size"),
    (lambda: D.dit_s2(heads=5), "heads"),
    (lambda: D.dit_s2(conditioning="film"), "conditioning"),
    (lambda: D.dit_s2(cond_dim=16), "num_classes"),
    (lambda: D.DiT(D.dit_s2(input_size=8, depth=1, num_classes=None, cond_dim=32))(
        torch.zeros(2, 4, 8, 8), torch.tensor([1, 2]), torch.zeros(2, 16)), "cond"),
    (lambda: D.DiT(D.dit_s2(input_size=8, depth=1, num_classes=10))(
        torch.zeros(2, 4, 8, 8), torch.tensor([1, 2]), torch.tensor([1, 11])), "cond"),
    (lambda: D.DiT(D.dit_s2(input_size=8, depth=1))(torch.zeros(2, 4, 16, 16), torch.tensor([1, 2])), "x"),
])
def test_bad_config_or_input(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_text_cross_attention_starts_at_zero_and_then_uses_the_tokens():
    """PixArt-alpha's variant: adaLN-Zero on the pooled vector plus cross-attention to caption tokens in
    every block, whose output projection starts at zero (so the block starts as before)."""
    torch.manual_seed(0)
    cfg = D.dit_shapes(input_size=8, depth=2, context_dim=16)
    model = D.DiT(cfg).eval()
    x, t, pooled = torch.randn(2, 3, 8, 8), torch.tensor([5, 500]), torch.randn(2, 128)
    h = torch.randn(2, 16, 256)
    c, c_tokens = model.embed_condition(t, pooled)
    with torch.no_grad():
        assert torch.equal(model.blocks[0].attend_text(h, torch.randn(2, 5, 16)), h)
        for p in model.parameters():  # move off the zero initialisation
            p.add_(torch.randn_like(p) * 0.05)
        a, b = model(x, t, pooled, context=torch.randn(2, 5, 16)), model(x, t, pooled, context=torch.randn(2, 5, 16))
    assert (a - b).abs().max() > 1e-4
    with pytest.raises(ValueError, match="^context must be given"):
        model(x, t, pooled)
    with pytest.raises(ValueError, match="^context must be None"):
        D.DiT(D.dit_shapes(input_size=8, depth=1))(x, t, pooled, context=torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="^context must have shape"):
        model(x, t, pooled, context=torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="^context_dim needs"):
        D.dit_shapes(conditioning="cross-attention", context_dim=16)
