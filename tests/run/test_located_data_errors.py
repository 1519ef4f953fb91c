"""What the data says is wrong with a recipe, when `train` finds it, is located at the recipe's
line, as `blocks validate` locates it; a value given by `--set` is not the file's, so its
problem keeps only its spec path."""

from __future__ import annotations

import pytest

import blocks
from blocks.run.training import run_recipe

TABLE = "a,b,colour,label\n" + "".join(f"{i % 7},{i % 5},{'xy'[i % 2]},{'no' if i % 3 else 'yes'}\n"
                                       for i in range(60))
RECIPE = """model:
  input: {shape: [%d]}
  head: {type: softmax, classes: 2}
data:
  csv: {path: t.csv, target: label, categorical: [colour]}
train: {epochs: 1, batch_size: 16}
"""
SHAPE = ("model.input.shape: the encoded input has 4 values (2 numeric feature(s) + one-hot "
         "colour 2) but the model input [3] holds 3; set `model.input.shape: [4]`")


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "t.csv").write_text(TABLE)
    (tmp_path / "r.yaml").write_text(RECIPE % 3)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_shape_the_data_disagrees_with_is_located_at_its_line(project):
    with pytest.raises(blocks.SpecError) as err:
        run_recipe("r.yaml", project / "run", plots=False)
    assert str(err.value) == f"r.yaml:2:18: {SHAPE}"
    assert not (project / "run").exists()


def test_a_set_value_keeps_its_spec_path_only(project):
    with pytest.raises(blocks.SpecError) as err:
        run_recipe("r.yaml", project / "run", plots=False, sets=["model.input.shape=[3]"])
    assert str(err.value) == SHAPE
    run_recipe("r.yaml", project / "run", plots=False, sets=["model.input.shape=[4]"])
