"""The recipe's `train:` section: how long, how fast, on what, with which safeguards."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from blocks.core.errors import Problem
from blocks.core.lazy import torch  # imported by the first device name other than `auto`
from blocks.core.numbers import NonNegativeReal, PositiveReal, Seed, Size, real_type, size_type
from blocks.spec.registry import SpecModel, closest

Fraction = real_type(ge=0, lt=1)  # momentum, betas
OpenFraction = real_type(gt=0, lt=1)  # one-cycle warm-up share


class _Optimizer(SpecModel):
    lr: PositiveReal = Field(1e-3, description="learning rate")
    weight_decay: NonNegativeReal = Field(0.0, description="L2 penalty (decoupled for adamw)")


class SGD(_Optimizer):
    type: Literal["sgd"] = "sgd"
    lr: PositiveReal = Field(0.01, description="learning rate")
    momentum: Fraction = Field(
        0.0, description="momentum factor, in [0, 1)")
    nesterov: bool = Field(False, description="Nesterov momentum")


class Adam(_Optimizer):
    type: Literal["adam"] = "adam"
    betas: tuple[Fraction, Fraction] = Field(
        (0.9, 0.999), description="running-average coefficients of the gradient and its square")
    eps: PositiveReal = Field(1e-8, description="added to the denominator for stability")


class AdamW(Adam):
    type: Literal["adamw"] = "adamw"
    weight_decay: NonNegativeReal = Field(0.01, description="decoupled weight decay")


OptimizerSpec = Annotated[SGD | Adam | AdamW, Field(discriminator="type")]


class StepLR(SpecModel):
    """Multiply the learning rate by `gamma` every `step_size` epochs."""

    type: Literal["step"] = "step"
    step_size: Size = Field(10, description="epochs between learning-rate drops")
    gamma: PositiveReal = Field(
        0.1, description="factor the learning rate is multiplied by at each drop")


class CosineLR(SpecModel):
    """Cosine decay from `lr` to `eta_min` over the run (per step)."""

    type: Literal["cosine"] = "cosine"
    eta_min: NonNegativeReal = Field(0.0, description="learning rate at the end of the cosine")


class OneCycleLR(SpecModel):
    """Warm up to `max_lr` then anneal (per step); `max_lr` defaults to the optimizer's `lr`."""

    type: Literal["one_cycle"] = "one_cycle"
    max_lr: PositiveReal | None = Field(
        None, description="peak learning rate (default: the optimizer's lr)")
    pct_start: OpenFraction = Field(
        0.3, description="fraction of the steps spent warming up")


SchedulerSpec = Annotated[StepLR | CosineLR | OneCycleLR, Field(discriminator="type")]


class EarlyStopping(SpecModel):
    metric: str = Field("val/loss", description="metric watched, e.g. val/loss or val/accuracy")
    patience: Size = Field(5, description="epochs without improvement before stopping")
    mode: Literal["min", "max", "auto"] = Field(
        "auto", description="min or max is better; auto: max for accuracy-like metrics, min otherwise")
    min_delta: NonNegativeReal = Field(
        0.0, description="smallest change that counts as an improvement")
    restore_best: bool = Field(default=False, description="end with the best epoch's weights")

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        if self.mode != "auto":
            return self.mode
        return "min" if self.metric.endswith("loss") else "max"


class ParamGroup(SpecModel):
    """Optimizer settings for the parameters under one module-name prefix (`backbone`,
    `backbone.0.layer4`); unset values are the optimizer's."""

    prefix: Annotated[str, Field(min_length=1)] = Field(
        description="parameter names starting with this (e.g. backbone.0) form the group")
    lr: PositiveReal | None = Field(
        None, description="learning rate of the group (default: the optimizer's)")
    weight_decay: NonNegativeReal | None = Field(
        None, description="weight decay of the group (default: the optimizer's)")


class InitFrom(SpecModel):
    """Start training from weights saved elsewhere, for the parameters and buffers under `only`
    (module-name prefixes): a blocks run folder or a `.safetensors` / `.pth` file. Relative
    paths are read from the working folder, like `blocks train`'s default `runs/NAME`."""

    path: Annotated[str, Field(min_length=1)] = Field(
        description="run folder (or model.safetensors) whose weights start this training")
    only: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["backbone"], description="parameter name prefixes to copy (default: the backbone)")


