"""`blocks validate` checks what it can know without training (issue 9 part 7), each problem
located at the recipe line: data files, bundled class counts, targets vs heads, the
early-stopping metric, `embedding` on int64 input."""

from __future__ import annotations

import pytest

from blocks.cli import main

BASE = """\
model:
  input: {shape: [4]}
  head: {type: softmax, classes: 3}
"""


def validate(tmp_path, text: str, capsys) -> tuple[int, str]:
    (tmp_path / "r.yaml").write_text(text)
    code = main(["validate", str(tmp_path / "r.yaml")])
    out = capsys.readouterr()
    return code, (out.out + out.err).replace(str(tmp_path) + "/", "")


@pytest.mark.parametrize("text, message", [
    (BASE + "data: {csv: {path: nope.csv, target: y}}\n",
     "r.yaml:4:20: data.csv.path: file 'nope.csv' does not exist"),
    (BASE + "data: {dataset: digits}\n",
     "r.yaml:3:34: model.head.classes: digits has 10 classes, so the softmax head needs classes: "
     "10\nr.yaml:2:18: model.input.shape: digits has 64 features per sample, which cannot be "
     "shaped into [4]"),
    (BASE + "data: {dataset: wine}\n",
     "r.yaml:2:18: model.input.shape: wine has 13 features per sample, which cannot be shaped into [4]"),
    (BASE + "data: {dataset: iris}\ntrain: {early_stopping: {metric: val/acc}}\n",
     "r.yaml:5:34: train.early_stopping.metric: 'val/acc' is not a metric blocks records; choose "
     "one of: accuracy, loss after `train/` or `val/`"),
    ("model:\n  input: {shape: [6]}\n  backbone:\n    - {type: embedding, num_embeddings: 9, "
     "embedding_dim: 2}\n    - flatten\n  head: {type: softmax, classes: 2}\n",
     "r.yaml:4:7: model.backbone[0]: an `embedding` block looks up integer token ids, but the "
     "model input is float32; set `model.input.dtype: int64`"),
])
def test_static_problems_are_located(tmp_path, capsys, text, message):
    code, out = validate(tmp_path, text, capsys)
    assert code == 2
    assert out.strip() == message


def test_csv_targets_must_exist_and_fit_the_heads(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a;b;c;d;label\n1;2;3;4;x\n5;6;7;8;y\n1;1;1;1;z\n")
    code, out = validate(tmp_path, BASE + "data: {csv: {path: t.csv, target: lable, "
                         "delimiter: ';'}}\n", capsys)
    assert code == 2
    assert out.strip() == ("r.yaml:4:35: data.csv.target: t.csv has no column 'lable' (header: a, "
                           "b, c, d, label)")
    code, out = validate(tmp_path, BASE + "data: {csv: {path: t.csv, target: [a, b], "
                         "delimiter: ';'}}\n", capsys)
    assert out.strip() == ("r.yaml:4:35: data.csv.target: 2 target column(s) but the head(s) take "
                           "1: output (1)")
    code, out = validate(tmp_path, BASE + "data: {csv: {path: t.csv, target: label, "
                         "delimiter: ';'}}\n", capsys)
    assert code == 0 and out.startswith("ok: ")


def test_image_folder_class_count_and_input(tmp_path, capsys):
    for name in ("cat", "dog"):
        (tmp_path / "pics" / name).mkdir(parents=True)
    code, out = validate(tmp_path, BASE + "data: {images: {path: pics}}\n", capsys)
    assert code == 2
    assert out.strip() == ("r.yaml:2:18: model.input.shape: image folders feed a [C, H, W] float "
                           "input with 1 (grey) or 3 (RGB) channels, got [4] (float32)")
    text = ("model:\n  input: {shape: [3, 8, 8]}\n  backbone: [flatten]\n"
            "  head: {type: softmax, classes: 3}\ndata: {images: {path: pics}}\n")
    code, out = validate(tmp_path, text, capsys)
    assert out.strip() == ("r.yaml:4:34: model.head.classes: pics has 2 class folders (cat, dog) "
                           "but the head has 3 classes")


def test_csv_target_types_are_checked_by_reading_the_rows(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n1,2,3,4,7\n")
    code, out = validate(tmp_path, BASE + "data: {csv: {path: t.csv, target: label}}\n", capsys)
    assert code == 2
    assert out.strip() == ("r.yaml:4:35: data.csv.target: t.csv line 3, column 'label': 7 is not a "
                           "class id of the softmax head: a whole number 0..2 (1 such row of 2)")
