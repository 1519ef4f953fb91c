"""Warnings print like every other CLI message (issue 24 item 8): `warning: TEXT` on stderr,
without Python's category, file name and source line; code that records warnings (pytest,
`warnings.catch_warnings(record=True)`) still receives them."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from blocks.cli import format_warning, main
from blocks.train.errors import TrainingWarning


def test_a_verb_warning_is_one_cli_line():
    code = """
import sys, warnings
import blocks.recipe.loading

def warns(*args, **kwargs):
    warnings.warn("skipped 2 unreadable image file(s): a.png, b\\x1b[2J.png", UserWarning,
                  stacklevel=2)
    return {}

blocks.recipe.loading.bundled_recipes = warns
from blocks.cli import main
code = main(["recipes"])
warnings.warn("after the verb: Python's own format again", UserWarning)
sys.exit(code)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert lines[0] == "warning: skipped 2 unreadable image file(s): a.png, b\\x1b[2J.png"
    assert "UserWarning: after the verb" in lines[1]  # the caller's formatter is back


def test_recorded_warnings_still_reach_the_recorder(monkeypatch, capsys):
    def warns(*args, **kwargs):
        warnings.warn("a lone last sample is left out", TrainingWarning, stacklevel=2)
        return {}

    monkeypatch.setattr("blocks.recipe.loading.bundled_recipes", warns)
    with pytest.warns(TrainingWarning, match="lone last sample"):
        assert main(["recipes"]) == 0
    assert capsys.readouterr().err == ""


def test_a_multi_line_warning_keeps_its_lines():
    assert format_warning("first\nsecond", UserWarning, "x.py", 3) == "warning:\nfirst\nsecond\n"
