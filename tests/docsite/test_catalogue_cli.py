"""`blocks blocks [TYPE]` and every verb's --help: the CLI describes itself."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from torch import nn

import blocks
import blocks.spec.registry
from blocks.cli import EXIT_BAD_INPUT, build_parser, main
from blocks.layers.docs import catalogue, describe

ROOT = Path(__file__).resolve().parents[2]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.fixture
def plugin():
    @blocks.register_block("doubler")
    class Doubler(blocks.Block):
        """Doubles the last axis by repeating it (a test plugin)."""

        times: int = blocks.spec.model.Field(2, description="how many copies")

        def output_shape(self, shape):
            return (*shape[:-1], shape[-1] * self.times)

        def build(self, shape):
            return nn.Identity()

    yield Doubler
    blocks.spec.registry.unregister_block("doubler")


def test_list_names_every_registered_type_with_a_summary(capsys, plugin):
    assert main(["blocks"]) == 0
    out = capsys.readouterr().out
    listed = dict(re.findall(r"^(\w+) +(.+)$", out, re.M))
    assert set(blocks.block_types()) <= set(listed)
    assert listed["doubler"] == "Doubles the last axis by repeating it (a test plugin)."
    assert listed["conv2d"] == "`nn.Conv2d` on `[channels, height, width]`; `in_channels` is inferred."
    assert not [name for name in blocks.block_types() if not describe(name).summary]


def test_one_type_shows_fields_shape_rule_and_example(capsys):
    assert main(["blocks", "conv2d"]) == 0
    out = capsys.readouterr().out
    assert "  out_channels  integer  (default: required)" in out
    assert "  padding_mode  'zeros' | 'reflect' | 'replicate' | 'circular'  (default: zeros)" in out
    assert "shape: [1, 28, 28] -> [32, 26, 26]" in out
    assert "  - {type: conv2d, out_channels: 32, kernel_size: 3}" in out


def test_plugin_is_described_from_its_own_rule(capsys, plugin):
    assert main(["blocks", "doubler"]) == 0
    out = capsys.readouterr().out
    assert "  times  integer  (default: 2)" in out
    assert "how many copies" in out
    assert "shape: [16, 8, 8] -> [16, 8, 16]" in out  # computed by the plugin's output_shape


def test_every_example_validates_and_gives_the_shape_shown():
    for doc in catalogue():
        if doc.name in ("timm", "torchvision"):
            continue  # stated, not run: they load a library
        assert doc.example is not None, doc.name
        block = blocks.block_types()[doc.name].model_validate(
            doc.example if isinstance(doc.example, dict) else {"type": doc.example})
        assert list(block.output_shape(tuple(doc.input_shape))) == doc.output_shape


def test_unknown_type_is_exit_2_with_a_suggestion(capsys):
    assert main(["blocks", "conv3d"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == ("error: unknown block type 'conv3d'; did you mean 'conv2d' or "
                                       f"'conv1d'? (`blocks blocks` lists all {len(blocks.block_types())})\n")


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_verb_has_a_description_and_examples(name):
    parser = subcommands()[name]
    assert parser.description, name
    assert parser.epilog and "examples:\n  blocks " in parser.epilog, name
    assert f"blocks {name}" in parser.epilog or f"-m blocks {name}" in parser.epilog, name


def test_readme_command_table_lists_every_verb():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("## Command line"):text.index("Exit codes")]
    missing = [name for name in subcommands() if f"\nblocks {name}" not in table]
    assert not missing, f"README's command table lacks {missing}"
