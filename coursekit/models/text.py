"""Text conditioning: a word tokenizer for the shapes world's captions and a small Transformer encoder.

The course's text-to-image models learn their text encoder from scratch together with the
denoiser (there is no pretrained language model offline). As in Imagen and Stable Diffusion the
encoder's per-token outputs feed cross-attention (Saharia et al. 2022, sec. 2.1; Rombach et al.
2022, sec. 3.3); its first, [BOS] token serves as the pooled vector that adaLN models take (as
BERT's [CLS]). The empty caption, [BOS] followed by padding, is the unconditional input of
classifier-free guidance (Ho & Salimans 2022): training drops captions to it at random.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import torch
from torch import nn

from .._checks import check_choice, check_int, check_tensor
from ..diffusion.forward import PREDICTION_TYPES
from .layers import Attention

SPECIALS = ("[PAD]", "[UNK]", "[BOS]")
PAD, UNK, BOS = 0, 1, 2


def shapes_vocabulary() -> tuple[str, ...]:
    """Every word the shapes world's captions use, in a fixed order."""
    from ..data.shapes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES

    words = ["a", "an", "and", "on", "background", *SIZES, *COLOURS, *SHAPES, *BACKGROUNDS]
    for phrase in POSITIONS:
        words += phrase.split()
    return tuple(dict.fromkeys(words))  # unique, first occurrence first


class Tokenizer:
    """Lower-cases, splits on anything that is not a letter, maps words to ids (unknown words to
    [UNK], not an error), prepends [BOS] and pads to ``max_length``.

    A caption with more than ``max_length - 1`` words raises a ValueError naming it: the encoder has
    positions for ``max_length`` tokens only, and cutting a caption would silently change its meaning.
    """

    def __init__(self, words: Sequence[str] | None = None, max_length: int = 32):
        words = tuple(words) if words is not None else shapes_vocabulary()
        if len(set(words)) != len(words) or any(w in SPECIALS for w in words):
            raise ValueError("words must be unique and must not contain the special tokens")
        self.words = SPECIALS + words
        self.index = {w: i for i, w in enumerate(self.words)}
        self.max_length = check_int("max_length", max_length, 2)

    def __len__(self) -> int:
        return len(self.words)

    def split(self, caption: str) -> list[str]:
        if not isinstance(caption, str):
            raise ValueError(f"caption must be a str, got {type(caption).__name__}")
        return re.findall(r"[a-z]+", caption.lower())

    def check(self, caption: str, name: str = "caption") -> None:
        """Refuse a caption with a word the vocabulary lacks (it would become [UNK]: a caption in words the model
        never saw names nothing it can draw, invert or decode to) or with more words than the positions allow."""
        words = self.split(caption)
        unknown = [w for w in words if w not in self.index]
        if unknown:
            raise ValueError(f"{name} has words the model does not know: {unknown} (in {caption!r})")
        if len(words) > self.max_length - 1:
            raise ValueError(f"{name} has {len(words)} words, more than max_length - 1 = {self.max_length - 1}")

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        """Token ids (B, max_length) long."""
        if isinstance(captions, str) or not isinstance(captions, Sequence):
            raise ValueError(f"captions must be a list of str, got {type(captions).__name__}")
        ids = torch.full((len(captions), self.max_length), PAD, dtype=torch.long)
        for b, caption in enumerate(captions):
            words = self.split(caption)
            if len(words) > self.max_length - 1:
                raise ValueError(f"caption has {len(words)} words, more than max_length - 1 = {self.max_length - 1}: "
                                 f"{caption[:60]!r}...")
            ids[b, 0] = BOS
            ids[b, 1:len(words) + 1] = torch.tensor([self.index.get(w, UNK) for w in words], dtype=torch.long)
        return ids

    def decode(self, ids: torch.Tensor) -> list[str]:
        """The words of each row of ids, without [BOS] and padding."""
        check_tensor("ids", ids, ndim=2, floating=False)
        return [" ".join(self.words[i] for i in row.tolist() if i not in (PAD, BOS)) for row in ids]


