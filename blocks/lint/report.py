"""Findings and how they are printed: one line each (`path:line:col: CODE message`) or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at one place. `line` and `column` are 1-based, like every editor shows them."""

    path: str
    line: int
    column: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.code} {self.message}"


@dataclass(frozen=True, order=True)
class InputError:
    """A path that could not be linted (missing, unreadable, not Python): the tool's own failure."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


@dataclass
class LintResult:
    """Everything one run found; `exit_code` follows black's habit of one exit at the end."""

    findings: list[Finding] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    files_scanned: int = 0

    @property
    def exit_code(self) -> int:
        """2 when some input was bad, else 1 when something was found, else 0."""
        if self.errors:
            return 2
        return 1 if self.findings else 0

    def to_text(self) -> str:
        """One line per finding, sorted by place, ready for an editor's problem matcher."""
        return "\n".join(str(f) for f in sorted(self.findings))

    def to_json(self) -> str:
        """A stable JSON document for tools: findings, input errors and the number of files."""
        return json.dumps(
            {
                "files_scanned": self.files_scanned,
                "findings": [asdict(f) for f in sorted(self.findings)],
                "errors": [asdict(e) for e in sorted(self.errors)],
            },
            indent=2,
        )

    def summary(self) -> str:
        """A short human line for stderr, so stdout stays one finding per line."""
        n = len(self.findings)
        text = f"{n} finding{'s' if n != 1 else ''} in {self.files_scanned} file"
        text += "s" if self.files_scanned != 1 else ""
        if self.errors:
            text += f"; {len(self.errors)} input error{'s' if len(self.errors) != 1 else ''}"
        return text
