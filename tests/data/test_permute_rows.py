"""Splitting permutes the feature matrix in place (no second copy): the same rows as `x[order]`."""

from __future__ import annotations

import numpy as np
import torch

from blocks.data import splits


def test_permute_rows_equals_indexing(monkeypatch):
    order = np.random.default_rng(0).permutation(1000)
    for shape in ((1000, 7), (1000, 2, 3, 4), (1000,)):
        x = torch.randn(shape)
        monkeypatch.setattr(splits, "PERMUTE_IN_PLACE_BYTES", 0)
        expected = x[torch.as_tensor(order)].clone()
        out = splits.permute_rows(x, order)
        assert out.data_ptr() == x.data_ptr()  # in place
        assert torch.equal(out, expected)
    view = torch.randn(1000, 8)[:, ::2]  # not contiguous: indexed, the caller's rows untouched
    before = view.clone()
    out = splits.permute_rows(view, order)
    assert torch.equal(out, before[torch.as_tensor(order)]) and torch.equal(view, before)
