"""Epoch metrics accumulated on the device (no per-step sync), reduced once at epoch end.

Updates are queued, not computed: each micro-batch only keeps references to its (detached)
logits, targets and loss, and every `FLUSH_EVERY` micro-batches (or `FLUSH_ELEMENTS` queued
logits, and before anything reads the metrics) the queue is counted in a handful of vectorised
ops. A training step thus pays no metric kernels of its own, which on small models is a large
share of the per-step time.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from blocks.spec.heads import SigmoidHead, SoftmaxHead

FLUSH_EVERY = 32  # queued micro-batches
FLUSH_ELEMENTS = 1 << 22  # queued logit values (16 MiB of float32): bounds the memory held


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
        self._queue: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | int, bool]] = []
        self._queued_elements = 0
        width = self.head.classes if isinstance(self.head, SigmoidHead) else 1
        self.correct = z(width)
        self.tp, self.fp, self.fn = z(width), z(width), z(width)

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor,
               norm: torch.Tensor | int, *, mean: bool = False) -> None:
        """Queue one micro-batch (no device op, no host sync). `loss` is the micro-batch's loss
        sum, or with `mean` its mean (`sum / norm`, `norm` an int): the sum is then formed when
        the queue is counted, one multiply per distinct batch size instead of one per step."""
        self._queue.append((logits.detach(), target, loss.detach(), norm, mean))
        self.samples += target.shape[0]
        self._queued_elements += logits.numel()
        if len(self._queue) >= FLUSH_EVERY or self._queued_elements >= FLUSH_ELEMENTS:
            self._flush()

    def _flush(self) -> None:
        queue, self._queue, self._queued_elements = self._queue, [], 0
        if not queue:
            return
        sums: list[torch.Tensor] = []
        means: dict[int, list[torch.Tensor]] = defaultdict(list)
        tensor_norms: list[torch.Tensor] = []
        for _, _, loss, norm, mean in queue:
            if mean:
                means[norm].append(loss)
            else:
                sums.append(loss)
            if isinstance(norm, int):
                self._pending_norm += norm
            else:
                tensor_norms.append(norm)
        if sums:
            self.loss_sum += torch.stack(sums).double().sum()
        for norm, group in means.items():
            self.loss_sum += torch.stack(group).double().sum() * norm
        if tensor_norms:
            self.loss_norm += torch.stack(tensor_norms).double().sum()
        logits = queue[0][0] if len(queue) == 1 else torch.cat([q[0] for q in queue])
        target = queue[0][1] if len(queue) == 1 else torch.cat([q[1] for q in queue])
        if self._softmax:
            self.correct += (logits.argmax(dim=-1) == target).sum()
            return
        truth = target > 0.5
        hit = logits > self._threshold_logit
        self.correct += (hit == truth).sum(dim=0)
        self.tp += (hit & truth).sum(dim=0)
        self.fp += (hit & ~truth).sum(dim=0)
        self.fn += (~hit & truth).sum(dim=0)

    def settle(self) -> None:
        """Count the queue and fold host-side counts into the device tensors (before reading or
        all-reducing them)."""
        self._flush()
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
        self.settle()
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


