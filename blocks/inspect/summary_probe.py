"""The probe run: torchinfo's forward pass on a copy of the model, never on the model itself.

The probe is a structural copy whose parameters and buffers live on the `meta` device (no memory,
no compute; run without importing TorchDynamo: `blocks.inspect.meta_kernels`), or, for modules
whose forward cannot run on `meta`, a real deep copy; the user's hooks are stripped from it.
Our own hooks record which module is running (to locate a failure), which ones finished, their
first shapes and the model's outputs. Mult-adds are torchinfo's,
corrected where it undercounts: linears on tokens or channels-last maps, multi-head attention.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torchinfo
from torch import nn

from blocks.builder.model import BlocksModel
from blocks.inspect.meta_kernels import run_without_dynamo_import
from blocks.spec.model import SINGLE_HEAD


def probe_input_dtype(model: nn.Module, declared: torch.dtype) -> torch.dtype:
    """The dtype of the probe's input: the declared one, or for a floating input the model's
    own floating dtype (a bf16 model gets a bf16 input)."""
    if not declared.is_floating_point:
        return declared
    floating = next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), None)
    return floating or declared


@dataclass
class ProbeRun:
    """What one torchinfo pass saw: its layer infos, totals, shapes and, if it failed, where."""

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


def probe_run(model: nn.Module, owned: bool, shape: tuple[int, ...], dtype: torch.dtype,
              how: str) -> ProbeRun:
    """torchinfo on a probe of `model` (`how`: "meta", "copy", or "auto": meta, then a copy if
    the forward cannot run on meta). `owned`: `model` was built on meta by `summarize`."""
    attempts = ["meta", "copy"] if how == "auto" else [how]
    run: ProbeRun | None = None
    for attempt in attempts:
        if attempt == "meta":
            probe = model if owned else _meta_clone(model)
            device = torch.device("meta")
        else:
            if owned:  # a spec built on meta: build it for real (allocates its weights)
                probe = BlocksModel(model.spec)
                floating = probe_input_dtype(model, torch.float32)
                if floating != torch.float32:
                    probe.to(dtype=floating)
            else:
                probe = _strip_hooks(copy.deepcopy(model))
            device = _device_of(probe)
        x = _zeros(shape, dtype, device)
        if attempt == "meta":
            run = run_without_dynamo_import(partial(_torchinfo_pass, probe, x, str(device)),
                                            failed=lambda result: result.error is not None)
        else:
            run = _torchinfo_pass(probe, x, str(device))
        if run.error is None or not _meta_specific(run.error) or attempt == attempts[-1]:
            return run
    assert run is not None
    return run


def _zeros(shape: Any, dtype: Any, device: torch.device) -> Any:
    """The probe batch: one tensor, or a dict by input name (a multi-input model)."""
    if isinstance(shape, dict):
        return {name: torch.zeros(s, dtype=dtype[name], device=device) for name, s in shape.items()}
    return torch.zeros(shape, dtype=dtype, device=device)


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


def _torchinfo_pass(probe: nn.Module, x: torch.Tensor, device: str) -> ProbeRun:
    """torchinfo's forward pass on the probe, plus our own hooks: which block is running
    (for errors), which ones finished, and every output of the model (dicts included)."""
    names = {id(m): n for n, m in probe.named_modules()}
    run = ProbeRun(device=device, names=names, infos=[],
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
    run.total_mult_adds = (sum(leaf_macs(info) for info in run.infos if info.is_leaf_layer)
                           + sum(run.attention_macs.values()))
    run.activation_bytes = int(stats.total_output_bytes)
    return run


def leaf_macs(info: Any) -> int:
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

