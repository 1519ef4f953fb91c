"""`blocks lint`: a static check of hand-written nn.Module code for the pitfalls `blocks` removes.

    from blocks.lint import lint_paths, lint_source
    result = lint_paths(["models/"])          # LintResult: .findings, .errors, .exit_code
    for f in lint_source(code): print(f)      # path:line:col: BLK001 message

Rule codes and pages: docs/lint/README.md.
"""

from blocks.lint.engine import LintUsageError, lint_paths, lint_source
from blocks.lint.report import Finding, InputError, LintResult
from blocks.lint.rules import RULE_CODES, RULES, Rule

__all__ = [
    "RULES",
    "RULE_CODES",
    "Finding",
    "InputError",
    "LintResult",
    "LintUsageError",
    "Rule",
    "lint_paths",
    "lint_source",
]
