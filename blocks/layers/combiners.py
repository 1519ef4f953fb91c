"""Combiners of a multi-input model (`model.combine:`): `concat`, `gated`, `attention`.

Each takes the encoded inputs, one vector per input in the order of `model.inputs`, and returns
one vector, the backbone's input. Spec (shape and count rules), module and source emitter live
here, as for a block family; they register with `blocks.spec.inputs.register_combiner`.
"""

from __future__ import annotations

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.numbers import Size
from blocks.core.pysource import call
from blocks.layers.base import module_getattr, torch_modules
from blocks.spec import counts
from blocks.spec.inputs import Combiner, register_combiner
from blocks.spec.shapes import Shape

CONCAT = '''
class ConcatCombiner(nn.Module):
    """Encoded inputs (one [batch, d_i] each) -> [batch, sum d_i]."""

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        return torch.cat(parts, dim=-1)
'''

GATED = '''
class GatedCombiner(nn.Module):
    """sum_i sigmoid(gate_i(x_i)) * project_i(x_i): each input decides how much it speaks."""

    def __init__(self, sizes: list, dim: int) -> None:
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(size, dim) for size in sizes)
        self.gate = nn.ModuleList(nn.Linear(size, dim) for size in sizes)

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        out = None
        for x, project, gate in zip(parts, self.project, self.gate):
            term = torch.sigmoid(gate(x)) * project(x)
            out = term if out is None else out + term
        return out
'''

ATTENTION = '''
class AttentionCombiner(nn.Module):
    """Each input projected to one token; a learned query attends over the tokens."""

    def __init__(self, sizes: list, dim: int, heads: int) -> None:
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(size, dim) for size in sizes)
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([p(x) for x, p in zip(parts, self.project)], dim=1)
        query = self.query.expand(tokens.shape[0], -1, -1)
        return self.attention(query, tokens, tokens, need_weights=False)[0][:, 0]
'''


@torch_modules("ConcatCombiner", "GatedCombiner", "AttentionCombiner")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    class ConcatCombiner(nn.Module):
        """Encoded inputs (one `[batch, d_i]` each) -> `[batch, sum d_i]`."""

        def forward(self, *parts: torch.Tensor) -> torch.Tensor:
            return torch.cat(parts, dim=-1)

        def emit_source(self, writer, path: str):
            return writer.checked(self, call(writer.helper("ConcatCombiner", CONCAT), []), path)

    class GatedCombiner(nn.Module):
        """`sum_i sigmoid(gate_i(x_i)) * project_i(x_i)`: each input decides how much it speaks."""

        def __init__(self, sizes: list[int], dim: int) -> None:
            super().__init__()
            self.project = nn.ModuleList(nn.Linear(size, dim) for size in sizes)
            self.gate = nn.ModuleList(nn.Linear(size, dim) for size in sizes)

        def forward(self, *parts: torch.Tensor) -> torch.Tensor:
            out = None
            for x, project, gate in zip(parts, self.project, self.gate, strict=True):
                term = torch.sigmoid(gate(x)) * project(x)
                out = term if out is None else out + term
            return out

        def emit_source(self, writer, path: str):
            sizes = [layer.in_features for layer in self.project]
            dim = self.project[0].out_features
            return writer.checked(self, call(writer.helper("GatedCombiner", GATED),
                                             [repr(sizes), str(dim)]), path)

    class AttentionCombiner(nn.Module):
        """Each input projected to one token of `dim`; a learned query attends over them."""

        def __init__(self, sizes: list[int], dim: int, heads: int) -> None:
            super().__init__()
            self.project = nn.ModuleList(nn.Linear(size, dim) for size in sizes)
            self.query = nn.Parameter(torch.zeros(1, 1, dim))
            self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

        def forward(self, *parts: torch.Tensor) -> torch.Tensor:
            tokens = torch.stack([p(x) for x, p in zip(parts, self.project, strict=True)], dim=1)
            query = self.query.expand(tokens.shape[0], -1, -1)
            return self.attention(query, tokens, tokens, need_weights=False)[0][:, 0]

        def emit_source(self, writer, path: str):
            sizes = [layer.in_features for layer in self.project]
            expression = call(writer.helper("AttentionCombiner", ATTENTION),
                              [repr(sizes), str(self.attention.embed_dim),
                               str(self.attention.num_heads)])
            return writer.checked(self, expression, path)

    return {"ConcatCombiner": ConcatCombiner, "GatedCombiner": GatedCombiner,
            "AttentionCombiner": AttentionCombiner}


def _sizes(shapes: dict[str, Shape]) -> list[int]:
    for name, shape in shapes.items():
        if len(shape) != 1:
            raise ShapeError(f"input {name!r} is encoded to {list(shape)}; a combiner takes one "
                             "vector per input")
    return [shape[0] for shape in shapes.values()]


@register_combiner("concat")
class ConcatCombine(Combiner):
    """Concatenate the encoded inputs: `[d_1], [d_2], ...` -> `[d_1 + d_2 + ...]`."""

    def combined_shape(self, shapes: dict[str, Shape]) -> Shape:
        return (sum(_sizes(shapes)),)

    def build(self, shapes: dict[str, Shape]) -> nn.Module:
        return modules().ConcatCombiner()


@register_combiner("gated")
class GatedCombine(Combiner):
    """Project each input to `dim` and gate it by a sigmoid of itself, then sum: `[dim]`."""

    dim: Size = Field(64, description="length of the combined vector")

    def combined_shape(self, shapes: dict[str, Shape]) -> Shape:
        _sizes(shapes)
        return (self.dim,)

    def parameter_count(self, shapes: dict[str, Shape]) -> counts.Counts:
        return 2 * sum(counts.linear(size, self.dim)[0] for size in _sizes(shapes)), 0

    def build(self, shapes: dict[str, Shape]) -> nn.Module:
        return modules().GatedCombiner(_sizes(shapes), self.dim)


@register_combiner("attention")
class AttentionCombine(Combiner):
    """Project each input to a token of `dim`; a learned query attends over the tokens
    (`nn.MultiheadAttention`, `heads` heads): `[dim]`."""

    dim: Size = Field(64, description="token and output length")
    heads: Size = Field(4, description="attention heads; must divide `dim`")

    def combined_shape(self, shapes: dict[str, Shape]) -> Shape:
        _sizes(shapes)
        if self.dim % self.heads:
            raise ShapeError(f"dim {self.dim} is not divisible by heads {self.heads}")
        return (self.dim,)

    def parameter_count(self, shapes: dict[str, Shape]) -> counts.Counts:
        projections = sum(counts.linear(size, self.dim)[0] for size in _sizes(shapes))
        attention = 4 * self.dim * self.dim + 4 * self.dim  # in_proj (q, k, v) and out_proj
        return projections + self.dim + attention, 0

    def build(self, shapes: dict[str, Shape]) -> nn.Module:
        return modules().AttentionCombiner(_sizes(shapes), self.dim, self.heads)


__getattr__ = module_getattr(__name__, modules)
