"""Multi-input tables: one CSV/Parquet row holds every input; what the data teaches is fitted on
the training split only; errors name the file, line and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import blocks
from blocks.core.errors import SpecError
from blocks.data.multi_table import load_table_splits, read_table
from blocks.data.text import encode_texts, train_tokenizer
from blocks.spec.inputs import TextInput

HEAD = {"type": "softmax", "classes": 2}


def recipe(path: Path, inputs: dict, target: str = "label", val: float = 0.25) -> blocks.Recipe:
    return blocks.Recipe.model_validate({
        "model": {"inputs": inputs, "head": HEAD},
        "data": {"csv": {"path": str(path), "target": target}, "val_fraction": val}})


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_parquet_reads_like_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    csv = write(tmp_path / "t.csv", "note,kind,size,label\nbig box,a,1.5,yes\nsmall,b,2,no\n"
                "big,a,3,yes\nsmall box,b,4,no\n")
    pq.write_table(pa.table({"note": ["big box", "small", "big", "small box"],
                             "kind": ["a", "b", "a", "b"], "size": [1.5, 2.0, 3.0, 4.0],
                             "label": ["yes", "no", "yes", "no"]}), tmp_path / "t.parquet")
    inputs = {"note": {"kind": "text", "max_length": 4, "vocab_size": 20},
              "kind": {"kind": "categorical"}, "size": {"kind": "numeric", "columns": ["size"]}}
    a = load_table_splits(recipe(csv, inputs), None)
    b = load_table_splits(recipe(tmp_path / "t.parquet", inputs), None)
    for name in inputs:
        assert torch.equal(a.train.x[name], b.train.x[name]), name
    assert torch.equal(a.train.y, b.train.y)
    assert a.model_spec.head.labels == ["no", "yes"]


def test_statistics_and_categories_come_from_the_training_split_only(tmp_path):
    rows = "".join(f"w{i},{'rare' if i == 0 else 'common'},{i},{i % 2}\n" for i in range(8))
    path = write(tmp_path / "t.csv", "note,kind,size,label\n" + rows)
    inputs = {"note": {"kind": "text", "max_length": 2, "vocab_size": 50},
              "kind": {"kind": "categorical"}, "size": {"kind": "numeric", "columns": ["size"]}}
    splits = load_table_splits(recipe(path, inputs, val=0.5), None)
    val_rows = sorted(set(range(8)) - set(splits.train.x["size"][:, 0].long().tolist()))
    spec = splits.model_spec
    train_sizes = [i for i in range(8) if i not in val_rows]
    assert spec.inputs["size"].mean == pytest.approx([np.mean(train_sizes)])
    vocab = splits.raw_inputs.tokenizers["note"].get_vocab()
    assert {f"w{i}" for i in train_sizes} <= set(vocab)
    assert not {f"w{i}" for i in val_rows} & set(vocab)  # never seen in training: [UNK]
    assert ("rare" in spec.inputs["kind"].categories) == (0 in train_sizes)


def test_missing_category_cells_are_the_unknown_id(tmp_path):
    path = write(tmp_path / "t.csv", "kind,label\na,0\n,1\nNA,0\nb,1\n")
    splits = load_table_splits(recipe(path, {"kind": {"kind": "categorical"}}, val=0.0), None)
    assert splits.model_spec.inputs["kind"].categories == ["a", "b"]
    assert splits.train.x["kind"][:, 0].tolist() == [1, 0, 0, 2]


def test_image_paths_are_relative_to_the_table(tmp_path):
    image = pytest.importorskip("PIL.Image")
    (tmp_path / "img").mkdir()
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        image.new("RGB", (8, 8), colour).save(tmp_path / "img" / f"{i}.png")
    path = write(tmp_path / "t.csv", "photo,size,label\nimg/0.png,1,0\nimg/1.png,2,1\n")
    inputs = {"photo": {"kind": "image", "shape": [3, 8, 8]},
              "size": {"kind": "numeric", "columns": ["size"]}}
    splits = load_table_splits(recipe(path, inputs, val=0.0), None)
    photos = splits.train.x["photo"]
    assert photos.shape == (2, 3, 8, 8) and photos.dtype == torch.float32
    assert photos[0, 0].mean() > 0.9 and photos[1, 2].mean() > 0.9 and photos[0, 2].mean() < 0.1


def test_errors_name_file_line_and_column(tmp_path):
    path = write(tmp_path / "t.csv", "note,label\nfine,0\nfine,1\nfine,maybe\n")
    with pytest.raises(SpecError, match="data.csv.target: .*t.csv:4: column 'label': class "
                                        "'maybe' is outside the head's 2 classes"):
        load_table_splits(recipe(path, {"note": {"kind": "text"}}), None)
    path = write(tmp_path / "u.csv", "note,label\nfine,0\n")
    with pytest.raises(SpecError, match=r"model.inputs.size.columns: .*has no column 'size'"):
        load_table_splits(recipe(path, {"size": {"kind": "numeric", "columns": ["size"]}},
                                 val=0.0), None)
    path = tmp_path / "v.csv"
    path.write_bytes(b"note,label\n\xff,0\n")
    with pytest.raises(SpecError, match=r"v.csv:2: column 'note': invalid UTF-8 at byte 0"):
        read_table(path)


@pytest.mark.parametrize("kind", ["word", "bpe", "wordpiece"])
def test_each_tokenizer_type_pads_truncates_and_lowercases(kind):
    spec = TextInput(kind="text", max_length=5, vocab_size=60, tokenizer={"type": kind})
    texts = ["The cat sat on the mat", "a dog ran", "THE CAT"] * 5
    tokenizer = train_tokenizer(spec, texts, "model.inputs.note")
    ids = encode_texts(tokenizer, ["the cat", "THE CAT", "", "one two three four five six"], 5)
    assert ids.shape == (4, 5) and ids.dtype == np.int64
    assert ids[0].tolist() == ids[1].tolist()  # lower-cased
    assert ids[2].tolist() == [0] * 5  # an empty text: all padding
    assert ids[0, -1] == 0 and ids[3, -1] != 0  # padded, and cut at max_length
    assert tokenizer.get_vocab_size() <= 60


def test_an_unreadable_image_is_located(tmp_path):
    pytest.importorskip("PIL.Image")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    path = write(tmp_path / "t.csv", "photo,label\nbad.png,0\n")
    with pytest.raises(SpecError, match=r"t.csv:2: column 'photo': .*bad.png: not a readable image"):
        load_table_splits(recipe(path, {"photo": {"kind": "image", "shape": [3, 8, 8]}},
                                 val=0.0), None)
