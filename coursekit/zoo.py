"""The course model zoo: named training recipes, and the checkpoints they produced, shipped with the package.

Every shipped model is a safetensors file plus a JSON model card in ``coursekit/checkpoints/``: the
recipe, seed, steps, wall time, hardware, measured metrics, code version and the file's sha256.
``load(name)`` refuses a file whose hash does not match its card. ``coursekit train RECIPE`` (see
``train.py``) reproduces any of them; ``coursekit zoo build`` (``build.py``) trains, evaluates and
writes them all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from ._checks import check_boundaries, check_choice, check_float, check_int
from .diffusion.forward import PREDICTION_TYPES
from .diffusion.schedules import SCHEDULES, make_schedule
from .models.text import WIDTH as TEXT_WIDTH

CHECKPOINTS = Path(__file__).parent / "checkpoints"
KINDS = ("diffusion", "classifier")
ARCHITECTURES = ("unet", "dit", "uvit", "classifier")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a trained model. ``model`` overrides the architecture's config fields."""

    name: str
    architecture: str
    steps: int
    batch_size: int
    lr: float
    warmup: int = 100
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    attribute_dropout: float = 0.0
    grad_clip: float = 1.0
    mixed_precision: str = "bf16"
    seed: int = 0
    resolution: int = 32
    max_objects: int = 2
    schedule: str = "cosine"
    prediction_type: str = "v_prediction"
    max_seconds: float | None = None
    save_every: int = 500
    model: dict = field(default_factory=dict)
    experts: list = field(default_factory=list)
    init: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        check_choice("architecture", self.architecture, ARCHITECTURES)
        for name in ("steps", "batch_size", "save_every"):
            check_int(name, getattr(self, name), 1)
        check_int("warmup", self.warmup, 0)
        if self.save_every % 10:
            raise ValueError(f"save_every must be a multiple of 10 (the trainer checks every 10 steps), got {self.save_every}")
        check_float("lr", self.lr, 0.0)
        check_float("ema_decay", self.ema_decay, 0.0, 1.0)
        check_float("caption_dropout", self.caption_dropout, 0.0, 1.0)
        check_float("attribute_dropout", self.attribute_dropout, 0.0, 1.0)
        check_choice("mixed_precision", self.mixed_precision, ("no", "bf16"))
        check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        check_float("weight_decay", self.weight_decay, 0.0)
        check_float("grad_clip", self.grad_clip, 0.0)
        check_int("seed", self.seed, 0)
        check_int("resolution", self.resolution, 1)
        check_int("max_objects", self.max_objects, 1)
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.max_seconds is not None:
            check_float("max_seconds", self.max_seconds, 0.0)
        if not isinstance(self.model, dict):
            raise ValueError(f"model must be a dict of the architecture's config fields, got {self.model!r}")
        if not isinstance(self.experts, list) or (self.experts and self.architecture == "classifier"):
            raise ValueError(f"experts must be a list of timestep boundaries (a diffusion model's), "
                             f"got {self.experts!r}")
        if self.experts:
            check_boundaries("experts", self.experts, make_schedule(self.schedule).T)
        if self.init is not None and (not isinstance(self.init, str) or not self.init or self.kind == "classifier"):
            raise ValueError(f"init must be None or the name of a diffusion model to start from, got {self.init!r}")

    @property
    def kind(self) -> str:
        return "classifier" if self.architecture == "classifier" else "diffusion"

    def replace(self, **changes) -> Recipe:
        return Recipe(**{**asdict(self), **changes})

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"recipe has unknown fields {unknown}")
        model = {k: tuple(v) if isinstance(v, list) else v for k, v in data.get("model", {}).items()}  # JSON has no tuples
        return cls(**{**data, "model": model})


