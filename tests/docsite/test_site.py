"""The docs site: generated reference pages follow the code; the nav covers every page; the
site builds with `mkdocs build --strict` (when mkdocs is installed)."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from torch import nn

import blocks
import blocks.spec.registry
from blocks.cli import build_parser
from blocks.cli.docgen import cli_reference, recipe_reference

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def plugin():
    @blocks.register_block("docs_plugin_scale")
    class Scale(blocks.Block):
        """Multiplies by a constant (registered by a test, as a plugin would be)."""

        factor: float = blocks.spec.model.Field(2.0, description="the constant")

        def output_shape(self, shape):
            return shape

        def build(self, shape):
            return nn.Identity()

    yield Scale
    blocks.spec.registry.unregister_block("docs_plugin_scale")


def test_recipe_reference_lists_every_block_type_plugins_included(plugin):
    page = recipe_reference()
    for name in blocks.block_types():
        assert f"\n### {name}\n" in page, name
        assert f"| [`{name}`](#{name}) |" in page, name
    assert "| `factor` | number | `2.0` | the constant |" in page
    assert "Multiplies by a constant (registered by a test, as a plugin would be)." in page


def test_recipe_reference_describes_every_section_key():
    page = recipe_reference()
    for key, description in [
        ("epochs", "passes over the training data"),
        ("loggers", "where epoch metrics go"),
        ("val_fraction", "fraction held out for validation"),
        ("label_smoothing", "cross-entropy label smoothing"),
    ]:
        assert f"| `{key}` |" in page and description in page, key
    assert "| `out_channels` | integer | required | output channels; in_channels is inferred |" in page


def test_cli_reference_has_every_verb():
    page = cli_reference()
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in action.choices:
        assert f"\n## blocks {name}\n" in page
        assert f"usage: blocks {name}" in page
    assert "--set KEY=VALUE" in page


def _nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    return []


def test_nav_lists_every_page_and_only_pages_that_exist():
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    nav = set(_nav_pages(config["nav"]))
    generated = {"reference/recipe.md", "reference/cli.md"}  # written by mkdocs_hooks.py
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert nav - generated <= on_disk, nav - generated - on_disk
    assert on_disk <= nav, f"pages missing from the nav in mkdocs.yml: {on_disk - nav}"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed "
                    "(pip install 'blocks[docs]')")
def test_site_builds_strict(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                             str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                            timeout=240, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1",
                                              "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    site = tmp_path / "site"
    recipe_page = (site / "reference" / "recipe" / "index.html").read_text(encoding="utf-8")
    assert all(f'id="{name}"' in recipe_page for name in blocks.block_types())
    started = (site / "getting-started" / "index.html").read_text(encoding="utf-8")
    assert '<pre class="mermaid"><code>flowchart TD' in started  # `blocks graph iris.yaml`
    assert (site / "images" / "iris-curves.png").stat().st_size > 1000
    assert (site / "images" / "iris-confusion.png").stat().st_size > 1000
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "A validated <code>Recipe</code>" in api  # load_recipe's docstring, by mkdocstrings
