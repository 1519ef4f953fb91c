"""Source emitter for `Preprocessing`, the raw-input module `blocks.builder.preprocessing`
builds from a run's data statistics. It is not a block type, so it has no family file in
`blocks/layers/`; every block type's module carries its own emitter (`emit_source`).
"""

from __future__ import annotations

from blocks.builder.preprocessing import Preprocessing
from blocks.exporters.source_writer import Expr, SourceWriter, call, literal, register_emitter

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
