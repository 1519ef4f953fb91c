"""Architecture pictures: a spec's blocks as a graph, written as Mermaid or Graphviz DOT text.

Blocks are nodes (spec path, type, output shape); a residual is a cluster whose input also runs
along a dashed skip edge (through its shortcut blocks, if any) into an add node; a repeat is a
cluster holding every repetition; each head is its own output. Mermaid and DOT are plain text
written here; SVG and PNG are DOT rendered by Graphviz's `dot` program, when it is installed.

    python -m blocks.inspect.graph docs/architectures.md   # regenerate the docs page of bundled recipes
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from blocks.core.errors import BlocksError
from blocks.layers.composites import Composite, Repeat, Residual
from blocks.layers.examples import examples_markdown
from blocks.recipe.loading import bundled_recipes, load_recipe
from blocks.spec.model import ModelSpec
from blocks.spec.recipe import Recipe
from blocks.spec.registry import Block
from blocks.spec.shapes import Shape, fmt_shape

__all__ = ["Graph", "GraphvizMissingError", "architectures_markdown", "model_graph", "render",
           "to_dot", "to_mermaid"]

FORMATS = ("mermaid", "dot", "svg", "png")
INSTALL_GRAPHVIZ = ("install Graphviz to render svg/png: `apt-get install graphviz` (Debian/Ubuntu), "
                    "`brew install graphviz` (macOS), `conda install graphviz`, or see "
                    "https://graphviz.org/download/; `--format mermaid` and `--format dot` "
                    "need nothing installed")


class GraphvizMissingError(BlocksError, RuntimeError):
    """SVG/PNG were asked for but Graphviz's `dot` program is not on PATH."""


@dataclass
class Node:
    id: str
    label: str  # lines separated by "\n"
    kind: str = "block"  # block | input | output | add | concat | head


@dataclass
class Edge:
    source: str
    target: str
    label: str = ""
    skip: bool = False  # a residual's skip connection (drawn dashed)


@dataclass
class Cluster:
    id: str
    label: str
    items: list[str | Cluster] = field(default_factory=list)  # node ids and nested clusters


@dataclass
class Graph:
    """Nodes, edges and clusters of a model; `to_mermaid` / `to_dot` write it as text."""

    name: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    top: list[str | Cluster] = field(default_factory=list)  # top-level nodes and clusters


class _Builder:
    def __init__(self, name: str) -> None:
        self.graph = Graph(name)
        self.count = 0
        self.scopes: list[list[str | Cluster]] = [self.graph.top]

    def node(self, label: str, kind: str = "block") -> str:
        node_id = f"n{self.count}"
        self.count += 1
        self.graph.nodes[node_id] = Node(node_id, label, kind)
        self.scopes[-1].append(node_id)
        return node_id

    def edge(self, source: str, target: str, label: str = "", skip: bool = False) -> None:
        self.graph.edges.append(Edge(source, target, label, skip))

    def open(self, label: str) -> None:
        cluster = Cluster(f"c{self.count}", label)
        self.count += 1
        self.scopes[-1].append(cluster)
        self.scopes.append(cluster.items)

    def close(self) -> None:
        self.scopes.pop()

    def sequence(self, blocks: list[Block], shape: Shape, prefix: str, entry: str) -> tuple[str, Shape]:
        for index, block in enumerate(blocks):
            entry, shape = self.block(block, shape, f"{prefix}[{index}]", entry)
        return entry, shape

    def block(self, block: Block, shape: Shape, path: str, entry: str) -> tuple[str, Shape]:
        out = block.output_shape(shape)
        if isinstance(block, Residual):
            self.open(f"{path} residual")
            body_end, _ = self.sequence(block.blocks, shape, f"{path}.blocks", entry)
            if block.shortcut:
                skip_end, _ = self.sequence(block.shortcut, shape, f"{path}.shortcut", entry)
                skip_label = "shortcut"
            elif out == shape:
                skip_end, skip_label = entry, "identity"
            else:  # the automatic 1x1 conv / linear projection the builder adds
                skip_end, skip_label = self.node(f"{path}.shortcut projection\n{fmt_shape(out)}"), ""
                self.edge(entry, skip_end, skip=True)
            add = self.node(f"+ add\n{fmt_shape(out)}", "add")
            self.close()
            self.edge(body_end, add)
            self.edge(skip_end, add, skip_label, skip=True)
            return add, out
        if isinstance(block, Repeat):
            self.open(f"{path} repeat x{block.times}")
            current = shape
            for rep in range(block.times):
                entry, current = self.sequence(block.blocks, current, f"{path}.blocks#{rep}", entry)
            self.close()
            return entry, out
        branches = _branches(block)
        if branches is not None:  # concat / dense_concat: parallel lists joined by a concat node
            self.open(f"{path} {block.type}")
            ends = [entry] if block.type == "dense_concat" else []
            for name, blocks in branches:
                ends.append(self.sequence(blocks, shape, f"{path}.{name}", entry)[0])
            join = self.node(f"concat\n{fmt_shape(out)}", "concat")
            self.close()
            for end in ends:
                self.edge(end, join, skip=end == entry)
            return join, out
        suffix = " (composite)" if isinstance(block, Composite) else ""
        node = self.node(f"{path} {block.type}{suffix}\n{fmt_shape(out)}")
        self.edge(entry, node)
        return node, out


