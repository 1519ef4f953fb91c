"""Verbs that train and use models: `train`, `evaluate`, `predict`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from blocks.core.errors import Problem, SpecError

TRAIN_EPILOG = """examples:
  blocks train seed_cnn --out runs/demo               a bundled recipe on its bundled data
  blocks train my.yaml --epochs 3 --device cpu        a quick try of your own recipe
  blocks train my.yaml --set train.optimizer.lr=3e-4  any recipe key, checked like the file's
  blocks train my.yaml --resume --out runs/my         continue from the last checkpoint
  torchrun --nproc_per_node=2 -m blocks train my.yaml  data-parallel on 2 processes
"""
EXIT_RUN_FAILED = 1  # training started and could not finish (e.g. a rank of a distributed run died)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a recipe on its data (the main job)",
                              description="Train RECIPE on its `data:` section; writes a run folder "
                                          "(recipe, weights, metrics, checkpoint).",
                              epilog=TRAIN_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", metavar="RECIPE", help="recipe file or bundled recipe name")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<recipe name>)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:1, mps)")
    p.add_argument("--seed", type=int, help="override train.seed")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="sets",
                   help="override any recipe key, e.g. --set train.optimizer.lr=3e-4 --set "
                        "model.head.classes=5 (repeatable; recorded in the run's recipe.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from DIR's last checkpoint")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or epoch lines")
    p.add_argument("--no-plots", action="store_true",
                   help="skip curves.png / confusion.png (drawn when matplotlib is installed)")
    p.set_defaults(run=run_train)

    p = subparsers.add_parser(
        "evaluate", help="metrics of a trained run on held-out data or its own split",
        description="Metrics of RUN_DIR's model. With DATA (.csv or .npz), every row of it is "
                    "evaluated with the run's preprocessing and label names (`test/` metrics); "
                    "with an image FOLDER (one sub-folder per class, named like the run's "
                    "labels), every image of it (`test/` metrics); without, the run's own "
                    "validation (or --split train) split.",
        epilog="examples:\n  blocks evaluate runs/wine test.csv\n  blocks evaluate runs/pets "
               "held_out_images/\n  blocks evaluate runs/demo --split train\n  blocks evaluate "
               "runs/demo --data other_recipe.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("data_file", metavar="DATA", nargs="?",
                   help="held-out data: .csv (header row; feature and target columns), .npz, or "
                        "a folder of images with one sub-folder per class")
    p.add_argument("--data", metavar="RECIPE", help="evaluate on this recipe's data split instead")
    p.add_argument("--split", choices=("val", "train"), default=None,
                   help="which split of the run's (or --data recipe's) data (default val)")
    p.add_argument("--target", metavar="COLUMN", action="append",
                   help="target column of DATA (default: the run's own target column names)")
    p.add_argument("--trust-paths", action="store_true",
                   help="follow a data path stored in the run's recipe outside the run folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run_evaluate)

    p = subparsers.add_parser(
        "predict", help="labels and probabilities for a CSV, Parquet or NPZ of inputs",
        description="Predict with RUN_DIR's model on raw inputs: the run's own preprocessing is "
                    "applied; one row per input (labels, then probabilities at full float32 "
                    "precision) as CSV (default), JSON or Parquet.",
        epilog="examples:\n  blocks predict runs/wine new_rows.csv\n"
               "  blocks predict runs/demo images.npz -o predictions.csv\n"
               "  blocks predict runs/big rows.parquet -o out.parquet",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("input", metavar="INPUT",
                   help=".csv (feature columns by header name, or header-less rows), .parquet "
                        "(a file or a folder of shards), .arrow, .npz (array x), or an image "
                        "file or folder (runs trained on images)")
    p.add_argument("--out", "-o", metavar="FILE", help="output file (default: stdout)")
    p.add_argument("--format", choices=("csv", "json", "parquet"), default=None,
                   help="output format (default: from --out's suffix, else csv); parquet needs --out")
    p.add_argument("--skip-bad-files", action="store_true",
                   help="image input: predict the files that decode, list the others on stderr "
                        "(exit 0); rows then start with a `file` column")
    p.set_defaults(run=run_predict)


def run_train(args: argparse.Namespace) -> int:
    """Train a recipe; under torchrun (`torchrun --nproc_per_node=N -m blocks train RECIPE`) every
    rank trains its share with DDP and rank 0 alone writes the run folder and prints."""
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.train import distributed as dist

    if not dist.launched_by_torchrun():
        return _run_train(args, None)
    info = dist.setup(cuda=_distributed_device(args) == "cuda")
    try:
        code = _run_train(args, info)
    except dist.DistributedError as err:
        # the process group is broken (a peer died): tearing it down, or letting the interpreter
        # destroy it, can abort in C++; report and leave at once
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_RUN_FAILED)
    except BaseException:
        dist.teardown()
        raise
    dist.teardown()
    return code


def _distributed_device(args: argparse.Namespace) -> str:
    """'cuda' or 'cpu': where a distributed run trains (picks NCCL or gloo)."""
    import torch

    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.recipe.overrides import apply_sets
    from blocks.run.validate import load_recipe

    device = args.device or apply_sets(load_recipe(args.recipe), args.sets).train.device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def _run_train(args: argparse.Namespace, dist_info) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.run.training import run_recipe

    run_recipe(args.recipe, args.out, epochs=args.epochs, device=args.device, seed=args.seed,
               resume=args.resume, force=args.force, quiet=args.quiet, plots=not args.no_plots,
               dist_info=dist_info, sets=args.sets)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.run.predicting import evaluate_run

    if args.data_file and args.data:
        raise SpecError(Problem("", "give either a DATA file or --data RECIPE, not both",
                                "bad_argument"))
    target = args.target[0] if args.target and len(args.target) == 1 else args.target
    metrics = evaluate_run(args.run_dir, args.data_file or args.data, split=args.split,
                           target=target, trust_paths=args.trust_paths)
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        for key, value in metrics.items():
            print(f"{key:<32} {value:.4f}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.run.predict_stream import predict_file
    from blocks.run.tables import format_for

    path = Path(args.input)
    if args.out and Path(args.out).resolve() == path.resolve():
        raise SpecError(Problem("", "--out would overwrite the input file; choose another path",
                                "would_overwrite", str(path)))
    fmt = format_for(args.out, args.format)
    if fmt == "parquet" and not args.out:
        raise SpecError(Problem("", "--format parquet writes a file: give --out FILE",
                                "bad_argument"))
    if args.skip_bad_files:
        count = _predict_skipping(args.run_dir, path, args.out, fmt)
    else:
        count = predict_file(args.run_dir, path, args.out, fmt)
    if args.out:
        print(f"wrote {count} predictions to {args.out}")
    return 0


def _predict_skipping(run_dir: str, path, out: str | None, fmt: str) -> int:
    """`--skip-bad-files`: the good files' rows; each bad file listed on stderr after a warning
    line. Exit 0: skipping is what was asked for (every file bad is still an error, exit 2)."""
    # lazy: `blocks --help` and `blocks validate` start without torch
    from blocks.core.errors import escape
    from blocks.data.images import IMAGE_SUFFIXES
    from blocks.run.image_predict import predict_image_files
    from blocks.run.tables import write_predictions

    if not path.is_dir() and path.suffix.lower() not in IMAGE_SUFFIXES:
        raise SpecError(Problem("", "--skip-bad-files applies to image files (a folder or an "
                                "image); a .csv or .npz is read whole or refused", "bad_argument",
                                str(path)))
    result = predict_image_files(run_dir, path)
    if result.bad:
        print(f"warning: skipped {len(result.bad)} of {len(result.bad) + len(result.files)} image "
              "file(s) that are not readable images:", file=sys.stderr)
        for _, reason in result.bad:
            print(f"  {escape(reason)}", file=sys.stderr)
    return write_predictions(result.predictions, out, fmt,
                             leading={"file": result.file_names(path)})
