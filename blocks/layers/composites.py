"""Block lists and the block types made of block lists: `residual` and `repeat`; and `torch`,
any `torch.nn` layer by name. The residual connection's module, its source emitter and helper
class live here; `repeat` builds an `nn.Sequential` and `torch` a named torch class."""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn, torch
from blocks.core.limits import MAX_REPEAT_TIMES
from blocks.core.numbers import size_type
from blocks.core.pysource import call
from blocks.layers.base import module_getattr, torch_modules
from blocks.spec import counts
from blocks.spec.registry import AnyBlock, Block, register_block, unknown_name_message
from blocks.spec.shapes import Shape, fmt_shape
from blocks.spec.trace import Composite, LayerTrace, trace_sequence

BlockList = Annotated[list[AnyBlock], Field(min_length=1)]

RESIDUAL = '''
class Residual(nn.Module):
    """body(x) + shortcut(x): a residual connection."""

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)
'''


@torch_modules("ResidualModule")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    class ResidualModule(nn.Module):
        """`body(x) + shortcut(x)`; the shortcut is `nn.Identity` when shapes already match."""

        def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
            super().__init__()
            self.body = body
            self.shortcut = shortcut

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x) + self.shortcut(x)

        def emit_source(self, writer, path: str):
            name = writer.helper("Residual", RESIDUAL)
            return call(name, [expr for _, expr in writer.children(self, path)])

    return {"ResidualModule": ResidualModule}


def build_sequence(blocks: Sequence[Block], shape: Shape) -> tuple[nn.Sequential, Shape]:
    modules = []
    for block in blocks:
        modules.append(block.build(shape))
        shape = block.output_shape(shape)
    return nn.Sequential(*modules), shape


def _nested(field: str, err: ShapeError) -> ShapeError:
    err.path = f".{field}{err.path}"
    return err


@register_block("residual")
class Residual(Composite):
    """`blocks` added to their input. `shortcut:` (e.g. 1x1 conv + batchnorm) maps the input to
    the body's output shape; without it, a shape change gets an automatic projection
    (a strided 1x1 conv for `[C, *spatial]`, a linear layer for `[features]`)."""

    example = ([16, 8, 8], {"type": "residual", "blocks": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, "relu"]})

    blocks: BlockList = Field(
        description="the branch; its output is added to the input (or to the shortcut's output)")
    shortcut: list[AnyBlock] | None = Field(
        None, description="blocks mapping the input to the branch's shape (default: identity)")

    def trace(self, shape: Shape, path: str, depth: int) -> tuple[Shape, list[LayerTrace]]:
        try:
            traces, body_out = trace_sequence(self.blocks, shape, f"{path}.blocks", depth)
        except ShapeError as err:
            raise _nested("blocks", err) from None
        if self.shortcut:
            try:
                short, short_out = trace_sequence(self.shortcut, shape, f"{path}.shortcut", depth)
            except ShapeError as err:
                raise _nested("shortcut", err) from None
            if short_out != body_out:
                raise ShapeError(f"shortcut output {fmt_shape(short_out)} does not match the "
                                 f"blocks' output {fmt_shape(body_out)}; they are added")
            traces += short
        elif body_out != shape:
            _projection_strides(shape, body_out)  # raises when no projection fits
        return body_out, traces

    def output_shape(self, shape: Shape) -> Shape:
        return self.trace(shape, "", 0)[0]

    def children_traces(self, shape: Shape, path: str, depth: int) -> list[LayerTrace]:
        return self.trace(shape, path, depth)[1]

    def build(self, shape: Shape) -> nn.Module:
        body, body_out = build_sequence(self.blocks, shape)
        if self.shortcut:
            shortcut: nn.Module = build_sequence(self.shortcut, shape)[0]
        elif body_out == shape:
            shortcut = nn.Identity()
        else:
            strides = _projection_strides(shape, body_out)
            if len(shape) == 1:
                shortcut = nn.Linear(shape[0], body_out[0])
            else:
                conv = nn.Conv1d if len(shape) == 2 else nn.Conv2d
                shortcut = conv(shape[0], body_out[0], 1, stride=strides)
        return modules().ResidualModule(body, shortcut)

    def parameter_count(self, shape: Shape) -> counts.Counts | None:
        body, body_out = counts.sequence(self.blocks, shape)
        if self.shortcut:
            shortcut = counts.sequence(self.shortcut, shape)[0]
        elif body_out == shape:
            shortcut = counts.NOTHING  # nn.Identity
        elif len(shape) == 1:
            shortcut = counts.linear(shape[0], body_out[0])
        else:  # the 1x1 projection `build` makes
            shortcut = counts.conv(shape[0], body_out[0], (1,) * (len(shape) - 1))
        return counts.total((body, shortcut))


def _projection_strides(shape: Shape, target: Shape) -> tuple[int, ...]:
    """Strides of a 1x1 projection from `shape` to `target`, or a `ShapeError` saying why not."""
    why = (f"blocks change the shape {fmt_shape(shape)} -> {fmt_shape(target)} and no automatic "
           "projection fits; give a `shortcut:` block list")
    if len(shape) != len(target) or len(shape) not in (1, 2, 3):
        raise ShapeError(why)
    strides = []
    for size, out in zip(shape[1:], target[1:], strict=True):
        stride = math.ceil(size / out)
        if math.ceil(size / stride) != out:
            raise ShapeError(why)
        strides.append(stride)
    return tuple(strides)


