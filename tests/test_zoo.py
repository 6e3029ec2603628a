"""The model zoo: recipes, the trainer (determinism, exact resume, several processes), shipped checkpoints
and the claims on their cards."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from coursekit import zoo
from coursekit.evaluate import CHUNK, caption_accuracy, classifier_accuracy, scene_accuracy
from coursekit.train import fit

TINY = zoo.recipe("tiny-unet")


def test_unknown_recipe_and_model_names_list_the_known_ones():
    with pytest.raises(ValueError, match="shapes-unet"):
        zoo.recipe("shapes-vae")
    with pytest.raises(ValueError, match="^name must be one of the zoo's models"):
        zoo.load("shapes-vae")
    with pytest.raises(ValueError, match="^architecture"):
        TINY.replace(architecture="resnet")
    with pytest.raises(ValueError, match="unknown fields"):
        zoo.Recipe.from_dict({**TINY.__dict__, "epochs": 3})


def test_a_recipe_comes_from_a_card_or_a_recipe_file(tmp_path):
    card = zoo.CHECKPOINTS / "shapes-unet.json"
    assert zoo.recipe(str(card)) == zoo.Recipe.from_dict(zoo.card("shapes-unet")["recipe"])
    (tmp_path / "r.json").write_text(json.dumps(TINY.__dict__))
    assert zoo.recipe(str(tmp_path / "r.json")) == TINY
    (tmp_path / "bad.json").write_text("[1, 2]")
    (tmp_path / "text.json").write_text("steps: 20")
    for path, message in [(tmp_path / "none.json", "^recipe file .* does not exist"),
                          (tmp_path / "bad.json", "^recipe file .* must hold a JSON object"),
                          (tmp_path / "text.json", "^recipe file .* is not JSON")]:
        with pytest.raises(ValueError, match=message):
            zoo.recipe(str(path))
    with pytest.raises(ValueError, match=r"^name must be one of the recipes \['shapes-classifier'"):
        zoo.recipe(["tiny-unet"])  # was a TypeError (unhashable)


@pytest.mark.parametrize("change, name", [
    (dict(save_every=15), "save_every must be a multiple of 10"), (dict(save_every=0), "save_every"),
    (dict(steps=0), "steps"), (dict(steps=2.5), "steps"), (dict(batch_size=0), "batch_size"),
    (dict(warmup=-1), "warmup"), (dict(lr=-1e-3), "lr"), (dict(lr="1e-3"), "lr"), (dict(ema_decay=1.5), "ema_decay"),
    (dict(caption_dropout=2.0), "caption_dropout"), (dict(attribute_dropout=-0.1), "attribute_dropout"),
    (dict(mixed_precision="fp16"), "mixed_precision"), (dict(prediction_type="x0"), "prediction_type"),
    (dict(name=""), "name"), (dict(weight_decay=-1.0), "weight_decay"), (dict(grad_clip=-1.0), "grad_clip"),
    (dict(seed=-1), "seed"), (dict(resolution=0), "resolution"), (dict(max_objects=0), "max_objects"),
    (dict(schedule="cosin"), "schedule"), (dict(max_seconds=-1.0), "max_seconds"), (dict(model=[]), "model"),
    (dict(experts=[600, 500]), "experts"), (dict(experts=[1000]), "experts"), (dict(experts=500), "experts"),
    (dict(experts=[True]), "experts"), (dict(init=""), "init"), (dict(init=3), "init"),
])
def test_recipe_fields_are_checked(change, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        TINY.replace(**change)


def test_the_ema_update_is_the_per_tensor_lerp():
    from coursekit.train import EMA

    torch.manual_seed(0)
    model = zoo.build_model(TINY)
    ema = EMA(model, 0.9)
    reference = {k: v.clone() for k, v in ema.shadow.items()}
    for step in range(1, 4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        d = min(0.9, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if k in reference:
                reference[k].lerp_(v, 1 - d)
    assert all(torch.equal(ema.shadow[k], reference[k]) for k in reference)


@pytest.mark.slow
def test_training_is_deterministic_and_resumes_exactly(tmp_path):
    whole = fit(TINY, tmp_path / "whole", progress=False)
    fit(TINY, tmp_path / "split", stop_after=10, progress=False)  # interrupted at step 10 ...
    resumed = fit(TINY, tmp_path / "split", progress=False)  # ... and resumed from the checkpoint
    assert whole["steps"] == resumed["steps"] == TINY.steps and whole["finished"]
    assert whole["sha256"] == resumed["sha256"]
    log = [json.loads(line) for line in (tmp_path / "split" / "loss.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [10, 20]


@pytest.mark.slow
def test_experts_start_from_their_init_model_and_each_trains_on_its_levels(tmp_path):
    """eDiff-I's recipe on the tiny U-Net: every expert starts as the init model (learning rate 0 keeps them there),
    each sample trains the expert of its level, and the card loads as a pipeline whose experts share one encoder."""
    from coursekit.zoo import write_card

    fit(TINY, tmp_path / "runs" / "tiny-unet", progress=False)
    write_card(TINY, tmp_path / "runs" / "tiny-unet", tmp_path / "zoo")
    init = zoo.load("tiny-unet", folder=tmp_path / "zoo").denoiser.state_dict()
    experts = TINY.replace(name="tiny-experts", experts=[500], init="tiny-unet", steps=10)
    fit(experts.replace(lr=0.0), tmp_path / "runs" / "still", progress=False, init_folder=tmp_path / "zoo")
    from safetensors.torch import load_file

    still = load_file(str(tmp_path / "runs" / "still" / "tiny-experts.safetensors"))
    assert all(torch.equal(still[f"experts.{k}.{name}"].float(), v) for k in (0, 1) for name, v in init.items())
    whole = fit(experts, tmp_path / "runs" / "whole", progress=False, init_folder=tmp_path / "zoo")
    fit(experts, tmp_path / "runs" / "tiny-experts", stop_after=5, progress=False, init_folder=tmp_path / "zoo")
    resumed = fit(experts, tmp_path / "runs" / "tiny-experts", progress=False, init_folder=tmp_path / "zoo")
    assert resumed["sha256"] == whole["sha256"]  # the shared encoder survives the checkpoint
    write_card(experts, tmp_path / "runs" / "tiny-experts", tmp_path / "zoo")
    pipe = zoo.load("tiny-experts", folder=tmp_path / "zoo")
    low, high = (e.state_dict() for e in pipe.denoiser.experts)
    assert pipe.denoiser.experts[0].encoder is pipe.denoiser.experts[1].encoder is pipe.encoder
    weights = [k for k in init if k.startswith("network.") and k.endswith("weight")]
    assert all(not torch.equal(low[k], init[k]) and not torch.equal(high[k], init[k]) for k in weights[-1:])
    assert any(not torch.equal(low[k], high[k]) for k in weights)  # each expert trained on its own samples
    assert pipe.generate(["a red circle"], num_inference_steps=2, seed=0).shape == (1, 3, 32, 32)
    other = TINY.replace(name="tiny-wide", model={**TINY.model, "channels": (32, 64)}, init="tiny-unet")
    with pytest.raises(ValueError, match=r"^init must name a single model of the same network as tiny-wide, but "
                                         r"tiny-unet differs in \['model'\]"):
        fit(other, tmp_path / "runs" / "wide", progress=False, init_folder=tmp_path / "zoo")
    with pytest.raises(ValueError, match="^init"):
        zoo.recipe("shapes-classifier").replace(init="shapes-unet")


def test_two_cpu_processes_under_accelerate_launch_train_the_same_kind_of_checkpoint(tmp_path):
    fit(TINY.replace(steps=4), tmp_path / "one", progress=False)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "coursekit.cli", "train", "tiny-unet", "--out", str(tmp_path / "two"), "--steps", "4", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["processes"] == 2 and summary["steps"] == 4
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "one" / "tiny-unet.safetensors")), load_file(str(tmp_path / "two" / "tiny-unet.safetensors"))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    # both trained: every tensor moved from the initial weights both runs start from (the recipe's seed)
    torch.manual_seed(TINY.seed)
    start = {k: v.to(torch.float16) for k, v in zoo.build_model(TINY).state_dict().items()}
    assert start.keys() == a.keys()
    # measured: all 222 tensors moved in each run, by at most 0.0033 (one process) and 0.0024 (two)
    assert all(not torch.equal(w[k], start[k]) for w in (a, b) for k in start)


SHIPPED = zoo.names()


def test_the_zoo_ships_every_model_within_its_size_budget():
    assert set(SHIPPED) >= {"shapes-classifier", "shapes-unet", "shapes-dit", "shapes-uvit"}
    sizes = [zoo.card(n)["bytes"] for n in SHIPPED]
    assert max(sizes) <= 15e6 and sum(sizes) <= 60e6


@pytest.mark.parametrize("name", SHIPPED)
def test_cards_describe_their_files(name):
    info = zoo.card(name)
    path = zoo.CHECKPOINTS / info["file"]
    assert path.stat().st_size == info["bytes"] and zoo.sha256(path) == info["sha256"]
    for key in ("recipe", "seed", "steps", "wall_seconds", "hardware", "metrics", "code_version", "trained_on"):
        assert key in info
    zoo.Recipe.from_dict(info["recipe"])


def test_a_tampered_checkpoint_is_refused(tmp_path):
    for suffix in (".json", ".safetensors"):
        shutil.copy(zoo.CHECKPOINTS / f"shapes-classifier{suffix}", tmp_path)
    zoo.load("shapes-classifier", folder=tmp_path)  # the copy loads ...
    weights = tmp_path / "shapes-classifier.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="refusing to load"):
        zoo.load("shapes-classifier", folder=tmp_path)  # ... one flipped bit does not


def test_a_missing_file_and_weights_that_do_not_fit_the_recipe_are_refused(tmp_path):
    def copy(edit=None):
        for suffix in (".json", ".safetensors"):
            shutil.copy(zoo.CHECKPOINTS / f"shapes-classifier{suffix}", tmp_path)
        if edit:
            info = json.loads((tmp_path / "shapes-classifier.json").read_text())
            edit(info["recipe"]["model"])
            (tmp_path / "shapes-classifier.json").write_text(json.dumps(info))

    copy()
    (tmp_path / "shapes-classifier.safetensors").unlink()
    with pytest.raises(ValueError, match="is missing"):
        zoo.load("shapes-classifier", folder=tmp_path)
    copy(lambda m: m.update(width=64))  # the card's classifier has the default width, 32: the same keys, other shapes
    with pytest.raises(ValueError, match="do not fit the recipe's model: .* in the file"):
        zoo.load("shapes-classifier", folder=tmp_path)


@pytest.mark.slow
def test_classifier_card_claim_holds_on_a_fresh_chunk():
    """Chunk 0 of the card's measurement, re-measured: the same 32 scenes, so the same count (allowing
    one image for float differences across machines); and the card's claim meets the 99% target."""
    info = zoo.card("shapes-classifier")
    claim = info["metrics"]["classifier_accuracy"]
    assert claim["joint"] >= 0.99 and claim["n"] >= 1024
    judge = zoo.load("shapes-classifier")
    now = classifier_accuracy(judge, n=CHUNK)
    assert abs(now["joint"] - claim["joint_per_chunk"][0]) <= 1 / CHUNK + 1e-9
    # and on 64 scenes the card never used (seed 7): the judge reads them as well as the card says
    assert classifier_accuracy(judge, n=2 * CHUNK, seed=7)["joint"] >= 0.97


