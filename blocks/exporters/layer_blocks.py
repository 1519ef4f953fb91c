"""Torch layers read back as recipe blocks: the vocabulary `from_module` translates with.

`MODULES` maps a catalogue layer class to a function returning its block dict (or the block's
type name, for layers without options); any other `torch.nn` layer becomes the generic `torch`
block, its arguments read back from the layer. The tables after it name the functions and
tensor methods fx records for activations, residual additions and final softmax/sigmoid. A
layer that cannot be written as a block raises `ValueError` saying why.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from blocks.layers.composites import _torch_layers


def _ints(value: Any) -> Any:
    """torch keeps (3, 3); recipes say 3 (or [3, 1] when they differ)."""
    if isinstance(value, tuple):
        return value[0] if len(set(value)) == 1 else list(value)
    return value


def _conv(m: nn.Conv1d | nn.Conv2d) -> dict[str, Any]:
    return {"type": "conv1d" if isinstance(m, nn.Conv1d) else "conv2d",
            "out_channels": m.out_channels, "kernel_size": _ints(m.kernel_size),
            "stride": _ints(m.stride),
            "padding": m.padding if isinstance(m.padding, str) else _ints(m.padding),
            "dilation": _ints(m.dilation), "groups": m.groups, "bias": m.bias is not None,
            "padding_mode": m.padding_mode}


def _batchnorm(m: nn.BatchNorm1d | nn.BatchNorm2d) -> dict[str, Any]:
    return {"type": "batchnorm1d" if isinstance(m, nn.BatchNorm1d) else "batchnorm2d",
            "eps": m.eps, "momentum": m.momentum, "affine": m.affine,
            "track_running_stats": m.track_running_stats}


def _pool(kind: str, m: nn.Module) -> dict[str, Any]:
    block = {"type": kind, "kernel_size": _ints(m.kernel_size), "stride": _ints(m.stride),
             "padding": _ints(m.padding), "ceil_mode": m.ceil_mode}
    if kind.startswith("max"):
        block["dilation"] = _ints(m.dilation)
        if m.return_indices:
            raise ValueError("return_indices=True returns a tuple")
    elif m.count_include_pad is not True:
        block["count_include_pad"] = m.count_include_pad
    return block


def _flatten_module(m: nn.Flatten) -> dict[str, Any]:
    if m.start_dim < 1 or m.end_dim != -1:
        raise ValueError(f"only flattening from a per-sample axis to the end is supported "
                         f"(start_dim={m.start_dim}, end_dim={m.end_dim})")
    return {"type": "flatten", "start_dim": m.start_dim - 1}


def _layernorm(m: nn.LayerNorm) -> dict[str, Any]:
    return {"type": "layernorm", "dims": len(m.normalized_shape), "eps": m.eps,
            "elementwise_affine": m.elementwise_affine, "bias": m.bias is not None}


MODULES: dict[type[nn.Module], Any] = {
    nn.Linear: lambda m: {"type": "linear", "out_features": m.out_features,
                          "bias": m.bias is not None},
    nn.Conv1d: _conv, nn.Conv2d: _conv,
    nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm,
    nn.LayerNorm: _layernorm,
    nn.Embedding: lambda m: {"type": "embedding", "num_embeddings": m.num_embeddings,
                             "embedding_dim": m.embedding_dim, "padding_idx": m.padding_idx,
                             "max_norm": m.max_norm},
    nn.Dropout: lambda m: {"type": "dropout", "p": m.p},
    nn.ReLU: lambda m: "relu", nn.SiLU: lambda m: "silu", nn.Tanh: lambda m: "tanh",
    nn.Sigmoid: lambda m: "sigmoid_act", nn.Identity: lambda m: "identity",
    nn.GELU: lambda m: {"type": "gelu", "approximate": m.approximate},
    nn.LeakyReLU: lambda m: {"type": "leaky_relu", "negative_slope": m.negative_slope},
    nn.MaxPool1d: lambda m: _pool("maxpool1d", m), nn.MaxPool2d: lambda m: _pool("maxpool2d", m),
    nn.AvgPool1d: lambda m: _pool("avgpool1d", m), nn.AvgPool2d: lambda m: _pool("avgpool2d", m),
    nn.AdaptiveAvgPool2d: lambda m: {"type": "adaptive_avgpool2d",
                                     "output_size": _ints(m.output_size)},
    nn.Flatten: _flatten_module,
}

ACTIVATIONS = {torch.relu: "relu", F.relu: "relu", torch.sigmoid: "sigmoid_act",
               F.sigmoid: "sigmoid_act", torch.tanh: "tanh", F.tanh: "tanh", F.silu: "silu"}
METHOD_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid_act", "tanh": "tanh"}
ADDS = {operator.add, operator.iadd, torch.add}
FINAL_ACTIVATION_MODULES = (nn.Softmax, nn.LogSoftmax, nn.Sigmoid)
FINAL_ACTIVATION_FUNCTIONS = {torch.softmax, F.softmax, torch.log_softmax, F.log_softmax,
                              torch.sigmoid, F.sigmoid}


def torch_layer_block(m: nn.Module) -> dict[str, Any]:
    """Any other `torch.nn` layer: the `torch` block type, arguments read back from the layer."""
    name = type(m).__name__
    if _torch_layers().get(name) is not type(m):
        raise ValueError("not a torch.nn layer the `torch` block type can build")
    kwargs = {}
    for arg, param in list(inspect.signature(type(m).__init__).parameters.items())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or arg in ("device", "dtype"):
            continue
        if not hasattr(m, arg):
            if param.default is param.empty:
                raise ValueError(f"cannot read its argument {arg!r} back")
            continue
        value = getattr(m, arg)
        if arg == "bias" and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None
        if param.default is param.empty or value != param.default:
            kwargs[arg] = list(value) if isinstance(value, tuple) else value
    return {"type": "torch", "layer": name, "kwargs": kwargs}

