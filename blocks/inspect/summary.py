"""`summarize(model_or_spec)`: a torchinfo-backed summary that leaves the model as it found it.

torchinfo does the forward pass and counts mult-adds (corrected where it undercounts: linears on
tokens or channels-last maps, multi-head attention) and activation sizes, on a *probe*: a
structural copy of the model whose parameters and buffers live on the `meta` device (no memory,
no compute). The user's model is only read (`parameters()`, `named_modules()`): it is never
moved, cast, switched between train and eval, or run. A spec is built straight onto `meta`, so a
billion-parameter spec summarises in well under a second with its exact parameter count.

Rows follow the spec, not torch's module tree: `backbone[3].blocks[0] conv2d`, `heads.kind
softmax`, with the shapes of the spec's own shape inference. Totals are computed from the
model's parameters, each tensor counted once however often it is shared.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torchinfo
from torch import nn

from blocks.builder.model import BlocksModel, _as_model_spec
from blocks.core.errors import BlocksError, escape
from blocks.layers.composites import Repeat, Residual
from blocks.recipe.loading import load_recipe
from blocks.spec.budget import check_footprint
from blocks.spec.model import SINGLE_HEAD, ModelSpec
from blocks.spec.recipe import Recipe
from blocks.spec.shapes import fmt_shape
from blocks.train.finetune import apply_freeze

__all__ = ["Comparison", "LayerRow", "Summary", "SummaryError", "compare", "summarize"]

SummaryTarget = nn.Module | ModelSpec | Recipe | dict | str | Path


class SummaryError(BlocksError, RuntimeError):
    """The probe's forward pass failed. `path` names the block, `rows` the rows run before it."""

    def __init__(self, message: str, *, path: str | None = None, module: str | None = None,
                 rows: list[LayerRow] | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.module = module
        self.rows = rows or []


@dataclass
class LayerRow:
    """One row: a spec block (or, for a plain `nn.Module`, a submodule).

    `path` is the spec path (`backbone[3].blocks[0]`, `heads.kind`) or, for plain modules, the
    module's qualified name; `module` is the qualified name in the built model. Shapes are
    per sample (no batch axis). `params` counts the block's whole subtree once; `mult_adds`
    is torchinfo's count for the summary's batch size; `None` where a value is unknown.
    """

    path: str
    type: str
    module: str | None
    module_type: str | None
    input_shape: list[int] | None
    output_shape: list[int] | None
    params: int | None
    trainable_params: int | None
    mult_adds: int | None
    depth: int = 0

    @property
    def label(self) -> str:
        """`backbone[2] conv2d`: where the block is and what it is."""
        return self.path if self.path == self.type else f"{self.path} {self.type}"

    @property
    def frozen(self) -> bool:
        """Has parameters and none of them trains (`train.freeze`, or `requires_grad=False`)."""
        return bool(self.params) and self.trainable_params == 0

    @property
    def marked_label(self) -> str:
        return f"{self.label} (frozen)" if self.frozen else self.label


@dataclass
class Summary:
    """A summary as data; `str()` is the table, `to_dict()`/`to_json()`/`to_markdown()` the rest.

    `param_bytes` counts parameters once each; `buffer_bytes` the buffers (batchnorm statistics);
    `activation_bytes` is torchinfo's forward/backward estimate for `batch_size` samples;
    `tied` lists groups of parameter names that share one tensor (counted once).
    """

    name: str
    input_shape: list[int]
    batch_size: int
    total_params: int
    trainable_params: int
    mult_adds: int
    param_bytes: int
    buffer_bytes: int
    activation_bytes: int
    input_bytes: int
    outputs: dict[str, list[int]]
    rows: list[LayerRow] = field(default_factory=list)
    tied: list[list[str]] = field(default_factory=list)
    probe_device: str = "meta"

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def __str__(self) -> str:
        return self.table()

    def table(self, depth: int | None = None) -> str:
        """The text table; `depth` hides rows nested deeper than that (0 = top-level blocks)."""
        rows = [r for r in self.rows if depth is None or r.depth <= depth]
        header = ("Block", "Module", "Input shape", "Output shape", "Params", "Mult-adds")
        body = [("  " * r.depth + r.marked_label, r.module_type or "?", _batch_shape(r.input_shape),
                 _batch_shape(r.output_shape), _num(r.params), _num(r.mult_adds)) for r in rows]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
        right = {4, 5}

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        rule = "=" * len(line(["x" * w for w in widths]))
        out = [f"Model: {escape(self.name)}   input {_batch_shape(self.input_shape)}   "
               f"(N = batch; mult-adds for batch {self.batch_size})", rule, line(header), rule,
               *(line(cells) for cells in body), rule, *self._totals_lines(), rule]
        return "\n".join(out)

    def _totals_lines(self) -> list[str]:
        lines = [
            f"Total params: {self.total_params:,} ({_human(self.total_params)})",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            f"Mult-adds: {self.mult_adds:,} ({_human(self.mult_adds)})",
            f"Params size: {_mb(self.param_bytes)}; buffers: {_mb(self.buffer_bytes)}; "
            f"input: {_mb(self.input_bytes)}; forward/backward pass: {_mb(self.activation_bytes)}",
            "Outputs: " + ", ".join(f"{k} {_batch_shape(v)}" for k, v in self.outputs.items()),
        ]
        for group in self.tied:
            lines.append(f"Tied (counted once): {' = '.join(group)}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["rows"] = [LayerRow(**row) for row in data.get("rows", [])]
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Summary:
        return cls.from_dict(json.loads(text))

    def to_markdown(self, depth: int | None = None) -> str:
        lines = [f"### {escape(self.name)}", "",
                 "| block | module | input shape | output shape | params | mult-adds |",
                 "|---|---|---|---|---:|---:|"]
        for r in self.rows:
            if depth is not None and r.depth > depth:
                continue
            lines.append(f"| {'&nbsp;' * 2 * r.depth}`{r.marked_label}` | {r.module_type or '?'} | "
                         f"{_batch_shape(r.input_shape)} | {_batch_shape(r.output_shape)} | "
                         f"{_num(r.params)} | {_num(r.mult_adds)} |")
        lines += ["", *(f"- {text}" for text in self._totals_lines())]
        return "\n".join(lines)


# --- summarize -----------------------------------------------------------------------------------
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
    if spec is not None:
        sample = tuple(spec.sample_shape)
        dtype = _input_dtype(model, spec.input.torch_dtype)
    elif input_shape is None:
        raise TypeError(f"summarize needs input_shape=(...) (per sample, no batch axis) for a "
                        f"plain {type(model).__name__}; blocks models and specs know theirs")
    else:
        sample = tuple(int(d) for d in input_shape)
        dtype = input_dtype or _input_dtype(model, torch.float32)

    run = _probe_run(model, owned, (batch_size, *sample), dtype, probe)
    rows = _spec_rows(model, spec) if spec is not None else _module_rows(model, run)
    _fill_stats(rows, model, run)
    if run.error is not None:
        _raise_forward_error(run, rows)
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
        input_bytes=math.prod((batch_size, *sample)) * torch.empty((), dtype=dtype).element_size(),
        outputs=outputs, rows=rows, tied=_tied_groups(model), probe_device=run.device,
    )


def _as_model(target: SummaryTarget) -> tuple[nn.Module, bool]:
    """The module to summarise and whether `summarize` owns it (built here, on `meta`)."""
    if isinstance(target, nn.Module):
        return target, False
    if isinstance(target, str | Path) or isinstance(target, dict) and "model" in target:
        target = load_recipe(target)  # a recipe: its `train.freeze` shows as frozen rows
    spec = _as_model_spec(target)  # type: ignore[arg-type]
    check_footprint(spec, what="summarise")  # the `copy` probe would allocate it for real
    with torch.device("meta"):
        model = BlocksModel(spec)
    if isinstance(target, Recipe) and target.train.freeze:
        apply_freeze(model, target.train.freeze)
    dtype = spec.input.torch_dtype
    if dtype.is_floating_point and dtype != torch.float32:
        model.to(dtype=dtype)  # as `blocks.build` does
    model.check_device()
    return model, True


def _input_dtype(model: nn.Module, declared: torch.dtype) -> torch.dtype:
    if not declared.is_floating_point:
        return declared
    floating = next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), None)
    return floating or declared


