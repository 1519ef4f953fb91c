"""Verbs that describe models and runs: `summary` (one recipe, or two side by side), `graph`,
`report`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blocks.core.errors import SpecError
from blocks.core.files import atomic_write_bytes, atomic_write_text
from blocks.core.numbers import MAX_SIZE

SUMMARY_EPILOG = """examples:
  blocks summary resnet18                       layer table of a bundled recipe
  blocks summary my.yaml --format json          the same as JSON (totals and rows)
  blocks summary base.yaml wide.yaml            two recipes side by side, with deltas
  blocks summary base.yaml wide.yaml --diff     only the blocks that changed
"""

GRAPH_EPILOG = """examples:
  blocks graph residual_cnn                      Mermaid text (paste into Markdown)
  blocks graph resnet18 --format dot -o r18.dot  Graphviz DOT text
  blocks graph resnet18 --format svg -o r18.svg  rendered by Graphviz's `dot` (if installed)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "summary", help="layer table with shapes, parameters, mult-adds (or compare two recipes)",
        description="Summarise a recipe block by block: shapes, parameters, mult-adds, memory. "
                    "With two recipes, show them side by side with per-block deltas. Specs are "
                    "built on the meta device: no weights are allocated.",
        epilog=SUMMARY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipes", nargs="+", metavar="RECIPE",
                   help="recipe file or bundled recipe name; give two to compare them")
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    p.add_argument("--batch-size", type=int, default=1, help="batch for mult-adds and memory (1)")
    p.add_argument("--depth", type=int, default=None,
                   help="hide rows nested deeper than this (0 = top-level blocks only)")
    p.add_argument("--diff", action="store_true",
                   help="with two recipes: show only the blocks whose cost or shape changed")
    p.set_defaults(run=run_summary)

    p = subparsers.add_parser(
        "graph", help="draw the architecture (mermaid, dot, svg, png)",
        description="Draw a recipe's blocks as a graph: nodes with names and output shapes, "
                    "residual skip edges, one output per head. Mermaid and DOT need nothing "
                    "installed; SVG and PNG are rendered by Graphviz's `dot`.",
        epilog=GRAPH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("--format", choices=("mermaid", "dot", "svg", "png"), default="mermaid")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(run=run_graph)

    p = subparsers.add_parser(
        "report", help="text report and training plots of a run folder",
        description="Print a short report of a training run (best epoch, final metrics, "
                    "parameters, wall time) and (re)draw its plots into the run folder: "
                    "curves.png and, for softmax heads, validation confusion matrices.",
        epilog="examples:\n  blocks report runs/demo\n  blocks report runs/demo --no-plots",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--no-plots", action="store_true", help="print the text only")
    p.set_defaults(run=run_report)


def run_summary(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.inspect.summary import compare, summarize
    from blocks.run.validate import load_recipe

    if not 1 <= args.batch_size <= MAX_SIZE:
        raise SpecError(f"--batch-size must be between 1 and {MAX_SIZE:,}")
    if args.depth is not None and args.depth < 0:
        raise SpecError("--depth must be 0 or more")
    if len(args.recipes) > 2:
        raise SpecError(f"summary takes one recipe, or two to compare; got {len(args.recipes)}")
    if args.diff and len(args.recipes) != 2:
        raise SpecError("--diff compares two recipes: blocks summary A.yaml B.yaml --diff")
    summaries = [summarize(load_recipe(name, check_size=True), batch_size=args.batch_size, depth=args.depth)
                 for name in args.recipes]
    if len(summaries) == 2:
        comparison = compare(*summaries, labels=tuple(_label(n) for n in args.recipes))
        if args.format == "json":
            print(comparison.to_json())
        elif args.format == "markdown":
            print(comparison.to_markdown(changed_only=args.diff))
        else:
            print(comparison.table(changed_only=args.diff))
        return 0
    summary = summaries[0]
    if args.format == "json":
        print(summary.to_json())
    elif args.format == "markdown":
        print(summary.to_markdown())
    else:
        print(summary)
    return 0


def _label(name: str) -> str:
    return Path(name).stem if name.endswith((".yaml", ".yml", ".json")) else name


def run_graph(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.inspect.graph import model_graph, render
    from blocks.run.validate import load_recipe

    graph = model_graph(load_recipe(args.recipe))
    if args.format == "png" and not args.output and sys.stdout.isatty():
        raise SpecError("--format png writes binary data; give -o FILE (or redirect stdout)")
    result = render(graph, args.format)
    if args.output:
        if isinstance(result, bytes):
            atomic_write_bytes(args.output, result)
        else:
            atomic_write_text(args.output, result)
        print(f"wrote {args.output}", file=sys.stderr)
    elif isinstance(result, bytes):
        sys.stdout.buffer.write(result)
        sys.stdout.flush()
    else:
        sys.stdout.write(result)
    return 0


def run_report(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.run.report import report

    print(report(args.run_dir, plots=not args.no_plots).text())
    return 0
