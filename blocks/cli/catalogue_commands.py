"""`blocks blocks [TYPE]`: the block catalogue from the registry (plugins included)."""

from __future__ import annotations

import argparse
import textwrap

EPILOG = """examples:
  blocks blocks              every block type with a one-line description
  blocks blocks conv2d       its fields, defaults, shape rule and an example
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "blocks", help="list block types, or describe one (fields, shape rule, example)",
        description="The block types recipes can use (built-in and installed plugins). With TYPE: "
                    "its fields with type, default and description, its shape rule shown on an "
                    "example input, and a line to paste into a recipe's backbone.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("block_type", metavar="TYPE", nargs="?", help="a block type name, e.g. conv2d")
    p.set_defaults(run=run_blocks)


def run_blocks(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    import blocks.spec.model  # noqa: F401 - registers every built-in block type
    from blocks.layers.docs import catalogue, describe
    from blocks.spec.registry import load_plugins

    load_plugins()
    if args.block_type is None:
        docs = catalogue()
        width = max(len(d.name) for d in docs)
        for doc in docs:
            print(f"{doc.name:<{width}}  {doc.summary}")
        print("\n`blocks blocks TYPE` describes one.")
        return 0
    print(render(describe(args.block_type)))
    return 0


def render(doc) -> str:
    """The text `blocks blocks TYPE` prints."""
    lines = [doc.name, "", textwrap.indent(doc.doc or "(no description)", "  "), "", "fields:"]
    if not doc.fields:
        lines.append("  (none: write it as a bare name, `- " + doc.name + "`)")
    width = max((len(f.name) for f in doc.fields), default=0)
    for field in doc.fields:
        lines.append(f"  {field.name:<{width}}  {field.type}  (default: {field.default})")
        if field.description:
            lines.append(textwrap.fill(field.description, 96, initial_indent=" " * (width + 4),
                                       subsequent_indent=" " * (width + 4)))
    lines += ["", f"shape: {doc.shape_line}"]
    if doc.example is not None:
        lines += ["", "example (in a backbone list):", f"  {doc.example_yaml}"]
    return "\n".join(lines)
