"""Progress on the terminal: a per-batch bar while an epoch runs, and one line per epoch.

The bar shows only on a terminal and only on the main process (it would garble logs and
multiply under torchrun); the epoch line goes through `tqdm.write` so it never breaks a bar.
`quiet` silences both.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def epoch_bar(total: int | None, epoch: int, epochs: int, *, shown: bool) -> tqdm:
    """The bar for epoch `epoch` (1-based) of `epochs`; disabled unless `shown` and stderr is a
    terminal. `bar.disable` tells whether updating its postfix is worth a host sync."""
    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", leave=False,
                disable=not shown or not sys.stderr.isatty(), unit="batch")


def epoch_line(record: dict[str, Any], epochs: int, note: str = "") -> str:
    """`epoch 3/10  train/loss 0.1234  val/loss 0.2345 ...  [1.2s]` and `note` after it: the
    float metrics of the record, nested at most two levels (`val/<head>/accuracy`)."""
    shown = "  ".join(f"{k} {v:.4f}" for k, v in record.items()
                      if "/" in k and k.count("/") <= 2 and isinstance(v, float))
    return f"epoch {record['epoch']}/{epochs}  {shown}  [{record['time']:.1f}s]{note}"


def write_line(line: str) -> None:
    """Print `line` above any bar that is showing."""
    tqdm.write(line)
