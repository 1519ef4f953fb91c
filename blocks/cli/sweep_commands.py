"""`blocks sweep`: a hyperparameter search over recipe keys on Optuna (`blocks.sweeps`)."""

from __future__ import annotations

import argparse

SWEEP_EPILOG = """examples:
  blocks sweep my.yaml --space space.yaml --trials 20          study in sweeps/my/study.db
  blocks sweep my.yaml --space space.yaml --trials 20          again: resumes, runs what is missing
  blocks sweep my.yaml --space space.yaml --trials 50 --pruner halving --metric val/loss
  blocks sweep my.yaml --space space.yaml --trials 100 --study my \\
      --storage postgresql://user@db.example/sweeps             the same on every machine
  blocks export sweeps/my/best --to onnx                   the best trial's run folder

space.yaml maps recipe keys (as for --set) to distributions:
  train.optimizer.lr: {log_uniform: [1e-4, 1e-1]}
  model.backbone[0].out_features: {choice: [32, 64, 128]}
  model.backbone[2].p: {uniform: [0.0, 0.5]}
  train.batch_size: {int: [16, 128], step: 16}
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="hyperparameter search over recipe keys (Optuna)",
        description="Search SPACE over RECIPE's keys: each trial is a run folder under "
                    "DIR/trials, pruned from its per-epoch validation metric; DIR/sweep.json "
                    "lists every trial and DIR/best links the best one. Needs "
                    "`pip install 'blocks[sweep]'`.",
        epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", metavar="RECIPE", help="recipe file or bundled recipe name")
    p.add_argument("--space", metavar="SPACE.yaml", required=True,
                   help="the search space: recipe keys mapped to distributions")
    p.add_argument("--trials", type=int, required=True, metavar="N",
                   help="trials the study should hold in total (a resumed sweep runs the rest)")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default sweeps/<recipe name>)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage URL shared by every worker (default sqlite in DIR), "
                        "e.g. postgresql://user:password@host/db")
    p.add_argument("--study", metavar="NAME", help="study name (default: DIR's name)")
    p.add_argument("--pruner", choices=("median", "halving", "none"), default="median",
                   help="stop unpromising trials early (default median)")
    p.add_argument("--metric", default="val/accuracy",
                   help="the per-epoch metric to optimise (default val/accuracy)")
    p.add_argument("--direction", choices=("maximize", "minimize"),
                   help="default: minimize for a loss, maximize otherwise")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="start no new trial after S seconds")
    p.add_argument("--seed", type=int, help="seed of the sampler (give each worker its own)")
    p.add_argument("--no-plot", action="store_true", help="skip trials.png")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the final table")
    p.set_defaults(run=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    # lazy: `blocks --help` starts without torch or Optuna
    from blocks.sweeps import report
    from blocks.sweeps.study import sweep

    result = sweep(args.recipe, args.space, trials=args.trials, out=args.out,
                   storage=args.storage, study=args.study, pruner=args.pruner,
                   metric=args.metric, direction=args.direction, timeout=args.timeout,
                   seed=args.seed, quiet=args.quiet, plot=not args.no_plot)
    info = result.info
    print(report.table(info, limit=50))
    counts = ", ".join(f"{n} {state}" for state, n in sorted(info["counts"].items()))
    print(f"study {info['study']} ({info['storage']}): {counts or 'no trials'}")
    best = info.get("best")
    if best is None:
        print("no trial finished; nothing to export")
    else:
        where = result.out / report.BEST if (result.out / report.BEST).exists() else result.best_run
        print(f"best: trial {best['trial']}, {info['metric']} {best['value']:.4f}; "
              f"run folder {where} (blocks export {where})")
    return 0
