"""`summarize`: what it accepts, and how it puts a summary together from a probe run and rows.

A target (a built model, a spec, a recipe object, file or bundled name, or any `nn.Module`)
becomes a module to read: specs and recipes are built straight onto `meta` (no weights are
allocated, so a billion-parameter spec summarises in well under a second), a user's model is
only read. Totals come from the model's parameters, each tensor counted once however often it is
shared; tied parameters are listed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from blocks.builder.model import BlocksModel, _as_model_spec
from blocks.inspect.meta_kernels import run_without_dynamo_import
from blocks.inspect.summary_data import Summary
from blocks.inspect.summary_probe import probe_input_dtype, probe_run
from blocks.inspect.summary_rows import fill_stats, module_rows, raise_forward_error, spec_rows
from blocks.recipe.loading import load_recipe
from blocks.spec.budget import check_footprint
from blocks.spec.model import ModelSpec
from blocks.spec.recipe import Recipe
from blocks.train.finetune import apply_freeze

SummaryTarget = nn.Module | ModelSpec | Recipe | dict | str | Path


def summarize(target: SummaryTarget, *, batch_size: int = 1, depth: int | None = None,
              input_shape: Sequence[int] | None = None, input_dtype: torch.dtype | None = None,
              probe: str = "auto") -> Summary:
    """Summarise a built model, a spec, a recipe (object, file or bundled name) or any `nn.Module`.

    - Specs are built on the `meta` device: no weights are allocated.
    - A model is only read; torchinfo runs on a meta-device copy of it (`probe="meta"`), or on
      a real deep copy (`probe="copy"`) for modules whose forward cannot run on `meta`;
      `"auto"` tries meta first.
    - Plain `nn.Module`s need `input_shape` (per sample, no batch axis).
    - `depth` keeps rows nested at most that deep (0 = top-level blocks only).
    A forward pass that fails raises `SummaryError` naming the block where it failed.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if probe not in ("auto", "meta", "copy"):
        raise ValueError(f"probe must be 'auto', 'meta' or 'copy', got {probe!r}")
    model, owned = _as_model(target)
    spec: ModelSpec | None = model.spec if isinstance(model, BlocksModel) else None
    if spec is not None and spec.inputs is not None:  # several inputs: a zero batch of each
        sample = tuple(model.shapes.input_shape)  # what the backbone receives
        dtype = {name: probe_input_dtype(model, torch.float32) if d.is_floating_point else d
                 for name, d in model._input_dtypes.items()}
        probe_shape = {name: (batch_size, *s) for name, s in spec.input_shapes.items()}
    elif spec is not None:
        sample = tuple(spec.sample_shape)
        dtype = probe_input_dtype(model, spec.input.torch_dtype)
    elif input_shape is None:
        raise TypeError(f"summarize needs input_shape=(...) (per sample, no batch axis) for a "
                        f"plain {type(model).__name__}; blocks models and specs know theirs")
    else:
        sample = tuple(int(d) for d in input_shape)
        dtype = input_dtype or probe_input_dtype(model, torch.float32)

    if spec is None or spec.inputs is None:
        probe_shape = (batch_size, *sample)
    run = probe_run(model, owned, probe_shape, dtype, probe)
    rows = spec_rows(model, spec) if spec is not None else module_rows(model, run)
    fill_stats(rows, model, run)
    if run.error is not None:
        raise_forward_error(run, rows)
    rows = [r for r in rows if depth is None or r.depth <= depth]

    params = _unique_params(model)
    outputs = ({k: list(v) for k, v in model.shapes.heads.items()} if spec is not None
               else run.outputs)
    return Summary(
        name=model.name if isinstance(model, BlocksModel) else type(model).__name__,
        input_shape=list(sample), batch_size=batch_size,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        mult_adds=run.total_mult_adds,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        activation_bytes=run.activation_bytes,
        input_bytes=_input_bytes(probe_shape, dtype),
        outputs=outputs, rows=rows, tied=_tied_groups(model), probe_device=run.device,
    )


def _input_bytes(shape: tuple[int, ...] | dict, dtype: torch.dtype | dict) -> int:
    if isinstance(shape, dict):
        return sum(_input_bytes(shape[name], dtype[name]) for name in shape)
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def _meta_build(spec: ModelSpec) -> BlocksModel:
    with torch.device("meta"):
        return BlocksModel(spec)


def _as_model(target: SummaryTarget) -> tuple[nn.Module, bool]:
    """The module to summarise and whether `summarize` owns it (built here, on `meta`)."""
    if isinstance(target, nn.Module):
        return target, False
    if isinstance(target, str | Path) or isinstance(target, dict) and "model" in target:
        target = load_recipe(target)  # a recipe: its `train.freeze` shows as frozen rows
    spec = _as_model_spec(target)  # type: ignore[arg-type]
    check_footprint(spec, what="summarise")  # the `copy` probe would allocate it for real
    model = run_without_dynamo_import(lambda: _meta_build(spec))
    if isinstance(target, Recipe) and target.train.freeze:
        apply_freeze(model, target.train.freeze)
    dtype = spec.input.torch_dtype if spec.input is not None else torch.float32
    if dtype.is_floating_point and dtype != torch.float32:
        model.to(dtype=dtype)  # as `blocks.build` does
    model.check_device()
    return model, True


def _unique_params(model: nn.Module) -> list[nn.Parameter]:
    return list(model.parameters())  # `parameters()` yields a shared tensor once


def _tied_groups(model: nn.Module) -> list[list[str]]:
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return [group for group in names.values() if len(group) > 1]