# What each shipped model must at least do on chunk 0 (32 captions), whatever its card says: the README's table
# (256 captions, guidance 3) less about three images of 32. The shipped U-ViT is left out: its card claims nothing
# (joint 0.0 on every chunk), re-measuring that took 4 of the suite's minutes, and its defect is a named test below.
FLOORS = {"shapes-unet": {"joint": 0.35, "background": 0.9, "colour": 0.5, "shape": 0.5},
          "shapes-dit": {"joint": 0.05, "background": 0.9, "colour": 0.4}}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shapes-unet", "shapes-dit"])
def test_diffusion_card_claims_hold_on_chunk_zero(name):
    info = zoo.card(name)
    claim = info["metrics"]["guidance_3"]
    now = caption_accuracy(zoo.load(name), zoo.load("shapes-classifier"), n=CHUNK, guidance=3.0, steps=claim["steps"])
    # The same 32 captions and noise as the card's chunk 0 (and its diversity pairs), so the same numbers;
    # the tolerance allows another CPU's float rounding to send two trajectories elsewhere.
    assert abs(now["joint"] - claim["joint_per_chunk"][0]) <= 2 / CHUNK + 1e-9
    assert now["diversity_rms"] == pytest.approx(claim["diversity_rms"], rel=0.05)
    assert all(now[key] >= floor for key, floor in FLOORS[name].items()), now  # and the model works


