"""Per-head loss *terms*: a sum and its normaliser, so means stay exact across micro-batches.

The batch loss is `sum / norm` (norm = samples, or total class weight, or samples x labels);
accumulating k micro-batches divides each micro-batch's sum by the whole window's norm, which
gives exactly the gradient of one batch holding all their samples, whatever their sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from blocks.spec.heads import SigmoidHead, SoftmaxHead


class HeadLoss:
    """Cross-entropy on logits for softmax heads, BCE-with-logits for sigmoid heads (pitfall 6)."""

    def __init__(self, head: SoftmaxHead | SigmoidHead, device: torch.device) -> None:
        self.head = head
        self.weight = None
        self.pos_weight = None
        if isinstance(head, SoftmaxHead) and head.class_weights is not None:
            self.weight = torch.tensor(head.class_weights, device=device)
        if isinstance(head, SigmoidHead) and head.pos_weight is not None:
            values = head.pos_weight if isinstance(head.pos_weight, list) else [head.pos_weight] * head.classes
            self.pos_weight = torch.tensor(values, device=device)

    def norm(self, target: torch.Tensor) -> torch.Tensor | int:
        """The mean's denominator for this batch (a tensor only with class weights)."""
        if isinstance(self.head, SoftmaxHead):
            return self.weight[target].sum() if self.weight is not None else target.shape[0]
        return target.numel()

    def total(self, logits: torch.Tensor, target: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        """Sum of per-sample losses (class-weighted where configured); `reduction="mean"` gives
        sum / norm in one kernel (the common case: the batch is the whole optimizer step)."""
        if isinstance(self.head, SoftmaxHead):
            return F.cross_entropy(logits.float(), target, weight=self.weight, reduction=reduction,
                                   label_smoothing=self.head.label_smoothing)
        return F.binary_cross_entropy_with_logits(logits.float(), target, reduction=reduction,
                                                  pos_weight=self.pos_weight)
