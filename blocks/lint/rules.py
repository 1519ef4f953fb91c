"""The lint rules, by code: `RULES` is what `blocks lint` runs and what `--help` and docs list.

The checks live by pitfall family: `rules_registration` (BLK001-003: layers created where or
when they are never registered), `rules_plain_state` (BLK004-005: state kept where nn.Module
does not look) and `rules_forward` (BLK006-008: what forward computes with tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

from blocks.lint.rules_common import Check
from blocks.lint.rules_forward import (
    check_builtin_reduction,
    check_double_activation,
    check_factory_device,
)
from blocks.lint.rules_plain_state import check_grad_tensor_attribute, check_plain_containers
from blocks.lint.rules_registration import (
    check_init,
    check_layer_in_forward,
    check_super_init,
    is_init_near_miss,
)

__all__ = [
    "RULES",
    "RULE_CODES",
    "Check",
    "Rule",
    "check_builtin_reduction",
    "check_double_activation",
    "check_factory_device",
    "check_grad_tensor_attribute",
    "check_init",
    "check_layer_in_forward",
    "check_plain_containers",
    "check_super_init",
    "is_init_near_miss",
]


@dataclass(frozen=True)
class Rule:
    """A rule code, a one-line title (for `--help` and docs) and its check."""

    code: str
    title: str
    check: Check


RULES: tuple[Rule, ...] = (
    Rule("BLK001", "layer or nn.Parameter created inside forward", check_layer_in_forward),
    Rule("BLK002", "no __init__: a misspelled one, or layers assigned in another method",
         check_init),
    Rule("BLK003", "super().__init__() missing or called after registering sub-modules",
         check_super_init),
    Rule("BLK004", "layers kept in a plain list/dict/tuple instead of nn.ModuleList/ModuleDict",
         check_plain_containers),
    Rule("BLK005", "tensor with requires_grad=True kept as a plain attribute, not nn.Parameter",
         check_grad_tensor_attribute),
    Rule("BLK006", "builtin sum()/max()/min() applied to a tensor", check_builtin_reduction),
    Rule("BLK007", "tensor factory in forward without device=", check_factory_device),
    Rule("BLK008", "softmax/sigmoid output fed to a loss that expects logits",
         check_double_activation),
)
RULE_CODES: tuple[str, ...] = tuple(r.code for r in RULES)
