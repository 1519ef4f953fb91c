"""docs/contributing.md, "Add a block type", as a test: ONE new family file, written here into
tmp_path and imported from there, gives its type everything a built-in has (validation with an
exact parameter count, the summary, training, every export format and its catalogue entry)
without a line changed in any other file."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path

import pytest
import torch

import blocks
from blocks.cli import main
from blocks.exporters import FORMATS
from blocks.layers.docs import catalogue, describe
from blocks.layers.examples import examples_markdown
from blocks.spec.registry import unregister_block

#: the whole new block type, exactly as a contributor would write blocks/layers/scaled_tanh.py
#: (kept beside this test as a real file, so ruff checks it; the test copies it to tmp_path)
FAMILY = (Path(__file__).parent / "scaled_tanh_family.py").read_text(encoding="utf-8")

RECIPE = """\
model:
  name: soft-clip
  input: {shape: [8]}
  backbone:
    - {type: linear, out_features: 16}
    - {type: scaled_tanh, init: 0.5}
  head: {type: softmax, classes: 3}
data: {synthetic: {samples: 64}}
train: {epochs: 3, batch_size: 16, optimizer: {type: adam, lr: 0.05}}
"""
PARAMETERS = (8 * 16 + 16) + 16 + (16 * 3 + 3)  # linear, scaled_tanh's scales, the head


@pytest.fixture
def family(tmp_path):
    """The new family file, imported from tmp_path (as a plugin's module would be); the type is
    unregistered afterwards."""
    path = tmp_path / "scaled_tanh.py"
    path.write_text(FAMILY, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("scaled_tanh", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["scaled_tanh"] = module  # pickling and PEP 562 lookups find the module by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        unregister_block("scaled_tanh")
        sys.modules.pop("scaled_tanh", None)


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.mark.slow
def test_one_new_file_adds_a_block_type_with_everything(family, tmp_path, torch_seed):
    recipe_path = tmp_path / "soft_clip.yaml"
    recipe_path.write_text(RECIPE, encoding="utf-8")

    # validate: the recipe is accepted and its parameter count comes from the new rule
    code, out = _cli("validate", str(recipe_path))
    assert code == 0, out
    assert f"{PARAMETERS:,} parameters" in out

    # the module it builds, named after its family file, counted exactly by the summary
    recipe = blocks.load_recipe(recipe_path)
    model = blocks.build(recipe.model, seed=0)
    layer = model.backbone[1]
    assert type(layer) is family.ScaledTanh and type(layer).__module__ == "scaled_tanh"
    assert blocks.summarize(model).total_params == PARAMETERS
    assert sum(p.numel() for p in layer.parameters()) == 16

    # training moves the new parameters
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    before = layer.scale.detach().clone()
    history = blocks.Trainer(model, recipe.train, quiet=True).fit((x, y))
    assert len(history) == 3
    assert not torch.equal(before, layer.scale.detach())

    # every export format, each reloaded and compared by `blocks.export` itself
    for fmt, suffix in FORMATS.items():
        result = blocks.export(model, to=fmt, path=tmp_path / f"model{suffix}")
        assert result.path.exists(), fmt
    source = (tmp_path / "model.py").read_text(encoding="utf-8")
    assert "\nclass ScaledTanh(nn.Module):" in source and "import blocks" not in source

    # its catalogue entry, its example and its documented recipe
    doc = describe("scaled_tanh")
    assert doc.shape_line == "[64] -> [64]" and doc.module == "scaled_tanh"
    assert "scaled_tanh" in [d.name for d in catalogue()]
    code, out = _cli("blocks", "scaled_tanh")
    assert code == 0 and "- {type: scaled_tanh, init: 0.5}" in out and "[64] -> [64]" in out
    code, out = _cli("blocks")
    assert "scaled_tanh" in out
    assert "### `scaled_tanh`" in examples_markdown()
    assert "block.scaled_tanh" in blocks.recipe_schema()["$defs"]


def test_the_new_family_file_imports_without_torch(tmp_path):
    """What `blocks validate` relies on: the family's torch classes wait for the first build."""
    path = tmp_path / "scaled_tanh.py"
    path.write_text(FAMILY, encoding="utf-8")
    probe = ("import importlib.util, sys; import blocks; "
             f"spec = importlib.util.spec_from_file_location('scaled_tanh', {str(path)!r}); "
             "m = importlib.util.module_from_spec(spec); sys.modules['scaled_tanh'] = m; "
             "spec.loader.exec_module(m); "
             "print('torch' in sys.modules, 'scaled_tanh' in blocks.block_types())")
    import subprocess

    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == ["False", "True"]