def _unique_params(model: nn.Module) -> list[nn.Parameter]:
    return list(model.parameters())  # `parameters()` yields a shared tensor once


def _tied_groups(model: nn.Module) -> list[list[str]]:
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return [group for group in names.values() if len(group) > 1]


# --- the probe run -------------------------------------------------------------------------------
@dataclass
class _Run:
    device: str
    names: dict[int, str]  # id(probe submodule) -> qualified name
    infos: list[Any]  # torchinfo LayerInfo objects, in call order
    total_mult_adds: int = 0
    activation_bytes: int = 0
    attention_macs: dict[str, int] = field(default_factory=dict)  # MHA name -> mult-adds, all calls
    outputs: dict[str, list[int]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    shapes: dict[str, tuple[list[int] | None, list[int] | None]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # qualified name -> module class
    error: BaseException | None = None
    failed_module: str | None = None


def _probe_run(model: nn.Module, owned: bool, shape: tuple[int, ...], dtype: torch.dtype,
               how: str) -> _Run:
    attempts = ["meta", "copy"] if how == "auto" else [how]
    run: _Run | None = None
    for attempt in attempts:
        if attempt == "meta":
            probe = model if owned else _meta_clone(model)
            device = torch.device("meta")
        else:
            if owned:  # a spec built on meta: build it for real (allocates its weights)
                probe = BlocksModel(model.spec)
                floating = _input_dtype(model, torch.float32)
                if floating != torch.float32:
                    probe.to(dtype=floating)
            else:
                probe = _strip_hooks(copy.deepcopy(model))
            device = _device_of(probe)
        run = _torchinfo_pass(probe, torch.zeros(shape, dtype=dtype, device=device), str(device))
        if run.error is None or not _meta_specific(run.error) or attempt == attempts[-1]:
            return run
    assert run is not None
    return run


def _meta_clone(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters and buffers are empty `meta` tensors (tied ones stay
    tied): the module tree and its Python state are copied, the weights are not."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    probe = _strip_hooks(copy.deepcopy(model, memo))
    if isinstance(probe, BlocksModel):
        probe.check_device()
    return probe


def _strip_hooks(probe: nn.Module) -> nn.Module:
    """The user's hooks must not fire on the probe (they would see meta tensors, or log twice)."""
    for module in probe.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
                      module._backward_pre_hooks):
            hooks.clear()
    return probe


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(iter([*module.parameters(), *module.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _meta_specific(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}".lower()
    return isinstance(err, NotImplementedError) or "meta" in text


def _torchinfo_pass(probe: nn.Module, x: torch.Tensor, device: str) -> _Run:
    """torchinfo's forward pass on the probe, plus our own hooks: which block is running
    (for errors), which ones finished, and every output of the model (dicts included)."""
    names = {id(m): n for n, m in probe.named_modules()}
    run = _Run(device=device, names=names, infos=[],
               types={n: type(m).__name__ for n, m in probe.named_modules()})
    stack: list[str] = []
    handles = []

    def enter(module: nn.Module, _args: Any) -> None:
        stack.append(names.get(id(module), "?"))

    def leave(module: nn.Module, args: Any, out: Any) -> None:
        if stack:
            name = stack.pop()
            run.finished.add(name)
            if name not in run.shapes:
                run.shapes[name] = (_first_shape(args), _first_shape(out))

    def attention(module: nn.Module, args: Any, kwargs: dict[str, Any], _out: Any) -> None:
        name = names.get(id(module), "?")
        run.attention_macs[name] = run.attention_macs.get(name, 0) + _attention_macs(
            module, args, kwargs)

    for module in probe.modules():
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
        if isinstance(module, nn.MultiheadAttention):
            handles.append(module.register_forward_hook(attention, with_kwargs=True))
    handles.append(probe.register_forward_hook(
        lambda _m, _a, out: run.outputs.update(_output_shapes(out))))

    cache = torchinfo.torchinfo._cached_forward_pass  # torchinfo keeps the last run per class
    key = type(probe).__name__
    had, previous = key in cache, cache.get(key)
    try:
        stats = torchinfo.summary(probe, input_data=[x], verbose=0, mode="eval",
                                  col_names=("output_size", "num_params", "mult_adds"))
    except Exception as err:  # noqa: BLE001 - reported as a located SummaryError
        run.error = err.__cause__ if err.__cause__ is not None else err
        run.failed_module = stack[-1] if stack else None
        return run
    finally:
        for handle in handles:
            handle.remove()
        if had:
            cache[key] = previous
        else:
            cache.pop(key, None)
    run.infos = list(stats.summary_list)
    run.total_mult_adds = (sum(_leaf_macs(info) for info in run.infos if info.is_leaf_layer)
                           + sum(run.attention_macs.values()))
    run.activation_bytes = int(stats.total_output_bytes)
    return run


def _leaf_macs(info: Any) -> int:
    """torchinfo's mult-adds for a leaf layer, except `nn.Linear` on more than one axis
    (tokens `[N, L, D]`, channels-last maps): torchinfo multiplies its weights by the batch size
    only, we by every output position."""
    if isinstance(info.module, nn.Linear) and len(info.output_size) > 2:
        weights = sum(p.numel() for p in info.module.parameters())
        return weights * math.prod(info.output_size[:-1])
    return int(info.macs)


def _attention_macs(module: nn.MultiheadAttention, args: Any, kwargs: dict[str, Any]) -> int:
    """One `nn.MultiheadAttention` call: the q/k/v and output projections (bias counted as
    torchinfo counts it), plus query-key scores and the weighted sum of values. torchinfo sees
    none of it: the layer has a child (`out_proj`) and so is not a leaf, and its forward never
    calls that child."""
    inputs = [*args, *(kwargs[k] for k in ("query", "key", "value") if k in kwargs)]
    if len(inputs) < 3 or not all(isinstance(t, torch.Tensor) for t in inputs[:3]):
        return 0
    query, key, _ = inputs[:3]
    length, source = (query.shape[-2], key.shape[-2]) if module.batch_first or query.dim() == 2 \
        else (query.shape[0], key.shape[0])
    batch = query.numel() // (length * query.shape[-1])
    dim = module.embed_dim
    bias = 1 if module.in_proj_bias is not None else 0
    projections = (length * (dim + bias) * dim + source * (module.kdim + bias) * dim
                   + source * (module.vdim + bias) * dim
                   + length * sum(p.numel() for p in module.out_proj.parameters()))
    return batch * (projections + 2 * length * source * dim)


def _first_shape(value: Any) -> list[int] | None:
    """Per-sample shape of a tensor, or of the first tensor in a tuple/list/dict."""
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    elif isinstance(value, list | tuple):
        value = next((v for v in value if isinstance(v, torch.Tensor)), None)
    return list(value.shape[1:]) if isinstance(value, torch.Tensor) and value.dim() else None


def _output_shapes(out: Any) -> dict[str, list[int]]:
    if isinstance(out, torch.Tensor):
        return {SINGLE_HEAD: list(out.shape[1:])}
    if isinstance(out, dict):
        return {str(k): list(v.shape[1:]) for k, v in out.items() if isinstance(v, torch.Tensor)}
    if isinstance(out, list | tuple):
        return {str(i): list(v.shape[1:]) for i, v in enumerate(out) if isinstance(v, torch.Tensor)}
    return {}


# --- rows ----------------------------------------------------------------------------------------
def _spec_rows(model: BlocksModel, spec: ModelSpec) -> list[LayerRow]:
    rows: list[LayerRow] = []
    pending: list[tuple[str, LayerRow]] = []  # auto projections, shown after their residual's body
    known = dict(model.named_modules())
    if spec.preprocess is not None:  # raw input -> backbone input; buffers, no parameters
        rows.append(LayerRow("preprocess", "preprocess", "preprocess", "Preprocessing",
                             list(spec.sample_shape), list(model.shapes.input_shape), None, None,
                             None, 0))
    for trace in model.shapes.layers:
        while pending and not trace.path.startswith(pending[-1][0] + "."):
            rows.append(pending.pop()[1])
        name = spec_module_name(spec, trace.path)
        module = known.get(name) if name is not None else None
        rows.append(LayerRow(trace.path, trace.block.type, name if module is not None else None,
                             type(module).__name__ if module is not None else None,
                             list(trace.input_shape), list(trace.output_shape), None, None, None,
                             trace.depth))
        if isinstance(trace.block, Residual) and not trace.block.shortcut and module is not None:
            shortcut = getattr(module, "shortcut", None)
            if shortcut is not None and not isinstance(shortcut, nn.Identity):
                pending.append((trace.path, LayerRow(  # weights without a spec block of their own
                    f"{trace.path}.shortcut", "projection", f"{name}.shortcut",
                    type(shortcut).__name__, list(trace.input_shape), list(trace.output_shape),
                    None, None, None, trace.depth + 1)))
    rows += [row for _, row in reversed(pending)]
    features = list(model.shapes.features)
    for head_name, head in spec.head_specs.items():
        path = f"heads.{head_name}" if spec.multi_head else "head"
        module = known.get(path)
        rows.append(LayerRow(path, head.type, path, type(module).__name__ if module else None,
                             features, list(model.shapes.heads[head_name]), None, None, None, 0))
    return rows


_STEP = re.compile(r"\.(blocks|shortcut|branches\[\d+\])(?:#(\d+))?\[(\d+)\]")


def spec_module_name(spec: ModelSpec, path: str) -> str | None:
    """The qualified module name of the block at spec `path` in a model built from `spec`.

    `backbone[3]` -> `backbone.3`; residual `backbone[3].blocks[1]` -> `backbone.3.body.1` and
    `.shortcut[0]` -> `backbone.3.shortcut.0`; repeat `backbone[4].blocks#1[0]` (repetition 1,
    block 0) -> `backbone.4.1.0`. `None` for children of composites it does not know.
    """
    head = re.match(r"backbone\[(\d+)\]", path)
    if head is None:
        return None
    index = int(head.group(1))
    if index >= len(spec.backbone):
        return None
    block, name, rest = spec.backbone[index], f"backbone.{index}", path[head.end():]
    while rest:
        step = _STEP.match(rest)
        if step is None:
            return None
        kind, rep, idx = step.group(1), step.group(2), int(step.group(3))
        if isinstance(block, Repeat) and kind == "blocks" and rep is not None:
            name, block = f"{name}.{rep}.{idx}", block.blocks[idx]
        elif isinstance(block, Residual) and kind == "blocks" and rep is None:
            name, block = f"{name}.body.{idx}", block.blocks[idx]
        elif isinstance(block, Residual) and kind == "shortcut" and block.shortcut:
            name, block = f"{name}.shortcut.{idx}", block.shortcut[idx]
        elif (child := getattr(block, "child_module", None)) and (found := child(kind, rep, idx)):
            name, block = f"{name}.{found[0]}", found[1]  # composites that name their children
        else:
            return None
        rest = rest[step.end():]
    return name


def _module_rows(model: nn.Module, run: _Run) -> list[LayerRow]:
    """Rows of a plain `nn.Module`: every submodule, with the shapes of its first call."""
    rows = []
    for name, module in model.named_modules():
        if not name:
            continue
        shape_in, shape_out = run.shapes.get(name, (None, None))
        rows.append(LayerRow(name, type(module).__name__, name, type(module).__name__,
                             shape_in, shape_out, None, None, None, name.count(".")))
    return rows


def _fill_stats(rows: list[LayerRow], model: nn.Module, run: _Run) -> None:
    """Params from the user's model (read only); mult-adds from torchinfo's leaf layers, summed
    into every enclosing module so a composite's row shows what its whole subtree costs."""
    macs: dict[str, int] = {}
    for info in run.infos:
        if not info.is_leaf_layer:
            continue
        name = run.names.get(id(info.module))
        if name is None:
            continue
        parts = name.split(".") if name else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            macs[key] = macs.get(key, 0) + _leaf_macs(info)
    for name, count in run.attention_macs.items():
        parts = name.split(".") if name else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            macs[key] = macs.get(key, 0) + count
    modules = dict(model.named_modules())
    for row in rows:
        module = modules.get(row.module) if row.module is not None else None
        if module is None:
            continue
        params = list(module.parameters())
        row.params = sum(p.numel() for p in params)
        row.trainable_params = sum(p.numel() for p in params if p.requires_grad)
        if run.error is None or row.module in run.finished:
            row.mult_adds = macs.get(row.module, 0)


def _raise_forward_error(run: _Run, rows: list[LayerRow]) -> None:
    err = run.error
    assert err is not None
    failed = run.failed_module
    by_module = {r.module: r for r in rows if r.module is not None}
    row = None
    name = failed
    while name is not None:
        if name in by_module:
            row = by_module[name]
            break
        name = name.rsplit(".", 1)[0] if "." in name else (None if name == "" else "")
    done = [r for r in rows if r.module is not None and r.module in run.finished]
    if row is None:
        where = f"module {failed!r}" if failed else "the model's forward"
    elif row.module == row.path:
        where = row.label
    else:
        where = f"{row.label} (module {failed!r}, {run.types.get(failed or '', '?')})"
    lines = [f"summary forward pass failed in {where}: {type(err).__name__}: {err}"]
    if done:
        lines.append("blocks that ran before it:")
        lines += [f"  {'  ' * r.depth}{r.label}: {_batch_shape(r.input_shape)} -> "
                  f"{_batch_shape(r.output_shape)}" for r in done]
    raise SummaryError("\n".join(lines), path=row.path if row else None, module=failed,
                       rows=done) from err


# --- comparing two summaries ---------------------------------------------------------------------
@dataclass
class ComparedRow:
    a: LayerRow | None
    b: LayerRow | None

    @property
    def params_delta(self) -> int:
        return _val(self.b, "params") - _val(self.a, "params")

    @property
    def mult_adds_delta(self) -> int:
        return _val(self.b, "mult_adds") - _val(self.a, "mult_adds")

    @property
    def changed(self) -> bool:
        if self.a is None or self.b is None:
            return True
        return (self.params_delta != 0 or self.mult_adds_delta != 0 or self.a.type != self.b.type
                or self.a.output_shape != self.b.output_shape)


@dataclass
class Comparison:
    """Two summaries aligned block by block (an inserted block does not shift the rest)."""

    a: Summary
    b: Summary
    rows: list[ComparedRow]
    labels: tuple[str, str] = ("A", "B")

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": {"label": self.labels[0], "name": self.a.name, "total_params": self.a.total_params,
                  "mult_adds": self.a.mult_adds},
            "b": {"label": self.labels[1], "name": self.b.name, "total_params": self.b.total_params,
                  "mult_adds": self.b.mult_adds},
            "params_delta": self.b.total_params - self.a.total_params,
            "mult_adds_delta": self.b.mult_adds - self.a.mult_adds,
            "rows": [{"a": r.a.path if r.a else None, "b": r.b.path if r.b else None,
                      "a_type": r.a.type if r.a else None, "b_type": r.b.type if r.b else None,
                      "a_params": _opt(r.a, "params"), "b_params": _opt(r.b, "params"),
                      "params_delta": r.params_delta,
                      "a_mult_adds": _opt(r.a, "mult_adds"), "b_mult_adds": _opt(r.b, "mult_adds"),
                      "mult_adds_delta": r.mult_adds_delta, "changed": r.changed}
                     for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def _cells(self, changed_only: bool) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        la, lb = self.labels
        header = (f"A: {la}", f"B: {lb}", "params A", "params B", "Δ params",
                  "mult-adds A", "mult-adds B", "Δ mult-adds")
        body = []
        for r in self.rows:
            if changed_only and not r.changed:
                continue
            body.append(("  " * _depth(r) + (r.a.label if r.a else "-"),
                         "  " * _depth(r) + (r.b.label if r.b else "-"),
                         _cell(r.a, "params"), _cell(r.b, "params"), _signed(r.params_delta),
                         _cell(r.a, "mult_adds"), _cell(r.b, "mult_adds"),
                         _signed(r.mult_adds_delta)))
        body.append(("total", "total", _num(self.a.total_params), _num(self.b.total_params),
                     _signed(self.b.total_params - self.a.total_params), _num(self.a.mult_adds),
                     _num(self.b.mult_adds), _signed(self.b.mult_adds - self.a.mult_adds)))
        return header, body

    def table(self, changed_only: bool = False) -> str:
        header, body = self._cells(changed_only)
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        rule = "=" * len(line(["x" * w for w in widths]))
        title = f"Comparing A = {self.a.name} with B = {self.b.name}" + (
            " (changed blocks only)" if changed_only else "")
        lines = [title, rule, line(header), rule, *(line(c) for c in body[:-1]), rule,
                 line(body[-1])]
        pct = (f" ({(self.b.total_params / self.a.total_params - 1) * 100:+.1f}%)"
               if self.a.total_params else "")
        lines.append(f"B has {_signed(self.b.total_params - self.a.total_params)} parameters{pct} "
                     f"and {_signed(self.b.mult_adds - self.a.mult_adds)} mult-adds compared to A.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_markdown(self, changed_only: bool = False) -> str:
        header, body = self._cells(changed_only)
        lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
        lines += ["| " + " | ".join(c.strip() or " " for c in cells) + " |" for cells in body]
        return "\n".join(lines)


def compare(a: SummaryTarget | Summary, b: SummaryTarget | Summary, *,
            labels: tuple[str, str] | None = None, **options: Any) -> Comparison:
    """Align two models' rows (by block type and nesting, like a text diff) with the deltas."""
    sa = a if isinstance(a, Summary) else summarize(a, **options)
    sb = b if isinstance(b, Summary) else summarize(b, **options)
    keys_a = [(r.depth, r.type) for r in sa.rows]
    keys_b = [(r.depth, r.type) for r in sb.rows]
    rows: list[ComparedRow] = []
    matcher = difflib.SequenceMatcher(a=keys_a, b=keys_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows += [ComparedRow(sa.rows[i], sb.rows[j]) for i, j in zip(range(i1, i2), range(j1, j2),
                                                                         strict=True)]
        elif tag == "replace":
            n = min(i2 - i1, j2 - j1)
            rows += [ComparedRow(sa.rows[i1 + k], sb.rows[j1 + k]) for k in range(n)]
            rows += [ComparedRow(sa.rows[i], None) for i in range(i1 + n, i2)]
            rows += [ComparedRow(None, sb.rows[j]) for j in range(j1 + n, j2)]
        elif tag == "delete":
            rows += [ComparedRow(sa.rows[i], None) for i in range(i1, i2)]
        else:
            rows += [ComparedRow(None, sb.rows[j]) for j in range(j1, j2)]
    return Comparison(sa, sb, rows, labels or (sa.name, sb.name))


# --- formatting helpers --------------------------------------------------------------------------
def _val(row: LayerRow | None, attr: str) -> int:
    return (getattr(row, attr) or 0) if row is not None else 0


def _opt(row: LayerRow | None, attr: str) -> int | None:
    return getattr(row, attr) if row is not None else None


def _cell(row: LayerRow | None, attr: str) -> str:
    return "-" if row is None else _num(getattr(row, attr))


def _depth(r: ComparedRow) -> int:
    return (r.a or r.b).depth if (r.a or r.b) else 0  # type: ignore[union-attr]


def _batch_shape(shape: Sequence[int] | None) -> str:
    return "?" if shape is None else fmt_shape([None, *shape])


def _num(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _signed(value: int) -> str:
    return f"{value:+,}" if value else "0"


def _human(n: int) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"
