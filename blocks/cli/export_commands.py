"""`blocks export`: write a run (or recipe) as ONNX, a torch.export program, TorchScript or plain
PyTorch source, each reloaded and compared with the model before it is reported."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  blocks export runs/digits --to onnx                 runs/digits/model.onnx
  blocks export runs/digits --to python               runs/digits/model.py (needs only torch)
  blocks export runs/digits --to pt2 --probabilities  softmax/sigmoid appended to the graph
  blocks export seed_cnn --to torchscript --out cnn.pt   a recipe: untrained weights

checked before success is reported: onnx with onnx.checker and onnxruntime (within 1e-5), pt2 and
torchscript reloaded (within 1e-6), python imported and compared bit for bit; onnx and pt2 at
batch sizes other than the one exported with.
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
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from blocks.exporters import export_run

    result = export_run(args.source, args.to, args.out, probabilities=args.probabilities)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(result.describe())
    return 0
