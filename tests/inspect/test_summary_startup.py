"""`blocks summary` without importing TorchDynamo (issue 24 item 10): the meta-device build and
forward answer torch's `_disable_dynamo` wrappers with the function itself, then put torch back
as it was. Each case runs in a fresh interpreter (the test process may hold TorchDynamo already,
and then nothing is changed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    return done.stdout


CLI_THEN_REFERENCE = """
import contextlib, io, json, sys
from blocks.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(["summary", sys.argv[1], "--format", "json"])
imported = "torch._dynamo" in sys.modules
import torch._dynamo  # now as torch is: the wrappers use TorchDynamo itself
import blocks
reference = blocks.summarize(blocks.load_recipe(sys.argv[1], check_size=True)).to_json()
print(json.dumps({"code": code, "dynamo": imported, "cli": out.getvalue(), "reference": reference}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["vit_b_16", "efficientnet_b0"])
def test_a_zoo_summary_skips_torchdynamo_and_gives_the_same_answer(recipe):
    done = subprocess.run([sys.executable, "-c", CLI_THEN_REFERENCE, recipe], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["code"] == 0 and result["dynamo"] is False
    assert json.loads(result["cli"]) == json.loads(result["reference"])


def test_torch_is_left_as_it_was_and_a_forward_needing_torchdynamo_still_works():
    out = fresh("""
import sys, torch
from torch import nn
import blocks

class AsksTorchDynamo(nn.Module):  # needs more of TorchDynamo than the stand-in has
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(4)
    def forward(self, x):
        torch._dynamo.is_compiling()
        return torch.relu(self.norm(x))

first = blocks.summarize("resnet18")
left = "torch._dynamo" in sys.modules
asks = blocks.summarize(AsksTorchDynamo(), input_shape=(4,), probe="meta")
compiled = torch.compile(lambda x: torch.relu(x) * 2, backend="eager")
same = torch.equal(compiled(torch.tensor([-1.0, 3.0])), torch.tensor([0.0, 6.0]))
print(left, first.total_params, asks.total_params, asks.probe_device, same)
""")
    assert out.split() == ["False", "11689512", "8", "meta", "True"]
