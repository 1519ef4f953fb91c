"""The non-finite-loss guard, kept on the device: no host sync per step.

Asking the host whether each step's loss is finite (`loss.item()`) stalls an accelerator once per
step. Instead, every loss is folded into a sticky flag on the device (`0 * loss` is 0 for a finite
loss and NaN for NaN or inf, and NaN stays NaN), and the flag is the `found_inf` tensor that
torch's fused optimizers read, as `GradScaler` uses them: once a loss is non-finite, that step
and every later one leave the weights and the optimizer state exactly as they were. The host
reads the flag once every `CHECK_EVERY` steps and at epoch end; only then, and only when it is
set, are this interval's losses read back to name the first bad step.
"""

from __future__ import annotations

import math

import torch

CHECK_EVERY = 50  # optimizer steps between host checks: one sync per interval, not per step


class NonFiniteGuard:
    """Skips optimizer updates on the device once a loss is non-finite; checked on the host
    at a bounded interval. Needs an optimizer whose every group is fused (`supports`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device,
                 every: int | None = None) -> None:
        self.optimizer, self.every = optimizer, every or CHECK_EVERY
        # the sticky sum; a compiled step (compiled_step.py) folds its loss into it on the device
        self.poison = torch.zeros((), dtype=torch.float32, device=device)
        # 0-dim float32: the fused kernels skip the update when it is exactly 1.0
        self.found_inf = torch.zeros((), dtype=torch.float32, device=device)
        optimizer.found_inf = self.found_inf
        self._pending: list[torch.Tensor] = []  # this interval's step losses, never read per step

    @staticmethod
    def supports(optimizer: torch.optim.Optimizer) -> bool:
        """True when every parameter group runs a fused kernel, which honours `found_inf`."""
        return bool(optimizer.param_groups) and all(g.get("fused") for g in optimizer.param_groups)

    def watch(self, loss: torch.Tensor) -> None:
        """Before `optimizer.step()`: fold this step's (detached) loss into the flag. Two device
        ops; the host does not wait for either."""
        self.poison.add_(loss, alpha=0)  # 0 * inf and 0 * nan are nan, and nan is sticky
        torch.ne(self.poison, 0, out=self.found_inf)
        self.record(loss)

    def record(self, loss: torch.Tensor) -> None:
        """Keep this step's loss to name it if the flag turns out set (`watch` without the
        fold, for a step that folded it into `poison` itself)."""
        self._pending.append(loss)

    @property
    def due(self) -> bool:
        return len(self._pending) >= self.every

    @property
    def last_loss(self) -> torch.Tensor | None:
        return self._pending[-1] if self._pending else None

    def first_bad(self) -> tuple[int, float] | None:
        """One host sync: None while every loss was finite, else (how many steps before the
        latest watched one the first non-finite loss was, its value). Starts a new interval;
        after a bad step the flag is cleared, so the trainer can be used again."""
        pending, self._pending = self._pending, []
        if not pending or not bool(self.found_inf):
            return None
        values = torch.stack([v.reshape(()).double() for v in pending]).tolist()  # the rare path
        self.poison.zero_()
        self.found_inf.zero_()
        for index, value in enumerate(values):
            if not math.isfinite(value):
                return len(values) - 1 - index, value
        raise AssertionError("the non-finite flag was set by no watched loss")  # pragma: no cover
