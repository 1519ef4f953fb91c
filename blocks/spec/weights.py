"""`model.weights`: which weights `build` imports into a new model (the import itself is
`blocks.builder.weights`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from blocks.spec.registry import SpecModel

Format = Literal["auto", "torchvision", "blocks"]


class WeightsSpec(SpecModel):
    """`model.weights`: what `build` imports once the model exists (`blocks train` starts there).
    A relative `file` is relative to the recipe's folder."""

    file: str = Field(
        description="weights file (.safetensors, .pt/.pth state dict) or a run folder")
    format: Format = Field(
        "auto", description="how to read the names: auto, blocks, torchvision or timm")
    strict: bool = Field(
        True, description="every model tensor must be filled (false: fill what pairs, report the rest)")
    only: Literal["backbone"] | None = Field(
        None, description="backbone: import the backbone alone (a new head stays initialised)")