def _branches(block: Block) -> list[tuple[str, list[Block]]] | None:
    """The block lists of a branching composite (`concat`, `dense_concat`), by path step."""
    if block.type == "concat":
        return [(f"branches[{i}]", list(b)) for i, b in enumerate(block.branches)]
    if block.type == "dense_concat":
        return [("blocks", list(block.blocks))]
    return None


def _input_lanes(builder: _Builder, spec: ModelSpec, shapes: Any) -> str:
    """Each input's node and encoder in a cluster of its own; the lanes join at `combine`."""
    ends = []
    for name, spec_input in spec.inputs.items():
        builder.open(f"inputs.{name} {spec_input.kind}")
        sample = shapes.inputs.samples[name]
        entry = builder.node(f"{name} ({spec_input.kind})\n{fmt_shape(sample)}", "input")
        end, _ = builder.sequence(spec_input.encoder_blocks(), sample, f"inputs.{name}.encoder",
                                  entry)
        builder.close()
        ends.append(end)
    join = builder.node(f"combine {spec.combiner.type}\n{fmt_shape(shapes.input_shape)}", "concat")
    for end in ends:
        builder.edge(end, join)
    return join


def model_graph(target: ModelSpec | Recipe | nn.Module | str | Path) -> Graph:
    """The block graph of a spec, a recipe (object, file or bundled name) or a blocks model."""
    spec = _as_spec(target)
    shapes = spec.infer_shapes()  # a located SpecError when shapes do not work out
    builder = _Builder(spec.name or "model")
    if spec.inputs is not None:  # one lane per input into the combiner
        entry = _input_lanes(builder, spec, shapes)
    else:
        entry = builder.node(f"input\n{fmt_shape(shapes.input_shape)}", "input")
    features, _ = builder.sequence(list(spec.backbone), shapes.input_shape, "backbone", entry)
    for name, head in spec.head_specs.items():
        path = f"heads.{name}" if spec.multi_head else "head"
        extra = f" hidden {head.hidden}" if head.hidden else ""
        node = builder.node(f"{path} {head.type}{extra}\n{fmt_shape(shapes.heads[name])}", "head")
        builder.edge(features, node)
        what = (f"{head.classes} classes" if head.type == "softmax" else "binary"
                if head.classes == 1 else f"{head.classes} labels")
        output = builder.node(f"{name if spec.multi_head else 'output'}: {what}", "output")
        builder.edge(node, output)
    return builder.graph


def _as_spec(target: ModelSpec | Recipe | nn.Module | str | Path) -> ModelSpec:
    if isinstance(target, ModelSpec):
        return target
    if isinstance(target, Recipe):
        return target.model
    if isinstance(target, nn.Module):
        spec = getattr(target, "spec", None)
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"model_graph draws blocks models and specs, not a plain "
                            f"{type(target).__name__}")
        return spec

    return load_recipe(target).model


# --- Mermaid -------------------------------------------------------------------------------------
_MERMAID_SHAPES = {"block": ('["', '"]'), "input": ('(["', '"])'), "output": ('(["', '"])'),
                   "add": ('(("', '"))'), "head": ('[["', '"]]'), "concat": ('(("', '"))')}


_MERMAID_ESCAPES = str.maketrans({"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;",
                                  "&": "#amp;", "\n": "<br/>"})


