"""Reference pages generated from the code, so they cannot drift from it.

`python -m blocks.cli.docgen [FOLDER]` writes `FOLDER/recipe.md` (every recipe section and block type
from the JSON Schema and the registry, plugins included) and `FOLDER/cli.md` (every verb's
argparse help). The docs site builds them (see mkdocs_hooks.py); a test keeps the checked-in
copies under docs/reference/ fresh.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_FOLDER = Path("docs") / "reference"
# recipe sections in reading order: (title, $defs name, path in a recipe)
SECTIONS = [
    ("Recipe", None, ""), ("model", "ModelSpec", "model"), ("model.input", "InputSpec", "model.input"),
    ("model.preprocess", "PreprocessSpec", "model.preprocess"),
    ("model.weights", "WeightsSpec", "model.weights"),
    ("softmax head", "SoftmaxHead", "model.head"), ("sigmoid head", "SigmoidHead", "model.head"),
    ("data", "DataSpec", "data"), ("data.csv", "CsvSource", "data.csv"),
    ("data.npz", "NpzSource", "data.npz"), ("data.synthetic", "SyntheticSource", "data.synthetic"),
    ("train", "TrainSpec", "train"),
    ("sgd optimizer", "SGD", "train.optimizer"), ("adam optimizer", "Adam", "train.optimizer"),
    ("adamw optimizer", "AdamW", "train.optimizer"),
    ("step scheduler", "StepLR", "train.scheduler"), ("cosine scheduler", "CosineLR", "train.scheduler"),
    ("one_cycle scheduler", "OneCycleLR", "train.scheduler"),
    ("train.early_stopping", "EarlyStopping", "train.early_stopping"),
    ("train.init_from", "InitFrom", "train.init_from"),
    ("train.param_groups[]", "ParamGroup", "train.param_groups"),
]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in prop:
        return "-"
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.layers.docs import _flow

    return f"`{_flow(prop['default'])}`"


def _fields_table(definition: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.layers.docs import type_text

    required = set(definition.get("required", []))
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, prop in definition.get("properties", {}).items():
        if key == "type" and "const" in prop:
            continue
        rows.append(f"| `{key}` | {_cell(type_text(prop, defs))} | {_default(prop, key in required)} "
                    f"| {_cell(prop.get('description', ''))} |")
    return rows


def recipe_reference() -> str:
    """Markdown: every recipe section's keys, then every registered block type."""
    # lazy: `blocks --help` and `blocks validate` start without torch
    import blocks.spec.model  # noqa: F401 - registers the built-in block types
    from blocks.layers.docs import catalogue
    from blocks.recipe.loading import recipe_schema

    schema = recipe_schema()
    defs = schema["$defs"]
    lines = ["# Recipe reference", "",
             "Generated from the recipe JSON Schema (`blocks schema`) and the block registry by "
             "`python -m blocks.cli.docgen`; it lists exactly what `blocks validate` accepts.", ""]
    for title, name, where in SECTIONS:
        definition = schema if name is None else defs.get(name)
        if definition is None:
            continue
        lines += [f"## {title}", ""]
        doc = definition.get("description", "")
        if doc and name is not None:
            lines += [" ".join(doc.split()), ""]
        tag = definition.get("properties", {}).get("type", {}).get("const")
        if tag is not None:
            lines += [f"`{where}: {{type: {tag}, ...}}`", ""]
        lines += [*_fields_table(definition, defs), ""]
    docs = catalogue()
    lines += ["## Block types", "",
              "Each entry of `model.backbone` (and of `blocks:` lists inside composites) is one of "
              "these, written `{type: NAME, ...}`, or a bare `NAME` when every field has a default. "
              "The shape line is computed from the example by the type's own shape rule. "
              "`blocks blocks NAME` prints the same in a terminal.", "",
              "| type | what it does |", "| --- | --- |"]
    lines += [f"| [`{d.name}`](#{d.name}) | {_cell(d.summary)} |" for d in docs]
    lines.append("")
    for doc in docs:
        lines += [f"### {doc.name}", "", doc.doc or "(no description)", ""]
        if doc.fields:
            lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
            lines += [f"| `{f.name}` | {_cell(f.type)} | "
                      f"{'required' if f.default == 'required' else f'`{f.default}`'} | "
                      f"{_cell(f.description)} |" for f in doc.fields]
            lines.append("")
        else:
            lines += [f"No fields: write it as `- {doc.name}`.", ""]
        lines += [f"Shape: `{doc.shape_line}`", ""]
        if doc.example is not None:
            lines += ["```text", doc.example_yaml, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def cli_reference() -> str:
    """Markdown: `blocks --help` and every verb's `--help`, as argparse prints them."""
    import os

    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.cli import build_parser

    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: fix it for a stable page
    try:
        parser = build_parser()
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        lines = ["# Command line reference", "",
                 "Generated from the argparse definitions by `python -m blocks.cli.docgen`. Exit codes: "
                 "0 success, 1 findings (`lint`) or a failed distributed run, 2 a bad recipe, file "
                 "or argument (with a located message), 3 a bug in blocks.", "",
                 "```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in action.choices.items():
            lines += [f"## blocks {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before
    return "\n".join(lines).rstrip() + "\n"


PAGES = {"recipe.md": recipe_reference, "cli.md": cli_reference}


def write(folder: Path = DEFAULT_FOLDER) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in PAGES.items():
        path = folder / name
        path.write_text(render(), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    for path in write(Path(args[0]) if args else DEFAULT_FOLDER):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
