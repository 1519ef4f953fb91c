"""Verbs that train and use models: `train`, `evaluate`, `predict`."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from blocks.errors import Problem, SpecError

EXIT_RUN_FAILED = 1  # training started and could not finish (e.g. a rank of a distributed run died)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a recipe on its data (the main job)",
                              description="Train RECIPE on its `data:` section; writes a run folder "
                                          "(recipe, weights, metrics, checkpoint).")
    p.add_argument("recipe", metavar="RECIPE", help="recipe file or bundled recipe name")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<recipe name>)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:1, mps)")
    p.add_argument("--seed", type=int, help="override train.seed")
    p.add_argument("--resume", action="store_true", help="continue from DIR's last checkpoint")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or epoch lines")
    p.add_argument("--no-plots", action="store_true",
                   help="skip curves.png / confusion.png (drawn when matplotlib is installed)")
    p.set_defaults(run=run_train)

    p = subparsers.add_parser("evaluate", help="metrics of a trained run on its validation data")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", metavar="RECIPE", help="evaluate on this recipe's data instead")
    p.add_argument("--split", choices=("val", "train"), default="val")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run_evaluate)

    p = subparsers.add_parser("predict", help="labels and probabilities for a CSV or NPZ of inputs")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("input", metavar="INPUT", help=".csv (feature columns, header row) or .npz (array x)")
    p.add_argument("--out", "-o", metavar="FILE", help="output CSV (default: stdout)")
    p.set_defaults(run=run_predict)


def _with_overrides(recipe, args):
    """The recipe with `--epochs/--device/--seed` applied, each checked like the recipe's own key."""
    from pydantic import ValidationError

    overrides = {k: v for k, v in {"epochs": args.epochs, "device": args.device,
                                   "seed": args.seed}.items() if v is not None}
    try:
        train = type(recipe.train).model_validate(recipe.train.model_dump() | overrides)
    except ValidationError as err:
        problems = [Problem("", f"--{e['loc'][0] if e['loc'] else 'override'}: "
                            + e["msg"].removeprefix("Value error, "), e["type"])
                    for e in err.errors(include_url=False)]
        raise SpecError(problems) from None
    return recipe.model_copy(update={"train": train})


def _data_paths_absolute(recipe, source: Path | None):
    """The recipe with csv/npz paths made absolute: the run folder's copy of the recipe lives
    elsewhere than the original, so `blocks evaluate RUN_DIR` must not resolve them from there."""
    data = recipe.data
    if data is None or source is None:
        return recipe
    base = Path(source).parent
    for key in ("csv", "npz"):
        src = getattr(data, key)
        if src is not None and not Path(src.path).is_absolute():
            data = data.model_copy(update={key: src.model_copy(
                update={"path": str((base / src.path).resolve())})})
    return recipe.model_copy(update={"data": data})


def run_train(args: argparse.Namespace) -> int:
    """Train a recipe; under torchrun (`torchrun --nproc_per_node=N -m blocks train RECIPE`) every
    rank trains its share with DDP and rank 0 alone writes the run folder and prints."""
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


RUN_MARKERS = ("recipe.yaml", "checkpoint.safetensors", "history.json")


def _check_replaceable(out: Path, recipe_path: Path | None) -> None:
    """`--force` replaces a previous run folder, never anything else: not the working folder or
    one above it, not the folder holding the recipe, not a folder that is not a blocks run."""
    target = out.resolve()
    protected = [Path.cwd().resolve(), Path.home().resolve()]
    if recipe_path is not None:
        protected.append(Path(recipe_path).resolve().parent)
    if any(target == p or target in p.parents for p in protected) or not out.is_dir():
        raise SpecError(Problem("", "--force will not delete this folder: it holds (or is above) "
                                "the working folder, the recipe or your home; choose another --out",
                                "unsafe_out", str(out)))
    if not any((out / marker).exists() for marker in RUN_MARKERS):
        raise SpecError(Problem("", "--force only replaces blocks run folders, and this one has "
                                f"none of {', '.join(RUN_MARKERS)}; choose another --out",
                                "not_a_run", str(out)))


