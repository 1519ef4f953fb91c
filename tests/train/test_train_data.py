"""`data:` sources (bundled, CSV, NPZ, synthetic), splits and preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import blocks
from blocks.data.splits import load_splits
from blocks.run.training import build_model


def recipe(path=None, **data) -> blocks.Recipe:
    model = data.pop("model", {"input": {"shape": [3]}, "head": {"type": "softmax", "classes": 2}})
    text = {"model": model, "data": data}
    if path is None:
        return blocks.Recipe.model_validate(text)
    import yaml

    path.write_text(yaml.safe_dump(text))
    return blocks.load_recipe(path)


def write_csv(path, rows=20):
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, (rows, 3))
    y = (x[:, 0] > 5).astype(int)
    lines = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{t}" for r, t in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return x.astype(np.float32), y


def test_csv_path_is_relative_to_the_recipe(tmp_path):
    (tmp_path / "data").mkdir()
    x, y = write_csv(tmp_path / "data" / "table.csv")
    r = recipe(tmp_path / "r.yaml", csv={"path": "data/table.csv", "target": "label"},
               val_fraction=0.25, seed=3)
    splits = load_splits(r)
    assert splits.info == {"samples": 20, "kind": "tabular", "train": 15, "val": 5}
    assert splits.train.x.shape == (15, 3) and splits.train.y.dtype == torch.int64
    # tabular data is standardised with the TRAIN split's statistics only
    order = np.random.default_rng(3).permutation(20)
    train_raw = x[order[5:]].astype(np.float64)
    assert splits.preprocess.standardize and splits.preprocess.features == ["a", "b", "c"]
    assert torch.equal(splits.train.x, torch.as_tensor(x[order[5:]]))  # raw, as in the file
    model = build_model(splits, seed=0)
    pre = model.preprocess_module
    assert pre.mean.tolist() == pytest.approx(train_raw.mean(0).tolist())
    assert pre.std.tolist() == pytest.approx(train_raw.std(0).tolist())
    assert pre(splits.train.x).mean(0).abs().max() < 1e-5
    assert pre(splits.val.x).mean(0).abs().max() > 1e-3  # val is not re-centred on its own stats
    assert torch.equal(splits.val.y, torch.as_tensor(y[order[:5]]))
    # the same recipe trains end to end
    blocks.Trainer(model, {"epochs": 1}, quiet=True).fit(splits.train, splits.val)


def test_csv_feature_selection_and_unknown_column(tmp_path):
    write_csv(tmp_path / "t.csv")
    r = recipe(tmp_path / "r.yaml", csv={"path": "t.csv", "target": "label", "features": ["a", "c"]},
               model={"input": {"shape": [2]}, "head": {"type": "softmax", "classes": 2}})
    assert load_splits(r).train.x.shape[1] == 2
    bad = recipe(tmp_path / "r2.yaml", csv={"path": "t.csv", "target": "labl"})
    with pytest.raises(blocks.SpecError, match=r"t.csv: data.csv.path: missing column\(s\) 'labl' \(the file has 4 "
                       r"columns; did you mean 'label'\?\)"):
        load_splits(bad)
    missing = recipe(tmp_path / "r3.yaml", csv={"path": "nope.csv", "target": "label"})
    with pytest.raises(blocks.SpecError, match=r"data.csv.path: .*nope.csv.* does not exist"):
        load_splits(missing)


def test_csv_non_integer_class_id_is_refused_not_truncated(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,c,label\n1,2,3,0\n4,5,6,1.5\n7,8,9,1\n")
    r = recipe(tmp_path / "r.yaml", csv={"path": "t.csv", "target": "label"}, val_fraction=0.0)
    with pytest.raises(blocks.SpecError, match=r"t.csv line 3, column 'label': 1.5 is not a class id "
                       r"of the softmax head: a whole number 0..1 \(1 such row of 3\)"):
        load_splits(r)


def test_npz_single_and_multi_head(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 2, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", feats=x, kind=rng.integers(0, 4, 30),
             tags=rng.integers(0, 2, (30, 3)), y=rng.integers(0, 2, 30))
    single = recipe(tmp_path / "s.yaml", npz={"path": "d.npz", "x": "feats"}, val_fraction=0.2,
                    model={"input": {"shape": [2, 3]}, "backbone": ["flatten"],
                           "head": {"type": "softmax", "classes": 2}})
    s = load_splits(single)
    assert s.train.x.shape == (24, 2, 3) and s.preprocess is None  # arrays: fed as they are
    multi = recipe(tmp_path / "m.yaml", npz={"path": "d.npz", "x": "feats",
                                             "y": {"kind": "kind", "tags": "tags"}},
                   model={"input": {"shape": [2, 3]}, "backbone": ["flatten"], "heads": {
                       "kind": {"type": "softmax", "classes": 4},
                       "tags": {"type": "sigmoid", "classes": 3}}})
    m = load_splits(multi)
    assert set(m.train.y) == {"kind", "tags"}
    assert m.train.y["kind"].dtype == torch.int64 and m.train.y["tags"].dtype == torch.float32
    assert m.train.y["tags"].shape == (24, 3)
    model = build_model(m, seed=0)
    history = blocks.Trainer(model, {"epochs": 1}, quiet=True).fit(m.train, m.val)
    assert "val/tags/f1" in history.last
    with pytest.raises(blocks.SpecError, match="array 'nope' is not in d.npz"):
        load_splits(recipe(tmp_path / "b.yaml", npz={"path": "d.npz", "x": "nope"}))


def test_synthetic_is_learnable_and_seeded():
    r = recipe(synthetic={"samples": 200, "noise": 0.0}, seed=4,
               model={"input": {"shape": [5]}, "head": {"type": "softmax", "classes": 3}})
    a, b = load_splits(r), load_splits(r)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert a.info["train"] == 160
    model = blocks.build(r.model, seed=0)
    history = blocks.Trainer(model, {"epochs": 15, "optimizer": {"type": "adam", "lr": 0.03}},
                             quiet=True).fit(a.train, a.val)
    assert history.last["val/accuracy"] > 0.8


def test_split_is_deterministic_by_seed():
    r0 = recipe(dataset="iris", model={"input": {"shape": [4]}, "head": {"type": "softmax", "classes": 3}})
    r1 = r0.model_copy(update={"data": r0.data.model_copy(update={"seed": 1})})
    a, b, c = load_splits(r0), load_splits(r0), load_splits(r1)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.val.x, c.val.x)
    assert a.info == {"samples": 150, "kind": "tabular", "train": 120, "val": 30}


def test_digits_reshaped_or_resized_by_model_input():
    small = blocks.load_recipe("residual_cnn")
    big = blocks.load_recipe("seed_cnn")
    s, b = load_splits(small), load_splits(big)
    # both take raw 8x8 digits (64 pixel values 0..16); the models scale, reshape, resize
    assert s.train.x.shape[1:] == b.train.x.shape[1:] == (64,)
    assert s.preprocess.resize_from is None and b.preprocess.resize_from == [1, 8, 8]
    assert s.preprocess.scale == b.preprocess.scale == 1 / 16
    assert not s.preprocess.standardize  # images are not z-scored by default
    assert float(s.train.x.max()) == 16.0
    small_in = build_model(s, seed=0).preprocess_module(s.train.x[:4])
    big_in = build_model(b, seed=0).preprocess_module(b.train.x[:4])
    assert small_in.shape == (4, 1, 8, 8) and big_in.shape == (4, 1, 28, 28)
    assert float(small_in.max()) <= 1.0 and float(small_in.min()) >= 0.0
    # the same split either way; the 28x28 images are the 8x8 ones, bilinearly resized
    assert torch.equal(s.train.y, b.train.y)
    up = torch.nn.functional.interpolate(small_in, size=(28, 28), mode="bilinear",
                                         align_corners=False)
    torch.testing.assert_close(big_in, up)
    flat = recipe(dataset="digits", model={"input": {"shape": [64]}, "head": {"type": "softmax",
                                                                             "classes": 10}})
    assert load_splits(flat).train.x.shape[1:] == (64,)


def test_shape_mismatch_is_a_located_spec_error(tmp_path, capsys):
    r = recipe(dataset="digits", model={"input": {"shape": [2, 8, 8]},
                                        "head": {"type": "softmax", "classes": 10},
                                        "backbone": ["flatten"]})
    with pytest.raises(blocks.SpecError) as info:
        load_splits(r)
    assert info.value.first.path == "model.input.shape"
    assert "64 features per sample" in str(info.value) and "[2, 8, 8]" in str(info.value)
    path = tmp_path / "bad.yaml"
    recipe(path, dataset="digits", model={"input": {"shape": [10]},
                                          "head": {"type": "softmax", "classes": 10}})
    from blocks.cli import main

    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "model.input.shape" in err and "Traceback" not in err


def test_no_data_section():
    r = blocks.Recipe.model_validate({"model": {"input": {"shape": [3]},
                                                "head": {"type": "softmax", "classes": 2}}})
    with pytest.raises(blocks.SpecError, match="no `data:` section"):
        load_splits(r)


def test_data_spec_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one data source"):
        blocks.DataSpec(dataset="iris", synthetic={})
    with pytest.raises(ValueError, match="exactly one data source"):
        blocks.DataSpec()
