"""The verbs that need no tensors never import torch (issue 12: start-up under 0.6 s).

`import torch` alone costs about a second; `blocks validate` must fit an editor save hook and
pre-commit. Each case runs in a fresh interpreter and reports which heavy modules got imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "numpy", "torchinfo", "safetensors")

PROBE = """
import contextlib, io, json, sys
HEAVY = sys.argv.pop(1).split(',')
from blocks.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit:  # --help exits from argparse
        code = exit.code
print(json.dumps({"code": code, "output": out.getvalue(),
                  "heavy": sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)}))
"""


def _run(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, ",".join(HEAVY), *argv], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["validate", "--help"],
    ["schema"],
    ["validate", "seed_cnn", "tabular_mlp", "resnet18", "multitask", "vit_b_16"],
], ids=lambda argv: " ".join(argv))
def test_verbs_without_tensors_do_not_import_torch(argv):
    result = _run(*argv)
    assert result["code"] == 0, result["output"]
    assert result["heavy"] == []


def test_validate_still_reports_exact_parameter_counts_without_torch():
    result = _run("validate", "seed_cnn", "resnet18")
    assert "seed-cnn: 3 blocks, 216,650 parameters" in result["output"]
    assert "11,689,512 parameters" in result["output"]
    assert result["heavy"] == []


def test_import_blocks_is_lazy_but_complete():
    code = ("import sys, blocks; before = 'torch' in sys.modules; "
            "model = blocks.build(blocks.load_recipe('seed_cnn').model); "
            "print(before, type(model).__name__, [n for n in blocks.__all__ if getattr(blocks, n, None) is None])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == ["False", "BlocksModel", "[]"]  # every public name resolves


@pytest.mark.parametrize(("old", "new", "name"), [
    ("blocks.layers.modules.transformer", "blocks.layers.transformer", "EncoderLayer"),
    ("blocks.layers.modules.axes", "blocks.layers.norm", "LayerNorm2d"),
    ("blocks.layers.axes", "blocks.layers.norm", "LayerNorm2d"),
    ("blocks.layers.catalogue", "blocks.layers.pooling", "GlobalAvgPool"),
    ("blocks.layers.modules.pooling", "blocks.layers.pooling", "GlobalAvgPool"),
    ("blocks.layers.modules.residual", "blocks.layers.composites", "ResidualModule"),
    ("blocks.layers.modules.gating", "blocks.layers.gating", "SqueezeExcitation"),
    ("blocks.spec.preprocess", "blocks.builder.preprocessing", "Preprocessing"),
])
def test_module_classes_are_still_found_where_they_used_to_live(old, new, name):
    import importlib

    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError, match=f"module '{old}' has no attribute 'Nope'"):
        importlib.import_module(old).Nope  # noqa: B018 - the lookup is the test
