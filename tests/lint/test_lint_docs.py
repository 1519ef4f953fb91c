"""The docs' code runs under test: each rule page's "Wrong" block is flagged with that rule,
its "Right" block is clean, and both are valid Python."""

from __future__ import annotations

import re

import pytest
from lint_support import ROOT

from blocks.lint import RULE_CODES, lint_source

DOCS = ROOT / "docs" / "lint"


def blocks_under(text: str, heading: str) -> list[str]:
    """Every ```python block between `## heading` and the next `## ` heading."""
    match = re.search(rf"^## {heading}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return re.findall(r"```python\n(.*?)```", match.group(1), re.S)


@pytest.mark.parametrize("code", RULE_CODES)
def test_rule_page_wrong_and_right(code: str) -> None:
    text = (DOCS / f"{code}.md").read_text(encoding="utf-8")
    assert text.startswith(f"# {code}: ")
    wrong, right = blocks_under(text, "Wrong"), blocks_under(text, "Right")
    assert len(wrong) == 1 and len(right) == 1
    compile(wrong[0], f"{code}-wrong", "exec")
    compile(right[0], f"{code}-right", "exec")
    assert code in {f.code for f in lint_source(wrong[0], path=f"{code}-wrong.py")}
    assert lint_source(right[0], path=f"{code}-right.py") == []


def test_readme_lists_every_rule_with_its_page() -> None:
    text = (DOCS / "README.md").read_text(encoding="utf-8")
    for code in RULE_CODES:
        assert f"[{code}]({code}.md)" in text
    assert "## Measured on real code" in text


def test_readme_python_blocks_run() -> None:
    """The README's Python examples (the audit one included) execute as shown."""
    text = (DOCS / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(compile(block, "docs/lint/README.md", "exec"), {})
