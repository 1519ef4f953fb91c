"""`blocks graph`: valid Mermaid and DOT, residual skip edges, heads as outputs, docs in sync."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import blocks
from blocks.cli import main
from blocks.inspect.graph import architectures_markdown, model_graph, to_dot, to_mermaid
from blocks.layers.composites import Repeat, Residual

BUNDLED = sorted(blocks.bundled_recipes())
DOCS = Path(__file__).resolve().parents[2] / "docs" / "architectures.md"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_LABEL = r'"[^"]*"'  # quoted; a raw quote inside is an error
_NODE = re.compile(rf'^({_ID})(\[{_LABEL}\]|\(\[{_LABEL}\]\)|\(\({_LABEL}\)\)|\[\[{_LABEL}\]\])$')
_EDGE = re.compile(rf'^({_ID}) (-->|-\.->)(\|{_LABEL}\|)? ({_ID})$')
_SUBGRAPH = re.compile(rf'^subgraph ({_ID})\[{_LABEL}\]$')
_RESERVED = {"end", "graph", "subgraph", "flowchart", "style", "class", "click"}


def check_mermaid(text: str) -> dict[str, int]:
    """A small Mermaid flowchart checker: header, node and edge syntax, quoted labels, declared
    ids, balanced subgraphs. Returns counts of what it saw."""
    lines = [line.strip() for line in text.strip().splitlines()]
    assert lines[0] in ("flowchart TD", "graph TD"), lines[0]
    nodes: set[str] = set()
    edges: list[tuple[str, str, str]] = []
    depth = 0
    subgraphs = 0
    for line in lines[1:]:
        if match := _SUBGRAPH.match(line):
            depth += 1
            subgraphs += 1
            assert match.group(1) not in _RESERVED
        elif line == "end":
            depth -= 1
            assert depth >= 0, "unbalanced `end`"
        elif match := _NODE.match(line):
            node = match.group(1)
            assert node not in nodes, f"node {node} declared twice"
            assert node not in _RESERVED
            nodes.add(node)
        elif match := _EDGE.match(line):
            edges.append((match.group(1), match.group(2), match.group(4)))
        else:
            raise AssertionError(f"not a node, edge or subgraph line: {line!r}")
    assert depth == 0, "unclosed subgraph"
    for source, _, target in edges:
        assert source in nodes and target in nodes, (source, target)
    return {"nodes": len(nodes), "edges": len(edges), "subgraphs": subgraphs,
            "skip_edges": sum(1 for e in edges if e[1] == "-.->")}


def _residuals(blocks_list, times: int = 1) -> int:
    count = 0
    for block in blocks_list:
        if isinstance(block, Residual):
            count += times + _residuals(block.blocks, times)
        elif isinstance(block, Repeat):
            count += _residuals(block.blocks, times * block.times)
    return count


@pytest.mark.parametrize("name", BUNDLED)
def test_mermaid_is_valid_with_residual_and_head_edges(name: str) -> None:
    spec = blocks.load_recipe(name).model
    graph = model_graph(spec)
    text = to_mermaid(graph)
    seen = check_mermaid(text)
    assert seen["skip_edges"] == sum(e.skip for e in graph.edges)
    into_add = [e for e in graph.edges if e.skip and graph.nodes[e.target].kind == "add"]
    assert len(into_add) == _residuals(spec.backbone)  # one skip connection per residual
    outputs = re.findall(r'\(\["(\w+): ', text)
    assert sorted(outputs) == sorted(spec.head_specs) if spec.multi_head else outputs == ["output"]
    for trace in spec.infer_shapes().layers:
        if not isinstance(trace.block, Residual | Repeat):
            assert f"{trace.path.replace('#', '#35;')} {trace.block.type}" in text


def test_multitask_heads_are_separate_outputs() -> None:
    text = to_mermaid(model_graph("multitask"))
    assert '[["heads.kind softmax<br/>[4]"]]' in text
    assert '[["heads.tags sigmoid<br/>[3]"]]' in text
    assert '(["kind: 4 classes"])' in text and '(["tags: 3 labels"])' in text


def test_residual_skip_edge_joins_input_to_add_node() -> None:
    graph = model_graph("residual_cnn")
    skips = [e for e in graph.edges if e.skip]
    kinds = [(graph.nodes[e.source].label.split("\n")[0], graph.nodes[e.target].kind, e.label)
             for e in skips]
    assert kinds == [("backbone[2] relu", "add", "identity"),
                     ("backbone[4] relu", "block", ""),  # into the automatic projection
                     ("backbone[5].shortcut projection", "add", "")]
    projection = next(n for n in graph.nodes.values() if "shortcut projection" in n.label)
    assert any(e.source == projection.id and graph.nodes[e.target].kind == "add" for e in skips)


def test_labels_are_escaped() -> None:
    spec = blocks.ModelSpec.model_validate({
        "name": 'quote " and <b>', "input": {"shape": [4]},
        "backbone": [{"type": "linear", "out_features": 2}], "head": {"type": "sigmoid"}})
    dot = to_dot(model_graph(spec))
    assert 'digraph "quote \\" and <b>" {' in dot
    check_mermaid(to_mermaid(model_graph(spec)))


def _check_dot_structure(text: str) -> None:
    declared = set(re.findall(r"^\s*(n\d+) \[label=", text, re.M))
    for source, target in re.findall(r"^\s*(n\d+) -> (n\d+)", text, re.M):
        assert source in declared and target in declared
    assert text.count("{") == text.count("}")


@pytest.mark.parametrize("name", BUNDLED)
def test_dot_structure(name: str) -> None:
    _check_dot_structure(to_dot(model_graph(name)))


@needs_dot
@pytest.mark.parametrize("name", BUNDLED)
def test_dot_accepted_by_graphviz(name: str) -> None:
    result = subprocess.run(["dot", "-Tsvg"], input=to_dot(model_graph(name)).encode(),
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert b"<svg" in result.stdout and not result.stderr.strip()


@needs_dot
def test_cli_svg_and_png(tmp_path, capsys) -> None:
    assert main(["graph", "residual_cnn", "--format", "svg", "-o", str(tmp_path / "g.svg")]) == 0
    assert "<svg" in (tmp_path / "g.svg").read_text()
    assert main(["graph", "multitask", "--format", "png", "-o", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_svg_without_graphviz_says_how_to_install(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    assert main(["graph", "seed_cnn", "--format", "svg", "-o", str(tmp_path / "g.svg")]) == 2
    err = capsys.readouterr().err
    assert "Graphviz" in err and "apt-get install graphviz" in err and "--format mermaid" in err
    assert "Traceback" not in err and not (tmp_path / "g.svg").exists()


def test_cli_mermaid_and_dot_text(tmp_path, capsys) -> None:
    assert main(["graph", "seed_cnn"]) == 0
    check_mermaid(capsys.readouterr().out)
    assert main(["graph", "seed_cnn", "--format", "dot", "-o", str(tmp_path / "g.dot")]) == 0
    _check_dot_structure((tmp_path / "g.dot").read_text())


def test_cli_graph_bad_recipe_is_located(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  input: {shape: [1, 4, 4]}\n  backbone:\n"
                   "    - {type: conv2d, out_channels: 2, kernel_size: 9}\n"
                   "  head: {type: softmax, classes: 2}\n")
    assert main(["graph", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "model.backbone[0]" in err and "Traceback" not in err
    assert main(["graph", str(tmp_path / "missing.yaml")]) == 2


def test_docs_architectures_up_to_date(capsys) -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert text == architectures_markdown(), (
        "docs/architectures.md is stale: run `python -m blocks.inspect.graph docs/architectures.md`")
    for name in BUNDLED:
        assert main(["graph", name, "--format", "mermaid"]) == 0
        assert capsys.readouterr().out.rstrip() in text