def prefix_covers(prefix: str, name: str) -> bool:
    """`backbone` covers `backbone` and `backbone.0.weight`, not `backbone_extra.weight`."""
    return name == prefix or name.startswith(f"{prefix}.")


class TrainSpec(SpecModel):
    epochs: Size = Field(10, description="passes over the training data")
    batch_size: Size = Field(
        32, description="samples per optimizer step (split into `accumulate` micro-batches)")
    accumulate: Size = Field(default=1, description="micro-batches per optimizer step")
    optimizer: OptimizerSpec = Field(
        default_factory=Adam, description="sgd, adam or adamw with its settings")
    scheduler: SchedulerSpec | None = Field(
        None, description="learning-rate schedule: step, cosine or one_cycle (a bare name works)")
    clip_grad_norm: PositiveReal | None = Field(
        None, description="clip the global gradient norm to this")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="fp32, or bf16 autocast")
    compile: bool = Field(
        default=False, description="compile the training step (forward, backward, optimizer "
        "update) with torch.compile; checkpoints and saved runs are the same as without")
    early_stopping: EarlyStopping | None = Field(
        None, description="stop when a validation metric stops improving")
    seed: Seed = Field(0, description="seed of weights, shuffling and dropout")
    device: str = Field(
        "auto", description="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    shuffle: bool = Field(True, description="reshuffle the training data every epoch")
    drop_last: bool = Field(False, description="drop the last, smaller batch of an epoch")
    checkpoint_every: Size = Field(default=1, description="epochs between checkpoints")
    init_from: InitFrom | None = Field(
        default=None, description="weights to start from (read when training starts, not on resume)")
    freeze: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="module-name prefixes whose parameters do not train "
        "(left out of the optimizer; their batchnorm layers stay in eval mode)")
    unfreeze_at_epoch: size_type(2) | None = Field(
        default=None, description="from this epoch on (1-based) the frozen parameters train too")
    param_groups: list[ParamGroup] = Field(
        default_factory=list, description="per-prefix lr / weight_decay; the rest use the optimizer's")
    loggers: list[Literal["csv", "tensorboard", "mlflow"]] = Field(
        default_factory=lambda: ["csv"], description="where epoch metrics go besides the run "
        "folder's metrics.csv/jsonl (always written): tensorboard (`blocks[tensorboard]`), "
        "mlflow (`blocks[mlflow]`)")

    @field_validator("optimizer", "scheduler", mode="before")
    @classmethod
    def _bare_name(cls, value: object) -> object:
        """`scheduler: cosine` is `scheduler: {type: cosine}`, as `- relu` is a whole block."""
        return {"type": value} if isinstance(value, str) else value

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
        parse_device_name(device)
        return device


_KINDS = ("cpu", "cuda", "mps", "meta", "xpu")


def parse_device_name(name: str) -> str:
    """Accept `auto` or anything `torch.device` accepts; a clear error otherwise."""
    if name == "auto":
        return name
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; expected 'auto' or one of "
                         f"{', '.join(_KINDS)} (optionally with an index, e.g. 'cuda:0')") from None
    return str(device)


def prefix_problems(spec: TrainSpec, names: list[str]) -> list[Problem]:
    """A located problem for each `freeze` / `param_groups` prefix that names no parameter."""
    known = set(names)
    modules = {".".join(parts[:i]) for parts in (n.split(".") for n in names)
               for i in range(1, len(parts) + 1)}
    tops = sorted({n.split(".")[0] for n in names})
    problems = []
    where = [(f"train.freeze[{i}]", p) for i, p in enumerate(spec.freeze)]
    where += [(f"train.param_groups[{i}].prefix", g.prefix) for i, g in enumerate(spec.param_groups)]
    if spec.init_from is not None:
        where += [(f"train.init_from.only[{i}]", p) for i, p in enumerate(spec.init_from.only)]
    for path, prefix in where:
        if any(prefix_covers(prefix, name) for name in known):
            continue
        hint = closest(prefix, modules)
        suggestion = f"; did you mean {hint!r}?" if hint else ""
        problems.append(Problem(path, f"{prefix!r} names no parameter of the model{suggestion} "
                                f"(prefixes are module names, e.g. {', '.join(tops)})",
                                "unknown_prefix"))
    return problems