def caption_ids(tokenizer: Tokenizer, scenes, omit: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``tokenizer(scenes.captions(omit))`` computed from the scenes' attribute tensors, on their device,
    without a Python loop over captions or a host synchronisation: (B, max_length) long. ``omit``
    (``data.shapes.omissions``) leaves attribute words out.

    A caption is [BOS] obj_0 ("and" obj_k)... "on a" bg "background", obj = "a" size colour shape
    position-words. Every object phrase is laid out in a padded row of word ids; its first column
    in the caption is one plus the lengths of the phrases before it; a scatter writes the rows.
    """
    from ..data.shapes import Scenes, _check_omit

    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes must be Scenes, got {type(scenes).__name__}")
    if omit is not None:
        _check_omit(omit, scenes)
    device, (B, N) = scenes.shape.device, scenes.shape.shape
    word = _word_tables(tokenizer.words, device)
    # (B, N, 5 + words): "and" (dropped for object 0), "a", size, colour, shape, position words
    phrase = torch.cat([
        word["and a"].expand(B, N, 2), word["size"][scenes.size][..., None], word["colour"][scenes.colour][..., None],
        word["shape"][scenes.shape][..., None], word["position"][scenes.position],
    ], dim=-1)
    column = torch.arange(phrase.shape[-1], device=device)
    first = (torch.arange(N, device=device) == 0)[None, :, None]  # object 0 has no "and"
    used = ((column < 5 + word["position length"][scenes.position][..., None]) & ~(first & (column == 0))
            & scenes.present[..., None])
    if omit is not None:  # columns 2, 3, 4: size, colour, shape; 5 on: the position's words
        left_out = torch.stack([omit["size"], omit["colour"], omit["shape"]], -1)  # (B, N, 3)
        left_out = torch.cat([torch.zeros_like(left_out[..., :2]), left_out,
                              omit["position"][..., None].expand(-1, -1, phrase.shape[-1] - 5)], -1)
        used = used & ~left_out.to(device)
    length = used.sum(-1)  # (B, N) words of each phrase
    start = 1 + length.cumsum(1) - length  # (B, N) where each phrase begins, after [BOS]
    target = start[..., None] + used.long().cumsum(-1) - 1  # (B, N, C) the column of each used word
    end = 1 + length.sum(1)  # (B,) the column after the last object
    longest = end + 4  # [BOS], the objects, "on a <bg> background"
    if 3 + N * phrase.shape[-1] >= tokenizer.max_length and int(longest.max()) > tokenizer.max_length:
        # (only read back from the device when N objects could overflow the tokenizer's positions)
        raise ValueError(f"scenes have a caption of {int(longest.max()) - 1} words, more than max_length - 1 = "
                         f"{tokenizer.max_length - 1}")
    width = tokenizer.max_length + phrase.shape[-1]
    ids = torch.full((B, width), PAD, dtype=torch.long, device=device)
    ids.scatter_(1, torch.where(used, target, width - 1).flatten(1), phrase.flatten(1))  # unused: a cut column
    tail = torch.cat([word["on a"].expand(B, 2), word["background"][scenes.background][:, None],
                      word["the word background"].expand(B, 1)], dim=1)  # (B, 4)
    where = end[:, None] + torch.arange(4, device=device)
    if omit is not None:  # no "on a <bg> background": into the cut column
        where = torch.where(omit["background"].to(device)[:, None], width - 1, where)
    ids.scatter_(1, where, tail)
    ids[:, 0] = BOS
    return ids[:, :tokenizer.max_length]


@functools.lru_cache(maxsize=None)
def _word_tables(words: tuple[str, ...], device: torch.device) -> dict[str, torch.Tensor]:
    """The shapes world's words as ids of vocabulary ``words``, on ``device``, made once per device (a copy
    to an accelerator waits for it)."""
    from ..data.shapes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES

    index = {w: i for i, w in enumerate(words)}
    ids = lambda names: [index.get(w, UNK) for w in names]  # noqa: E731
    longest = max(len(p.split()) for p in POSITIONS)
    position = [ids(p.split()) + [PAD] * (longest - len(p.split())) for p in POSITIONS]
    table = {"and a": ids(["and", "a"]), "on a": ids(["on", "a"]), "the word background": ids(["background"]),
             "size": ids(SIZES), "colour": ids(COLOURS), "shape": ids(SHAPES), "background": ids(BACKGROUNDS),
             "position": position, "position length": [len(p.split()) for p in POSITIONS]}
    return {k: torch.tensor(v, device=device) for k, v in table.items()}


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block (Vaswani et al. 2017; pre-norm as in GPT-2)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width), Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


WIDTH = 128  # the caption features' width: what the shapes models' context_dim / cond_dim must be


class TextEncoder(nn.Module):
    """Token ids (B, L) -> per-token features (B, L, width) and the pooled [BOS] feature (B, width)."""

    def __init__(self, vocab_size: int, width: int = WIDTH, depth: int = 2, heads: int = 4, max_length: int = 32):
        super().__init__()
        check_int("vocab_size", vocab_size, len(SPECIALS) + 1)
        check_int("depth", depth, 1)
        self.max_length = check_int("max_length", max_length, 2)
        self.width = check_int("width", width, 1)
        self.token = nn.Embedding(vocab_size, width)
        self.pos = nn.Parameter(torch.randn(1, max_length, width) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_tensor("ids", ids, shape=(None, self.max_length), floating=False)
        h = self.token(ids) + self.pos  # (B, L, D)
        for block in self.blocks:
            h = block(h)
        h = self.norm(h)
        return h, h[:, 0]


class TextConditioned(nn.Module):
    """A denoiser whose ``cond`` is caption token ids: the encoder turns them into what the network
    takes, the token features (cross-attention, U-ViT tokens), the pooled vector (adaLN), or both
    ("pooled+tokens": the pooled vector as ``cond``, the tokens as ``context``, PixArt-alpha's DiT).
    ``cond`` may also be the encoder's output itself, features (B, L, width) float, whose first token is the
    pooled one: what null-text inversion and Imagic optimise in place of a caption.
    ``prediction_type``: what the network was trained to output (eps, x_0 or v), which samplers read."""

    USES = ("tokens", "pooled", "pooled+tokens")

    def __init__(self, network: nn.Module, encoder: TextEncoder, use: str, prediction_type: str = "epsilon"):
        super().__init__()
        self.network, self.encoder = network, encoder
        self.use = check_choice("use", use, self.USES)
        self.prediction_type = check_choice("prediction_type", prediction_type, PREDICTION_TYPES)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if isinstance(cond, torch.Tensor) and cond.is_floating_point():
            check_tensor("cond", cond, shape=(x.shape[0], self.encoder.max_length, self.encoder.width))
            tokens, pooled = cond, cond[:, 0]
        else:
            check_tensor("cond", cond, shape=(x.shape[0], self.encoder.max_length), floating=False)
            tokens, pooled = self.encoder(cond)
        if self.use == "pooled+tokens":
            return self.network(x, t, pooled, context=tokens)
        return self.network(x, t, tokens if self.use == "tokens" else pooled)
