"""`blocks` command line: one verb per job, exit 0 on success, 2 on bad input, never a traceback.

Each verb lives in its own module under `blocks.cli` exposing `register(subparsers)`, which adds a
sub-parser and sets `run=callable(args) -> int`. Add new verbs to `COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from blocks.core.errors import BlocksError, escape
from blocks.core.version import __version__

EXIT_OK = 0
EXIT_FINDINGS = 1  # the tool worked and found problems (lint)
EXIT_BAD_INPUT = 2  # a bad recipe, file or argument
EXIT_INTERNAL = 3  # blocks itself failed (a bug): reported without a traceback unless BLOCKS_DEBUG

COMMAND_MODULES: tuple[str, ...] = (
    "blocks.cli.spec_commands",
    "blocks.cli.summary_commands",
    "blocks.cli.train_commands",
    "blocks.cli.lint_commands",
    "blocks.cli.export_commands",
    "blocks.cli.catalogue_commands",
    "blocks.cli.sweep_commands",
    "blocks.cli.serve_commands",
)

EPILOG = """examples:
  blocks recipes                          list bundled recipes
  blocks validate recipes/seed_cnn.yaml   check a recipe without building it
  blocks summary seed_cnn                 torchinfo table of a bundled recipe
  blocks train seed_cnn --out runs/demo   train it on its bundled data
"""


def format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   line: str | None = None) -> str:
    """A warning as the CLI prints every message, `warning: TEXT`, escaped, without Python's
    category, file and source line (they name blocks' code, not the user's input)."""
    text = escape(str(message))
    return f"warning: {text}\n" if "\n" not in text else f"warning:\n{text}\n"


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its message short and traceback-free."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="blocks",
        description="Declarative PyTorch classifiers: build, train and summarise from YAML recipes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    parser.add_argument("--version", action="version", version=f"blocks {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue  # a verb whose module is not part of this installation
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; its warnings print as `warning: ...` lines on stderr (`format_warning`:
    the formatter, not the printer, so code that records warnings still receives them)."""
    previous, warnings.formatwarning = warnings.formatwarning, format_warning
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = previous


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.run(args) or EXIT_OK)
    except BlocksError as err:
        text = escape(str(err))
        print(f"error: {text}" if "\n" not in text else f"error:\n{text}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as err:  # a bug in blocks (or a library): short message, traceback on request
        if os.environ.get("BLOCKS_DEBUG"):
            raise
        print(f"error: internal error in `blocks {args.command}`: {type(err).__name__}: "
              f"{escape(str(err))}\n"
              "(this is a bug in blocks, not in your input; set BLOCKS_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL
