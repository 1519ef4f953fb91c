"""Branches: `concat` (parallel block lists, outputs joined) and `dense_concat` (DenseNet's
connection: a block list's output appended to its input along the channels). Their modules,
source emitters (each child written by the writer and checked on its own) and examples live
here."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.pysource import call, literal
from blocks.layers.base import module_getattr, torch_modules
from blocks.layers.composites import (
    BlockList,
    Composite,
    LayerTrace,
    build_sequence,
    trace_sequence,
)
from blocks.spec import counts
from blocks.spec.registry import register_block
from blocks.spec.shapes import Shape, fmt_shape

CONCAT = '''
class Concat(nn.Module):
    """Parallel branches on the same input, their outputs concatenated on axis `dim`."""

    def __init__(self, branches: list[nn.Module], dim: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=self.dim)
'''

DENSE_CONCAT = '''
class DenseConcat(nn.Module):
    """DenseNet's connection: the input, then body(x), on the channel axis."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)
'''


@torch_modules("ConcatModule", "DenseConcatModule")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    class ConcatModule(nn.Module):
        """`torch.cat([branch(x) for branch in branches], dim)`."""

        def __init__(self, branches: list[nn.Module], dim: int) -> None:
            super().__init__()
            self.branches = nn.ModuleList(branches)
            self.dim = dim

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([branch(x) for branch in self.branches], dim=self.dim)

        def emit_source(self, writer, path: str):
            name = writer.helper("Concat", CONCAT)
            branches = writer.children(self.branches, f"{path}.branches")
            return call(name, [call("", [expr for _, expr in branches], "[", "]"),
                               literal(self.dim, f"{path}.dim")])

    class DenseConcatModule(nn.Module):
        """`torch.cat([x, body(x)], 1)`: DenseNet's layer, its input passed on beside its output."""

        def __init__(self, body: nn.Module) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, self.body(x)], dim=1)

        def emit_source(self, writer, path: str):
            name = writer.helper("DenseConcat", DENSE_CONCAT)
            return call(name, [writer.construct(self.body, f"{path}.body")])

    return {"ConcatModule": ConcatModule, "DenseConcatModule": DenseConcatModule}


def _joined(shapes: list[Shape], axis: int, what: str) -> Shape:
    """The shape of `torch.cat` of `shapes` on per-sample `axis`, or a ShapeError naming the clash."""
    first = shapes[0]
    for index, shape in enumerate(shapes[1:], start=1):
        if len(shape) != len(first) or any(
                a != b for i, (a, b) in enumerate(zip(shape, first, strict=True)) if i != axis):
            raise ShapeError(f"{what} {index} gives {fmt_shape(shape)} but {what} 0 gives "
                             f"{fmt_shape(first)}; they are concatenated on axis {axis}, so every "
                             "other axis must agree")
    return (*first[:axis], sum(s[axis] for s in shapes), *first[axis + 1:])


@register_block("concat")
class Concat(Composite):
    """Several block lists on the same input, outputs concatenated on per-sample axis `dim`
    (0: channels of `[C, H, W]`, features of `[F]`): Inception modules, SqueezeNet's fire."""

    example = ([3, 32, 32], {"type": "concat", "branches": [
        [{"type": "conv2d", "out_channels": 8, "kernel_size": 1}],
        [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}]]})

    branches: Annotated[list[BlockList], Field(min_length=2)] = Field(
        description="two or more block lists, each applied to the same input")
    dim: int = Field(0, description="per-sample axis the outputs are joined on (0: channels)")

    def _traces(self, shape: Shape, path: str = "", depth: int = 0) -> tuple[list[LayerTrace], list[Shape]]:
        traces, outs = [], []
        for index, blocks in enumerate(self.branches):
            try:
                branch, out = trace_sequence(blocks, shape, f"{path}.branches[{index}]", depth)
            except ShapeError as err:
                err.path = f".branches[{index}]{err.path}"
                raise
            traces += branch
            outs.append(out)
        return traces, outs

    def _axis(self, rank: int) -> int:
        if not -rank <= self.dim < rank:
            raise ShapeError(f"dim {self.dim} is out of range for branch outputs of rank {rank}")
        return self.dim % rank

    def trace(self, shape: Shape, path: str, depth: int) -> tuple[Shape, list[LayerTrace]]:
        traces, outs = self._traces(shape, path, depth)
        return _joined(outs, self._axis(len(outs[0])), "branch"), traces

    def output_shape(self, shape: Shape) -> Shape:
        return self.trace(shape, "", 0)[0]

    def children_traces(self, shape: Shape, path: str, depth: int) -> list[LayerTrace]:
        return self.trace(shape, path, depth)[1]

    def child_module(self, kind: str, rep: int | None, index: int) -> tuple[str, object] | None:
        """Module name (relative) and block of child `kind[index]`, for summaries."""
        if kind.startswith("branches[") and rep is None:
            branch = int(kind[len("branches["):-1])
            if branch < len(self.branches) and index < len(self.branches[branch]):
                return f"branches.{branch}.{index}", self.branches[branch][index]
        return None

    def build(self, shape: Shape) -> nn.Module:
        outs = self._traces(shape)[1]
        branches = [build_sequence(blocks, shape)[0] for blocks in self.branches]
        return modules().ConcatModule(branches, self._axis(len(outs[0])) + 1)

    def parameter_count(self, shape: Shape) -> counts.Counts | None:
        return counts.total(counts.sequence(blocks, shape)[0] for blocks in self.branches)


@register_block("dense_concat")
class DenseConcat(Composite):
    """`blocks` whose output is concatenated to their input on the channel axis (DenseNet):
    `[C, H, W]` -> `[C + growth, H, W]`. Inside `repeat`, each layer sees every earlier output."""

    example = ([8, 16, 16], {"type": "dense_concat", "blocks": [
        "batchnorm2d", "relu", {"type": "conv2d", "out_channels": 4, "kernel_size": 3,
                                "padding": 1}]})

    blocks: BlockList = Field(description="blocks whose output is appended to their input")

    def _body(self, shape: Shape, path: str = "", depth: int = 0) -> tuple[list[LayerTrace], Shape]:
        try:
            return trace_sequence(self.blocks, shape, f"{path}.blocks", depth)
        except ShapeError as err:
            err.path = f".blocks{err.path}"
            raise

    def trace(self, shape: Shape, path: str, depth: int) -> tuple[Shape, list[LayerTrace]]:
        traces, out = self._body(shape, path, depth)
        if len(out) != len(shape) or out[1:] != shape[1:]:
            raise ShapeError(f"blocks turn {fmt_shape(shape)} into {fmt_shape(out)}; their output is "
                             "concatenated to the input on the channel axis, so the other axes "
                             f"must stay {fmt_shape(shape[1:])}")
        return (shape[0] + out[0], *shape[1:]), traces

    def output_shape(self, shape: Shape) -> Shape:
        return self.trace(shape, "", 0)[0]

    def children_traces(self, shape: Shape, path: str, depth: int) -> list[LayerTrace]:
        return self.trace(shape, path, depth)[1]

    def child_module(self, kind: str, rep: int | None, index: int) -> tuple[str, object] | None:
        if kind == "blocks" and rep is None and index < len(self.blocks):
            return f"body.{index}", self.blocks[index]
        return None

    def build(self, shape: Shape) -> nn.Module:
        return modules().DenseConcatModule(build_sequence(self.blocks, shape)[0])

    def parameter_count(self, shape: Shape) -> counts.Counts | None:
        return counts.sequence(self.blocks, shape)[0]


EXAMPLE_RECIPES: dict[str, tuple[str, str]] = {  # title -> (what it shows, recipe)
    "concat": ("Two branches on the same input, joined on the channels (an Inception module).", """\
model:
  input: {shape: [3, 32, 32]}
  backbone:
    - type: concat
      branches:
        - [{type: conv2d, out_channels: 8, kernel_size: 1}, relu]
        - [{type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}, relu]
    - global_avgpool
  head: {type: softmax, classes: 10}
"""),
    "dense_concat": ("DenseNet's connection: each layer's 4 new channels appended to its input.", """\
model:
  input: {shape: [8, 16, 16]}
  backbone:
    - type: repeat
      times: 3
      blocks:
        - type: dense_concat
          blocks: [batchnorm2d, relu, {type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}]
    - global_avgpool
  head: {type: softmax, classes: 10}
"""),
}

__getattr__ = module_getattr(__name__, modules)
