"""mkdocs hooks: pages and pictures made from the code while the site builds, so they cannot drift.

- `reference/recipe.md` and `reference/cli.md` from `blocks.cli.docgen` (JSON Schema, registry,
  argparse), plugins installed in the building environment included;
- `images/iris-curves.png` and `images/iris-confusion.png`: the getting-started page's recipe
  trained by `blocks train`, as the page tells the reader to do;
- `<!-- blocks graph RECIPE -->` in a page becomes the Mermaid graph that command prints.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from mkdocs.structure.files import File, Files

GRAPH = re.compile(r"<!-- blocks graph (\S+) -->")
PICTURES = {"images/iris-curves.png": "curves.png", "images/iris-confusion.png": "confusion.png"}
_WORK = Path(tempfile.mkdtemp(prefix="blocks-docs-"))


def on_files(files: Files, config) -> Files:
    from blocks.cli.docgen import PAGES

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


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Swap each `<!-- blocks graph NAME -->` for the output of `blocks graph NAME`."""
    return GRAPH.sub(lambda match: _graph(match.group(1)), markdown)


def _graph(name: str) -> str:
    import contextlib
    import io

    from blocks.cli import main

    recipe = _WORK / name if (_WORK / name).exists() else name
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["graph", str(recipe)])
    if code != 0:
        raise RuntimeError(f"`blocks graph {name}` failed (exit {code})")
    return f"```mermaid\n{out.getvalue().rstrip()}\n```"
