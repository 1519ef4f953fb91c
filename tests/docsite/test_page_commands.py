"""The shell commands the getting-started and editors pages tell a reader to type, run as typed."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from blocks.cli import main

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def commands(page: str) -> list[list[str]]:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    lines = [line.split("  #")[0].strip() for lang, body in FENCE.findall(text) if lang == "bash"
             for line in body.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("blocks ")]


@pytest.mark.slow
def test_getting_started_commands_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    recipe = next(body for lang, body in FENCE.findall(text) if lang == "yaml")
    Path("iris.yaml").write_text(recipe, encoding="utf-8")
    ran = commands("getting-started.md")
    assert [args[0] for args in ran] == ["validate", "summary", "graph", "train", "report", "train"]
    for args in ran:
        assert main(args) == 0, args
    assert "ok: iris.yaml (iris-mlp: 2 blocks, 131 parameters, outputs output [3])" in capsys.readouterr().out
    assert Path("runs/iris/curves.png").exists() and Path("runs/iris/confusion.png").exists()
    from blocks import load_recipe

    assert load_recipe("runs/iris-wide/recipe.yaml").model.backbone[0].out_features == 64


def test_editors_page_commands_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = commands("editors.md")
    assert ran == [["schema", "-o", "blocks.schema.json"]]
    assert main(ran[0]) == 0
    schema = json.loads(Path("blocks.schema.json").read_text(encoding="utf-8"))
    assert schema["title"] == "blocks recipe" and "block.conv2d" in schema["$defs"]