TEXT_TO_IMAGE = ["shapes-unet", "shapes-dit", pytest.param("shapes-uvit", marks=pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="the shipped U-ViT was trained (GPU, 4eee9cb) before its last conv started as the identity: "
                        "its loss at low noise is 4-8x the others'; the next GPU zoo build replaces it"))]


@pytest.mark.slow
@pytest.mark.parametrize("name", TEXT_TO_IMAGE)
def test_shipped_models_beat_the_trivial_predictor_at_every_noise_level_and_use_t(name):
    """A card can only say what a model scores; this says the model works at every level. Measured on 32
    fresh scenes at t = 50, 300, 700, 950 (v-loss / loss of predicting 0): the GPU U-Net at most 0.023,
    the DiT 0.034, the U-ViT trained before its fix 0.19 (t = 50) ... 0.08; relative output change when
    only t changes (t <-> 1000 - t): U-Net at least 0.49, DiT 0.74, old U-ViT 0.12 (t = 700) ... 0.37."""
    from coursekit.data import ShapesWorld
    from coursekit.evaluate import level_errors
    from coursekit.models.text import Tokenizer, caption_ids

    pipe = zoo.load(name)
    assert pipe.prediction_type == zoo.card(name)["recipe"]["prediction_type"] == "v_prediction"
    scenes = ShapesWorld(resolution=32).sample(32, seed=123)
    x0, ids = ShapesWorld(resolution=32).render(scenes)[0], caption_ids(Tokenizer(), scenes)
    measured = level_errors(pipe.denoiser, pipe.schedule, x0, ids)
    assert max(measured["relative_error"]) < 0.1 and min(measured["t_change"]) > 0.3, measured


