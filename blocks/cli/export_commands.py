"""`blocks export`: write a run (or recipe) as ONNX, a torch.export program, TorchScript or plain
PyTorch source, each reloaded and compared with the model before it is reported. `blocks import`:
the other way, a hand-written nn.Module to a recipe."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blocks.core.errors import SpecError, escape_name
from blocks.core.files import atomic_write_text

EPILOG = """examples:
  blocks export runs/digits --to onnx                 runs/digits/model.onnx
  blocks export runs/digits --to python               runs/digits/model.py (needs only torch)
  blocks export runs/digits --to pt2 --probabilities  softmax/sigmoid appended to the graph
  blocks export seed_cnn --to torchscript --out cnn.pt   a recipe: untrained weights

checked before success is reported: onnx with onnx.checker and onnxruntime (within 1e-5), pt2 and
torchscript reloaded (within 1e-6), python imported and compared bit for bit; onnx and pt2 at
batch sizes other than the one exported with.
"""

IMPORT_EPILOG = """examples:
  blocks import models.py:Net --input-shape 1 28 28                 print the recipe
  blocks import models.py:Net --input-shape 30 -o net.yaml --save runs/net
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="write a model as ONNX, torch.export, TorchScript or plain PyTorch",
        description="Export a trained run (or a recipe's untrained model) to a deployment format "
                    "or to one plain PyTorch .py file; the written file is reloaded and compared "
                    "with the model before success is reported.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RUN_DIR|RECIPE",
                   help="run folder (trained weights) or recipe file / bundled recipe name")
    p.add_argument("--to", required=True, choices=("onnx", "pt2", "torchscript", "python"),
                   help="format to write")
    p.add_argument("--out", "-o", metavar="PATH",
                   help="file to write (default RUN_DIR/model.<suffix>, or ./<recipe>.<suffix>)")
    p.add_argument("--probabilities", action="store_true",
                   help="append each head's softmax / sigmoid (default: logits)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out file that is not an earlier export to this "
                        "format (an earlier export is replaced without it)")
    p.set_defaults(run=run_export)

    p = subparsers.add_parser(
        "import", help="turn a hand-written nn.Module into a recipe (weights copied, checked)",
        description="Trace FILE.py:NAME with torch.fx and write the recipe that builds the same "
                    "model: equal parameter count, and equal outputs once the module's weights "
                    "are copied in. An operation recipes cannot express is reported with its fx "
                    "node.",
        epilog=IMPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", metavar="FILE.py:NAME",
                   help="an nn.Module class (called without arguments), function or instance")
    p.add_argument("--input-shape", required=True, type=int, nargs="+", metavar="N",
                   help="per-sample input shape, without the batch axis (e.g. 1 28 28)")
    p.add_argument("--dtype", choices=("float32", "float64", "int64"), default="float32",
                   help="input dtype (int64 for token ids feeding an embedding)")
    p.add_argument("--head", choices=("softmax", "sigmoid"),
                   help="head type (default: softmax for 2+ logits, sigmoid for one)")
    p.add_argument("--out", "-o", metavar="RECIPE", help="write the recipe here (default: stdout)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--save", metavar="RUN_DIR",
                   help="also save the model with the module's weights as a run folder")
    p.set_defaults(run=run_import)


def run_export(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.exporters import export_run

    result = export_run(args.source, args.to, args.out, probabilities=args.probabilities,
                        force=args.force)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(result.describe())
    return 0


def run_import(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.exporters.from_module import from_module, load_module_object

    if any(size < 1 for size in args.input_shape):
        raise SpecError(f"--input-shape sizes must be positive, got {args.input_shape}")
    if args.out and not args.force and (Path(args.out).exists() or Path(args.out).is_symlink()):
        raise SpecError(f"{escape_name(args.out)} already exists; pass --force to replace it, or "
                        "choose another --out")
    module = load_module_object(args.reference)
    imported = from_module(module, args.input_shape, head=args.head, dtype=args.dtype,
                           name=args.reference.rpartition(":")[2])
    if args.out:
        try:
            atomic_write_text(args.out, imported.yaml)
        except OSError as err:
            raise SpecError(f"{escape_name(args.out)}: cannot write the recipe here "
                            f"({err.strerror or type(err).__name__})") from None
    else:
        sys.stdout.write(imported.yaml)
    if args.save:
        # lazy: `blocks --help` and `blocks validate` start without torch
        from blocks.run.folder import save

        save(imported.model, args.save, recipe=imported.recipe)
    print(f"{args.reference}: {imported.parameters:,} parameters in both; outputs equal after "
          f"copying the weights (max |diff| {imported.max_abs_diff:.2g})"
          + (f"; recipe written to {args.out}" if args.out else "")
          + (f"; run folder {args.save}" if args.save else ""), file=sys.stderr)
    return 0
