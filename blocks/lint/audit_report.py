"""What an audit reports: `AuditFinding`s in an `AuditReport`, and `AuditError` when it cannot
start. Plain data with a stable `code` per finding, so scripts and tests can match on it; the
text form names the attribute path and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from blocks.core.errors import BlocksError


class AuditError(BlocksError, ValueError):
    """The audit could not start (not a module, bad input): says what was expected."""


@dataclass(frozen=True)
class AuditFinding:
    """One runtime problem: a stable snake_case `code`, the attribute `path`, what and how to fix.

    `rule` names the matching static lint rule (docs/lint/BLK00N.md) when there is one.
    """

    code: str
    path: str
    message: str
    fix: str
    rule: str | None = None

    def __str__(self) -> str:
        return f"{self.code} {self.path or '<model>'}: {self.message}. Fix: {self.fix}"


@dataclass
class AuditReport:
    """Every finding of one audit; empty (and `ok`) for a model with none of the pitfalls."""

    model: str
    findings: list[AuditFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def __iter__(self) -> Iterator[AuditFinding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def __str__(self) -> str:
        if self.ok:
            return f"audit {self.model}: no problems found"
        n = len(self.findings)
        lines = [f"audit {self.model}: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  {f}" for f in self.findings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "ok": self.ok, "findings": [asdict(f) for f in self.findings]}

