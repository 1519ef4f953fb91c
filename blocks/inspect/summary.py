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

This module is the public face of summaries; the work is done, one job each, by
`summary_collect` (`summarize`), `summary_probe` (the torchinfo pass), `summary_rows` (rows and
located errors), `summary_data` (`Summary`, `LayerRow` and their text forms) and
`summary_compare` (`compare`).
"""

from __future__ import annotations

from blocks.inspect.summary_collect import SummaryTarget, summarize
from blocks.inspect.summary_compare import ComparedRow, Comparison, compare
from blocks.inspect.summary_data import LayerRow, Summary, SummaryError
from blocks.inspect.summary_rows import spec_module_name

__all__ = [
    "ComparedRow",
    "Comparison",
    "LayerRow",
    "Summary",
    "SummaryError",
    "SummaryTarget",
    "compare",
    "spec_module_name",
    "summarize",
]
