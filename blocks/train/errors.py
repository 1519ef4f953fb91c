"""The trainer's error and warning, in a module of their own.

Every part of training (targets, early stopping, checkpoints, the step) raises them, and none of
those parts may import the `Trainer` that imports them; `blocks.train.trainer` re-exports both.
"""

from __future__ import annotations

from blocks.core.errors import BlocksError


class TrainingError(BlocksError):
    """Training cannot go on: a non-finite loss, targets that do not fit the heads, ..."""


class TrainingWarning(UserWarning):
    """Training goes on, but not exactly as asked (e.g. a lone last sample left out)."""
