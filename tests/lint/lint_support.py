"""Shared paths and helpers for the lint and audit tests (imported as `lint_support`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def load_fixture(name: str) -> ModuleType:
    """Import a fixture file as a module (fresh each time) so its models can be audited."""
    path = FIXTURES / name
    spec = importlib.util.spec_from_file_location(f"_lint_fixture_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
