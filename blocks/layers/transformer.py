"""Vision-transformer parts on token sequences `[L, D]`: `patch_embed`, `class_token`,
`position_embedding`, `transformer_encoder` (attention and MLP), and `select_token` /
`token_mean` to end in `[D]`. Their modules, source emitters, helper classes and examples live
here."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PositiveInt, model_validator

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.pysource import call, literal
from blocks.layers import regularize
from blocks.layers.base import IntOrList, Probability, module_getattr, torch_modules
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, expand, fmt_shape, require_rank

PATCH_EMBED = '''
class PatchEmbed(nn.Module):
    """Cut images into patches, project each to `dim`: [N, C, H, W] -> [N, L, dim]."""

    def __init__(
        self, channels: int, dim: int, patch: tuple[int, int], bias: bool = True
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)
'''

CLASS_TOKEN = '''
class ClassToken(nn.Module):
    """A learned token put in front of the sequence: [N, L, D] -> [N, L + 1, D]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)
'''

POSITION_EMBEDDING = '''
class PositionEmbedding(nn.Module):
    """A learned embedding per position (initially N(0, std^2)), added to the tokens."""

    def __init__(self, length: int, dim: int, std: float = 0.02) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(1, length, dim).normal_(std=std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.embedding
'''

TRANSFORMER_ENCODER = '''
class TransformerEncoder(nn.Module):
    """Pre-norm encoder layer (ViT): x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.self_attention = nn.MultiheadAttention(
            dim, heads, dropout=attention_dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )
        self.drop_path = DropPath(drop_path)
        for module in self.mlp:
            if isinstance(module, nn.Linear):  # ViT's MLP initialisation
                nn.init.xavier_uniform_(module.weight)
                nn.init.normal_(module.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.drop_path(self.dropout(y))
        return x + self.drop_path(self.mlp(self.ln_2(x)))
'''

SELECT_TOKEN = '''
class SelectToken(nn.Module):
    """Keep one token: [N, L, D] -> [N, D] (ViT reads the class token, index 0)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]
'''

TOKEN_MEAN = '''
class TokenMean(nn.Module):
    """Average the tokens: [N, L, D] -> [N, D]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)
'''


@torch_modules("PatchEmbed", "ClassToken", "PositionEmbedding", "EncoderLayer", "SelectToken",
               "TokenMean")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    DropPath = regularize.modules().DropPath

    class PatchEmbed(nn.Module):
        """Conv with kernel = stride = patch, then `[N, D, h, w]` -> tokens `[N, h*w, D]`."""

        def __init__(self, channels: int, dim: int, patch: tuple[int, int], bias: bool) -> None:
            super().__init__()
            self.proj = nn.Conv2d(channels, dim, patch, stride=patch, bias=bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x).flatten(2).transpose(1, 2)

        def emit_source(self, writer, path: str):
            name = writer.helper("PatchEmbed", PATCH_EMBED)
            proj = self.proj
            args = [str(proj.in_channels), str(proj.out_channels),
                    literal(tuple(proj.kernel_size), f"{path}.proj.kernel_size")]
            if proj.bias is None:
                args.append("bias=False")
            return writer.checked(self, call(name, args), path)

    class ClassToken(nn.Module):
        """A learned token put in front of the sequence: `[N, L, D]` -> `[N, L + 1, D]`."""

        def __init__(self, dim: int) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.zeros(1, 1, dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)

        def emit_source(self, writer, path: str):
            name = writer.helper("ClassToken", CLASS_TOKEN)
            return writer.checked(self, f"{name}({self.token.shape[-1]})", path)

    class PositionEmbedding(nn.Module):
        """A learned embedding per position, added to the tokens."""

        def __init__(self, length: int, dim: int, std: float) -> None:
            super().__init__()
            self.embedding = nn.Parameter(torch.empty(1, length, dim).normal_(std=std))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.embedding

        def emit_source(self, writer, path: str):
            """`std` (the initialisation) is not kept on the module: the helper's default, ViT's
            0.02, is written; the weights file sets the learned values."""
            name = writer.helper("PositionEmbedding", POSITION_EMBEDDING)
            _, length, dim = self.embedding.shape
            return writer.checked(self, f"{name}({length}, {dim})", path)

    class EncoderLayer(nn.Module):
        """Pre-norm transformer encoder layer: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.

        Built from `nn.MultiheadAttention`, `nn.LayerNorm`, `nn.Linear`; submodule order is
        torchvision's ViT `EncoderBlock` (ln_1, self_attention, ln_2, mlp)."""

        def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float,
                     attention_dropout: float, drop_path: float, eps: float) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm(dim, eps=eps)
            self.self_attention = nn.MultiheadAttention(dim, heads, dropout=attention_dropout,
                                                        batch_first=True)
            self.dropout = nn.Dropout(dropout)
            self.ln_2 = nn.LayerNorm(dim, eps=eps)
            self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(mlp_dim, dim), nn.Dropout(dropout))
            self.drop_path = DropPath(drop_path)
            for module in self.mlp:
                if isinstance(module, nn.Linear):  # ViT's MLP initialisation
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.normal_(module.bias, std=1e-6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.ln_1(x)
            y, _ = self.self_attention(y, y, y, need_weights=False)
            x = x + self.drop_path(self.dropout(y))
            return x + self.drop_path(self.mlp(self.ln_2(x)))

        def emit_source(self, writer, path: str):
            writer.helper("DropPath", regularize.DROP_PATH)  # the encoder's helper class uses it
            name = writer.helper("TransformerEncoder", TRANSFORMER_ENCODER)
            attention = self.self_attention
            args = [str(attention.embed_dim), str(attention.num_heads),
                    str(self.mlp[0].out_features)]
            defaults = {"dropout": (self.dropout.p, 0.0),
                        "attention_dropout": (attention.dropout, 0.0),
                        "drop_path": (self.drop_path.p, 0.0), "eps": (self.ln_1.eps, 1e-6)}
            args += [f"{key}={literal(float(value), f'{path}.{key}')}"
                     for key, (value, default) in defaults.items() if value != default]
            return writer.checked(self, call(name, args), path)

    class SelectToken(nn.Module):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, self.index]

        def extra_repr(self) -> str:
            return f"index={self.index}"

        def emit_source(self, writer, path: str):
            name = writer.helper("SelectToken", SELECT_TOKEN)
            return writer.checked(self, f"{name}({literal(self.index, f'{path}.index')})", path)

    class TokenMean(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=1)

        def emit_source(self, writer, path: str):
            return writer.checked(self, f"{writer.helper('TokenMean', TOKEN_MEAN)}()", path)

    return {"PatchEmbed": PatchEmbed, "ClassToken": ClassToken,
            "PositionEmbedding": PositionEmbedding, "EncoderLayer": EncoderLayer,
            "SelectToken": SelectToken, "TokenMean": TokenMean}


