"""Run folders: `save(model, dir)` writes the spec (YAML) and safetensors weights; `load` reads them.

Nothing is pickled: the recipe is YAML, the weights safetensors, the rest JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from blocks.builder import BlocksModel, build
from blocks.errors import Problem, SpecError
from blocks.io_utils import atomic_write, atomic_write_text
from blocks.recipe_io import dump_recipe, load_recipe
from blocks.spec import Recipe
from blocks.train.checkpoint import CorruptCheckpointError

RECIPE = "recipe.yaml"
WEIGHTS = "model.safetensors"
PREPROCESS = "preprocess.json"
RUN_INFO = "run.json"


def save(model: BlocksModel, path: str | Path, *, recipe: Recipe | None = None,
         preprocess: Any | None = None) -> Path:
    """Write `recipe.yaml` (the full recipe when given, else the model spec) and the weights."""
    run_dir = Path(path)
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe = recipe if recipe is not None else Recipe(model=model.spec)
    atomic_write_text(run_dir / RECIPE, dump_recipe(recipe, full=True))
    atomic_write(run_dir / WEIGHTS, lambda tmp: save_model(model, str(tmp), metadata={"format": "blocks/1"}))
    if preprocess is not None:
        atomic_write_text(run_dir / PREPROCESS, json.dumps(preprocess.to_dict()) + "\n")
    else:  # a stale file from an earlier save would be applied to these weights' inputs
        (run_dir / PREPROCESS).unlink(missing_ok=True)
    return run_dir


def load(path: str | Path, *, device: str | torch.device = "cpu") -> BlocksModel:
    """Rebuild a saved model from its folder: spec from `recipe.yaml`, weights from safetensors."""
    run_dir = Path(path)
    if not (run_dir / RECIPE).exists():
        raise SpecError(Problem("", f"{run_dir} is not a blocks run folder (no {RECIPE})",
                                "not_a_run", str(run_dir)))
    recipe = load_recipe(run_dir / RECIPE)
    # seeded: the weights are overwritten anyway, and the caller's global RNG stays untouched
    model = build(recipe.model, device="cpu", seed=0, weights=False)  # the run's own come next
    weights = run_dir / WEIGHTS
    if not weights.exists():
        raise CorruptCheckpointError(f"{run_dir} has no weights file {WEIGHTS}")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CorruptCheckpointError(f"weights {weights} are corrupt or do not fit the recipe's "
                                     f"model ({err}); nothing was loaded") from None
    if missing or unexpected:
        raise CorruptCheckpointError(f"weights {weights} do not fit the recipe's model (missing: "
                                     f"{sorted(missing)[:5]}, unexpected: {sorted(unexpected)[:5]})")
    return model.to(device) if str(device) != "cpu" else model


def load_run_recipe(path: str | Path) -> Recipe:
    return load_recipe(Path(path) / RECIPE)


def load_preprocess(path: str | Path):
    from blocks.data.splits import Preprocess

    file = Path(path) / PREPROCESS
    if not file.exists():
        return None
    return Preprocess(**json.loads(file.read_text()))
