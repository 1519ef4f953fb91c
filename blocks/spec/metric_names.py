"""The metric names an epoch record will hold, known from the head specs alone (no torch):
`blocks validate` checks `early_stopping.metric` against them."""

from __future__ import annotations

from blocks.spec.heads import SigmoidHead
from blocks.spec.model import SINGLE_HEAD


def record_metric_names(heads: dict) -> set[str]:
    """The metric names an epoch record has after its `train/` or `val/` prefix, for heads by
    name (a lone head is `output`): what `early_stopping.metric` may watch."""
    names = {"loss"}
    for name, head in heads.items():
        prefix = "" if name == SINGLE_HEAD else f"{name}/"
        names |= {f"{prefix}loss", f"{prefix}accuracy"}
        if isinstance(head, SigmoidHead):
            names.add(f"{prefix}f1")
            if head.classes > 1:
                for label in head.labels or [str(i) for i in range(head.classes)]:
                    names |= {f"{prefix}{label}/accuracy", f"{prefix}{label}/f1"}
    return names