def _tokens(shape: Shape) -> None:
    if len(shape) != 2:
        raise ShapeError(f"expects tokens [length, dim] per sample, got {fmt_shape(shape)}")


@register_block("patch_embed")
class PatchEmbedBlock(Block):
    """Cut `[C, H, W]` into `patch_size` patches and project each to `dim`: tokens `[L, dim]`,
    `L = (H / p) * (W / p)`. The image must tile exactly (a remainder would be dropped silently)."""

    example = ([3, 32, 32], {"type": "patch_embed", "dim": 64, "patch_size": 8})

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
        return modules().PatchEmbed(shape[0], self.dim, expand(self.patch_size, 2, "patch_size"), self.bias)

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
        return modules().ClassToken(shape[1])

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
        return modules().PositionEmbedding(shape[0], shape[1], self.std)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return shape[0] * shape[1], 0


@register_block("transformer_encoder")
class TransformerEncoder(Block):
    """One pre-norm encoder layer on tokens `[L, D]` (ViT): multi-head self-attention with
    `heads` heads, then an MLP of width `mlp_dim` (or `mlp_ratio * D`), each a residual with
    `drop_path`. Use `repeat` for depth."""

    example = ([17, 64], {"type": "transformer_encoder", "heads": 4})

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
        return modules().EncoderLayer(shape[1], self.heads, self._mlp_dim(shape[1]), self.dropout,
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
        return modules().SelectToken(self.index)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


@register_block("token_mean")
class TokenMeanBlock(Block):
    """Average the tokens: `[L, D]` -> `[D]` (mean pooling instead of a class token)."""

    def output_shape(self, shape: Shape) -> Shape:
        _tokens(shape)
        return (shape[1],)

    def build(self, shape: Shape) -> nn.Module:
        return modules().TokenMean()

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


EXAMPLE_RECIPES: dict[str, tuple[str, str]] = {  # title -> (what it shows, recipe)
    "patch_embed, class_token, position_embedding, transformer_encoder, select_token": (
        "A tiny ViT: 8x8 patches become 16 tokens, plus a class token read by the head.", """\
model:
  input: {shape: [3, 32, 32]}
  backbone:
    - {type: patch_embed, dim: 32, patch_size: 8}
    - class_token
    - position_embedding
    - type: repeat
      times: 2
      blocks:
        - {type: transformer_encoder, heads: 4, mlp_ratio: 2.0, drop_path: 0.1}
    - {type: layernorm, eps: 1.0e-6}
    - select_token
  head: {type: softmax, classes: 10}
"""),
    "token_mean": ("Mean pooling over tokens instead of a class token.", """\
model:
  input: {shape: [3, 32, 32]}
  backbone:
    - {type: patch_embed, dim: 32, patch_size: 8}
    - position_embedding
    - {type: transformer_encoder, heads: 4, mlp_dim: 64}
    - token_mean
  head: {type: softmax, classes: 10}
"""),
}

__getattr__ = module_getattr(__name__, modules)
