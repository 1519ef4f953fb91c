"""Tabular data as it comes (issue 9 part 4): class names, categorical columns, missing cells,
delimiters and per-head targets, all decoded by the CSV readers into raw numbers that the
model's own `preprocess` module imputes, encodes and standardises."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import blocks
from blocks.cli import main
from blocks.data.sources import load_arrays
from blocks.data.splits import load_splits
from blocks.run.predicting import read_feature_file, read_labelled_file
from blocks.run.training import build_model

CULTIVARS = ["barbera", "barolo", "grignolino"]  # sorted: the learned label order
NAMES = {0: "barolo", 1: "grignolino", 2: "barbera"}

WINE_RECIPE = """\
model:
  name: wine-raw
  input: {shape: [15]}          # 12 numeric columns + 3 one-hot alcohol levels
  backbone: [{type: linear, out_features: 32}, relu]
  head: {type: softmax, classes: 3}
data:
  csv: {path: train.csv, target: cultivar, categorical: [alcohol_level], delimiter: ";"}
  impute: median
  val_fraction: 0.25
  seed: 1
train: {epochs: 40, batch_size: 16, optimizer: {type: adam, lr: 0.01}, seed: 0}
"""


def write_wine(folder: Path) -> tuple[list[str], list[list[str]]]:
    """sklearn's wine as a practitioner gets it: class names, a text column, 5% missing cells."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    rng = np.random.default_rng(0)
    names = [n.replace("/", "_") for n in wine.feature_names]
    alcohol = wine.data[:, 0]
    levels = np.where(alcohol < 12.5, "low", np.where(alcohol < 13.5, "mid", "high"))
    header = ["alcohol_level", *names[1:], "cultivar"]
    rows = []
    for i in range(len(wine.data)):
        cells = [str(levels[i]), *(f"{v:g}" for v in wine.data[i, 1:])]
        for j in range(len(cells)):
            if rng.random() < 0.05:
                cells[j] = rng.choice(["NA", "", "nan"])
        rows.append([*cells, NAMES[int(wine.target[i])]])
    order = rng.permutation(len(rows))
    train, test = [rows[i] for i in order[:150]], [rows[i] for i in order[150:]]
    for name, part, delimiter in (("train.csv", train, ";"), ("test.csv", test, ",")):
        with open(folder / name, "w", newline="") as handle:
            csv.writer(handle, delimiter=delimiter).writerows([header, *part])
    with open(folder / "features.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header[:-1], *(r[:-1] for r in test)])
    (folder / "wine.yaml").write_text(WINE_RECIPE)
    return header, test


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("wine")
    write_wine(folder)
    code = main(["train", str(folder / "wine.yaml"), "--out", str(folder / "run"), "--quiet",
                 "--no-plots"])
    assert code == 0
    return folder, folder / "run"


@pytest.mark.slow
def test_wine_with_names_categories_and_missing_cells_trains_from_a_recipe(wine_run):
    folder, run = wine_run
    info = json.loads((run / "run.json").read_text())
    assert info["final"]["val/accuracy"] >= 0.9
    saved = blocks.load_recipe(run / "recipe.yaml").model
    assert saved.head.labels == CULTIVARS  # learned, sorted, stored: predict prints names
    assert saved.preprocess.categories == {"alcohol_level": ["high", "low", "mid"]}
    assert saved.preprocess.impute == "median"
    model = blocks.load(run)
    fill = model.preprocess.fill
    assert fill.shape == (13,) and bool(torch.isfinite(fill).all())


@pytest.mark.slow
def test_wine_evaluate_on_a_held_out_csv_uses_every_row(wine_run, capsys):
    folder, run = wine_run
    capsys.readouterr()
    assert main(["evaluate", str(run), str(folder / "test.csv"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    model = blocks.load(run)
    x, y = read_labelled_file(folder / "test.csv", model, blocks.load_recipe(run / "recipe.yaml"))
    assert len(x) == len(y) == 28 and bool(torch.isnan(x).any())  # missing cells reach the model
    expected = (model.predict(x) == y).float().mean().item()
    assert metrics["test/accuracy"] == pytest.approx(expected)
    assert expected >= 0.85


@pytest.mark.slow
def test_wine_predict_equals_load_and_predict_proba(wine_run, capsys):
    folder, run = wine_run
    capsys.readouterr()
    assert main(["predict", str(run), str(folder / "features.csv")]) == 0
    header, *rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert header == ["label", *(f"p/{name}" for name in CULTIVARS)]
    model = blocks.load(run)
    raw = read_feature_file(folder / "features.csv", model)
    probs = model.predict_proba(raw)
    labels = model.predict(raw)
    assert [r[0] for r in rows] == [CULTIVARS[i] for i in labels.tolist()]
    # full precision: every printed probability reads back to the model's float32 (issue 24)
    assert torch.equal(torch.tensor([[float(v) for v in r[1:]] for r in rows]), probs)
    blocks.save(model, run)  # load then save into the same folder keeps everything
    again = blocks.load(run)
    assert again.spec == model.spec
    assert torch.equal(again.predict_proba(raw), probs)


@pytest.mark.slow
def test_wine_unknown_names_are_located_errors(wine_run, capsys):
    folder, run = wine_run
    text = (folder / "test.csv").read_text().splitlines()
    (folder / "odd_label.csv").write_text("\n".join([*text[:3], text[3].rsplit(",", 1)[0]
                                                     + ",merlot", *text[4:]]) + "\n")
    capsys.readouterr()
    assert main(["evaluate", str(run), str(folder / "odd_label.csv")]) == 2
    err = capsys.readouterr().err
    assert "odd_label.csv line 4, column 'cultivar': 'merlot' is not one of the head's labels " \
           "(barbera, barolo, grignolino)" in err
    feats = (folder / "features.csv").read_text().splitlines()
    (folder / "odd_level.csv").write_text("\n".join([feats[0], "huge," + feats[1].split(",", 1)[1]])
                                          + "\n")
    assert main(["predict", str(run), str(folder / "odd_level.csv")]) == 2
    assert "odd_level.csv line 2, column 'alcohol_level': 'huge' is not a known category " \
           "(high, low, mid)" in capsys.readouterr().err


# --- fast unit tests ---------------------------------------------------------------------------
def recipe(folder: Path, text: str, **data) -> blocks.Recipe:
    (folder / "t.csv").write_text(text)
    spec = {"model": {"input": {"shape": data.pop("inputs", [3])},
                      "head": data.pop("head", {"type": "softmax", "classes": 2})},
            "data": {"csv": {"path": "t.csv", "target": "y", **data.pop("csv", {})},
                     "val_fraction": 0.0, **data}}
    r = blocks.load_recipe(spec)
    r._source_path = folder / "r.yaml"
    return r


def test_imputation_and_one_hot_happen_inside_the_model(tmp_path):
    r = recipe(tmp_path, "a,color,y\n1,red,no\nNA,blue,yes\n3,,no\n5,red,yes\n",
               csv={"categorical": ["color"]}, impute="mean", inputs=[3], standardize=False)
    raw = load_arrays(r.data, r.model, tmp_path)  # file order: codes in the sorted [blue, red]
    assert np.array_equal(raw.x, [[1, 1], [np.nan, 0], [3, np.nan], [5, 1]], equal_nan=True)
    assert raw.y.tolist() == [0, 1, 0, 1] and raw.labels == {"output": ["no", "yes"]}
    splits = load_splits(r)
    model = build_model(splits, seed=0)
    assert model.preprocess.fill.tolist() == [3.0, 1.0]  # mean of 1, 3, 5; most frequent: red
    encoded = model.preprocess(torch.as_tensor(raw.x))
    assert encoded.tolist() == [[1, 0, 1], [3, 1, 0], [3, 0, 1], [5, 0, 1]]
    assert splits.model_spec.head.labels == ["no", "yes"]


@pytest.mark.parametrize("policy, fill", [("median", 2.0), ("most_frequent", 1.0),
                                          ("constant", -2.0)])
def test_impute_policies(tmp_path, policy, fill):
    r = recipe(tmp_path, "a,y\n1,0\n1,1\n3,0\nNA,1\n9,0\n", impute=policy, fill_value=-2.0,
               inputs=[1], standardize=False)
    model = build_model(load_splits(r), seed=0)
    assert model.preprocess.fill.tolist() == [fill]


def test_unseen_category_ignore_policy_is_an_all_zero_row(tmp_path):
    r = recipe(tmp_path, "a,color,y\n1,red,0\n2,blue,1\n", csv={"categorical": "auto",
               "unknown_category": "ignore"}, inputs=[3], standardize=False)
    splits = load_splits(r)
    model = build_model(splits, seed=0)
    (tmp_path / "new.csv").write_text("a,color\n4,green\n")
    raw = read_feature_file(tmp_path / "new.csv", model)
    assert raw.tolist() == [[4.0, -1.0]]
    assert model.preprocess(torch.as_tensor(raw)).tolist() == [[4.0, 0.0, 0.0]]


def test_mixed_text_and_numbers_is_a_located_error_not_a_category(tmp_path):
    r = recipe(tmp_path, "a,b,y\n1,2,0\n3,oops,1\n", csv={"categorical": "auto"})
    with pytest.raises(blocks.SpecError) as info:
        load_splits(r)
    assert str(info.value) == ("data.csv.path: t.csv line 3, column 'b': 'oops' is not a number, but "
                               "the column holds numbers elsewhere (line 2: '2'); fix the cell, or "
                               "list the column in `data.csv.categorical`")


def test_wrong_input_width_names_the_encoded_size(tmp_path):
    r = recipe(tmp_path, "a,color,y\n1,red,0\n2,blue,1\n", csv={"categorical": ["color"]}, inputs=[2])
    with pytest.raises(blocks.SpecError) as info:
        load_splits(r)
    assert str(info.value) == ("model.input.shape: the encoded input has 3 values (1 numeric "
                               "feature(s) + one-hot color 2) but the model input [2] holds 2; set "
                               "`model.input.shape: [3]`")


def test_class_names_map_through_the_heads_labels(tmp_path):
    head = {"type": "softmax", "classes": 2, "labels": ["yes", "no"]}
    r = recipe(tmp_path, "a,y\n1,no\n2,yes\n", head=head, inputs=[1])
    assert load_splits(r).train.y.tolist() == [1, 0]
    bad = recipe(tmp_path, "a,y\n1,no\n2,maybe\n", head=head, inputs=[1])
    with pytest.raises(blocks.SpecError, match=r"t.csv line 3, column 'y': 'maybe' is not one of "
                       r"the head's labels \(yes, no\)"):
        load_splits(bad)
    three = recipe(tmp_path, "a,y\n1,no\n2,yes\n3,maybe\n", inputs=[1])
    with pytest.raises(blocks.SpecError, match=r"^model.head: t.csv has 3 class names in the "
                       r"target \('maybe', 'no', 'yes'\) but the head has 2 classes$"):
        load_splits(three)


def test_a_name_among_class_ids_is_a_located_error(tmp_path):
    r = recipe(tmp_path, "a,y\n1,0\n2,1\n3,l\n", inputs=[1])
    with pytest.raises(blocks.SpecError) as info:
        load_splits(r)
    assert str(info.value) == ("data.csv.path: t.csv line 4, column 'y': 'l' is a class name, but "
                               "the column holds class ids elsewhere (line 2: '0'); use names or "
                               "ids throughout")


def test_missing_target_is_never_imputed(tmp_path):
    r = recipe(tmp_path, "a,y\n1,0\n2,NA\n", impute="mean", inputs=[1])
    with pytest.raises(blocks.SpecError, match=r"t.csv line 3, column 'y': the target is missing "
                       r"\('NA'\); a label cannot be imputed"):
        load_splits(r)


def test_named_targets_per_head(tmp_path):
    heads = {"kind": {"type": "softmax", "classes": 2}, "tags": {"type": "sigmoid", "classes": 2}}
    (tmp_path / "t.csv").write_text("a,t1,kind,t2\n1,1,cat,0\n2,0,dog,1\n3,1,cat,1\n")

    def with_target(target) -> blocks.Recipe:
        r = blocks.load_recipe({"model": {"input": {"shape": [1]}, "heads": heads},
                                "data": {"csv": {"path": "t.csv", "target": target},
                                         "val_fraction": 0.0}})
        r._source_path = tmp_path / "r.yaml"
        return r

    r = with_target({"kind": "kind", "tags": ["t1", "t2"]})
    raw = load_arrays(r.data, r.model, tmp_path)
    assert raw.y["kind"].tolist() == [[0], [1], [0]]
    assert raw.y["tags"].tolist() == [[1, 0], [0, 1], [1, 1]]
    assert load_splits(r).model_spec.heads["kind"].labels == ["cat", "dog"]
    with pytest.raises(blocks.SpecError, match=r"^data.csv.target: names no head 'tag'; no "
                       r"column\(s\) for head\(s\) 'tags'; the model's heads are kind, tags$"):
        load_splits(with_target({"kind": "kind", "tag": ["t1"]}))
    with pytest.raises(blocks.SpecError, match=r"^data.csv.target.tags: the sigmoid head 'tags' "
                       r"takes 2 target column\(s\), got 1$"):
        load_splits(with_target({"kind": "kind", "tags": ["t1"]}))


def test_categorical_columns_one_hot_or_embedded_as_declared(tmp_path):
    text = "a,color,city,y\n" + "".join(f"{i},{'rgb'[i % 3]},c{i % 5},{i % 2}\n" for i in range(20))
    r = recipe(tmp_path, text, inputs=[7], csv={"categorical": {"color": "one_hot", "city": 3}})
    splits = load_splits(r)
    pre = splits.model_spec.preprocess
    assert pre.categories == {"color": ["b", "g", "r"], "city": ["c0", "c1", "c2", "c3", "c4"]}
    assert pre.embeddings == {"city": 3}
    model = build_model(splits, seed=0)
    assert model.preprocess.embeddings["1"].weight.shape == (6, 3)
    history = blocks.Trainer(model, {"epochs": 2, "batch_size": 8}, quiet=True).fit(splits.train)
    assert len(history) == 2
    auto = recipe(tmp_path, text, inputs=[8], csv={"categorical": {"city": "embedding", "color":
                                                                   "embedding"}})
    assert load_splits(auto).model_spec.preprocess.embeddings == {"city": 4, "color": 3}
