"""blocks: declarative PyTorch classifiers.

    spec = blocks.load_recipe("seed_cnn")
    model = blocks.build(spec.model, device="cpu")

The public names load on first use (PEP 562), so `import blocks` and the CLI verbs that need no
tensors (`validate`, `schema`, `--help`) do not pay for `import torch`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from blocks.core import moved
from blocks.core.version import __version__
from blocks.spec.registry import load_plugins

moved.install()  # old module paths (`blocks.registry`, `blocks.runs`, ...) still import

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "AuditReport": "blocks.lint.audit", "audit": "blocks.lint.audit",
    "BlocksModel": "blocks.builder.model", "build": "blocks.builder.model",
    "Repeat": "blocks.layers.composites", "Residual": "blocks.layers.composites", "TorchLayer": "blocks.layers.composites",
    "DataSpec": "blocks.spec.data",
    "BlocksError": "blocks.core.errors", "DeviceMismatchError": "blocks.core.errors",
    "InputShapeError": "blocks.core.errors", "RegistryError": "blocks.core.errors",
    "ShapeError": "blocks.core.errors", "SpecError": "blocks.core.errors",
    "export": "blocks.exporters",
    "SigmoidHead": "blocks.spec.heads", "SoftmaxHead": "blocks.spec.heads",
    "from_module": "blocks.exporters.from_module_inputs",
    "Recipe": "blocks.spec.recipe",
    "bundled_recipes": "blocks.recipe.loading", "dump_recipe": "blocks.recipe.loading",
    "load_recipe": "blocks.run.validate", "recipe_schema": "blocks.recipe.loading",
    "Block": "blocks.spec.registry", "block_types": "blocks.spec.registry",
    "load_plugins": "blocks.spec.registry", "register_block": "blocks.spec.registry",
    "evaluate_run": "blocks.run.predicting", "load": "blocks.run.folder",
    "predict_run": "blocks.run.predicting", "run_recipe": "blocks.run.training",
    "save": "blocks.run.folder",
    "sweep": "blocks.sweeps.study",
    "InputSpec": "blocks.spec.model", "ModelSpec": "blocks.spec.model",
    "summarize": "blocks.inspect.summary",
    "History": "blocks.train.history",
    "TrainSpec": "blocks.spec.train",
    "Trainer": "blocks.train.trainer", "TrainingError": "blocks.train.trainer",
    "ImportReport": "blocks.builder.weights", "WeightsError": "blocks.builder.weights",
    "import_weights": "blocks.builder.weights",
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
    from blocks.builder.model import BlocksModel, build
    from blocks.builder.weights import ImportReport, WeightsError, import_weights
    from blocks.core.errors import (
        BlocksError,
        DeviceMismatchError,
        InputShapeError,
        RegistryError,
        ShapeError,
        SpecError,
    )
    from blocks.exporters import export
    from blocks.exporters.from_module_inputs import from_module
    from blocks.inspect.summary import summarize
    from blocks.layers.composites import Repeat, Residual, TorchLayer
    from blocks.lint.audit import AuditReport, audit
    from blocks.recipe.loading import bundled_recipes, dump_recipe, recipe_schema
    from blocks.run.folder import load, save
    from blocks.run.predicting import evaluate_run, predict_run
    from blocks.run.training import run_recipe
    from blocks.run.validate import load_recipe
    from blocks.spec.data import DataSpec
    from blocks.spec.heads import SigmoidHead, SoftmaxHead
    from blocks.spec.model import InputSpec, ModelSpec
    from blocks.spec.recipe import Recipe
    from blocks.spec.registry import Block, block_types, register_block
    from blocks.spec.train import TrainSpec
    from blocks.sweeps.study import sweep
    from blocks.train.history import History
    from blocks.train.trainer import Trainer, TrainingError

# The built-in block types register first, so an installed plugin (the `blocks.blocks`
# entry-point group) that reuses a built-in name is the one reported as the clash.
from blocks import layers as _builtin_block_types  # noqa: E402, F401 - torch-free

load_plugins()
