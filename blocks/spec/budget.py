"""How big a spec is before anything is built: block count, nesting, parameters and bytes.

`check_blocks` walks the spec (no shape inference, no torch) and refuses a model whose blocks,
once `repeat` is expanded, exceed `BLOCKS_MAX_BLOCKS`, or whose composites nest deeper than
`MAX_BLOCK_NESTING`: a 210-byte `repeat: {times: 10000, blocks: [repeat ...]}` must not hang.

`footprint` counts the exact parameters and buffers from each block type's static rule
(`Block.parameter_count`, no torch), and builds on the `meta` device (no memory, no compute)
only the blocks whose rule is unknown (plugins, `torch` layers, library backbones).
`check_footprint` refuses a model whose weights would not fit in `BLOCKS_MAX_MODEL_BYTES`
(default: the machine's physical memory) before any real allocation.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from blocks.core.errors import Problem, SpecError
from blocks.core.limits import MAX_BLOCK_NESTING, human_bytes, max_blocks, max_model_bytes
from blocks.spec import counts
from blocks.spec.registry import Block
from blocks.spec.trace import LayerTrace

if TYPE_CHECKING:
    import torch

    from blocks.spec.model import ModelSpec, ShapeReport


# --- block count and nesting ------------------------------------------------------------------
def _children(block: Block) -> list[tuple[str, list[Block]]]:
    """The nested block lists of a composite block: any field holding a block, a list of
    blocks, or a list of block lists (`concat`'s branches, named `branches[i]`)."""
    out = []
    for name in _maybe_blocks(type(block)):
        value = getattr(block, name, None)
        if isinstance(value, Block):
            out.append((name, [value]))
        elif isinstance(value, list | tuple) and value:
            if all(isinstance(v, Block) for v in value):
                out.append((name, list(value)))
            elif all(isinstance(v, list | tuple) and v and all(isinstance(b, Block) for b in v)
                     for v in value):
                out += [(f"{name}[{index}]", list(v)) for index, v in enumerate(value)]
    return out


@functools.cache
def _maybe_blocks(cls: type[Block]) -> tuple[str, ...]:
    """The fields of `cls` whose type does not rule out blocks (not numbers, text, literals):
    a leaf block's fields are read once per class, not once per block per validation."""
    return tuple(name for name, field in cls.model_fields.items() if not _plain(field.annotation))


def _plain(annotation: Any) -> bool:
    if annotation in (int, float, bool, str, type(None)):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return True
    if origin is typing.Union or origin is types.UnionType or origin is typing.Annotated:
        args = typing.get_args(annotation)
        return all(_plain(a) for a in (args[:1] if origin is typing.Annotated else args))
    if origin is list or origin is tuple:
        return all(a is Ellipsis or _plain(a) for a in typing.get_args(annotation))
    return origin is dict  # a mapping is never read as blocks


def _count(blocks: list[Block], path: str, depth: int, limit: int) -> int:
    """Blocks in `blocks` once expanded; raises at the first composite nested too deep."""
    total = 0
    for index, block in enumerate(blocks):
        inner = 0
        # a leaf (no field can hold blocks) is read no further; spec paths spelled out when needed
        children = _children(block) if _maybe_blocks(type(block)) else ()
        if children and depth >= MAX_BLOCK_NESTING:
            raise SpecError(Problem(f"{path}[{index}]", f"composite blocks are nested more than "
                                    f"{MAX_BLOCK_NESTING} deep here; flatten the structure "
                                    "(a `repeat` of a list instead of nested ones)", "too_deep"))
        for name, nested in children:
            inner += _count(nested, f"{path}[{index}].{name}", depth + 1, limit)
        times = getattr(block, "times", 1) if block.type == "repeat" else 1
        total += 1 + times * inner
        if total > limit:
            raise SpecError(Problem(f"{path}[{index}]", f"the model would have more than {limit:,} "
                                    f"blocks once `repeat` is expanded (here: "
                                    f"{_expanded(block, times, inner)}); set BLOCKS_MAX_BLOCKS to "
                                    "raise the limit", "too_many_blocks"))
    return total


def _expanded(block: Block, times: int, inner: int) -> str:
    if block.type == "repeat":
        return f"a repeat of {inner:,} block(s), {times:,} times"
    return f"a {block.type} holding {inner:,} block(s)"


def check_blocks(spec: ModelSpec, prefix: str = "model") -> int:
    """The number of blocks in `spec.backbone` once expanded; a located error past the limits."""
    total = _count(list(spec.backbone), f"{prefix}.backbone", 0, max_blocks())
    for name, spec_input in (spec.inputs or {}).items():
        if spec_input.encoder is not None:
            total += _count(list(spec_input.encoder), f"{prefix}.inputs.{name}.encoder", 0,
                            max_blocks() - total)
    return total


# --- parameters and bytes ---------------------------------------------------------------------
@dataclass(frozen=True)
class Footprint:
    """Parameters and buffers a spec's model would hold, and their bytes in `dtype`."""

    params: int
    buffers: int
    element_size: int
    largest: tuple[str, int] = ("", 0)  # the spec path holding the most parameters, and how many

    @property
    def bytes(self) -> int:
        return (self.params + self.buffers) * self.element_size

    def describe(self) -> str:
        return (f"{self.params:,} parameters ({human_bytes(self.bytes)} with buffers, "
                f"{self.element_size} bytes each)")


def footprint(spec: ModelSpec, prefix: str = "model", dtype: torch.dtype | None = None,
              shapes: ShapeReport | None = None) -> Footprint:
    """Exact parameter and buffer counts (preprocessing included) and their bytes in `dtype`
    (default: what `build` gives, the input's floating dtype or float32), block by block.
    `shapes`: the spec's shape inference when the caller has just run it."""
    if shapes is None:
        shapes = spec.infer_shapes(prefix=prefix)
    size = (spec.input.weight_element_size if spec.input is not None else 4) if dtype is None else dtype.itemsize
    params = buffers = 0
    largest: tuple[Any, int] = (None, 0)  # where (a trace, a head name, "preprocess"), how many
    if spec.preprocess is not None:
        params, buffers = spec.preprocess.parameter_count()
        largest = ("preprocess", params)
    # (block, input shape, where), the spec path spelled out only when it is reported
    parts: list[tuple[Any, tuple[int, ...], Any]] = [
        (layer.block, layer.input_shape, layer) for layer in shapes.layers if layer.depth == 0]
    parts += [(head, shapes.features, (name,)) for name, head in spec.head_specs.items()]
    if shapes.inputs is not None:  # a multi-input model: each encoder, then the combiner
        for name, layers in shapes.inputs.encoders.items():
            parts += [(layer.block, layer.input_shape, f"inputs.{name}.encoder"
                       f"{layer.path[len(f'inputs.{name}.encoder'):]}")
                      for layer in layers if layer.depth == 0]
        for spec_input in spec.inputs.values():  # numeric standardisation: mean and std buffers
            if getattr(spec_input, "standardize", False) and spec_input.mean is not None:
                buffers += 2 * len(spec_input.mean)
        found = spec.combiner.parameter_count(shapes.inputs.encoded)
        params, buffers = params + found[0], buffers + found[1]
    cache: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}
    for block, shape, at in parts:
        found = counts.of(block, shape)
        if found is None:
            found = _counts(block, tuple(shape), _where(prefix, spec, at), cache)
        params += found[0]
        buffers += found[1]
        if found[0] > largest[1]:
            largest = (at, found[0])
    where = "" if largest[0] is None else _where(prefix, spec, largest[0])
    return Footprint(params, buffers, size, (where, largest[1]))


