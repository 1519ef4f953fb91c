"""mkdocs hooks: pages and pictures made from the code while the site builds, so they cannot drift.

- `reference/recipe.md` and `reference/cli.md` from `blocks.docgen` (JSON Schema, registry,
  argparse), plugins installed in the building environment included;
- `images/iris-curves.png` and `images/iris-confusion.png`: the getting-started page's recipe
  trained by `blocks train`, as the page tells the reader to do.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from mkdocs.structure.files import File, Files

PICTURES = {"images/iris-curves.png": "curves.png", "images/iris-confusion.png": "confusion.png"}
_WORK = Path(tempfile.mkdtemp(prefix="blocks-docs-"))


def on_files(files: Files, config) -> Files:
    from blocks.docgen import PAGES

    for name, render in PAGES.items():
        files.append(File.generated(config, f"reference/{name}", content=render()))
    for uri, path in _pictures(Path(config["docs_dir"])).items():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def _pictures(docs: Path) -> dict[str, Path]:
    """Train the getting-started recipe with the CLI and keep the plots it draws."""
    import os

    from blocks.cli import main

    text = (docs / "getting-started.md").read_text(encoding="utf-8")
    recipe = re.search(r"^```yaml\n(model:.*?)^```", text, re.S | re.M).group(1)
    (_WORK / "iris.yaml").write_text(recipe, encoding="utf-8")
    run = _WORK / "runs" / "iris"
    os.environ.setdefault("MPLBACKEND", "Agg")
    code = main(["train", str(_WORK / "iris.yaml"), "--out", str(run), "--quiet", "--force"])
    if code != 0:
        raise RuntimeError(f"`blocks train` of the getting-started recipe failed (exit {code})")
    return {uri: run / name for uri, name in PICTURES.items()}