def _distributed_device(args: argparse.Namespace) -> str:
    """'cuda' or 'cpu': where a distributed run trains (picks NCCL or gloo)."""
    import torch

    from blocks.recipe_io import load_recipe

    device = args.device or load_recipe(args.recipe).train.device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def _run_train(args: argparse.Namespace, dist_info) -> int:
    from blocks.builder import build
    from blocks.data.splits import load_splits
    from blocks.recipe_io import load_recipe
    from blocks.run_io import RUN_INFO, save
    from blocks.train.trainer import CHECKPOINT, Trainer

    loaded = load_recipe(args.recipe)
    recipe = _with_overrides(loaded, args)
    main = dist_info is None or dist_info.is_main  # distributed hook: rank 0 alone writes, prints
    recipe._source_path = loaded.source_path
    saved_recipe = recipe  # as given, without the per-rank device below
    if dist_info is not None:
        import torch

        wanted = recipe.train.device
        if (wanted == "auto" and torch.cuda.is_available()) or wanted.startswith("cuda"):
            recipe = recipe.model_copy(update={"train": recipe.train.model_copy(
                update={"device": f"cuda:{dist_info.local_rank}"})})  # one GPU per rank
        args.quiet = args.quiet or not main
    recipe._source_path = loaded.source_path
    name = Path(args.recipe).stem
    out = Path(args.out or f"runs/{name}")
    if args.resume and not (out / CHECKPOINT).exists():
        raise SpecError(Problem("", f"--resume: {out} has no {CHECKPOINT} to continue from",
                                "no_checkpoint", str(out)))
    replace = False
    if not args.resume and main and out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not args.force:
            raise SpecError(Problem("", f"run folder {out} already exists; pass --resume to continue "
                                    "it, --force to replace it, or --out for a new folder",
                                    "run_exists", str(out)))
        _check_replaceable(out, loaded.source_path)
        replace = True
    splits = load_splits(recipe)
    model = build(recipe.model, device=recipe.train.device, seed=recipe.train.seed)
    trainer = Trainer(model, recipe.train, run_dir=out, quiet=args.quiet,
                      distributed=dist_info is not None)
    if main:
        if replace:  # only now: a recipe, data or model that fails above leaves the old run alone
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    if not args.quiet:
        params = sum(p.numel() for p in model.parameters())
        print(f"training {recipe.model.name or name} ({params:,} parameters) on "
              f"{splits.info['train']} samples, validating on {splits.info['val']}; device "
              f"{model.device}; run folder {out}")
    started = time.perf_counter()
    history = trainer.fit(splits.train.as_tuple(), splits.val.as_tuple() if splits.val else None,
                          resume=args.resume)
    if not main:
        return 0
    save(model, out, recipe=_data_paths_absolute(saved_recipe, loaded.source_path),
         preprocess=splits.preprocess)
    best_key = next((k for k in ("val/accuracy", "val/loss", "train/loss") if k in history.last), None)
    best = history.best(best_key, "max" if best_key and best_key.endswith("accuracy") else "min")
    info = {"wall_time_s": round(time.perf_counter() - started, 3), "epochs": len(history),
            "best_epoch": best["epoch"] if best else None, "best_metric": best_key,
            "params": sum(p.numel() for p in model.parameters()), "device": str(model.device),
            **({"world_size": dist_info.world_size} if dist_info is not None else {}),
            "final": history.last, "stopped_early": trainer.stopped_early,
            # which epoch's weights model.safetensors holds (restore_best keeps the best one)
            "weights_epoch": (trainer.best["epoch"] if recipe.train.early_stopping
                              and recipe.train.early_stopping.restore_best
                              and trainer.best.get("epoch") else len(history))}
    from blocks.io_utils import atomic_write_text

    atomic_write_text(out / RUN_INFO, json.dumps(info, indent=1) + "\n")
    if not args.no_plots:
        _draw_plots(out, model, splits, quiet=args.quiet)
    if not args.quiet:
        final = ", ".join(f"{k} {v:.4f}" for k, v in history.last.items() if k.startswith("val/")
                          and k.count("/") <= 2)
        print(f"done in {info['wall_time_s']:.1f}s: {final or 'no validation split'}; saved to {out}")
    return 0


def _draw_plots(out: Path, model, splits, *, quiet: bool) -> None:
    """Training curves and validation confusion matrices, when the plot extra is installed."""
    from blocks.report import PlotsUnavailableError, draw_run_plots

    try:
        written, _ = draw_run_plots(out, model=model,
                                    val_data=splits.val.as_tuple() if splits.val else None)
    except PlotsUnavailableError as err:
        if not quiet:
            print(f"note: {err}")
        return
    if not quiet and written:
        print("plots: " + ", ".join(str(path) for path in written))


