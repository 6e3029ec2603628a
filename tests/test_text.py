"""Tokenizer and text encoder for the shapes captions."""

import pytest
import torch

from coursekit.data import ShapesWorld
from coursekit.models.text import BOS, PAD, UNK, TextConditioned, TextEncoder, Tokenizer
from coursekit.models import UNet, unet_shapes


def test_every_caption_of_the_world_tokenizes_without_unknown_words_and_decodes_back():
    tok = Tokenizer()
    captions = ShapesWorld(resolution=32, max_objects=3).sample(500, seed=0).captions()
    ids = tok(captions)
    assert ids.shape == (500, 32) and (ids[:, 0] == BOS).all() and not (ids == UNK).any()
    assert tok.decode(ids) == captions


def test_empty_unknown_and_too_long_captions():
    tok = Tokenizer()
    ids = tok(["", "a purple elephant", "A Large RED circle!"])
    assert ids[0].tolist() == [BOS] + [PAD] * 31  # the unconditional input
    assert ids[1, 3] == UNK  # an unknown word is a token, not an error
    assert tok.decode(ids[2:]) == ["a large red circle"]
    with pytest.raises(ValueError, match="^caption has 40 words"):
        tok(["a " * 40])
    with pytest.raises(ValueError, match="^captions must be a list"):
        tok("a red circle")


def test_encoder_outputs_tokens_and_pooled_bos_and_conditions_a_denoiser():
    torch.manual_seed(0)
    tok = Tokenizer()
    enc = TextEncoder(len(tok))
    tokens, pooled = enc(tok(["a small red circle on the left on a white background", ""]))
    assert tokens.shape == (2, 32, 128) and torch.equal(pooled, tokens[:, 0])
    model = TextConditioned(UNet(unet_shapes()), enc, "tokens").eval()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([100, 100])
    with torch.no_grad():
        for m in model.modules():  # give cross-attention a visible effect at initialisation
            if getattr(m, "attn2", None) is not None:
                m.attn2.out.weight.mul_(10)
        a = model(x, t, tok(["a small red circle on the left on a white background"] * 2))
        b = model(x, t, tok(["a large blue square at the top on a black background"] * 2))
    assert (a - b).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="^cond"):
        model(x, t, torch.zeros(2, 16, dtype=torch.long))


@pytest.mark.parametrize("max_objects, max_length", [(1, 32), (2, 32), (3, 32), (9, 96)])
def test_caption_ids_from_scene_attributes_equal_the_tokenized_captions(max_objects, max_length):
    from coursekit.models.text import caption_ids

    tok = Tokenizer(max_length=max_length)
    scenes = ShapesWorld(resolution=32, max_objects=max_objects).sample(1000, seed=max_objects)
    assert torch.equal(caption_ids(tok, scenes), tok(scenes.captions()))


@pytest.mark.parametrize("max_objects, p", [(1, 0.5), (2, 0.3), (3, 0.5), (2, 1.0)])
def test_captions_that_leave_attributes_out_tokenize_as_their_text(max_objects, p):
    """``omissions`` leaves attribute phrases out; ``caption_ids`` on the device agrees with the text captions."""
    from coursekit.data.shapes import CAPTION_PARTS, omissions
    from coursekit.models.text import caption_ids

    tok = Tokenizer()
    scenes = ShapesWorld(resolution=32, max_objects=max_objects).sample(500, seed=7)
    omit = omissions(scenes, p, torch.Generator().manual_seed(1))
    assert {k: round(v.float().mean().item(), 1) for k, v in omit.items()} == {k: p for k in CAPTION_PARTS}
    captions = scenes.captions(omit)
    assert torch.equal(caption_ids(tok, scenes, omit), tok(captions))
    whole, words = scenes.captions(), set(tok.words)
    assert all(set(c.split()) <= words and len(c.split()) <= len(w.split()) for c, w in zip(captions, whole))
    if p == 1.0:  # every attribute left out: only "a" per object
        assert captions[0] == " and ".join(["a"] * int(scenes.num_objects[0]))
    none = omissions(scenes, 0.0, torch.Generator().manual_seed(1))
    assert scenes.captions(none) == whole and torch.equal(caption_ids(tok, scenes, none), tok(whole))


def test_a_recipe_with_attribute_dropout_trains_on_captions_with_words_left_out():
    from coursekit import zoo
    from coursekit.train import make_batch

    recipe = zoo.recipe("tiny-unet")
    _, whole = make_batch(recipe, step=3)
    images, ids = make_batch(recipe.replace(attribute_dropout=0.2), step=3)
    assert torch.equal(images, make_batch(recipe, step=3)[0])  # the same scenes
    shorter = (ids != 0).sum(1) < (whole != 0).sum(1)
    assert 0 < shorter.float().mean() < 1 and torch.equal(ids[~shorter], whole[~shorter])
    assert torch.equal(ids, make_batch(recipe.replace(attribute_dropout=0.2), step=3)[1])  # seeded by the step


def test_omissions_and_omit_are_checked():
    from coursekit.data.shapes import omissions
    from coursekit.models.text import caption_ids

    scenes = ShapesWorld(resolution=32).sample(4, seed=0)
    with pytest.raises(ValueError, match="^p must be"):
        omissions(scenes, 1.5)
    with pytest.raises(ValueError, match="^scenes must be Scenes"):
        omissions(["a red circle"], 0.1)
    omit = omissions(scenes, 0.5, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="^omit must be a dict with keys"):
        scenes.captions({"size": omit["size"]})
    with pytest.raises(ValueError, match="^omit\\['colour'\\] must be a bool tensor of shape"):
        caption_ids(Tokenizer(), scenes, {**omit, "colour": omit["colour"].float()})
    with pytest.raises(ValueError, match="^attribute_dropout"):
        __import__("coursekit.zoo", fromlist=["zoo"]).recipe("tiny-unet").replace(attribute_dropout=-0.1)


def test_caption_ids_refuse_captions_longer_than_the_tokenizer():
    from coursekit.models.text import caption_ids

    scenes = ShapesWorld(resolution=32, min_objects=4, max_objects=4).sample(8, seed=0)
    with pytest.raises(ValueError, match="^scenes have a caption of"):
        caption_ids(Tokenizer(), scenes)
    with pytest.raises(ValueError, match="^scenes must be Scenes"):
        caption_ids(Tokenizer(), ["a red circle"])
