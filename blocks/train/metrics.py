"""Epoch metrics accumulated on the device (no per-step sync), reduced once at epoch end."""

from __future__ import annotations

import torch

from blocks.heads import SigmoidHead, SoftmaxHead


class HeadMetrics:
    """Loss sum/norm, accuracy, and for sigmoid heads per-label accuracy and F1 counts."""

    def __init__(self, name: str, head: SoftmaxHead | SigmoidHead, device: torch.device) -> None:
        self.name, self.head = name, head
        self.device = device
        self._softmax = isinstance(head, SoftmaxHead)
        self._threshold_logit = head.threshold_logit if isinstance(head, SigmoidHead) else 0.0
        self.reset()

    def reset(self) -> None:
        z = lambda *shape: torch.zeros(shape, dtype=torch.float64, device=self.device)  # noqa: E731
        self.loss_sum, self.loss_norm, self.samples = z(), z(), 0
        self._pending_norm = 0  # integer normalisers add up on the host: no device op per step
        width = self.head.classes if isinstance(self.head, SigmoidHead) else 1
        self.correct = z(width)
        self.tp, self.fp, self.fn = z(width), z(width), z(width)

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss_sum: torch.Tensor,
               norm: torch.Tensor | int) -> None:
        """Called once per training micro-batch: a handful of device ops, no host sync, no
        autograd (every input is detached or not differentiable)."""
        self.loss_sum += loss_sum.detach()
        if isinstance(norm, int):
            self._pending_norm += norm
        else:
            self.loss_norm += norm
        self.samples += target.shape[0]
        if self._softmax:
            self.correct += (logits.detach().argmax(dim=-1) == target).sum()
            return
        truth = target > 0.5
        hit = logits.detach() > self._threshold_logit
        self.correct += (hit == truth).sum(dim=0)
        self.tp += (hit & truth).sum(dim=0)
        self.fp += (hit & ~truth).sum(dim=0)
        self.fn += (~hit & truth).sum(dim=0)

    def settle(self) -> None:
        """Fold host-side counts into the device tensors (before reading or all-reducing them)."""
        if self._pending_norm:
            self.loss_norm = self.loss_norm + self._pending_norm
            self._pending_norm = 0

    def loss(self) -> float:
        self.settle()
        if not self.samples:
            return float("nan")
        # all samples weighted 0 (class_weights): nothing to average, the loss is 0
        return float(self.loss_sum / self.loss_norm) if float(self.loss_norm) else 0.0

    def compute(self, prefix: str) -> dict[str, float]:
        """Flat metrics: `<prefix>loss`, `<prefix>accuracy`, and for sigmoid heads f1 (+ per label)."""
        if not self.samples:
            return {}
        out = {f"{prefix}loss": self.loss(),
               f"{prefix}accuracy": float(self.correct.sum() / (self.samples * self.correct.numel()))}
        if isinstance(self.head, SigmoidHead):
            denom = 2 * self.tp + self.fp + self.fn
            f1 = torch.where(denom > 0, 2 * self.tp / denom.clamp(min=1), torch.ones_like(denom))
            out[f"{prefix}f1"] = float(f1.mean())
            if self.head.classes > 1:
                labels = self.head.labels or [str(i) for i in range(self.head.classes)]
                for i, label in enumerate(labels):
                    out[f"{prefix}{label}/accuracy"] = float(self.correct[i] / self.samples)
                    out[f"{prefix}{label}/f1"] = float(f1[i])
        return out


def record_metric_names(heads: dict) -> set[str]:
    """The metric names an epoch record has after its `train/` or `val/` prefix, for heads by
    name (a lone head is `output`): what `early_stopping.metric` may watch."""
    from blocks.heads import SigmoidHead
    from blocks.spec import SINGLE_HEAD

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