@register_block("repeat")
class Repeat(Composite):
    """`blocks` repeated `times` times in sequence, each repetition with its own weights."""

    example = ([16, 8, 8], {"type": "repeat", "times": 2, "blocks": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, "relu"]})

    times: size_type(1, MAX_REPEAT_TIMES) = Field(
        description="how many copies, each with its own weights")  # type: ignore[valid-type]
    blocks: BlockList = Field(description="the blocks repeated")

    def trace(self, shape: Shape, path: str, depth: int) -> tuple[Shape, list[LayerTrace]]:
        traces: list[LayerTrace] = []
        for rep in range(self.times):
            try:
                reps, shape = trace_sequence(self.blocks, shape, f"{path}.blocks#{rep}", depth)
            except ShapeError as err:
                err.reason += f" (in repetition {rep + 1} of {self.times})"
                raise _nested("blocks", err) from None
            traces += reps
        return shape, traces

    def output_shape(self, shape: Shape) -> Shape:
        return self.trace(shape, "", 0)[0]

    def children_traces(self, shape: Shape, path: str, depth: int) -> list[LayerTrace]:
        return self.trace(shape, path, depth)[1]

    def build(self, shape: Shape) -> nn.Module:
        stages = []
        for _ in range(self.times):
            stage, shape = build_sequence(self.blocks, shape)
            stages.append(stage)
        return nn.Sequential(*stages)

    def parameter_count(self, shape: Shape) -> counts.Counts | None:
        params = buffers = 0
        for rep in range(self.times):
            found, out = counts.sequence(self.blocks, shape)
            if found is None:
                return None
            if out == shape:  # every later repetition starts from the same shape: the same counts
                return params + found[0] * (self.times - rep), buffers + found[1] * (self.times - rep)
            params, buffers, shape = params + found[0], buffers + found[1], out
        return params, buffers


_NOT_LAYERS = {"Module", "Container", "Sequential", "ModuleList", "ModuleDict", "ParameterList",
               "ParameterDict", "DataParallel"}


#: constructor keywords that place a layer: blocks decides these for the whole model
PLACEMENT_KWARGS = frozenset({"device", "dtype", "factory_kwargs"})


@functools.cache
def _torch_layers() -> dict[str, type[nn.Module]]:
    """`torch.nn` layer classes by name: no containers, no losses, no lazy layers."""
    return {
        name: obj for name, obj in vars(importlib.import_module("torch.nn")).items()
        if isinstance(obj, type) and issubclass(obj, nn.Module) and not name.startswith(("_", "Lazy"))
        and name not in _NOT_LAYERS and not issubclass(obj, nn.modules.loss._Loss)
    }


@register_block("torch")
class TorchLayer(Block):
    """Any `torch.nn` layer by class name, for what the catalogue lacks. Sizes are *not*
    inferred here (pass them in `kwargs`); the output shape comes from a meta-device forward."""

    example = ([3, 32, 32], {"type": "torch", "layer": "Upsample",
                             "kwargs": {"scale_factor": 2, "mode": "nearest"}})

    layer: str = Field(description="a torch.nn class name, e.g. Upsample")
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="its constructor arguments, sizes included")

    @field_validator("layer")
    @classmethod
    def _known_layer(cls, name: str) -> str:
        layers = _torch_layers()
        if name not in layers:
            if name.startswith("Lazy"):
                raise ValueError(f"lazy layers are not allowed ({name}); blocks infers sizes itself")
            raise ValueError(unknown_name_message("torch.nn layer", name, layers))
        return name

    @model_validator(mode="after")
    def _kwargs_fit(self) -> TorchLayer:
        placed = sorted(set(self.kwargs) & PLACEMENT_KWARGS)
        if placed:
            raise ValueError(f"kwargs: {', '.join(placed)} cannot be set per layer: blocks builds "
                             "every layer on one device and dtype (`train.device`, and the "
                             "model's dtype), so a model never mixes devices")
        init = _torch_layers()[self.layer].__init__
        try:
            inspect.signature(init).bind(None, **self.kwargs)
        except TypeError as err:
            raise ValueError(f"kwargs do not fit torch.nn.{self.layer}: {err}") from None
        return self

    def output_shape(self, shape: Shape) -> Shape:
        try:
            with torch.device("meta"):
                module = _torch_layers()[self.layer](**self.kwargs)
            # eval mode: batch statistics of a batch of one must not decide the shape
            out = module.eval()(torch.empty((1, *shape), device="meta"))
        except Exception as err:  # noqa: BLE001 - any failure is a shape/argument problem
            raise ShapeError(f"torch.nn.{self.layer}({_kwargs_repr(self.kwargs)}) failed on this "
                             f"input: {err}") from None
        if not isinstance(out, torch.Tensor):
            raise ShapeError(f"torch.nn.{self.layer} returns {type(out).__name__}, not a tensor")
        return tuple(out.shape[1:])

    def build(self, shape: Shape) -> nn.Module:
        return _torch_layers()[self.layer](**self.kwargs)


def _kwargs_repr(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


__getattr__ = module_getattr(__name__, modules)
