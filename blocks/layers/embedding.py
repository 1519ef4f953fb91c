"""Token embeddings: `embedding`, integer ids to learned vectors (`nn.Embedding`).

It builds the named torch class, so the generic source road writes it (no emitter here).
"""

from __future__ import annotations

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.numbers import Index, Size
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape


@register_block("embedding")
class Embedding(Block):
    """`nn.Embedding`: integer token ids `[L]` -> vectors `[L, embedding_dim]`."""

    example = ([16], {"type": "embedding", "num_embeddings": 1000, "embedding_dim": 32})

    num_embeddings: Size = Field(description="vocabulary size: token ids are 0..num_embeddings-1")
    embedding_dim: Size = Field(description="length of each token's vector")
    padding_idx: Index | None = Field(None, description="token id whose vector stays zero and "
                                      "gets no gradient")
    max_norm: float | None = Field(None, description="renormalise vectors longer than this")

    def output_shape(self, shape: Shape) -> Shape:
        if self.padding_idx is not None and not (
            -self.num_embeddings <= self.padding_idx < self.num_embeddings
        ):
            raise ShapeError(f"padding_idx {self.padding_idx} is outside [0, {self.num_embeddings})")
        return (*shape, self.embedding_dim)

    def build(self, shape: Shape) -> nn.Module:
        return nn.Embedding(self.num_embeddings, self.embedding_dim,
                            padding_idx=self.padding_idx, max_norm=self.max_norm)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return self.num_embeddings * self.embedding_dim, 0
