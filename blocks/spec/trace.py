"""Static shape inference over a block list: each block's shapes, nested composites included.

`Composite` is the one thing the spec side knows about blocks that hold blocks (residual,
repeat, concat, plugins): they report their children's traces, so summaries and size checks see
every nested block without knowing the concrete types (those live in `blocks.layers`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from blocks.core.errors import ShapeError
from blocks.core.limits import MAX_SAMPLE_ELEMENTS
from blocks.core.numbers import MAX_SIZE
from blocks.spec.registry import Block
from blocks.spec.shapes import Shape, fmt_shape


class LayerTrace(NamedTuple):
    """One block's place in the model: relative spec path, the block, its shapes, its depth."""

    path: str
    block: Block
    input_shape: Shape
    output_shape: Shape
    depth: int = 0


def trace_sequence(blocks: Sequence[Block], shape: Shape, prefix: str = "",
                   depth: int = 0) -> tuple[list[LayerTrace], Shape]:
    """Run the shape rules of `blocks` in order, nested composites included.

    Raises `ShapeError` whose `path` points at the failing block relative to this list.
    """
    traces: list[LayerTrace] = []
    for index, block in enumerate(blocks):
        here = f"{prefix}[{index}]"
        try:
            if isinstance(block, Composite):  # shape and children in one pass: linear in nesting
                out, children = block.trace(shape, here, depth + 1)
            else:
                out, children = block.output_shape(shape), []
            if min(out, default=1) <= 0:
                raise ShapeError(f"output shape {fmt_shape(out)} would be empty")
            if max(out, default=1) > MAX_SIZE or math.prod(out) > MAX_SAMPLE_ELEMENTS:
                raise ShapeError(f"output shape {fmt_shape(out)} is too large (at most "
                                 f"{MAX_SIZE:,} per axis and 2**40 values per sample)")
        except ShapeError as err:
            if err.block_type is None:
                err.block_type, err.input_shape = block.type, shape
            err.path = f"[{index}]{err.path}"
            raise
        traces.append(LayerTrace(here, block, shape, out, depth))
        traces.extend(children)
        shape = out
    return traces, shape


class Composite(Block):
    """A block made of nested block lists; reports its children for summaries.

    `trace` gives the output shape and the children's traces from ONE pass over the children;
    composites that override it (all built-in ones do) make shape inference linear in the
    nesting depth. The default, for plugins, asks `output_shape` and `children_traces` apart,
    which traces the children twice (exponential when such composites nest deeply).
    """

    def children_traces(self, shape: Shape, path: str, depth: int) -> list[LayerTrace]:
        return []

    def trace(self, shape: Shape, path: str, depth: int) -> tuple[Shape, list[LayerTrace]]:
        """(output shape, the children's traces under `path` at `depth`); `ShapeError` paths
        relative to this block, as `output_shape` raises them."""
        return self.output_shape(shape), self.children_traces(shape, path, depth)