# The text-to-image recipes are sized for one H100/H200: ``coursekit zoo build --minutes M`` replaces ``steps`` by
# what a measured probe says fits M minutes and writes it into the card; the ``steps`` here serve
# ``coursekit train NAME`` on its own.
#
# ``attribute_dropout``: besides the empty caption (``caption_dropout``), each attribute phrase of a training caption is
# left out with this probability (``data.shapes.omissions``), so the model learns what a caption that does not name
# an attribute means (lesson 03's diversity against guidance needs it). 0.05 per phrase leaves about two captions in
# three whole; the shipped checkpoints (built before it) saw whole captions only, and their cards' recipes say 0.0.
RECIPES = {r.name: r for r in (
    Recipe("shapes-unet", "unet", steps=3000, batch_size=256, lr=4e-4, attribute_dropout=0.05),
    # PixArt-alpha's cross-attention to the caption tokens beside adaLN-Zero on the pooled vector. Measured on the
    # CPU (tests/test_architectures.py's small DiT, 16x16, equal steps and near-equal seconds): held-out v-loss
    # 0.161 after 150 steps, which the pooled-only DiT needs 300 steps for (0.258 after 150)
    Recipe("shapes-dit", "dit", steps=3000, batch_size=256, lr=4e-4, attribute_dropout=0.05,
           model=dict(context_dim=TEXT_WIDTH)),
    # the official code's MLP over the time token (``mlp_time_embed``): 8% lower held-out loss at small scale
    Recipe("shapes-uvit", "uvit", steps=3000, batch_size=256, lr=4e-4, attribute_dropout=0.05,
           model=dict(time_mlp=True)),
    # eDiff-I (Balaji et al. 2022, sec. 4.1): shapes-unet copied into a low-noise and a high-noise expert (t < 500,
    # t >= 500; sharing the text encoder) and fine-tuned, each sample training the expert of its level, so a step
    # costs one model's step; shapes-unet-continued is the same fine-tuning of the single model, the comparison at
    # equal total steps (the paper's claim: better caption alignment). Not in the default build: a second build after
    # shapes-unet's, `coursekit zoo build shapes-unet-experts shapes-unet-continued --folder F` (init read from F).
    Recipe("shapes-unet-experts", "unet", steps=1500, batch_size=256, lr=1e-4, warmup=50, attribute_dropout=0.05,
           experts=[500], init="shapes-unet"),
    Recipe("shapes-unet-continued", "unet", steps=1500, batch_size=256, lr=1e-4, warmup=50, attribute_dropout=0.05,
           init="shapes-unet"),
    Recipe("shapes-classifier", "classifier", steps=2000, batch_size=128, lr=2e-3, warmup=50, max_objects=3,
           caption_dropout=0.0, mixed_precision="no", max_seconds=600),
    # a few-second recipe for tests and for trying the trainer on a laptop
    Recipe("tiny-unet", "unet", steps=20, batch_size=8, lr=1e-3, warmup=2, save_every=10,
           mixed_precision="no", model=dict(channels=(32, 32), attention=(False, True), heads=(2, 2))),
)}


def recipe(name: str) -> Recipe:
    """The named recipe, or the recipe in a JSON file (a model card's, or a bare recipe): ``coursekit train
    shapes-unet.json`` retrains a card's model exactly. An unknown name lists the known ones."""
    if isinstance(name, str) and name.endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"recipe file {name!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"recipe file {name!r} is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"recipe file {name!r} must hold a JSON object (a recipe or a model card)")
        return Recipe.from_dict(data["recipe"] if "recipe" in data else data)
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"name must be one of the recipes {sorted(RECIPES)} or a .json recipe file, got {name!r}")
    return RECIPES[name]


def build_model(r: Recipe) -> nn.Module:
    """A freshly initialised model for the recipe (deterministic under ``torch.manual_seed``)."""
    from .models import DiT, Experts, UNet, UViT, dit_shapes, unet_shapes, uvit_shapes
    from .models.classifier import ShapesClassifier
    from .models.text import TextConditioned, TextEncoder, Tokenizer

    if r.architecture == "classifier":
        return ShapesClassifier(resolution=r.resolution, **r.model)
    tokenizer = Tokenizer()
    encoder = TextEncoder(len(tokenizer), max_length=tokenizer.max_length)

    def conditioned() -> TextConditioned:
        if r.architecture == "unet":
            network, use = UNet(unet_shapes(**r.model)), "tokens"
        elif r.architecture == "dit":
            cfg = dit_shapes(**{"input_size": r.resolution, **r.model})
            network, use = DiT(cfg), "pooled" if cfg.context_dim is None else "pooled+tokens"
        else:
            network, use = UViT(uvit_shapes(**{"image_size": r.resolution, **r.model})), "tokens"
        return TextConditioned(network, encoder, use, r.prediction_type)

    if not r.experts:
        return conditioned()
    # eDiff-I: one network per interval of levels, all reading the caption through one shared text encoder
    return Experts([conditioned() for _ in range(len(r.experts) + 1)], r.experts, make_schedule(r.schedule).T)


