"""Branches: `concat` (parallel block lists, outputs joined) and `dense_concat` (DenseNet's
connection: a block list's output appended to its input along the channels)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import LazyModule, moved_to, nn
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

impl = LazyModule("blocks.layers.modules.branches")  # the nn.Module classes, imported at the first build


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
        return impl.ConcatModule(branches, self._axis(len(outs[0])) + 1)

    def parameter_count(self, shape: Shape) -> counts.Counts | None:
        return counts.total(counts.sequence(blocks, shape)[0] for blocks in self.branches)


@register_block("dense_concat")
class DenseConcat(Composite):
    """`blocks` whose output is concatenated to their input on the channel axis (DenseNet):
    `[C, H, W]` -> `[C + growth, H, W]`. Inside `repeat`, each layer sees every earlier output."""

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
        return impl.DenseConcatModule(build_sequence(self.blocks, shape)[0])

    def parameter_count(self, shape: Shape) -> counts.Counts | None:
        return counts.sequence(self.blocks, shape)[0]


# the nn.Module classes moved to the torch side; old imports still find them
__getattr__ = moved_to("blocks.layers.modules.branches", {'ConcatModule', 'DenseConcatModule'}, __name__)
