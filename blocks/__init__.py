"""blocks: declarative PyTorch classifiers.

    spec = blocks.load_recipe("seed_cnn")
    model = blocks.build(spec.model, device="cpu")

The public names load on first use (PEP 562), so `import blocks` and the CLI verbs that need no
tensors (`validate`, `schema`, `--help`) do not pay for `import torch`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from blocks.registry import load_plugins

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "AuditReport": "blocks.audit", "audit": "blocks.audit",
    "BlocksModel": "blocks.builder", "build": "blocks.builder",
    "Repeat": "blocks.composites", "Residual": "blocks.composites", "TorchLayer": "blocks.composites",
    "DataSpec": "blocks.data.spec",
    "BlocksError": "blocks.errors", "DeviceMismatchError": "blocks.errors",
    "InputShapeError": "blocks.errors", "RegistryError": "blocks.errors",
    "ShapeError": "blocks.errors", "SpecError": "blocks.errors",
    "export": "blocks.exporters",
    "SigmoidHead": "blocks.heads", "SoftmaxHead": "blocks.heads",
    "from_module": "blocks.module_import",
    "Recipe": "blocks.recipe",
    "bundled_recipes": "blocks.recipe_io", "dump_recipe": "blocks.recipe_io",
    "load_recipe": "blocks.recipe_io", "recipe_schema": "blocks.recipe_io",
    "Block": "blocks.registry", "block_types": "blocks.registry",
    "load_plugins": "blocks.registry", "register_block": "blocks.registry",
    "evaluate_run": "blocks.runs", "load": "blocks.runs", "predict_run": "blocks.runs",
    "run_recipe": "blocks.runs", "save": "blocks.runs",
    "InputSpec": "blocks.spec", "ModelSpec": "blocks.spec",
    "summarize": "blocks.summary",
    "History": "blocks.train.history",
    "TrainSpec": "blocks.train.spec",
    "Trainer": "blocks.train.trainer", "TrainingError": "blocks.train.trainer",
    "ImportReport": "blocks.weights", "WeightsError": "blocks.weights",
    "import_weights": "blocks.weights",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'blocks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from blocks.audit import AuditReport, audit
    from blocks.builder import BlocksModel, build
    from blocks.composites import Repeat, Residual, TorchLayer
    from blocks.data.spec import DataSpec
    from blocks.errors import (
        BlocksError,
        DeviceMismatchError,
        InputShapeError,
        RegistryError,
        ShapeError,
        SpecError,
    )
    from blocks.exporters import export
    from blocks.heads import SigmoidHead, SoftmaxHead
    from blocks.module_import import from_module
    from blocks.recipe import Recipe
    from blocks.recipe_io import bundled_recipes, dump_recipe, load_recipe, recipe_schema
    from blocks.registry import Block, block_types, register_block
    from blocks.runs import evaluate_run, load, predict_run, run_recipe, save
    from blocks.spec import InputSpec, ModelSpec
    from blocks.summary import summarize
    from blocks.train.history import History
    from blocks.train.spec import TrainSpec
    from blocks.train.trainer import Trainer, TrainingError
    from blocks.weights import ImportReport, WeightsError, import_weights

# The built-in block types register first, so an installed plugin (the `blocks.blocks`
# entry-point group) that reuses a built-in name is the one reported as the clash.
importlib.import_module("blocks.spec")
load_plugins()
