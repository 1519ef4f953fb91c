"""CSV data that is silently wrong today is a located error naming the file line (issue 15, part 10)."""

from __future__ import annotations

import codecs

import pytest
import yaml

import blocks
from blocks.cli import main
from blocks.data.splits import load_splits


def recipe(tmp_path, csv_text: str | bytes, *, head: dict | None = None, **csv) -> blocks.Recipe:
    path = tmp_path / "t.csv"
    if isinstance(csv_text, bytes):
        path.write_bytes(csv_text)
    else:
        path.write_text(csv_text)
    text = {"model": {"input": {"shape": [2]}, "head": head or {"type": "softmax", "classes": 3}},
            "data": {"csv": {"path": "t.csv", "target": "y", **csv}, "val_fraction": 0.5}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(text))
    return blocks.load_recipe(tmp_path / "r.yaml")


GOOD = "a,b,y\n1,2,0\n3,4,1\n5,6,2\n7,8,1\n"


def test_duplicate_header_names_are_refused(tmp_path):
    r = recipe(tmp_path, "a,a,y\n1,2,0\n3,4,1\n")
    with pytest.raises(blocks.SpecError) as info:
        load_splits(r)
    assert str(info.value) == ("data.csv.path: t.csv has two columns named 'a' (columns 1 and 2); "
                               "rename one")


def test_a_target_listed_as_a_feature_is_refused(tmp_path):
    r = recipe(tmp_path, GOOD, features=["a", "y"])
    with pytest.raises(blocks.SpecError) as info:
        load_splits(r)
    assert str(info.value) == ("data.csv.features: column 'y' is the target and a feature too: the "
                               "model would see its own answer; remove it from `features`")
    twice = recipe(tmp_path, GOOD, features=["a", "a"])
    with pytest.raises(blocks.SpecError, match="data.csv.features: lists column 'a' twice"):
        load_splits(twice)


def test_a_utf8_bom_does_not_hide_the_first_column(tmp_path):
    r = recipe(tmp_path, codecs.BOM_UTF8 + GOOD.encode(), features=["a", "b"])
    splits = load_splits(r)
    assert splits.preprocess.features == ["a", "b"]
    assert len(splits.train) + len(splits.val) == 4


def test_bad_labels_name_the_csv_line_and_count_every_row(tmp_path):
    # a blank line and a comment-free file: line numbers are the editor's, not data-row indexes
    r = recipe(tmp_path, "a,b,y\n1,2,0\n\n3,4,7\n5,6,2\n7,8,-1\n")
    with pytest.raises(blocks.SpecError) as info:
        load_splits(r)
    assert str(info.value) == ("data.csv.target: t.csv line 4, column 'y': 7 is not a class id of the "
                               "softmax head: a whole number 0..2 (2 such rows of 4)")
    sig = recipe(tmp_path, "a,b,y\n1,2,0\n3,4,1\n5,6,2\n", head={"type": "sigmoid"})
    with pytest.raises(blocks.SpecError, match=r"t.csv line 4, column 'y': 2 is not a sigmoid target: "
                       r"0 or 1 \(or a probability in between\) \(1 such row of 3\)"):
        load_splits(sig)


@pytest.mark.parametrize("cell", ["inf", "-Infinity", "1e999"])
def test_non_finite_cells_are_refused_with_line_and_column(tmp_path, cell):
    r = recipe(tmp_path, f"a,b,y\n1,2,0\n3,{cell},1\n")
    with pytest.raises(blocks.SpecError) as info:
        load_splits(r)
    assert str(info.value) == (f"data.csv.path: t.csv line 3, column 'b': {cell!r} is not a finite "
                               "number; fill in or drop missing values before training")


@pytest.mark.parametrize("cell", ["nan", "NA", ""])
def test_missing_cells_are_refused_without_an_impute_policy(tmp_path, cell):
    r = recipe(tmp_path, f"a,b,y\n1,2,0\n3,{cell},1\n")
    with pytest.raises(blocks.SpecError) as info:
        load_splits(r)
    assert str(info.value) == (f"data.csv.path: t.csv line 3, column 'b': {cell!r} is a missing "
                               "value; set `data.impute` (mean, median, most_frequent or constant) "
                               "to fill it in, or drop the row")


def test_long_cells_are_shortened_in_messages(tmp_path):
    r = recipe(tmp_path, "a,b,y\n1," + "secret" * 50 + ",0\n")
    with pytest.raises(blocks.SpecError) as info:
        load_splits(r)
    assert "'secretsecretsecretsecretsecretsecretsecr...' is not a number" in str(info.value)
    assert "secret" * 8 not in str(info.value)


def test_cli_train_on_a_duplicate_header_is_exit_2(tmp_path, capsys):
    recipe(tmp_path, "a,a,y\n1,2,0\n3,4,1\n")
    code = main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--quiet",
                 "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2 and "t.csv has two columns named 'a'" in err and "Traceback" not in err


def test_non_finite_npz_values_name_the_sample_in_the_file(tmp_path):
    import numpy as np

    x = np.zeros((6, 2), dtype=np.float32)
    x[4, 1] = np.nan
    x[5, 0] = np.inf
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(6, dtype=np.int64))
    text = {"model": {"input": {"shape": [2]}, "head": {"type": "softmax", "classes": 2}},
            "data": {"npz": {"path": "d.npz"}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(text))
    with pytest.raises(blocks.SpecError) as info:
        load_splits(blocks.load_recipe(tmp_path / "r.yaml"))
    assert str(info.value) == ("data.npz: d.npz: array 'x', sample 4 (value 1 of it) is nan; 2 samples "
                               "hold NaN or inf: fill in or drop missing values first")


def test_synthetic_data_too_big_for_memory_is_refused_before_allocating(tmp_path, monkeypatch):
    text = {"model": {"input": {"shape": [1000]}, "head": {"type": "softmax", "classes": 2}},
            "data": {"synthetic": {"samples": 100_000_000}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(text))
    monkeypatch.setenv("BLOCKS_MAX_MODEL_BYTES", str(10**9))
    with pytest.raises(blocks.SpecError) as info:
        load_splits(blocks.load_recipe(tmp_path / "r.yaml"))
    assert str(info.value) == ("data.synthetic.samples: 100,000,000 synthetic samples of shape [1000] "
                               "would need 1.2 TB of memory, more than the 1.0 GB allowed (this "
                               "machine's memory, or BLOCKS_MAX_MODEL_BYTES)")