def run_evaluate(args: argparse.Namespace) -> int:
    from blocks.data.splits import load_splits
    from blocks.recipe_io import load_recipe
    from blocks.run_io import load, load_preprocess, load_run_recipe
    from blocks.train.trainer import Trainer

    model = load(args.run_dir)
    recipe = load_recipe(args.data) if args.data else load_run_recipe(args.run_dir)
    # the run's own preprocessing (training statistics), never one refitted to this data
    splits = load_splits(recipe, preprocess=load_preprocess(args.run_dir))
    split = splits.val if args.split == "val" else splits.train
    if split is None:
        raise SpecError(Problem("data.val_fraction", "the recipe's data has no validation split; "
                                "use --split train or a recipe with val_fraction > 0", "empty_split"))
    metrics = Trainer(model, recipe.train.model_copy(update={"device": "auto"}), quiet=True
                      ).evaluate(split.as_tuple(), split=args.split)
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        for key, value in metrics.items():
            print(f"{key:<32} {value:.4f}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from blocks.run_io import load, load_preprocess

    model = load(args.run_dir)
    preprocess = load_preprocess(args.run_dir)
    path = Path(args.input)
    if not path.exists():
        raise SpecError(Problem("", "input file does not exist", "file_not_found", str(path)))
    if args.out and Path(args.out).resolve() == path.resolve():
        raise SpecError(Problem("", "--out would overwrite the input file; choose another path",
                                "would_overwrite", str(path)))
    raw = _read_inputs(path, preprocess)
    expected = preprocess.raw_features if preprocess else int(np.prod(model.shapes.input_shape))
    got = int(np.prod(raw.shape[1:])) if raw.ndim > 1 else 1
    if got != expected:
        raise SpecError(Problem("", f"each input row has {got} values but the model was trained on "
                                f"{expected} features per sample", "shape_mismatch", str(path)))
    x = preprocess.apply(raw) if preprocess else torch.as_tensor(raw, dtype=torch.float32)
    x = x.reshape(len(x), *model.shapes.input_shape)
    labels, probs = _predict_in_batches(model, x)
    header, columns = [], []
    for name in labels:
        head = model.spec.head_specs[name]
        prefix = "" if len(labels) == 1 else f"{name}/"
        lab = labels[name].reshape(len(x), -1)
        names = head.labels or [str(i) for i in range(head.classes)]
        if head.type == "softmax":
            header.append(f"{prefix}label")
            columns.append([names[i] for i in lab[:, 0].tolist()])
        else:
            for j in range(lab.shape[1]):
                header.append(f"{prefix}label/{names[j]}")
                columns.append(lab[:, j].tolist())
        for j in range(probs[name].shape[-1]):
            header.append(f"{prefix}p/{names[j]}")
            columns.append([f"{v:.6f}" for v in probs[name][:, j].tolist()])
    rows = list(zip(*columns, strict=True))
    if args.out:
        import io

        from blocks.io_utils import atomic_write_text

        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *rows])
        atomic_write_text(args.out, buffer.getvalue())
        print(f"wrote {len(rows)} predictions to {args.out}")
    else:
        import sys

        csv.writer(sys.stdout).writerows([header, *rows])
    return 0


def _predict_in_batches(model, x, batch_size: int = 1024):
    """Labels and probabilities per head from one forward per batch (bounded memory)."""
    import torch

    heads = model.spec.head_specs
    labels: dict[str, list] = {name: [] for name in heads}
    probs: dict[str, list] = {name: [] for name in heads}
    for start in range(0, len(x), batch_size):
        logits = model._eval_logits(x[start:start + batch_size])
        logits = logits if isinstance(logits, dict) else {next(iter(heads)): logits}
        for name, value in logits.items():
            labels[name].append(heads[name].labels_from_logits(value))
            probs[name].append(heads[name].probabilities(value))
    return ({k: torch.cat(v) for k, v in labels.items()}, {k: torch.cat(v) for k, v in probs.items()})


def _read_inputs(path: Path, preprocess) -> np.ndarray:
    """Feature rows from `.npz` (array `x`) or CSV. CSV columns are matched by header name when
    the run knows its feature names (extra columns, e.g. the target, are ignored)."""
    from blocks.data.sources import load_npz, numeric_table, read_csv_rows

    if path.suffix == ".npz":
        return load_npz(path, ["x"], "input")["x"]
    rows = read_csv_rows(path, "input")
    if len(rows) < 2:
        raise SpecError(Problem("", "needs a header row and at least one data row", "empty_data",
                                str(path)))
    header, body = rows[0], rows[1:]
    names = preprocess.features if preprocess is not None else None
    if names and set(names) <= set(header):
        picked = [header.index(name) for name in names]
        body = [[row[i] if i < len(row) else "" for i in picked] for row in body]
        return numeric_table(body, names, path, "input").astype(np.float32)
    table = numeric_table(body, header, path, "input")
    if names and all(not _is_number(cell) for cell in header):
        missing = [name for name in names if name not in header]
        raise SpecError(Problem("", f"missing feature column(s) {', '.join(missing[:5])}"
                                f"{' ...' if len(missing) > 5 else ''} (the run was trained on "
                                f"{len(names)} named features)", "unknown_column", str(path)))
    return table.astype(np.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
