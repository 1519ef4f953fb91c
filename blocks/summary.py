"""`summarize(model_or_spec)`: a torchinfo-backed summary that leaves the model as it found it."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torchinfo
from torch import nn

from blocks.builder import BlocksModel, build
from blocks.shapes import fmt_shape
from blocks.spec import ModelSpec, Recipe


@dataclass
class LayerRow:
    path: str
    type: str
    output_shape: list[int]
    params: int
    trainable: bool
    depth: int


@dataclass
class Summary:
    """A summary as data; `str()` is the table, `to_dict()`/`to_json()`/`to_markdown()` the rest."""

    name: str
    input_shape: list[int]
    batch_size: int
    total_params: int
    trainable_params: int
    mult_adds: int
    param_bytes: int
    activation_bytes: int
    outputs: dict[str, list[int]]
    rows: list[LayerRow] = field(default_factory=list)
    table: str = ""

    def __str__(self) -> str:
        return self.table

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("table")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        lines = [f"### {self.name}", "", "| layer | type | output shape | params |",
                 "|---|---|---|---:|"]
        for row in self.rows:
            lines.append(f"| {'&nbsp;' * 2 * row.depth}{row.path} | {row.type} | "
                         f"{fmt_shape(row.output_shape)} | {row.params:,} |")
        lines += ["", f"Total params: {self.total_params:,} (trainable {self.trainable_params:,}); "
                  f"mult-adds: {self.mult_adds:,}; outputs: "
                  + ", ".join(f"{k} {fmt_shape(v)}" for k, v in self.outputs.items())]
        return "\n".join(lines)


def summarize(target: BlocksModel | ModelSpec | Recipe | str, *, batch_size: int = 1,
              depth: int = 4, verbose: int = 0) -> Summary:
    """Summarise a built model or a spec. The model is never moved, cast or switched in mode:
    torchinfo runs on a deep copy."""
    model = target if isinstance(target, nn.Module) else build(
        target.model if isinstance(target, Recipe) else target, device="cpu")
    if not isinstance(model, BlocksModel):
        raise TypeError(f"summarize takes a blocks model or spec, got {type(model).__name__}")
    probe = copy.deepcopy(model).eval()
    shape = (batch_size, *model.shapes.input_shape)
    dtype = model.spec.input.torch_dtype
    stats = torchinfo.summary(
        probe, input_data=[torch.zeros(shape, dtype=dtype, device=model.device)], depth=depth,
        col_names=("output_size", "num_params", "mult_adds"), row_settings=("var_names",),
        verbose=verbose, device=model.device,
    )
    rows = [
        LayerRow(path=info.var_name if info.depth else model.name, type=info.class_name,
                 output_shape=list(info.output_size[1:]) if info.output_size else [],
                 params=info.num_params if not info.is_recursive else 0,
                 trainable=bool(info.trainable_params), depth=info.depth)
        for info in stats.summary_list
    ]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Summary(
        name=model.name, input_shape=list(model.shapes.input_shape), batch_size=batch_size,
        total_params=total, trainable_params=trainable, mult_adds=int(stats.total_mult_adds),
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        activation_bytes=int(stats.total_output_bytes),
        outputs={k: list(v) for k, v in model.shapes.heads.items()}, rows=rows, table=str(stats),
    )
