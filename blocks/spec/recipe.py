"""The recipe: a whole job composed from the model, data and train specs (each usable alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

from blocks.core.errors import Problem
from blocks.spec.data import DataSpec
from blocks.spec.model import ModelSpec
from blocks.spec.registry import SpecModel, add_block_definitions
from blocks.spec.train import TrainSpec


class _WithBlockSchemas(SpecModel):
    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """pydantic's schema plus one definition per registered block type (plugins included)."""
        return add_block_definitions(super().model_json_schema(*args, **kwargs))


class Recipe(_WithBlockSchemas):
    """A whole job: the model, the data it trains on, and how to train it."""

    model: ModelSpec = Field(description="the model: input, backbone blocks, head(s)")
    data: DataSpec | None = Field(
        None, description="what to train on: a bundled dataset, csv, npz or synthetic data, and the split")
    train: TrainSpec = Field(
        default_factory=TrainSpec, description="how to train: epochs, batch size, optimizer, scheduler, device, ...")
    _source_path: Path | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        """Equal when the specs are equal; where a recipe was loaded from is not part of it."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment] - mutable, like every pydantic model

    @property
    def source_path(self) -> Path | None:
        """The file this recipe was loaded from; relative data paths resolve against its folder."""
        return self._source_path


#: `data:` options of single-input tables, and what a multi-input table does instead
SINGLE_INPUT_OPTIONS = {
    "stream": "a multi-input table is read whole (its tokenizers and vocabularies are fitted "
              "on the training rows in memory); `data.stream` streams single-input tables: "
              "remove it",
    "standardize": "each numeric input standardises its own columns: set "
                   "`model.inputs.<name>.standardize` instead",
    "impute": "a missing category is the unknown category and a missing number an error "
              "naming its cell; fill the numbers in, or leave `data.impute` out",
    "classes": "`data.classes` picks classes of bundled datasets and single-input tables; "
               "filter the table's rows instead",
}


def multi_input_data_problems(recipe: Recipe) -> list[Problem]:
    """The `data:` options a multi-input model's table reader would not honour: each is an
    error where it is written, never an option silently dropped."""
    data = recipe.data
    if recipe.model.inputs is None or data is None:
        return []
    given = {"stream": data.stream is not None, "standardize": data.standardize is not None,
             "impute": data.impute != "refuse", "classes": data.classes is not None}
    return [Problem(f"data.{option}", f"with `model.inputs`, {why}", "unsupported")
            for option, why in SINGLE_INPUT_OPTIONS.items() if given[option]]
