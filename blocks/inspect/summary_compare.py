"""Comparing two summaries block by block: what a change to a model costs, and where.

Rows are aligned like a text diff (by block type and nesting), so a block inserted in one model
does not shift every row after it; `blocks summary A B --diff` prints the result.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from blocks.inspect.summary_collect import SummaryTarget, summarize
from blocks.inspect.summary_data import LayerRow, Summary
from blocks.inspect.summary_format import fmt_count, fmt_signed


@dataclass
class ComparedRow:
    """A row of A aligned with a row of B; either is None where a block exists in one only."""

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
                         _cell(r.a, "params"), _cell(r.b, "params"), fmt_signed(r.params_delta),
                         _cell(r.a, "mult_adds"), _cell(r.b, "mult_adds"),
                         fmt_signed(r.mult_adds_delta)))
        body.append(("total", "total", fmt_count(self.a.total_params), fmt_count(self.b.total_params),
                     fmt_signed(self.b.total_params - self.a.total_params), fmt_count(self.a.mult_adds),
                     fmt_count(self.b.mult_adds), fmt_signed(self.b.mult_adds - self.a.mult_adds)))
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
        lines.append(f"B has {fmt_signed(self.b.total_params - self.a.total_params)} parameters{pct} "
                     f"and {fmt_signed(self.b.mult_adds - self.a.mult_adds)} mult-adds compared to A.")
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


def _val(row: LayerRow | None, attr: str) -> int:
    return (getattr(row, attr) or 0) if row is not None else 0


def _opt(row: LayerRow | None, attr: str) -> int | None:
    return getattr(row, attr) if row is not None else None


def _cell(row: LayerRow | None, attr: str) -> str:
    return "-" if row is None else fmt_count(getattr(row, attr))


def _depth(r: ComparedRow) -> int:
    return (r.a or r.b).depth if (r.a or r.b) else 0  # type: ignore[union-attr]

