"""The package's shape, read from its imports: layers point down, no import circle, local
imports say why, torch-free packages stay torch-free, and docs/architecture.md is current."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import architecture  # noqa: E402 - tools/ is not a package

import blocks  # noqa: E402
from blocks.core.moved import MOVED  # noqa: E402


def test_every_rule_holds():
    assert architecture.violations() == []


def test_the_architecture_page_is_drawn_from_the_current_imports():
    text = architecture.DOC.read_text(encoding="utf-8")
    assert architecture.updated_doc(text) == text, (
        "docs/architecture.md is stale: run `python tools/architecture.py --write`")
    assert "```mermaid" in text and "0 import circles" in text


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "blocks"
    shutil.copytree(architecture.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_an_upward_import_is_named_with_its_file_and_line(package_copy: Path):
    shapes = package_copy / "spec" / "shapes.py"
    line = len(shapes.read_text(encoding="utf-8").splitlines()) + 1
    _append(shapes, "from blocks.run.folder import load  # noqa\n")
    found = architecture.violations(package_copy)
    assert (f"blocks/spec/shapes.py:{line}: spec/ may not import run/ (blocks.run.folder); "
            "spec/ may import core") in found
    # and run.folder imports spec.shapes (through spec.model...), so it is a circle as well
    assert any(p.startswith("import circle of") and "blocks.spec.shapes" in p for p in found)


def test_a_data_reader_in_the_trainer_is_refused(package_copy: Path):
    _append(package_copy / "train" / "losses.py", "from blocks.data.sources import load_arrays\n")
    found = architecture.violations(package_copy)
    assert any("blocks/train/losses.py" in p and "may not import the data reader "
               "blocks.data.sources" in p for p in found), found


def test_a_local_import_needs_its_reason(package_copy: Path):
    target = package_copy / "run" / "report.py"
    _append(target, "\n\ndef _late():\n    from blocks.spec.model import ModelSpec\n"
            "    return ModelSpec\n")
    found = architecture.violations(package_copy)
    assert any(p.startswith("blocks/run/report.py:") and "local import of blocks.spec.model "
               "without a comment" in p for p in found), found
    target.write_text(target.read_text().replace(
        "    from blocks.spec.model import ModelSpec\n",
        "    from blocks.spec.model import ModelSpec  # lazy: a test's reason\n"))
    assert architecture.violations(package_copy) == []


def test_torch_at_import_in_a_spec_module_is_refused(package_copy: Path):
    counts = package_copy / "spec" / "counts.py"
    counts.write_text("import torch\n" + counts.read_text(encoding="utf-8"))
    assert "blocks/spec/counts.py:1: spec/ must import without torch (use blocks.core.lazy, or "\
           "import inside the function that needs it)" in architecture.violations(package_copy)


def test_no_module_is_much_over_500_lines():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines())
             for name, path in architecture.modules_of(architecture.PACKAGE).items()}
    assert {name: n for name, n in sizes.items() if n > 560} == {}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_still_import_and_warn(old: str):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    new = MOVED[old]
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message)
               for w in caught), [str(w.message) for w in caught]
    homes = [new] if isinstance(new, str) else list(new)
    if isinstance(new, str):
        assert module is importlib.import_module(new)
    seen: set[str] = set()
    for home in homes:  # the public names of each new home are reachable the old way (a name
        target = importlib.import_module(home)  # two homes share is the first home's)
        names = [n for n in vars(target) if not n.startswith("_") and n not in seen]
        for name in names:
            assert getattr(module, name) is getattr(target, name), (home, name)
        seen.update(names)


def test_old_names_are_the_same_objects():
    from blocks.core.lazy import moved_to  # noqa: F401 - the helper for moved classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from blocks.registry import register_block
        from blocks.runs import evaluate_run, load, run_recipe

        from blocks.spec import ModelSpec
    assert register_block is blocks.register_block
    assert (load, run_recipe, evaluate_run) == (blocks.load, blocks.run_recipe,
                                                blocks.evaluate_run)
    assert ModelSpec is blocks.ModelSpec


def test_an_old_import_warns_where_the_user_wrote_it(tmp_path: Path):
    script = tmp_path / "user_code.py"
    script.write_text("import blocks.registry\n")
    out = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", str(script)],
                         capture_output=True, text=True, check=True)
    assert f"{script}:1: DeprecationWarning: blocks.registry moved to blocks.spec.registry" \
        in out.stderr, out.stderr
