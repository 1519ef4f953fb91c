"""What reading data gives: raw samples (`RawData`), train/val `Split`s and the model spec
the data taught (`learned_spec`). Plain containers, shared by the readers, the trainer's batch
iteration and the run folder; no reader code, and torch only when a tensor is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blocks.core.lazy import torch
from blocks.spec.model import ModelSpec
from blocks.spec.preprocess import PreprocessSpec

Targets = np.ndarray | dict[str, np.ndarray]


@dataclass
class RawData:
    """One source's samples as loaded, plus what preprocessing must know to repeat it later."""

    x: np.ndarray
    y: Targets
    kind: str  # "image", "tabular" or "array"
    scale: float = 1.0  # fixed scaling of the raw values (digits: pixels 0..16 -> 0..1)
    features: list[str] | None = None  # feature column names, for `blocks predict` on CSV
    categories: dict[str, list[str]] | None = None  # category column -> names (code = index)
    labels: dict[str, list[str]] | None = None  # head name -> class names learned from the data
    unknown_category: str = "error"
    encodings: dict[str, Any] | None = None  # category column -> "one_hot", "embedding" or a size
    dataset: Any = None  # a torch Dataset of samples (image folders) instead of `x`
    preprocess: Any = None  # a PreprocessSpec the source derived itself (image statistics)
    order: np.ndarray | None = None  # x's rows are in this order already (`y` in file order)


TargetTensor = torch.Tensor | dict[str, torch.Tensor]


@dataclass
class Split:
    """Raw samples: tensors `x`, `y`, or (image folders) a `dataset` decoding them on the fly."""

    x: torch.Tensor | None
    y: TargetTensor | None
    dataset: Any = None  # a torch Dataset of (raw input, target) pairs

    def __len__(self) -> int:
        if self.dataset is not None:
            return len(self.dataset)
        if isinstance(self.x, dict):  # a multi-input model: a tensor per input, same rows
            return len(next(iter(self.x.values())))
        return len(self.x)

    def as_tuple(self) -> tuple[torch.Tensor, TargetTensor]:
        """`(x, y)` tensors; a Dataset's samples are gathered into memory (`data()` does not)."""
        if self.dataset is not None:
            pairs = [self.dataset[i] for i in range(len(self.dataset))]
            return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        return self.x, self.y

    def data(self) -> Any:
        """What `Trainer.fit`/`evaluate` take: the `(x, y)` tensors, or the Dataset."""
        return self.dataset if self.dataset is not None else (self.x, self.y)


@dataclass
class Splits:
    """Raw train/val samples and the preprocessing the model applies to them.

    `preprocess` is the recipe's declared one, or one derived from the data (scale, z-score
    for tabular data, resize for small images); `None` when the data is fed as it is.
    `model_spec` is the recipe's model with that preprocessing filled in: build this one.
    """

    train: Split
    val: Split | None
    preprocess: PreprocessSpec | None
    model_spec: ModelSpec
    info: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name == "build_model":  # data never builds models: say where it went
            raise AttributeError("Splits.build_model moved: build with "
                                 "`blocks.run.training.build_model(splits, ...)`")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def learned_spec(model: ModelSpec, preprocess: PreprocessSpec | None,
                 labels: dict[str, list[str]] | None) -> ModelSpec:
    """The recipe's model with what reading the data found: the preprocessing, and class names
    learned from a target column of names (stored in the heads' `labels`)."""
    update: dict[str, Any] = {}
    if preprocess is not model.preprocess:
        update["preprocess"] = preprocess
    for name, names in (labels or {}).items():
        if model.head_specs[name].labels is None:
            head = model.head_specs[name].model_copy(update={"labels": list(names)})
            if model.multi_head:
                update["heads"] = {**(update.get("heads") or model.heads), name: head}
            else:
                update["head"] = head
    if not update:
        return model
    return ModelSpec.model_validate({**dict(model), **update})
