"""The module a recipe's `model.preprocess` builds: raw samples in, the backbone's input out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blocks.core.errors import Problem, SpecError
from blocks.spec.preprocess import PreprocessSpec


class Preprocessing(nn.Module):
    """The module form of a `PreprocessSpec`. Fitted statistics (`mean`, `std`, `fill`) are
    buffers saved with the weights; indices and channel statistics come from the spec."""

    def __init__(self, spec: PreprocessSpec, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.scale = float(spec.scale)
        self.standardize = spec.standardize
        self.resize_from = tuple(spec.resize_from) if spec.resize_from is not None else None
        self.input_shape = tuple(input_shape)
        self.impute = spec.impute
        self.fill_value = float(spec.fill_value)
        columns = spec.category_columns
        self.category_sizes = [len(spec.categories[spec.features[i]]) for i in columns]
        embed = spec.embeddings or {}
        if embed:  # a learned vector per category (+ row 0: unseen or missing, kept zero)
            self.embeddings = nn.ModuleDict({
                str(j): nn.Embedding(size + 1, embed[spec.features[i]], padding_idx=0)
                for j, (i, size) in enumerate(zip(columns, self.category_sizes, strict=True))
                if spec.features[i] in embed})
        self.normalizes = spec.channel_mean is not None
        if spec.standardize:
            self.register_buffer("mean", torch.zeros(spec.raw_shape))
            self.register_buffer("std", torch.ones(spec.raw_shape))
        if spec.impute is not None:
            self.register_buffer("fill", torch.zeros(spec.raw_shape))
        if columns:  # derived from the spec: not saved with the weights
            numeric = [i for i in range(spec.raw_size) if i not in columns]
            self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.long),
                                 persistent=False)
            self.register_buffer("category_index", torch.tensor(columns, dtype=torch.long),
                                 persistent=False)
        if self.normalizes:
            shape = (len(spec.channel_mean), 1, 1)
            self.register_buffer("channel_mean", torch.tensor(spec.channel_mean).reshape(shape),
                                 persistent=False)
            self.register_buffer("channel_std", torch.tensor(spec.channel_std).reshape(shape),
                                 persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impute is not None:
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
                    known = (code >= 0) & (code < size)  # NaN, -1, out of range: row 0 (zeros)
                    index = torch.where(known, code + 1, torch.zeros_like(code)).long()
                    parts.append(embeddings[str(j)](index).to(x.dtype))
                else:
                    ids = torch.arange(size, device=x.device, dtype=x.dtype)
                    parts.append((code[:, None] == ids).to(x.dtype))  # code -1: all zero
            x = torch.cat(parts, dim=1)
        if self.resize_from is not None:
            x = x.reshape(x.shape[0], *self.resize_from)
            if tuple(self.resize_from[1:]) != self.input_shape[1:]:
                x = F.interpolate(x, size=self.input_shape[1:], mode="bilinear", align_corners=False)
        return x.reshape(x.shape[0], *self.input_shape)

    @torch.no_grad()
    def fit(self, raw: torch.Tensor) -> None:
        """Fit the statistics on raw training inputs: fill values (NaN ignored), then the
        mean/std of the filled values after `scale`; constant features get std 1, category
        columns mean 0 and std 1 (they are one-hot encoded, never standardised)."""
        values = raw.to(torch.float64).reshape(len(raw), -1)
        if self.impute is not None:
            fill = self._fill_values(values)
            self.fill.copy_(fill.reshape(self.fill.shape).to(self.fill.dtype))
            values = torch.where(torch.isnan(values), fill, values)
        if not self.standardize:
            return
        values = values * self.scale
        mean = values.mean(dim=0)
        std = values.std(dim=0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        if self.category_sizes:
            mean[self.category_index] = 0.0
            std[self.category_index] = 1.0
        self.mean.copy_(mean.reshape(self.mean.shape).to(self.mean.dtype))
        self.std.copy_(std.reshape(self.std.shape).to(self.std.dtype))

    def _fill_values(self, values: torch.Tensor) -> torch.Tensor:
        """One fill per feature, from the non-missing training values."""
        categorical = set(self.category_index.tolist()) if self.category_sizes else set()
        fill = torch.empty(values.shape[1], dtype=torch.float64)
        for j in range(values.shape[1]):
            column = values[:, j][~torch.isnan(values[:, j])]
            if len(column) == 0:
                raise SpecError(Problem("data.impute", f"raw feature {j} has no values in the "
                                        "training split, so there is nothing to impute from",
                                        "empty_column"))
            policy = "most_frequent" if j in categorical else self.impute
            if policy == "mean":
                fill[j] = column.mean()
            elif policy == "median":
                fill[j] = torch.quantile(column, 0.5)  # numpy's / scikit-learn's median
            elif policy == "most_frequent":
                unique, counts = torch.unique(column, return_counts=True)
                fill[j] = unique[counts.argmax()]  # ties: the smallest value
            else:
                fill[j] = self.fill_value
        return fill

    def extra_repr(self) -> str:
        parts = [f"impute={self.impute}"] if self.impute else []
        parts += [f"scale={self.scale:g}"] if self.scale != 1.0 else []
        parts += ["standardize"] if self.standardize else []
        parts += ["normalize"] if self.normalizes else []
        parts += [f"categories={self.category_sizes}"] if self.category_sizes else []
        parts += [f"resize_from={list(self.resize_from)}"] if self.resize_from else []
        return ", ".join(parts + [f"to={list(self.input_shape)}"])
