"""Hyperparameter sweeps on Optuna: a search space over any recipe key, each trial a normal run
folder trained by `blocks.run.training.run_recipe`, pruned from the trainer's per-epoch hook,
the study in SQLite (or any Optuna storage), a `sweep.json` summary and the best run.

Sits beside `exporters/`, above `run/`: may import `core`, `spec`, `recipe`, `layers`, `builder`,
`data`, `train`, `inspect` and `run`; `cli/` and the `blocks` facade import it. Optuna is an
optional extra (`pip install 'blocks[sweep]'`), imported only when a sweep runs.

(Named `sweeps`, not `sweep`: `blocks.sweep` is the public function, and a sub-package of the
same name would replace it on the `blocks` module when first imported.)
"""
