"""`train.early_stopping`: which metric it watches, when a value is better, when to stop.

The metric is checked before the first epoch (a typo, or a `val/` metric without validation
data, should not cost a whole training run); each epoch record then updates the best value and
the patience count, kept in the trainer's `best` dict so a checkpoint can carry them.
"""

from __future__ import annotations

from typing import Any

from blocks.spec.metric_names import record_metric_names
from blocks.spec.train import EarlyStopping
from blocks.train.errors import TrainingError
from blocks.train.targets import Heads


def check_stopping_metric(rule: EarlyStopping, heads: Heads, *, has_val: bool) -> None:
    """Refuse, before the first epoch, a metric no epoch record will have."""
    split, _, rest = rule.metric.partition("/")
    if split == "val" and not has_val:
        raise TrainingError(f"early_stopping.metric {rule.metric!r} needs validation data: "
                            "pass `val` to fit (or a recipe with val_fraction > 0), or watch "
                            "a train/ metric")
    names = record_metric_names(heads)  # what a record has after its `train/` or `val/` prefix
    if split not in ("train", "val") or rest not in names:
        raise TrainingError(f"early_stopping.metric {rule.metric!r} is not a metric blocks "
                            f"records; choose one of: {', '.join(sorted(names))} "
                            "after `train/` or `val/`")


def track_best(rule: EarlyStopping, record: dict[str, Any], best: dict[str, Any]
               ) -> tuple[dict[str, Any], bool]:
    """`best` (`value`, `epoch`, `wait`) after one epoch `record`, and whether it improved: a new
    dict when it did, `best` with one more epoch of waiting when not."""
    if rule.metric not in record:
        raise TrainingError(f"early_stopping.metric {rule.metric!r} is not a recorded metric "
                            f"(recorded: {', '.join(k for k in record if '/' in k)})")
    value, previous = record[rule.metric], best["value"]
    better = previous is None or (value < previous - rule.min_delta if rule.resolved_mode == "min"
                                  else value > previous + rule.min_delta)
    if better:
        return {"value": value, "epoch": record["epoch"], "wait": 0}, True
    best["wait"] += 1
    return best, False
