"""The code in README.md and docs/*.md runs: ```python blocks in order, one namespace per file;
```yaml blocks that start with `model:` load as recipes."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import blocks
import blocks.spec.registry
from tests.vision_support import import_torchvision

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(p for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")] if p.exists())
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def fenced(path: Path, language: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block of `language` in `path`."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, textwrap.dedent(m.group(2)))
            for m in FENCE.finditer(text) if m.group(1) == language]


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.fixture(autouse=True)
def _one_thread():
    """Examples that train run faster on one thread on a shared CI box (see tests/train)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def vision_libraries(text: str) -> None:
    """Docs using timm / torchvision blocks import them the tests' way (skipped if missing)."""
    if "type: timm" in text or "type: torchvision" in text:
        from tests.vision_support import import_timm

        import_timm()


SLOW_DOCS = {"from-torchvision.md"}  # builds ConvNeXt-T three times (~10 s)


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_DOCS else p
                                  for p in DOCS if fenced(p, "python")],
                         ids=ids([p for p in DOCS if fenced(p, "python")]))
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    vision_libraries(path.read_text(encoding="utf-8"))
    if "import torchvision" in path.read_text(encoding="utf-8"):
        import_torchvision()  # the CPU-only wheel's workaround; skips when not installed
    before = set(blocks.block_types())
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    try:
        for line, code in fenced(path, "python"):
            try:
                exec(compile(code, f"{path.name}:{line}", "exec", dont_inherit=True), namespace)
            except Exception as err:
                raise AssertionError(f"{path.name}, the ```python block at line {line} failed: "
                                     f"{type(err).__name__}: {err}") from err
    finally:
        for name in set(blocks.block_types()) - before:  # block types the examples registered
            blocks.spec.registry.unregister_block(name)


YAML_BLOCKS = [(path, line, code) for path in DOCS for line, code in fenced(path, "yaml")
               if code.lstrip().startswith("model:")]


@pytest.mark.parametrize(("path", "line", "code"), YAML_BLOCKS,
                         ids=[f"{p.name}:{line}" for p, line, _ in YAML_BLOCKS])
def test_yaml_recipes_validate(path, line, code):
    vision_libraries(code)
    recipe = blocks.load_recipe(code)
    blocks.build(recipe.model)


def test_recipes_doc_names_every_builtin_block_type():
    text = (ROOT / "docs" / "recipes.md").read_text(encoding="utf-8")
    # the types that lived in blocks.layers.catalogue and blocks.layers.composites before each
    # family got its own file
    families = {f"blocks.layers.{name}" for name in ("linear", "embedding", "conv", "norm",
                                                     "pooling", "activations", "regularize",
                                                     "axes", "composites")}
    moved = {"layernorm2d", "hardswish", "hardsigmoid", "softmax_act", "drop_path",
             "layer_scale", "permute", "reshape", "unflatten"}  # from other files
    builtin = [name for name, cls in blocks.block_types().items()
               if cls.__module__ in families and name not in moved]
    missing = [name for name in builtin if f"`{name}`" not in text]
    assert not missing, f"docs/recipes.md does not describe: {missing}"
