"""`blocks lint PATH...` (static) and `blocks audit FILE.py:Class` (one real forward/backward).

Exit codes: 0 clean, 1 findings, 2 bad input (missing path, syntax error, bad option), each
located and without a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from blocks.cli import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK
from blocks.core.errors import BlocksError

LINT_EPILOG = """rules (docs/lint/BLK00N.md explains each, with the wrong and the right code):
{rules}

examples:
  blocks lint models/                     every .py file under models/
  blocks lint model.py --select BLK001    only layers created in forward
  blocks lint . --ignore BLK007 --format json
  silence one line with `# noqa: BLK006` (or a bare `# noqa`)
"""

AUDIT_EPILOG = """examples:
  blocks audit model.py:MyModel --input-shape 1,28,28
  blocks audit model.py:Net --input-shape 3,32,32 --batch-size 4 --format json
the class is built with no arguments; the input is torch.randn(batch_size, *input_shape).
"""


class AuditInputError(BlocksError, ValueError):
    """A FILE.py:Class target that cannot be loaded or built, or a bad --input-shape."""


def register(subparsers: Any) -> None:
    """Add the `lint` and `audit` verbs."""
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.lint import RULES

    rules = "\n".join(f"  {r.code}  {r.title}" for r in RULES)
    lint = subparsers.add_parser(
        "lint",
        help="find PyTorch pitfalls in hand-written nn.Module code (static)",
        description="Static check of nn.Module subclasses for pitfalls no other linter flags.",
        epilog=LINT_EPILOG.format(rules=rules),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lint.add_argument("paths", nargs="+", metavar="PATH", help="Python files or folders")
    lint.add_argument("--select", action="append", metavar="CODES",
                      help="only these rule codes or prefixes, comma-separated")
    lint.add_argument("--ignore", action="append", metavar="CODES",
                      help="skip these rule codes or prefixes, comma-separated")
    lint.add_argument("--format", choices=("text", "json"), default="text")
    lint.set_defaults(run=run_lint)

    audit = subparsers.add_parser(
        "audit",
        help="run a hand-written model once and report unregistered or untrained state",
        description="Build FILE.py:Class, run one forward and backward, report what is wrong.",
        epilog=AUDIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audit.add_argument("target", metavar="FILE.py:CLASS", help="a file and an nn.Module class")
    audit.add_argument("--input-shape", required=True, metavar="C,H,W",
                       help="per-sample input shape, comma-separated, e.g. 1,28,28")
    audit.add_argument("--batch-size", type=int, default=2, metavar="N",
                       help="samples in the random example batch (default 2)")
    audit.add_argument("--format", choices=("text", "json"), default="text")
    audit.set_defaults(run=run_audit)


def run_lint(args: argparse.Namespace) -> int:
    """Lint the paths; print findings to stdout, input errors and a summary to stderr."""
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.lint import lint_paths

    result = lint_paths(args.paths, select=args.select, ignore=args.ignore)
    if args.format == "json":
        print(result.to_json())
    else:
        if result.findings:
            print(result.to_text())
        for error in result.errors:
            print(f"error: {error}", file=sys.stderr)
        print(result.summary(), file=sys.stderr)
    return result.exit_code


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise AuditInputError(
            f"--input-shape {text!r}: expected positive integers separated by commas, e.g. 1,28,28"
        )
    return shape


def _load_class(target: str) -> type:
    file_part, sep, class_name = target.rpartition(":")
    if not sep or not file_part or not class_name:
        raise AuditInputError(f"{target!r}: expected FILE.py:ClassName, e.g. model.py:MyModel")
    path = Path(file_part)
    if not path.is_file():
        raise AuditInputError(f"{file_part}: no such file")
    spec = importlib.util.spec_from_file_location(f"_blocks_audit_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise AuditInputError(f"{file_part}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise AuditInputError(
            f"{file_part}:{err.lineno or 1}:{err.offset or 1}: SyntaxError: {err.msg}"
        ) from None
    except Exception as err:
        raise AuditInputError(
            f"{file_part}: importing it raised {type(err).__name__}: {err}"
        ) from None
    finally:
        sys.path.remove(str(path.parent.resolve()))
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        import torch.nn as nn

        found = sorted(
            n for n, v in vars(module).items()
            if inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == module.__name__
        )
        raise AuditInputError(
            f"{file_part}: no class {class_name!r}; nn.Module classes there: "
            f"{', '.join(found) or 'none'}"
        )
    return cls


def run_audit(args: argparse.Namespace) -> int:
    """Build the class with no arguments, audit it on a random batch, print the report."""
    import torch

    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.lint.audit import audit

    shape = _parse_shape(args.input_shape)
    if args.batch_size < 1:
        raise AuditInputError(f"--batch-size {args.batch_size}: expected a positive integer")
    cls = _load_class(args.target)
    try:
        model = cls()
    except Exception as err:
        raise AuditInputError(
            f"{args.target}: {cls.__name__}() raised {type(err).__name__}: {err} "
            "(audit builds the class with no arguments)"
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise AuditInputError(f"{args.target}: {cls.__name__} is not an nn.Module subclass")
    report = audit(model, torch.randn(args.batch_size, *shape))
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report)
    return EXIT_OK if report.ok else EXIT_FINDINGS


__all__ = ["EXIT_BAD_INPUT", "register", "run_audit", "run_lint"]
