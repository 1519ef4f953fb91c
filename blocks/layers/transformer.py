"""Vision-transformer parts on token sequences `[L, D]`: `patch_embed`, `class_token`,
`position_embedding`, `transformer_encoder`, and `select_token` / `token_mean` to end in `[D]`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PositiveInt, model_validator

from blocks.core.errors import ShapeError
from blocks.core.lazy import LazyModule, moved_to, nn
from blocks.layers.catalogue import IntOrList, Probability
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, expand, fmt_shape, require_rank

impl = LazyModule("blocks.layers.modules.transformer")  # the nn.Module classes, imported at the first build


def _tokens(shape: Shape) -> None:
    if len(shape) != 2:
        raise ShapeError(f"expects tokens [length, dim] per sample, got {fmt_shape(shape)}")


@register_block("patch_embed")
class PatchEmbedBlock(Block):
    """Cut `[C, H, W]` into `patch_size` patches and project each to `dim`: tokens `[L, dim]`,
    `L = (H / p) * (W / p)`. The image must tile exactly (a remainder would be dropped silently)."""

    dim: PositiveInt = Field(description="width of each token")
    patch_size: IntOrList = Field(description="patch height and width (one number: square)")
    bias: bool = Field(True, description="learn an additive bias")

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, "channels, height, width")
        patch = expand(self.patch_size, 2, "patch_size")
        for axis, size, p in zip(("height", "width"), shape[1:], patch, strict=True):
            if size % p:
                raise ShapeError(f"{axis} {size} is not a multiple of the patch size {p}; "
                                 f"resize the input or pick a patch size that divides it")
        return ((shape[1] // patch[0]) * (shape[2] // patch[1]), self.dim)

    def build(self, shape: Shape) -> nn.Module:
        return impl.PatchEmbed(shape[0], self.dim, expand(self.patch_size, 2, "patch_size"), self.bias)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        patch = expand(self.patch_size, 2, "patch_size")
        return counts.conv(shape[0], self.dim, patch, bias=self.bias)


@register_block("class_token")
class ClassTokenBlock(Block):
    """Prepend a learned class token (zeros at first, like ViT): `[L, D]` -> `[L + 1, D]`."""

    def output_shape(self, shape: Shape) -> Shape:
        _tokens(shape)
        return (shape[0] + 1, shape[1])

    def build(self, shape: Shape) -> nn.Module:
        return impl.ClassToken(shape[1])

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return shape[1], 0


@register_block("position_embedding")
class PositionEmbeddingBlock(Block):
    """Add a learned `[L, D]` position embedding (initialised from N(0, std²), ViT's 0.02)."""

    std: Annotated[float, Field(ge=0)] = Field(
        0.02, description="standard deviation of the initial values")

    def output_shape(self, shape: Shape) -> Shape:
        _tokens(shape)
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return impl.PositionEmbedding(shape[0], shape[1], self.std)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return shape[0] * shape[1], 0


@register_block("transformer_encoder")
class TransformerEncoder(Block):
    """One pre-norm encoder layer on tokens `[L, D]` (ViT): multi-head self-attention with
    `heads` heads, then an MLP of width `mlp_dim` (or `mlp_ratio * D`), each a residual with
    `drop_path`. Use `repeat` for depth."""

    heads: PositiveInt = Field(description="attention heads (the token width must divide by it)")
    mlp_dim: PositiveInt | None = Field(
        None, description="hidden width of the MLP (or give mlp_ratio)")
    mlp_ratio: Annotated[float, Field(gt=0)] | None = Field(
        None, description="MLP hidden width as a multiple of the token width (default 4)")
    dropout: Probability = Field(0.0, description="dropout in the MLP and after attention")
    attention_dropout: Probability = Field(0.0, description="dropout on the attention weights")
    drop_path: Probability = Field(0.0, description="stochastic depth of both residual branches")
    eps: Annotated[float, Field(gt=0)] = Field(1e-6, description="layer norms' epsilon")

    @model_validator(mode="after")
    def _one_width(self) -> TransformerEncoder:
        if self.mlp_dim is not None and self.mlp_ratio is not None:
            raise ValueError("give `mlp_dim` or `mlp_ratio`, not both")
        return self

    def _mlp_dim(self, dim: int) -> int:
        if self.mlp_dim is not None:
            return self.mlp_dim
        width = int(dim * (self.mlp_ratio if self.mlp_ratio is not None else 4.0))
        if width < 1:
            raise ShapeError(f"mlp_ratio {self.mlp_ratio} gives an MLP of width 0 for dim {dim}")
        return width

    def output_shape(self, shape: Shape) -> Shape:
        _tokens(shape)
        if shape[1] % self.heads:
            raise ShapeError(f"token dim {shape[1]} is not divisible by heads {self.heads}")
        self._mlp_dim(shape[1])
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return impl.EncoderLayer(shape[1], self.heads, self._mlp_dim(shape[1]), self.dropout,
                            self.attention_dropout, self.drop_path, self.eps)

    def parameter_count(self, shape: Shape) -> counts.Counts | None:
        dim, mlp = shape[1], self._mlp_dim(shape[1])
        # nn.MultiheadAttention: in_proj [3D, D] + bias [3D], out_proj a D -> D linear
        attention = (3 * dim * dim + 3 * dim, 0), counts.linear(dim, dim)
        norms = counts.layernorm(dim, True, True), counts.layernorm(dim, True, True)
        return counts.total((*attention, *norms, counts.linear(dim, mlp), counts.linear(mlp, dim)))


@register_block("select_token")
class SelectTokenBlock(Block):
    """Keep one token: `[L, D]` -> `[D]` (ViT reads the class token, `index: 0`)."""

    index: int = Field(0, description="which token to keep (0: the class token)")

    def output_shape(self, shape: Shape) -> Shape:
        _tokens(shape)
        if not -shape[0] <= self.index < shape[0]:
            raise ShapeError(f"index {self.index} is out of range for {shape[0]} tokens")
        return (shape[1],)

    def build(self, shape: Shape) -> nn.Module:
        return impl.SelectToken(self.index)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


@register_block("token_mean")
class TokenMeanBlock(Block):
    """Average the tokens: `[L, D]` -> `[D]` (mean pooling instead of a class token)."""

    def output_shape(self, shape: Shape) -> Shape:
        _tokens(shape)
        return (shape[1],)

    def build(self, shape: Shape) -> nn.Module:
        return impl.TokenMean()

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


# the nn.Module classes moved to the torch side; old imports still find them
__getattr__ = moved_to("blocks.layers.modules.transformer", {'PatchEmbed', 'ClassToken', 'PositionEmbedding', 'EncoderLayer', 'SelectToken', 'TokenMean'}, __name__)
