"""Source emitters for the modern-classifier block types in `blocks.layers` (concat,
squeeze-excite, drop-path, layer scale, axis plumbing, ViT parts).

Each block's module gets a plain-torch helper class named after its block type (`squeeze_excite`
-> `SqueezeExcite`) whose forward is the same sequence of torch ops, so the written model is bit
for bit the built one. A helper that builds its own layers from hyper-parameters is rebuilt on
the meta device before a line is written and compared with the blocks module (layer types and
hyper-parameters, parameter and buffer shapes), as plain torch layers are; composites (`Concat`,
`DenseConcat`) take their children's expressions, each checked on its own.
"""

from __future__ import annotations

import torch
from torch import nn

from blocks.builder.preprocessing import Preprocessing
from blocks.exporters.common import ExportError
from blocks.exporters.source_writer import (
    Expr,
    SourceWriter,
    call,
    flat,
    literal,
    module_difference,
    register_emitter,
)
from blocks.layers.modules.axes import LayerNorm2d, Permute, Reshape
from blocks.layers.modules.branches import ConcatModule, DenseConcatModule
from blocks.layers.modules.gating import SqueezeExcitation
from blocks.layers.modules.pooling import GlobalAvgPool
from blocks.layers.modules.regularize import DropPath, LayerScale
from blocks.layers.modules.residual import ResidualModule
from blocks.layers.modules.transformer import (
    ClassToken,
    EncoderLayer,
    PatchEmbed,
    PositionEmbedding,
    SelectToken,
    TokenMean,
)

PERMUTE = '''
class Permute(nn.Module):
    """`x.permute(dims)`; `dims` start with the batch axis, 0."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)
'''

RESHAPE = '''
class Reshape(nn.Module):
    """Reshape each sample: [batch, ...] -> [batch, *shape]."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)
'''

LAYER_NORM_2D = '''
class LayerNorm2d(nn.LayerNorm):
    """nn.LayerNorm over the channels of [batch, C, *spatial], at each position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        x = nn.functional.layer_norm(
            x, self.normalized_shape, self.weight, self.bias, self.eps
        )
        return x.movedim(-1, 1)
'''

CONCAT = '''
class Concat(nn.Module):
    """Parallel branches on the same input, their outputs concatenated on axis `dim`."""

    def __init__(self, branches: list[nn.Module], dim: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=self.dim)
'''

DENSE_CONCAT = '''
class DenseConcat(nn.Module):
    """DenseNet's connection: the input, then body(x), on the channel axis."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)
'''

SQUEEZE_EXCITE = '''
class SqueezeExcite(nn.Module):
    """Channel gating: global average -> 1x1 conv down -> activation -> 1x1 conv up ->
    gate, times the input (torchvision's SqueezeExcitation layout)."""

    def __init__(
        self, channels: int, squeeze: int, activation: nn.Module, gate: nn.Module
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation
        self.scale_activation = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x
'''

DROP_PATH = '''
class DropPath(nn.Module):
    """Stochastic depth: in training, zero the whole branch for a random subset of
    samples ("row") or for the whole batch ("batch") and rescale the survivors;
    identity in eval."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        mask = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask.div_(keep)
'''

LAYER_SCALE = '''
class LayerScale(nn.Module):
    """A learned per-channel scale, broadcast over the axes after the channels."""

    def __init__(self, shape: tuple[int, ...], init_value: float = 1e-6) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full(shape, float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale
'''

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


def checked(module: nn.Module, writer: SourceWriter, expression: Expr, path: str) -> Expr:
    """Build `expression` (which uses the writer's helper classes) on the meta device and
    compare it with `module`: every submodule's type and hyper-parameters, every parameter and
    buffer shape. The top level is a helper class, so its type name differs; its attributes
    must not."""
    namespace: dict = {"nn": nn, "torch": torch}
    text = flat(expression)
    try:
        for source in writer.helpers.values():
            exec(source, namespace)  # noqa: S102 - the helper classes written above
        with torch.device("meta"):
            rebuilt = eval(text, namespace)  # noqa: S307 - our own expression
    except Exception as err:  # noqa: BLE001 - any failure means we cannot write this layer
        raise ExportError(f"{path}: the written construction {text} fails: {err}") from None
    problem = module_difference(module, rebuilt, helper=True)
    if problem:
        raise ExportError(f"{path}: {type(module).__name__} cannot be rebuilt as {text} "
                          f"({problem})")
    return expression


