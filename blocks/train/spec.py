"""The recipe's `train:` section: how long, how fast, on what, with which safeguards."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, field_validator

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


class TrainSpec(SpecModel):
    epochs: Size = 10
    batch_size: Size = 32
    accumulate: Size = Field(default=1, description="micro-batches per optimizer step")
    optimizer: OptimizerSpec = Field(default_factory=Adam)
    scheduler: SchedulerSpec | None = None
    clip_grad_norm: PositiveFloat | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    early_stopping: EarlyStopping | None = None
    seed: Seed = 0
    device: str = "auto"
    shuffle: bool = True
    drop_last: bool = False
    checkpoint_every: Size = Field(default=1, description="epochs between checkpoints")

    @field_validator("device")
    @classmethod
    def _device_name(cls, device: str) -> str:
        from blocks.device import parse_device_name

        parse_device_name(device)
        return device
