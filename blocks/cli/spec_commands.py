"""Verbs about recipes themselves: `validate`, `schema`, `recipes` (`summary` lives in
`summary_commands`)."""

from __future__ import annotations

import argparse
import json

from blocks.core.errors import SpecError, escape
from blocks.core.files import atomic_write_text


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("validate", help="check recipes (types, keys, shapes) without building",
                              description="Check recipes without building them; every problem is "
                                          "reported with file:line:column and spec path.",
                              epilog="examples:\n  blocks validate recipes/*.yaml\n"
                                     "  blocks validate seed_cnn my_model.yaml",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipes", nargs="+", metavar="RECIPE", help="recipe file or bundled recipe name")
    p.set_defaults(run=run_validate)

    p = subparsers.add_parser(
        "schema", help="JSON Schema of the recipe format (for editors)",
        description="Print the JSON Schema of recipes, every field described, including plugin "
                    "block types. Point your editor at it for completion and hovers: a first line "
                    "`# yaml-language-server: $schema=blocks.schema.json` in a recipe.",
        epilog="examples:\n  blocks schema -o blocks.schema.json\n"
               "  blocks schema | python -m json.tool | less",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(run=run_schema)

    p = subparsers.add_parser(
        "recipes", help="list the bundled recipes",
        description="List the recipes shipped with blocks: name, data source, description. Any "
                    "command taking RECIPE accepts these names as well as file paths.",
        epilog="examples:\n  blocks recipes\n  blocks summary tabular_mlp",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(run=run_recipes)


def run_validate(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.run.validate import validate_recipes
    from blocks.spec.budget import footprint

    failed = 0
    for name, result, notes in validate_recipes(args.recipes):
        if isinstance(result, SpecError):
            failed += 1
            for problem in result.problems:
                print(problem)
        else:
            count = result.model.infer_shapes()
            size = footprint(result.model, shapes=count)  # from the spec: nothing is built
            print(escape(f"ok: {name} ({result.model.name or 'model'}: {len(count.layers)} blocks, "
                         f"{size.params:,} parameters, outputs "
                         f"{', '.join(f'{k} {list(v)}' for k, v in count.heads.items())})"))
            for note in notes:
                print(escape(f"  note: {note}"))
    return 2 if failed else 0


def run_schema(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.recipe.loading import recipe_schema

    text = json.dumps(recipe_schema(), indent=2)
    if args.output:
        atomic_write_text(args.output, text + "\n")
    else:
        print(text)
    return 0


def run_recipes(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.recipe.loading import bundled_recipes
    from blocks.run.validate import load_recipe

    for name, path in bundled_recipes().items():
        recipe = load_recipe(path)
        data = recipe.data
        source = (data.dataset or next(k for k in ("csv", "parquet", "npz", "images", "synthetic") if getattr(data, k))
                  ) if data else "-"
        print(f"{name:<14} {source:<14} {recipe.model.description or ''}")
    return 0