def _mermaid_text(text: str) -> str:
    """Mermaid label text: `#`, quotes and markup characters as entity codes, newlines as <br/>."""
    return text.translate(_MERMAID_ESCAPES)


def to_mermaid(graph: Graph) -> str:
    """Mermaid `flowchart TD` text (GitHub and most Markdown viewers draw it)."""
    lines = ["flowchart TD"]

    def emit(items: list[str | Cluster], indent: str) -> None:
        for item in items:
            if isinstance(item, Cluster):
                lines.append(f'{indent}subgraph {item.id}["{_mermaid_text(item.label)}"]')
                emit(item.items, indent + "  ")
                lines.append(f"{indent}end")
            else:
                node = graph.nodes[item]
                left, right = _MERMAID_SHAPES[node.kind]
                lines.append(f"{indent}{node.id}{left}{_mermaid_text(node.label)}{right}")

    emit(graph.top, "  ")
    for edge in graph.edges:
        arrow = "-.->" if edge.skip else "-->"
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"  {edge.source} {arrow}{label} {edge.target}")
    return "\n".join(lines) + "\n"


# --- DOT -----------------------------------------------------------------------------------------
_DOT_SHAPES = {"block": "box", "input": "oval", "output": "oval", "add": "circle",
               "head": "box3d", "concat": "circle"}


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph) -> str:
    """Graphviz DOT text; render it with `dot -Tsvg` (or `render(graph, "svg")`)."""
    lines = [f"digraph {_dot_string(graph.name)} {{", "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10, style="rounded,filled", '
             'fillcolor="#f5f5f5"];', '  graph [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=9];']

    def emit(items: list[str | Cluster], indent: str) -> None:
        for item in items:
            if isinstance(item, Cluster):
                lines.append(f"{indent}subgraph cluster_{item.id} {{")
                lines.append(f'{indent}  label={_dot_string(item.label)}; style="rounded,dashed";')
                emit(item.items, indent + "  ")
                lines.append(f"{indent}}}")
            else:
                node = graph.nodes[item]
                style = ', style="filled", fillcolor="#ffffff"' if node.kind == "add" else ""
                lines.append(f"{indent}{node.id} [label={_dot_string(node.label)}, "
                             f"shape={_DOT_SHAPES[node.kind]}{style}];")

    emit(graph.top, "  ")
    for edge in graph.edges:
        attrs = []
        if edge.label:
            attrs.append(f"label={_dot_string(edge.label)}")
        if edge.skip:
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {edge.source} -> {edge.target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(graph: Graph, fmt: str) -> str | bytes:
    """The graph as `mermaid` or `dot` text, or `svg` (text) / `png` (bytes) through Graphviz."""
    if fmt == "mermaid":
        return to_mermaid(graph)
    if fmt == "dot":
        return to_dot(graph)
    if fmt not in ("svg", "png"):
        raise ValueError(f"unknown graph format {fmt!r}; expected one of {', '.join(FORMATS)}")
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissingError(f"--format {fmt} needs Graphviz's `dot` program, which is not "
                                   f"on PATH; {INSTALL_GRAPHVIZ}")
    result = subprocess.run([dot, f"-T{fmt}"], input=to_dot(graph).encode(), capture_output=True,
                            timeout=120, check=False)
    if result.returncode != 0:
        raise BlocksError(f"Graphviz `dot -T{fmt}` failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode() if fmt == "svg" else result.stdout


# --- docs ----------------------------------------------------------------------------------------
def architectures_markdown() -> str:
    """`docs/architectures.md`: one Mermaid graph per bundled recipe, as `blocks graph` draws it."""
    parts = ["# Architectures of the bundled recipes", "",
             "Generated by `python -m blocks.inspect.graph docs/architectures.md` from "
             "`blocks graph RECIPE --format mermaid`; a test keeps it up to date.", ""]
    for name, path in bundled_recipes().items():
        recipe = load_recipe(path)
        parts += [f"## {name}", ""]
        if recipe.model.description:
            parts += [recipe.model.description, ""]
        parts += [f"`blocks graph {name}`:", "", "```mermaid", to_mermaid(model_graph(recipe)).rstrip(),
                  "```", ""]

    parts.append(examples_markdown())
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = architectures_markdown()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
