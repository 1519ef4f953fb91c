"""Runs the rules over files and folders: discovery, parsing, `# noqa`, --select / --ignore."""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable, Sequence
from pathlib import Path

from blocks.core.errors import BlocksError
from blocks.lint.context import FileContext, Project, module_name_for
from blocks.lint.report import Finding, InputError, LintResult
from blocks.lint.rules import RULE_CODES, RULES

SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "build", "dist"}
_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,?\s*[A-Z]+[0-9]+)*))?", re.I)


class LintUsageError(BlocksError, ValueError):
    """A bad --select/--ignore value: names the bad code and lists the valid ones."""


def parse_codes(text: str | Sequence[str] | None) -> list[str]:
    """'BLK001,BLK004' (or a list of such) -> codes; a prefix like 'BLK00' selects several."""
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    codes = [c.strip().upper() for item in items for c in item.split(",") if c.strip()]
    for code in codes:
        if not any(rule.startswith(code) for rule in RULE_CODES):
            raise LintUsageError(
                f"unknown rule code {code!r}; valid codes: {', '.join(RULE_CODES)}"
            )
    return codes


def _enabled(code: str, select: list[str], ignore: list[str]) -> bool:
    if select and not any(code.startswith(s) for s in select):
        return False
    return not any(code.startswith(i) for i in ignore)


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[InputError]]:
    """Python files under the given paths (folders recursively, hidden and build dirs skipped)."""
    files: list[Path] = []
    errors: list[InputError] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for found in sorted(path.rglob("*.py")):
                rel = found.relative_to(path).parts[:-1]
                if any(p.startswith(".") or p in SKIP_DIRS for p in rel):
                    continue
                files.append(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(InputError(str(raw), 1, 1, "no such file or directory"))
    return files, errors


def noqa_lines(source: str) -> dict[int, set[str] | None]:
    """Line -> codes silenced there (None: a bare `# noqa` silences every code)."""
    out: dict[int, set[str] | None] = {}
    if "noqa" not in source.lower():
        return out
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return out
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        match = _NOQA.search(tok.string)
        if not match:
            continue
        line = tok.start[0]
        if match.group("codes"):
            codes = {c.upper() for c in re.split(r"[\s,]+", match.group("codes")) if c}
            if out.get(line, set()) is not None:
                out[line] = (out.get(line) or set()) | codes
        else:
            out[line] = None
    return out


def _silenced(finding: Finding, noqa: dict[int, set[str] | None]) -> bool:
    if finding.line not in noqa:
        return False
    codes = noqa[finding.line]
    return codes is None or finding.code in codes


def _load(path: Path, label: str) -> FileContext | InputError:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return InputError(label, 1, 1, f"cannot read file: {err}")
    try:
        return FileContext.parse(label, source, module=module_name_for(path))
    except SyntaxError as err:
        line = err.lineno or 1
        col = err.offset or 1
        return InputError(label, line, col, f"SyntaxError: {err.msg}")
    except ValueError as err:  # e.g. source containing null bytes
        return InputError(label, 1, 1, f"cannot parse file: {err}")


def lint_paths(
    paths: Iterable[str | Path],
    select: str | Sequence[str] | None = None,
    ignore: str | Sequence[str] | None = None,
) -> LintResult:
    """Lint files and folders as one file set (a base class in one file counts for another)."""
    sel, ign = parse_codes(select), parse_codes(ignore)
    files, errors = discover(paths)
    project = Project()
    contexts: list[FileContext] = []
    for path in files:
        loaded = _load(path, str(path))
        if isinstance(loaded, InputError):
            errors.append(loaded)
        else:
            project.add(loaded)
            contexts.append(loaded)
    findings: list[Finding] = []
    for ctx in contexts:
        findings.extend(_run_rules(ctx, sel, ign))
    return LintResult(findings=sorted(findings), errors=sorted(errors), files_scanned=len(contexts))


def lint_source(
    source: str,
    path: str = "<string>",
    select: str | Sequence[str] | None = None,
    ignore: str | Sequence[str] | None = None,
) -> list[Finding]:
    """Lint one piece of source text (raises SyntaxError if it does not parse)."""
    project = Project()
    ctx = FileContext.parse(path, source, module=Path(path).stem or "snippet")
    project.add(ctx)
    return sorted(_run_rules(ctx, parse_codes(select), parse_codes(ignore)))


def _run_rules(ctx: FileContext, select: list[str], ignore: list[str]) -> list[Finding]:
    noqa = noqa_lines(ctx.source)
    found: set[Finding] = set()
    for rule in RULES:
        if not _enabled(rule.code, select, ignore):
            continue
        for finding in rule.check(ctx):
            if not _silenced(finding, noqa):
                found.add(finding)
    return sorted(found)