def test_pipeline_generation_is_seeded_and_guidance_report_scores_it():
    from coursekit.data import ShapesWorld
    from coursekit.widgets import guidance_report

    pipe, judge = zoo.load("shapes-unet"), zoo.load("shapes-classifier")
    scenes = ShapesWorld(resolution=32).sample(2, seed=0)
    a = pipe.generate(scenes.captions(), guidance_scale=2.0, num_inference_steps=3, seed=5)
    assert a.shape == (2, 3, 32, 32)
    assert torch.equal(a, pipe.generate(scenes.captions(), guidance_scale=2.0, num_inference_steps=3, seed=5))
    # another seed, or another guidance scale, draws other images
    assert not torch.allclose(a, pipe.generate(scenes.captions(), guidance_scale=2.0, num_inference_steps=3, seed=6),
                              atol=1e-2)
    assert not torch.allclose(a, pipe.generate(scenes.captions(), guidance_scale=1.0, num_inference_steps=3, seed=5),
                              atol=1e-2)
    report = guidance_report(pipe, judge, scenes, 2.0, steps=3, seed=5)
    assert torch.equal(report["images"], a)
    # the scores are the judge's reading of those images, and guidance raises them
    direct = scene_accuracy(judge.predict(a.clamp(-1, 1)), scenes)
    assert report["correct"].keys() == direct.keys()
    assert all(torch.equal(report["correct"][k], direct[k]) for k in direct)
    attributes = lambda r: torch.stack([v for k, v in r["correct"].items() if k != "joint"]).float().mean()  # noqa: E731
    unguided = guidance_report(pipe, judge, scenes, 0.0, steps=3, seed=5)
    # measured: 9 of the 10 (image, attribute) readings right at scale 2, 0 of 10 at scale 0
    assert attributes(report) >= 0.6 and attributes(unguided) <= 0.3


