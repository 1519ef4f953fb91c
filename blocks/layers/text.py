"""Text encoders: `bag_of_words` (token ids -> the mean of their vectors, padding left out) and
`text_conv` (a 1-D convolution over token vectors, max over time), with modules and emitters.

Token ids come from the text input's tokenizer (`blocks.data.text`); id 0 is padding. The
transformer encoder (`blocks.layers.transformer`) and `embedding` serve text too.
"""

from __future__ import annotations

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.numbers import Index, Size
from blocks.core.pysource import call
from blocks.layers.base import module_getattr, torch_modules
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, require_rank

BAG_OF_WORDS = '''
class BagOfWords(nn.Module):
    """Token ids [batch, L] -> the mean of their embeddings, padding ids left out."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx)
        self.padding_idx = padding_idx

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = (ids != self.padding_idx).unsqueeze(-1).to(self.embedding.weight.dtype)
        total = (self.embedding(ids) * keep).sum(dim=1)
        return total / keep.sum(dim=1).clamp(min=1.0)
'''

TEXT_CONV = '''
class TextConv(nn.Module):
    """Token vectors [batch, L, D] -> Conv1d over time -> ReLU -> max over time [batch, C]."""

    def __init__(self, dim: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x.transpose(1, 2))).amax(dim=2)
'''


@torch_modules("BagOfWords", "TextConv")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    class BagOfWords(nn.Module):
        """Token ids `[batch, L]` -> the mean of their embeddings, padding ids left out (an
        all-padding text, e.g. an empty cell, gives the zero vector)."""

        def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int) -> None:
            super().__init__()
            self.embedding = nn.Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx)
            self.padding_idx = padding_idx

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            keep = (ids != self.padding_idx).unsqueeze(-1).to(self.embedding.weight.dtype)
            total = (self.embedding(ids) * keep).sum(dim=1)
            return total / keep.sum(dim=1).clamp(min=1.0)

        def emit_source(self, writer, path: str):
            name = writer.helper("BagOfWords", BAG_OF_WORDS)
            weight = self.embedding.weight
            return writer.checked(self, call(name, [str(weight.shape[0]), str(weight.shape[1]),
                                                    str(self.padding_idx)]), path)

    class TextConv(nn.Module):
        """Token vectors `[batch, L, D]` -> Conv1d over time -> ReLU -> max over time."""

        def __init__(self, dim: int, out_channels: int, kernel_size: int) -> None:
            super().__init__()
            self.conv = nn.Conv1d(dim, out_channels, kernel_size, padding=kernel_size // 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv(x.transpose(1, 2))).amax(dim=2)

        def emit_source(self, writer, path: str):
            name = writer.helper("TextConv", TEXT_CONV)
            conv = self.conv
            return writer.checked(self, call(name, [str(conv.in_channels), str(conv.out_channels),
                                                    str(conv.kernel_size[0])]), path)

    return {"BagOfWords": BagOfWords, "TextConv": TextConv}


@register_block("bag_of_words")
class BagOfWordsBlock(Block):
    """Token ids `[L]` -> `[embedding_dim]`: the mean of the tokens' vectors, padding left out."""

    example = ([64], {"type": "bag_of_words", "num_embeddings": 8000, "embedding_dim": 32})

    num_embeddings: Size = Field(description="vocabulary size: ids 0..num_embeddings-1")
    embedding_dim: Size = Field(32, description="length of each token's vector")
    padding_idx: Index = Field(0, description="the padding id: no vector, not counted in the mean")

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 1, "token ids")
        if not 0 <= self.padding_idx < self.num_embeddings:
            raise ShapeError(f"padding_idx {self.padding_idx} is outside [0, {self.num_embeddings})")
        return (self.embedding_dim,)

    def build(self, shape: Shape) -> nn.Module:
        return modules().BagOfWords(self.num_embeddings, self.embedding_dim, self.padding_idx)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return self.num_embeddings * self.embedding_dim, 0


@register_block("text_conv")
class TextConvBlock(Block):
    """Token vectors `[L, D]` -> `[out_channels]`: a 1-D convolution over time (same length),
    ReLU, then the max over time (Kim's CNN for sentence classification)."""

    example = ([64, 32], {"type": "text_conv", "out_channels": 64, "kernel_size": 3})

    out_channels: Size = Field(description="filters, the output's length")
    kernel_size: Size = Field(3, description="tokens each filter sees (odd keeps the length)")

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 2, "tokens, dim")
        return (self.out_channels,)

    def build(self, shape: Shape) -> nn.Module:
        return modules().TextConv(shape[1], self.out_channels, self.kernel_size)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.conv(shape[1], self.out_channels, (self.kernel_size,))


EXAMPLE_RECIPES: dict[str, tuple[str, str]] = {  # title -> (what it shows, recipe)
    "embedding, text_conv": ("Token ids embedded, then a 1-D convolution and max over time.", """\
model:
  input: {shape: [64], dtype: int64}
  backbone:
    - {type: embedding, num_embeddings: 8000, embedding_dim: 32, padding_idx: 0}
    - {type: text_conv, out_channels: 64, kernel_size: 3}
  head: {type: softmax, classes: 2}
"""),
}

__getattr__ = module_getattr(__name__, modules)