def initialise(model: nn.Module, r: Recipe, folder: Path = CHECKPOINTS) -> None:
    """Load the weights of ``r.init``, a model of the zoo in ``folder``, into ``model`` built for ``r``: into every
    expert when ``r`` has experts (eDiff-I copies the model trained on all levels into each expert, then fine-tunes
    each on its interval). The init's recipe must describe the same network (architecture, its config,
    resolution, prediction type, schedule)."""
    from safetensors.torch import load_file

    info = card(r.init, folder)
    source = Recipe.from_dict(info["recipe"])
    same = ("architecture", "model", "resolution", "prediction_type", "schedule")
    plain = lambda recipe, k: json.loads(json.dumps(getattr(recipe, k)))  # noqa: E731  (a card's lists are tuples here)
    differ = [k for k in same if plain(source, k) != plain(r, k)]
    if source.experts or differ:
        raise ValueError(f"init must name a single model of the same network as {r.name}, but {r.init} differs in "
                         f"{differ or ['experts']}")
    state = load_file(str(_checked_weights(r.init, info, folder)))
    for member in (model.experts if r.experts else [model]):
        expected = member.state_dict()
        member.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def pipeline_of(r: Recipe, model: nn.Module):
    """The ``Pipeline`` of a diffusion recipe's model: its schedule, the tokenizer, its resolution."""
    from .diffusion import make_schedule
    from .models.text import Tokenizer
    from .pipeline import Pipeline

    return Pipeline(model, make_schedule(r.schedule), Tokenizer(), resolution=r.resolution)


# --- checkpoints and cards -------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(model: nn.Module, path: Path, dtype: torch.dtype = torch.float16) -> str:
    """Write the model's state dict as safetensors in ``dtype`` (floating tensors only); returns the sha256."""
    from safetensors.torch import save_file

    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return sha256(path)


def names(folder: Path = CHECKPOINTS) -> list[str]:
    """The models that have a card in ``folder``."""
    return sorted(p.stem for p in Path(folder).glob("*.json"))


def card(name: str, folder: Path = CHECKPOINTS) -> dict:
    """The model card of a shipped model."""
    path = Path(folder) / f"{name}.json"
    if not path.exists():
        raise ValueError(f"name must be one of the zoo's models {names(folder)}, got {name!r}")
    return json.loads(path.read_text())


def load(name: str, device: str | torch.device = "cpu", folder: Path = CHECKPOINTS):
    """A shipped model, ready to use: a ``Pipeline`` for diffusion models, the classifier otherwise.

    The weights file must have the sha256 its card records; anything else is refused, never loaded.
    Weights are stored in 16 bits and loaded into a float32 model (the card's ``dtype`` says so).
    """
    from safetensors.torch import load_file

    info = card(name, folder)
    weights = _checked_weights(name, info, folder)
    r = Recipe.from_dict(info["recipe"])
    with torch.random.fork_rng(devices=[]):  # the initialisation is overwritten; the caller's RNG stays as it was
        model = build_model(r)
    state = load_file(str(weights))
    expected = model.state_dict()
    if set(state) != set(expected):
        raise ValueError(f"{name}: the weights do not fit the recipe's model: {sorted(set(state) ^ set(expected))[:5]}")
    misfit = [k for k in state if state[k].shape != expected[k].shape]
    if misfit:
        raise ValueError(f"{name}: the weights do not fit the recipe's model: {misfit[0]} is "
                         f"{tuple(state[misfit[0]].shape)} in the file, {tuple(expected[misfit[0]].shape)} in the model")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    model = model.to(device).eval()
    return model if r.kind == "classifier" else pipeline_of(r, model)


def _checked_weights(name: str, info: dict, folder: Path) -> Path:
    """The weights file of card ``info``, which must exist and have the sha256 the card records."""
    weights = Path(folder) / info["file"]
    if not weights.exists():
        raise ValueError(f"{name}: weights file {weights} is missing")
    digest = sha256(weights)
    if digest != info["sha256"]:
        raise ValueError(f"{name}: {weights.name} has sha256 {digest[:12]}..., but its card records "
                         f"{info['sha256'][:12]}...; refusing to load a file that is not the one the card describes")
    return weights


def code_version() -> str:
    """coursekit's version, plus the git commit when running from a checkout."""
    import subprocess

    from . import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def write_card(r: Recipe, trained: Path, folder: Path, metrics: dict | None = None, notes: str = "") -> dict:
    """Copy the weights ``fit`` wrote in ``trained`` into ``folder`` and write their model card there."""
    import shutil

    summary = json.loads((Path(trained) / f"{r.name}.train.json").read_text())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{r.name}.safetensors"
    shutil.copyfile(Path(trained) / weights.name, weights)
    info = {
        "name": r.name, "file": weights.name, "sha256": sha256(weights), "dtype": "float16",
        "bytes": weights.stat().st_size, "parameters": summary["parameters"], "recipe": asdict(r),
        "seed": r.seed, "steps": summary["steps"], "finished": summary["finished"],
        "wall_seconds": summary["wall_seconds"], "processes": summary["processes"],
        "precision": summary["precision"], "hardware": summary["hardware"],
        "trained_on": summary["hardware"]["cuda"] or "cpu", "metrics": metrics or {},
        "code_version": code_version(), "notes": notes,
    }
    (folder / f"{r.name}.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
