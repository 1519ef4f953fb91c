"""Classifier heads: a registered linear layer emitting logits, and the loss that pairs with it.

Heads never apply softmax/sigmoid in `forward` (pitfall 6): the loss takes logits
(cross-entropy / BCE-with-logits) and `predict_proba` applies the activation.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn, torch
from blocks.core.numbers import Size, size_type
from blocks.spec import counts
from blocks.spec.registry import SpecModel
from blocks.spec.shapes import Shape, fmt_shape


class _Head(SpecModel):
    hidden: list[Size] = Field(default_factory=list,
                                      description="sizes of hidden linear+ReLU layers before the classifier")
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.0, description="dropout before the classifier layer")
    loss_weight: Annotated[float, Field(gt=0.0)] = Field(
        1.0, description="this head's weight in the summed loss (several heads)")
    labels: list[str] | None = Field(default=None, description="class names, one per class")

    @field_validator("labels")
    @classmethod
    def _labels_named(cls, labels: list[str] | None) -> list[str] | None:
        """An empty (or blank) or repeated label would make predictions name the wrong class."""
        if labels is None:
            return labels
        for i, label in enumerate(labels):
            if not label.strip():
                raise ValueError(f"labels[{i}] is {label!r}: a class label must be a non-empty name")
            if label in labels[:i]:
                raise ValueError(f"labels[{i}] {label!r} repeats labels[{labels.index(label)}]; "
                                 "each class needs its own name")
        return labels

    @model_serializer(mode="wrap")
    def _keep_type(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        data.pop("type", None)
        return {"type": self.type, **data}

    @model_validator(mode="after")
    def _labels_fit(self) -> _Head:
        if self.labels is not None and len(self.labels) != self.classes:
            raise ValueError(f"labels has {len(self.labels)} names but the head has "
                             f"{self.classes} classes")
        return self

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 1:
            raise ShapeError(f"a classifier head needs a flat feature vector, but the backbone "
                             f"ends with shape {fmt_shape(shape)}; end it with `flatten` or "
                             "`global_avgpool`")
        return (self.classes,)

    def build(self, shape: Shape) -> nn.Module:
        """A plain `nn.Linear` when there is nothing else, so weights read `heads.x.weight`."""
        layers: list[nn.Module] = []
        width = shape[0]
        for size in self.hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        if self.dropout:
            layers.append(nn.Dropout(self.dropout))
        classifier = nn.Linear(width, self.classes)
        return nn.Sequential(*layers, classifier) if layers else classifier

    def parameter_count(self, shape: Shape) -> counts.Counts:
        """(parameters, buffer values) of `build(shape)`: its linear layers, from the spec."""
        widths = [shape[0], *self.hidden, self.classes]
        return sum(counts.linear(a, b)[0] for a, b in zip(widths[:-1], widths[1:], strict=True)), 0


class SoftmaxHead(_Head):
    """Multi-class: one of `classes` (>= 2); integer targets, cross-entropy on logits."""

    type: Literal["softmax"] = "softmax"
    classes: size_type(2) = Field(
        description="number of classes (at least 2; use a sigmoid head for a binary problem)")  # type: ignore[valid-type]
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.0, description="cross-entropy label smoothing, in [0, 1)")
    class_weights: list[Annotated[float, Field(ge=0.0)]] | None = Field(
        None, description="per-class loss weights (one per class) for imbalanced data")

    @model_validator(mode="after")
    def _weights_fit(self) -> SoftmaxHead:
        if self.class_weights is not None and len(self.class_weights) != self.classes:
            raise ValueError(f"class_weights has {len(self.class_weights)} entries but the head "
                             f"has {self.classes} classes")
        if self.class_weights is not None and not any(self.class_weights):
            raise ValueError("class_weights are all zero: no sample would count")
        return self

    def loss(self, device: torch.device | str | None = None) -> nn.Module:
        weight = None if self.class_weights is None else torch.tensor(self.class_weights, device=device)
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=self.label_smoothing)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)

    def labels_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)


class SigmoidHead(_Head):
    """Binary (`classes: 1`) or multi-label (`classes: N`); 0/1 targets, BCE-with-logits."""

    type: Literal["sigmoid"] = "sigmoid"
    classes: Size = Field(
        1, description="1 for a binary problem, N for N independent labels (multi-label)")
    pos_weight: Annotated[float, Field(gt=0)] | list[Annotated[float, Field(gt=0)]] | None = Field(
        None, description="weight of positive examples (one number, or one per class) for rare positives")
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.5, description="probability above which a label is predicted 1")

    @model_validator(mode="after")
    def _pos_weight_fits(self) -> SigmoidHead:
        if isinstance(self.pos_weight, list) and len(self.pos_weight) != self.classes:
            raise ValueError(f"pos_weight has {len(self.pos_weight)} entries but the head has "
                             f"{self.classes} classes")
        return self

    def loss(self, device: torch.device | str | None = None) -> nn.Module:
        pos_weight = None
        if self.pos_weight is not None:
            values = self.pos_weight if isinstance(self.pos_weight, list) else [self.pos_weight] * self.classes
            pos_weight = torch.tensor(values, device=device)
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()

    @property
    def threshold_logit(self) -> float:
        """sigmoid(z) > threshold  <=>  z > logit(threshold): labels need no probabilities."""
        return math.log(self.threshold / (1.0 - self.threshold))

    def labels_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits > self.threshold_logit).long()


HeadSpec = Annotated[SoftmaxHead | SigmoidHead, Field(discriminator="type")]
