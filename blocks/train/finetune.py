"""Fine-tuning mechanics of the `train:` section: `freeze`, `unfreeze_at_epoch`, `param_groups`.

Prefixes are module names of the built model (`backbone`, `backbone.0.layer4`, `head`), the
names `model.named_parameters()` shows. Frozen parameters get `requires_grad=False` and stay out
of the optimizer until they unfreeze; the batchnorm layers under a frozen prefix are kept in eval
mode, so their running statistics do not move either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from blocks.builder.weights import RUN_WEIGHTS
from blocks.core.errors import Problem, SpecError
from blocks.layers.external import WeightsFileError, read_state_dict
from blocks.spec.train import InitFrom, TrainSpec, prefix_covers, prefix_problems

DEFAULT_GROUP = "default"


def apply_freeze(model: nn.Module, prefixes: list[str]) -> list[str]:
    """Set `requires_grad=False` under `prefixes`; the names frozen (summaries use this too)."""
    frozen = []
    for name, param in model.named_parameters():
        if param.requires_grad and any(prefix_covers(p, name) for p in prefixes):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def optimizer_groups(spec: TrainSpec, named: list[tuple[str, nn.Parameter]]) -> list[dict[str, Any]]:
    """`named` parameters split into optimizer param groups: those no `param_groups` prefix
    covers first (the optimizer's settings), then one group per prefix with its settings.
    Empty groups are left out. Without `param_groups`: one plain group."""
    if not spec.param_groups:
        return [{"params": [p for _, p in named]}] if named else []
    buckets: list[list[nn.Parameter]] = [[] for _ in range(len(spec.param_groups) + 1)]
    for name, param in named:
        index = next((i + 1 for i, g in enumerate(spec.param_groups)
                      if prefix_covers(g.prefix, name)), 0)
        buckets[index].append(param)
    groups = []
    for index, params in enumerate(buckets):
        if not params:
            continue
        group: dict[str, Any] = {"params": params, "name": DEFAULT_GROUP}
        if index:
            settings = spec.param_groups[index - 1]
            group["name"] = settings.prefix
            group |= settings.model_dump(exclude={"prefix"}, exclude_none=True)
        groups.append(group)
    return groups


def group_lr(spec: TrainSpec, group: dict[str, Any]) -> float:
    """The learning rate the spec gives a param group (before any schedule)."""
    for settings in spec.param_groups:
        if settings.prefix == group.get("name") and settings.lr is not None:
            return settings.lr
    return spec.optimizer.lr


class Freezing:
    """What `freeze` froze in one model, and whether it has unfrozen yet (`unfreeze_at_epoch`)."""

    def __init__(self, spec: TrainSpec, model: nn.Module) -> None:
        problems = prefix_problems(spec, [name for name, _ in model.named_parameters()])
        if problems:
            raise SpecError(problems)
        self.spec = spec
        self.names = apply_freeze(model, spec.freeze)
        self.frozen = bool(self.names)
        self.batchnorms = [module for name, module in model.named_modules()
                           if isinstance(module, nn.modules.batchnorm._BatchNorm)
                           and any(prefix_covers(p, name) for p in spec.freeze)]
        self._model = model
        if self.names and not any(p.requires_grad for p in model.parameters()):
            raise SpecError(Problem("train.freeze", "freezes every parameter of the model; "
                                    "nothing would train (unfreeze_at_epoch cannot help: the "
                                    "optimizer needs parameters from the first step)",
                                    "nothing_to_train"))

    def due(self, epochs_done: int) -> bool:
        """True when the next epoch is `unfreeze_at_epoch` or later and nothing unfroze yet."""
        at = self.spec.unfreeze_at_epoch
        return self.frozen and at is not None and epochs_done + 1 >= at

    def keep_eval(self) -> None:
        """Frozen batchnorm layers back to eval mode (call after every `model.train()`)."""
        if self.frozen:
            for module in self.batchnorms:
                module.eval()

    def unfreeze(self) -> list[dict[str, Any]]:
        """Make the frozen parameters train; returns their optimizer param groups."""
        params = dict(self._model.named_parameters())
        named = [(name, params[name]) for name in self.names]
        for _, param in named:
            param.requires_grad_(True)
        self.frozen = False
        groups = optimizer_groups(self.spec, named)
        for group in groups:  # settings a new group would otherwise take from the defaults
            group.setdefault("lr", group_lr(self.spec, group))
        return groups


def load_initial_weights(model: nn.Module, init: InitFrom) -> list[str]:
    """Copy the tensors under `init.only` from a run folder or weights file into `model`: every
    one must be there with its shape (a located error names the first that is not). Returns the
    names loaded."""
    path = Path(init.path)
    file = path / RUN_WEIGHTS if path.is_dir() else path
    try:
        state = read_state_dict(file, "train.init_from.path")
    except WeightsFileError as err:
        raise SpecError(Problem("train.init_from.path", str(err).removeprefix(
            "train.init_from.path: "), "weights_file")) from None
    own = model.state_dict()
    problems = [Problem(f"train.init_from.only[{i}]", f"{prefix!r} names nothing in the model",
                        "unknown_prefix")
                for i, prefix in enumerate(init.only) if not any(prefix_covers(prefix, k) for k in own)]
    if problems:
        raise SpecError(problems)
    wanted = [k for k in own if any(prefix_covers(p, k) for p in init.only)]
    missing = [k for k in wanted if k not in state]
    wrong = [f"{k} {list(state[k].shape)} (model: {list(own[k].shape)})" for k in wanted
             if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        detail = "; ".join(f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                           for label, items in (("missing", missing), ("wrong shape", wrong)) if items)
        raise SpecError(Problem("train.init_from", f"{str(file)!r} does not fit the model under "
                                f"{', '.join(init.only)} ({detail}); was it saved from a model with "
                                "the same blocks?", "weights_mismatch"))
    with torch.no_grad():
        for key in wanted:
            own[key].copy_(state[key])
    return wanted