def number(value: torch.Tensor) -> float:
    """The shortest decimal that gives back the element `value` in its own dtype."""
    exact = value.item()
    for digits in range(1, 18):
        short = float(f"{exact:.{digits}g}")
        if torch.tensor(short, dtype=value.dtype) == value:
            return short
    return exact


# --- axes ----------------------------------------------------------------------------------------
@register_emitter(Permute)
def _permute(module: Permute, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("Permute", PERMUTE)
    return checked(module, writer, f"{name}({literal(list(module.dims), path)})", path)


@register_emitter(Reshape)
def _reshape(module: Reshape, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("Reshape", RESHAPE)
    return checked(module, writer, f"{name}({literal(tuple(module.shape), path)})", path)


@register_emitter(LayerNorm2d)
def _layer_norm_2d(module: LayerNorm2d, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("LayerNorm2d", LAYER_NORM_2D)
    shape = tuple(module.normalized_shape)
    args: list[Expr] = [literal(shape[0] if len(shape) == 1 else shape, path)]
    if module.eps != 1e-5:
        args.append(f"eps={literal(module.eps, path)}")
    if not module.elementwise_affine:
        args.append("elementwise_affine=False")
    elif module.bias is None:
        args.append("bias=False")
    return checked(module, writer, call(name, args), path)


# --- branches ------------------------------------------------------------------------------------
@register_emitter(ConcatModule)
def _concat(module: ConcatModule, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("Concat", CONCAT)
    branches = writer.children(module.branches, f"{path}.branches")
    return call(name, [call("", [expr for _, expr in branches], "[", "]"),
                       literal(module.dim, f"{path}.dim")])


@register_emitter(DenseConcatModule)
def _dense_concat(module: DenseConcatModule, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("DenseConcat", DENSE_CONCAT)
    return call(name, [writer.construct(module.body, f"{path}.body")])


# --- gating and regularisation -------------------------------------------------------------------
@register_emitter(SqueezeExcitation)
def _squeeze_excite(module: SqueezeExcitation, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("SqueezeExcite", SQUEEZE_EXCITE)
    activation = writer.construct(module.activation, f"{path}.activation")
    gate = writer.construct(module.scale_activation, f"{path}.scale_activation")
    expression = call(name, [str(module.fc1.in_channels), str(module.fc1.out_channels),
                             activation, gate])
    return checked(module, writer, expression, path)


@register_emitter(DropPath)
def _drop_path(module: DropPath, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("DropPath", DROP_PATH)
    args = [literal(module.p, f"{path}.p")]
    if module.mode != "row":
        args.append(literal(module.mode, f"{path}.mode"))
    return checked(module, writer, f"{name}({', '.join(args)})", path)


@register_emitter(LayerScale)
def _layer_scale(module: LayerScale, writer: SourceWriter, path: str) -> Expr:
    """The scale's initial value is written when every element still holds it (an untrained
    model); the weights file sets the learned values either way."""
    name = writer.helper("LayerScale", LAYER_SCALE)
    scale = module.scale.detach()
    args = [literal(tuple(scale.shape), f"{path}.scale")]
    if scale.numel() and not scale.is_meta and bool((scale == scale.flatten()[0]).all()):
        value = number(scale.flatten()[0])
        if value != 1e-6:
            args.append(literal(value, f"{path}.scale"))
    return checked(module, writer, f"{name}({', '.join(args)})", path)


# --- transformer parts ---------------------------------------------------------------------------
@register_emitter(PatchEmbed)
def _patch_embed(module: PatchEmbed, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("PatchEmbed", PATCH_EMBED)
    proj = module.proj
    args: list[Expr] = [str(proj.in_channels), str(proj.out_channels),
                        literal(tuple(proj.kernel_size), f"{path}.proj.kernel_size")]
    if proj.bias is None:
        args.append("bias=False")
    return checked(module, writer, call(name, args), path)


@register_emitter(ClassToken)
def _class_token(module: ClassToken, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("ClassToken", CLASS_TOKEN)
    return checked(module, writer, f"{name}({module.token.shape[-1]})", path)


@register_emitter(PositionEmbedding)
def _position_embedding(module: PositionEmbedding, writer: SourceWriter, path: str) -> Expr:
    """`std` (the initialisation) is not kept on the module: the helper's default, ViT's 0.02,
    is written; the weights file sets the learned values."""
    name = writer.helper("PositionEmbedding", POSITION_EMBEDDING)
    _, length, dim = module.embedding.shape
    return checked(module, writer, f"{name}({length}, {dim})", path)


@register_emitter(EncoderLayer)
def _transformer_encoder(module: EncoderLayer, writer: SourceWriter, path: str) -> Expr:
    writer.helper("DropPath", DROP_PATH)  # used by the encoder's helper class
    name = writer.helper("TransformerEncoder", TRANSFORMER_ENCODER)
    attention = module.self_attention
    args: list[Expr] = [str(attention.embed_dim), str(attention.num_heads),
                        str(module.mlp[0].out_features)]
    defaults = {"dropout": (module.dropout.p, 0.0), "attention_dropout": (attention.dropout, 0.0),
                "drop_path": (module.drop_path.p, 0.0), "eps": (module.ln_1.eps, 1e-6)}
    args += [f"{key}={literal(float(value), f'{path}.{key}')}"
             for key, (value, default) in defaults.items() if value != default]
    return checked(module, writer, call(name, args), path)


@register_emitter(SelectToken)
def _select_token(module: SelectToken, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("SelectToken", SELECT_TOKEN)
    return checked(module, writer, f"{name}({literal(module.index, f'{path}.index')})", path)


@register_emitter(TokenMean)
def _token_mean(module: TokenMean, writer: SourceWriter, path: str) -> Expr:
    return checked(module, writer, f"{writer.helper('TokenMean', TOKEN_MEAN)}()", path)


# --- blocks' own modules -------------------------------------------------------------------------
RESIDUAL = '''
class Residual(nn.Module):
    """body(x) + shortcut(x): a residual connection."""

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)
'''

GLOBAL_AVG_POOL = '''
class GlobalAvgPool(nn.Module):
    """Mean over every axis after the channels: [batch, C, *spatial] -> [batch, C]."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.dims = tuple(range(2, 2 + spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.dims)
'''


@register_emitter(ResidualModule)
def _residual(module: ResidualModule, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("Residual", RESIDUAL)
    return call(name, [expr for _, expr in writer.children(module, path)])


@register_emitter(GlobalAvgPool)
def _global_avg_pool(module: GlobalAvgPool, writer: SourceWriter, path: str) -> Expr:
    if module.dims != tuple(range(2, 2 + len(module.dims))):
        raise ExportError(f"{path}: GlobalAvgPool over dims {module.dims} is not [C, *spatial]")
    return f"{writer.helper('GlobalAvgPool', GLOBAL_AVG_POOL)}({len(module.dims)})"


PREPROCESSING = '''
class Preprocessing(nn.Module):
    """Raw input -> model input: impute, scale, standardise (training statistics), normalise
    channels, one-hot encode category codes (after the numeric columns), resize, reshape."""

    def __init__(self, scale: float, standardize: bool, raw_shape: list[int] | None,
                 resize_from: list[int] | None, input_shape: list[int], impute: bool = False,
                 numeric_index: list[int] | None = None, category_index: list[int] | None = None,
                 category_sizes: list[int] | None = None,
                 channel_mean: list[float] | None = None,
                 channel_std: list[float] | None = None,
                 embedding_sizes: list[int | None] | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.standardize = standardize
        self.impute = impute
        self.resize_from = tuple(resize_from) if resize_from is not None else None
        self.input_shape = tuple(input_shape)
        self.category_sizes = list(category_sizes or [])
        self.normalizes = channel_mean is not None
        if standardize:
            self.register_buffer("mean", torch.zeros(raw_shape))
            self.register_buffer("std", torch.ones(raw_shape))
        if impute:
            self.register_buffer("fill", torch.zeros(raw_shape))
        if self.category_sizes:
            self.register_buffer("numeric_index", torch.tensor(numeric_index, dtype=torch.long),
                                 persistent=False)
            self.register_buffer("category_index", torch.tensor(category_index, dtype=torch.long),
                                 persistent=False)
        if self.normalizes:
            shape = (len(channel_mean), 1, 1)
            self.register_buffer("channel_mean", torch.tensor(channel_mean).reshape(shape),
                                 persistent=False)
            self.register_buffer("channel_std", torch.tensor(channel_std).reshape(shape),
                                 persistent=False)
        if embedding_sizes is not None:
            self.embeddings = nn.ModuleDict({
                str(j): nn.Embedding(size + 1, dim, padding_idx=0)
                for j, (size, dim) in enumerate(zip(self.category_sizes, embedding_sizes))
                if dim is not None
            })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impute:
            x = torch.where(torch.isnan(x), self.fill, x)
        if self.category_sizes:
            codes = torch.index_select(x.reshape(x.shape[0], -1), 1, self.category_index)
        if self.scale != 1.0:
            x = x * self.scale
        if self.standardize:
            x = (x - self.mean) / self.std
        if self.normalizes:
            x = (x - self.channel_mean) / self.channel_std
        if self.category_sizes:
            parts = [torch.index_select(x.reshape(x.shape[0], -1), 1, self.numeric_index)]
            embeddings = self._modules.get("embeddings")
            for j, size in enumerate(self.category_sizes):
                code = codes[:, j]
                if embeddings is not None and str(j) in embeddings:
                    known = (code >= 0) & (code < size)
                    index = torch.where(known, code + 1, torch.zeros_like(code)).long()
                    parts.append(embeddings[str(j)](index).to(x.dtype))
                else:
                    ids = torch.arange(size, device=x.device, dtype=x.dtype)
                    parts.append((code[:, None] == ids).to(x.dtype))
            x = torch.cat(parts, dim=1)
        if self.resize_from is not None:
            x = x.reshape(x.shape[0], *self.resize_from)
            if tuple(self.resize_from[1:]) != self.input_shape[1:]:
                x = nn.functional.interpolate(
                    x, size=self.input_shape[1:], mode="bilinear", align_corners=False
                )
        return x.reshape(x.shape[0], *self.input_shape)
'''


@register_emitter(Preprocessing)
def _preprocessing(module: Preprocessing, writer: SourceWriter, path: str) -> Expr:
    raw_shape = (list(module.mean.shape) if module.standardize
                 else list(module.fill.shape) if module.impute is not None else None)
    resize_from = list(module.resize_from) if module.resize_from is not None else None
    args = [literal(module.scale, f"{path}.scale"), literal(module.standardize, path),
            literal(raw_shape, path), literal(resize_from, path),
            literal(list(module.input_shape), path)]
    extra: list[Expr] = []
    if module.impute is not None or module.category_sizes or module.normalizes:
        extra.append(literal(module.impute is not None, path))
    if module.category_sizes or module.normalizes:
        cats = bool(module.category_sizes)
        extra += [literal(module.numeric_index.tolist() if cats else None, path),
                  literal(module.category_index.tolist() if cats else None, path),
                  literal(list(module.category_sizes) if cats else None, path)]
    embeddings = module._modules.get("embeddings")
    if module.normalizes or embeddings is not None:
        extra += [literal(module.channel_mean.reshape(-1).tolist() if module.normalizes else None,
                          path),
                  literal(module.channel_std.reshape(-1).tolist() if module.normalizes else None,
                          path)]
    if embeddings is not None:
        extra.append(literal([embeddings[str(j)].embedding_dim if str(j) in embeddings else None
                              for j in range(len(module.category_sizes))], path))
    return call(writer.helper("Preprocessing", PREPROCESSING), args + extra)