def test_the_pipelines_guidance_is_the_cfg_formula_in_its_batched_call():
    """``Pipeline.guided`` hands a batch-1 empty caption that is expanded and run in one call with the prompts
    (torch.cat, then chunk): a swap of the halves, or a wrong expansion, changes the values checked here."""
    pipe = zoo.load("shapes-unet")
    ids = pipe.encode_text(["a red circle", "a blue square on a white background"])
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([700, 300])
    with torch.no_grad():
        u, c = pipe.denoiser(x, t, pipe.encode_text(["", ""])), pipe.denoiser(x, t, ids)
        assert torch.allclose(pipe.guided(3.0)(x, t, ids), u + 3 * (c - u), atol=1e-5)
        features = pipe.text_features(["a red circle", "a blue square on a white background"])  # generate_from
        u, c = pipe.denoiser(x, t, pipe.text_features(["", ""])), pipe.denoiser(x, t, features)
        assert torch.allclose(pipe.guided(3.0)(x, t, features), u + 3 * (c - u), atol=1e-5)
        assert not torch.allclose(u, c, atol=1e-2)  # the check can fail: the two predictions differ


def test_loading_leaves_the_global_rng_as_it_was_and_generate_takes_steps_or_a_sampler():
    torch.manual_seed(7)
    expected = torch.randn(3)
    torch.manual_seed(7)
    pipe = zoo.load("shapes-unet")
    assert torch.equal(torch.randn(3), expected)
    a = pipe.generate(["a red circle"], num_inference_steps=2, seed=1)
    assert torch.equal(a, pipe.generate(["a red circle"], sampler=pipe.sampler(2), seed=1))
    with pytest.raises(ValueError, match="^give num_inference_steps or sampler, not both"):
        pipe.generate(["a red circle"], num_inference_steps=2, sampler=pipe.sampler(2))
    with pytest.raises(ValueError, match="^guidance_scale"):
        pipe.generate(["a red circle"], guidance_scale="3")
    with pytest.raises(ValueError, match=r"^prompt\[0\] has words the model does not know"):
        pipe.generate(["a puce circle"])


def test_text_features_check_the_prompt_as_the_methods_do():
    pipe = zoo.load("shapes-unet")
    assert pipe.text_features(["a red circle", ""]).shape == (2, 32, 128)
    # an unknown word was mapped to the unknown token before, silently
    with pytest.raises(ValueError, match=r"^prompt\[1\] has words the model does not know: \['puce'\]"):
        pipe.text_features(["a red circle", "a puce circle"])
    for bad in ("a red circle", None, [3]):
        with pytest.raises(ValueError, match="^prompt"):
            pipe.text_features(bad)


def test_every_shipped_data_file_is_declared_package_data():
    """A wheel (what Colab's `pip install git+...` builds) carries only the package data pyproject.toml declares; an
    editable install hides a missing declaration. Every file under checkpoints/ and static/ must match a glob
    (checked by hand too: `pip wheel` lists all 8 checkpoint files and the 6 static ones)."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(zoo.__file__).resolve().parent
    globs = tomllib.loads((root.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["coursekit"]
    shipped = [p for folder in ("checkpoints", "static") for p in (root / folder).rglob("*") if p.is_file()
               and "__pycache__" not in p.parts]
    assert len(shipped) >= 14
    def pattern(glob):  # setuptools' globs: "**/" any folders (or none), "*" within one name
        return re.compile(re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*") + "$")

    missing = [p.relative_to(root).as_posix() for p in shipped
               if not any(pattern(g).match(p.relative_to(root).as_posix()) for g in globs)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
