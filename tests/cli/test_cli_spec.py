"""`blocks recipes | validate | summary | schema | --help`: exit codes and output formats."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
import yaml

import blocks
from blocks.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_recipes_lists_every_bundled_name(capsys):
    code, out, _ = run(capsys, "recipes")
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines()]
    assert listed == list(blocks.bundled_recipes())


def test_validate_bundled_ok(capsys):
    code, out, err = run(capsys, "validate", *blocks.bundled_recipes())
    assert code == 0 and not err
    assert out.count("ok: ") == len(blocks.bundled_recipes())
    assert "ok: seed_cnn (seed-cnn: 3 blocks, 216,650 parameters, outputs output [10])" in out


def test_summary_json(capsys):
    code, out, _ = run(capsys, "summary", "seed_cnn", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["total_params"] == 216_650
    assert data["trainable_params"] == 216_650


def test_summary_markdown_and_table(capsys):
    code, out, _ = run(capsys, "summary", "seed_cnn", "--format", "markdown")
    assert code == 0
    assert "|" in out and "216,650" in out
    code, out, _ = run(capsys, "summary", "seed_cnn")
    assert code == 0 and "216,650" in out


def test_summary_bad_recipe_exit_2(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  input: {shape: [4]}\n  head: {type: softmax, classes: 1}\n")
    code, out, err = run(capsys, "summary", str(path))
    assert code == 2
    assert f"{path}:3:34: model.head.classes: " in err
    assert "Traceback" not in out + err


def test_schema_is_valid_json_schema(capsys, tmp_path):
    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    data = yaml.safe_load(blocks.bundled_recipes()["multitask"].read_text())
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    target = tmp_path / "schema.json"
    code, out, _ = run(capsys, "schema", "-o", str(target))
    assert code == 0 and out == ""
    assert json.loads(target.read_text()) == schema


def test_no_command_prints_help_exit_2(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "usage: blocks" in out


def test_unknown_command_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_python_m_blocks_help():
    result = subprocess.run([sys.executable, "-m", "blocks", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    for verb in ("validate", "summary", "schema", "recipes"):
        assert verb in result.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"blocks {blocks.__version__}"
