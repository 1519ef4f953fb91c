"""What a summary is: `LayerRow`s and their totals, as data, and how they read as text.

`Summary` is plain data (it round-trips through `to_dict`/`from_dict` and JSON, which is how
`blocks summary --format json` hands it to other tools); its text table and markdown forms live
here with it so that every view of a summary shows the same rows, labels and totals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from blocks.core.errors import BlocksError, escape
from blocks.inspect.summary_format import fmt_batch_shape, fmt_count, fmt_human, fmt_mb


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
        body = [("  " * r.depth + r.marked_label, r.module_type or "?", fmt_batch_shape(r.input_shape),
                 fmt_batch_shape(r.output_shape), fmt_count(r.params), fmt_count(r.mult_adds)) for r in rows]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
        right = {4, 5}

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        rule = "=" * len(line(["x" * w for w in widths]))
        out = [f"Model: {escape(self.name)}   input {fmt_batch_shape(self.input_shape)}   "
               f"(N = batch; mult-adds for batch {self.batch_size})", rule, line(header), rule,
               *(line(cells) for cells in body), rule, *self._totals_lines(), rule]
        return "\n".join(out)

    def _totals_lines(self) -> list[str]:
        lines = [
            f"Total params: {self.total_params:,} ({fmt_human(self.total_params)})",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            f"Mult-adds: {self.mult_adds:,} ({fmt_human(self.mult_adds)})",
            f"Params size: {fmt_mb(self.param_bytes)}; buffers: {fmt_mb(self.buffer_bytes)}; "
            f"input: {fmt_mb(self.input_bytes)}; forward/backward pass: {fmt_mb(self.activation_bytes)}",
            "Outputs: " + ", ".join(f"{k} {fmt_batch_shape(v)}" for k, v in self.outputs.items()),
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
                         f"{fmt_batch_shape(r.input_shape)} | {fmt_batch_shape(r.output_shape)} | "
                         f"{fmt_count(r.params)} | {fmt_count(r.mult_adds)} |")
        lines += ["", *(f"- {text}" for text in self._totals_lines())]
        return "\n".join(lines)

