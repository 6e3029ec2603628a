"""``machine``: what a number was measured on, and ``Meter``, a block's time and peak memory."""

import sys

import pytest
import torch

from coursekit.machine import Meter, machine


def test_machine_names_torch_and_the_cpu():
    info = machine()
    assert info["torch"] == torch.__version__ and info["torch_threads"] == torch.get_num_threads()


def test_meter_times_a_block_and_sees_its_memory():
    with Meter("cpu") as m:
        block = torch.ones(64, 2**20)  # 256 MB, touched
        block += 1
        del block
    assert m.seconds > 0
    if sys.platform.startswith("linux"):  # the peak resident memory's reset works on Linux
        assert m.added_mb > 200 and m.peak_mb >= m.added_mb
    else:
        assert m.peak_mb is None


@pytest.mark.parametrize("device", ["tpu", "mps", 3])
def test_meter_refuses_other_devices(device):
    with pytest.raises(ValueError, match="^device"):
        Meter(device)
