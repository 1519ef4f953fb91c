"""blocks: declarative PyTorch classifiers.

    spec = blocks.load_recipe("seed_cnn")
    model = blocks.build(spec.model, device="cpu")
"""

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
from blocks.registry import Block, block_types, load_plugins, register_block
from blocks.runs import evaluate_run, load, predict_run, run_recipe, save
from blocks.spec import InputSpec, ModelSpec
from blocks.summary import summarize
from blocks.train.history import History
from blocks.train.spec import TrainSpec
from blocks.train.trainer import Trainer, TrainingError
from blocks.weights import ImportReport, WeightsError, import_weights

__version__ = "0.1.0"

__all__ = [
    "AuditReport", "audit",
    "Block", "BlocksError", "BlocksModel", "DataSpec", "DeviceMismatchError", "InputShapeError",
    "InputSpec", "ModelSpec", "Recipe", "RegistryError", "Repeat", "Residual", "ShapeError",
    "SigmoidHead", "SoftmaxHead", "SpecError", "TorchLayer", "TrainSpec", "block_types", "build",
    "export", "from_module",
    "bundled_recipes", "dump_recipe", "load_plugins", "load_recipe", "recipe_schema",
    "register_block", "__version__", "History", "Trainer", "TrainingError", "evaluate_run", "load",
    "predict_run", "run_recipe", "save", "summarize",
    "ImportReport", "WeightsError", "import_weights",
]

# Installed plugin packages advertise block types in the `blocks.blocks` entry-point group.
load_plugins()
