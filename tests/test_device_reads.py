"""Sampling and training never wait for the accelerator: no step reads a value back to the host.

Checked without a GPU on torch's meta device, whose tensors have shapes but no values, so that any host
read (``.item()``, ``bool()``, a data-dependent shape such as boolean-mask indexing) raises. On CUDA the
same code runs under ``torch.cuda.set_sync_debug_mode("error")``; ``coursekit bench trainer-*`` counts
the trainer's synchronisations there (its loss is read every 10 steps, by design).
"""

import pytest
import torch

from coursekit import zoo
from coursekit.diffusion import DDPMSampler, PixelGuidance, diffusion_loss, sample
from coursekit.train import EMA, make_optimizer, optimize


def test_the_meta_device_catches_host_reads():
    x = torch.ones(4, device="meta")
    with pytest.raises(RuntimeError):
        bool(x.sum())
    with pytest.raises(NotImplementedError):
        x[x > 0]


@pytest.mark.parametrize("name", ["shapes-unet", "shapes-dit", "shapes-uvit"])
def test_sampling_reads_nothing_back(name):
    r = zoo.recipe(name)
    with torch.device("meta"):
        model = zoo.build_model(r).eval()
    pipe = zoo.pipeline_of(r, model)
    ids = pipe.tokenizer(["a red circle on blue", ""]).to("meta")
    x_T = torch.randn(2, 3, 32, 32, device="meta")
    assert sample(pipe.guided(3.0), pipe.schedule, x_T, pipe.sampler(3), cond=ids, progress=False).is_meta
    stochastic = DDPMSampler(3, prediction_type=pipe.prediction_type)
    layout = torch.zeros(2, 3, 4, 4, device="meta")
    guided = PixelGuidance(pipe.denoiser, pipe.schedule, layout, scale=30.0, factor=8)
    assert sample(guided, pipe.schedule, x_T, stochastic, cond=ids, progress=False).is_meta


@pytest.mark.parametrize("name", ["shapes-unet", "shapes-dit", "shapes-uvit"])
def test_a_training_step_reads_nothing_back(name):
    r = zoo.recipe(name)
    with torch.device("meta"):
        model = zoo.build_model(r)
    optimizer, ema = make_optimizer(model, r.lr, weight_decay=0.01), EMA(model, r.ema_decay)
    x0, ids = torch.randn(4, 3, 32, 32, device="meta"), torch.zeros(4, 32, dtype=torch.long, device="meta")
    loss = diffusion_loss(model, zoo.pipeline_of(r, model).schedule, x0, ids)
    optimize(loss, model, optimizer, r.grad_clip)
    ema.update(model)
    assert loss.is_meta
