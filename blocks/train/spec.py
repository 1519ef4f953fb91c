"""The recipe's `train:` section: how long, how fast, on what, with which safeguards."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    ValidationInfo,
    field_validator,
)

from blocks.numbers import Seed, Size
from blocks.registry import SpecModel


class _Optimizer(SpecModel):
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0


class SGD(_Optimizer):
    type: Literal["sgd"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    nesterov: bool = False


class Adam(_Optimizer):
    type: Literal["adam"] = "adam"
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8


class AdamW(Adam):
    type: Literal["adamw"] = "adamw"
    weight_decay: NonNegativeFloat = 0.01


OptimizerSpec = Annotated[SGD | Adam | AdamW, Field(discriminator="type")]


class StepLR(SpecModel):
    """Multiply the learning rate by `gamma` every `step_size` epochs."""

    type: Literal["step"] = "step"
    step_size: Size = 10
    gamma: PositiveFloat = 0.1


class CosineLR(SpecModel):
    """Cosine decay from `lr` to `eta_min` over the run (per step)."""

    type: Literal["cosine"] = "cosine"
    eta_min: NonNegativeFloat = 0.0


class OneCycleLR(SpecModel):
    """Warm up to `max_lr` then anneal (per step); `max_lr` defaults to the optimizer's `lr`."""

    type: Literal["one_cycle"] = "one_cycle"
    max_lr: PositiveFloat | None = None
    pct_start: Annotated[float, Field(gt=0, lt=1)] = 0.3


SchedulerSpec = Annotated[StepLR | CosineLR | OneCycleLR, Field(discriminator="type")]


class EarlyStopping(SpecModel):
    metric: str = "val/loss"
    patience: Size = 5
    mode: Literal["min", "max", "auto"] = "auto"
    min_delta: NonNegativeFloat = 0.0
    restore_best: bool = Field(default=False, description="end with the best epoch's weights")

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        if self.mode != "auto":
            return self.mode
        return "min" if self.metric.endswith("loss") else "max"


class ParamGroup(SpecModel):
    """Optimizer settings for the parameters under one module-name prefix (`backbone`,
    `backbone.0.layer4`); unset values are the optimizer's."""

    prefix: Annotated[str, Field(min_length=1)]
    lr: PositiveFloat | None = None
    weight_decay: NonNegativeFloat | None = None


class InitFrom(SpecModel):
    """Start training from weights saved elsewhere, for the parameters and buffers under `only`
    (module-name prefixes): a blocks run folder or a `.safetensors` / `.pth` file. Relative
    paths are read from the working folder, like `blocks train`'s default `runs/NAME`."""

    path: Annotated[str, Field(min_length=1)]
    only: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: ["backbone"])


def prefix_covers(prefix: str, name: str) -> bool:
    """`backbone` covers `backbone` and `backbone.0.weight`, not `backbone_extra.weight`."""
    return name == prefix or name.startswith(f"{prefix}.")


class TrainSpec(SpecModel):
    epochs: Size = 10
    batch_size: Size = 32
    accumulate: Size = Field(default=1, description="micro-batches per optimizer step")
    optimizer: OptimizerSpec = Field(default_factory=Adam)
    scheduler: SchedulerSpec | None = None
    clip_grad_norm: PositiveFloat | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = Field(
        default=False, description="run the training forward through torch.compile (checkpoints "
        "and saved runs are the same as without; pays off on accelerators and larger models)")
    early_stopping: EarlyStopping | None = None
    seed: Seed = 0
    device: str = "auto"
    shuffle: bool = True
    drop_last: bool = False
    checkpoint_every: Size = Field(default=1, description="epochs between checkpoints")
    init_from: InitFrom | None = Field(
        default=None, description="weights to start from (read when training starts, not on resume)")
    freeze: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="module-name prefixes whose parameters do not train "
        "(left out of the optimizer; their batchnorm layers stay in eval mode)")
    unfreeze_at_epoch: Annotated[int, Field(ge=2)] | None = Field(
        default=None, description="from this epoch on (1-based) the frozen parameters train too")
    param_groups: list[ParamGroup] = Field(
        default_factory=list, description="per-prefix lr / weight_decay; the rest use the optimizer's")

    @field_validator("unfreeze_at_epoch")
    @classmethod
    def _unfreeze_fits(cls, epoch: int | None, info: ValidationInfo) -> int | None:
        if epoch is None:
            return epoch
        if not info.data.get("freeze"):
            raise ValueError("unfreeze_at_epoch needs `freeze:` prefixes to unfreeze")
        epochs = info.data.get("epochs")
        if epochs is not None and epoch > epochs:
            raise ValueError(f"epoch {epoch} is after the last one ({epochs}); the parameters "
                             "would never unfreeze")
        return epoch

    @field_validator("param_groups")
    @classmethod
    def _groups_disjoint(cls, groups: list[ParamGroup]) -> list[ParamGroup]:
        for i, a in enumerate(groups):
            for j, b in enumerate(groups[:i]):
                if prefix_covers(a.prefix, b.prefix) or prefix_covers(b.prefix, a.prefix):
                    raise ValueError(f"groups {j} ({b.prefix!r}) and {i} ({a.prefix!r}) overlap; "
                                     "a parameter can be in one group only")
        return groups

    @field_validator("device")
    @classmethod
    def _device_name(cls, device: str) -> str:
        from blocks.device import parse_device_name

        parse_device_name(device)
        return device