def _where(prefix: str, spec: ModelSpec, at: Any) -> str:
    """The spec path of a top-level layer (its trace), a head (`(name,)`) or `preprocess`."""
    if isinstance(at, LayerTrace):
        return f"{prefix}.backbone{at.path[len('backbone'):]}"
    if isinstance(at, tuple):
        return f"{prefix}.heads.{at[0]}" if spec.multi_head else f"{prefix}.head"
    return f"{prefix}.{at}"


def _counts(block: Any, shape: tuple[int, ...], where: str,
            cache: dict[tuple[int, tuple[int, ...]], tuple[int, int]]) -> tuple[int, int]:
    """(parameters, buffer values) of one block at one input shape: its static rule, else
    built on `meta` (and only then is torch imported).

    A `repeat` without a static rule is counted repetition by repetition from its blocks, each
    (block, input shape) built once: 10,000 repetitions of a layer cost one `meta` build.
    """
    found = counts.of(block, shape)
    if found is not None:
        return found
    if block.type == "repeat":  # blocks.layers.composites.Repeat
        params = buffers = 0
        for _ in range(block.times):
            for index, child in enumerate(block.blocks):
                count, held = _counts(child, shape, f"{where}.blocks[{index}]", cache)
                params, buffers = params + count, buffers + held
                shape = child.output_shape(shape)
        return params, buffers
    key = (id(block), shape)
    if key not in cache:
        import torch

        try:
            with torch.device("meta"):
                module = block.build(shape)
        except (RuntimeError, ValueError, OverflowError, MemoryError) as err:
            raise SpecError(Problem(where, f"cannot be built at this size: {err}",
                                    "too_large")) from None
        cache[key] = (sum(p.numel() for p in module.parameters()),
                      sum(b.numel() for b in module.buffers()))
    return cache[key]


def check_footprint(spec: ModelSpec, prefix: str = "model", dtype: torch.dtype | None = None,
                    what: str = "build", shapes: ShapeReport | None = None) -> Footprint:
    """`footprint`, refused with the count and bytes when the weights would not fit in memory."""
    found = footprint(spec, prefix, dtype, shapes)
    limit = max_model_bytes()
    if limit is not None and found.bytes > limit:
        where, count = found.largest
        raise SpecError(Problem(where or prefix, f"the model would need {found.describe()}, more "
                                f"than the {human_bytes(limit)} allowed (this machine's memory, or "
                                f"BLOCKS_MAX_MODEL_BYTES); this block alone has {count:,}; refusing "
                                f"to {what} it", "too_large"))
    return found



def check_data_bytes(needed: int, where: str, what: str) -> None:
    """Refuse data that would not fit in memory before allocating it (`needed` bytes)."""
    limit = max_model_bytes()
    if limit is not None and needed > limit:
        raise SpecError(Problem(where, f"{what} would need {human_bytes(needed)} of memory, more than "
                                f"the {human_bytes(limit)} allowed (this machine's memory, or "
                                "BLOCKS_MAX_MODEL_BYTES)", "too_large"))
