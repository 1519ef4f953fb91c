"""`data.parquet`: a Parquet file (or a folder of shards) trains, evaluates and predicts like
the same table as CSV (issue 21, item 2)."""

from __future__ import annotations

import pytest
import torch
from tablekit import write_recipe, write_table

import blocks
from blocks.run.predicting import evaluate_run, predict_run
from blocks.run.training import run_recipe

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pcsv = pytest.importorskip("pyarrow.csv")
pc = pytest.importorskip("pyarrow.compute")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("parquet")
    csv = write_table(path)
    table = pcsv.read_csv(csv, convert_options=pcsv.ConvertOptions(null_values=["NA"]))
    pq.write_table(table, path / "d.parquet")
    (path / "shards").mkdir()
    for i, start in enumerate(range(0, table.num_rows, 250)):
        pq.write_table(table.slice(start, 250), path / "shards" / f"part-{i:03d}.parquet")
    return path


def parquet_recipe(folder, name, data_path, extra=""):
    text = write_recipe(folder, name, extra).read_text()
    text = text.replace("csv: {path: d.csv,", f"parquet: {{path: {data_path},")
    (folder / name).write_text(text)
    return folder / name


@pytest.mark.parametrize("source", ["d.parquet", "shards"])
def test_parquet_trains_exactly_like_csv(folder, source):
    csv_run = run_recipe(write_recipe(folder, "c.yaml"), folder / "rc", force=True, plots=False)
    pq_run = run_recipe(parquet_recipe(folder, "p.yaml", source), folder / f"rp-{source}",
                        force=True, plots=False)
    a, b = csv_run.model.state_dict(), pq_run.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert pq_run.model.label_names() == ["no", "yes"]


def test_streamed_parquet_trains_like_the_whole_file(folder):
    whole = run_recipe(parquet_recipe(folder, "w.yaml", "shards"), folder / "rw", force=True,
                       plots=False)
    streamed = run_recipe(parquet_recipe(folder, "s.yaml", "shards",
                                         "\n  stream: {chunk_rows: 64, shuffle_buffer: 100000}"),
                          folder / "rs", force=True, plots=False)
    a, b = whole.model.state_dict(), streamed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_and_predict_read_parquet(folder):
    run_recipe(write_recipe(folder, "c.yaml"), folder / "rc", force=True, plots=False)
    from_csv = evaluate_run(folder / "rc", folder / "d.csv")
    from_parquet = evaluate_run(folder / "rc", folder / "d.parquet")
    assert from_parquet == from_csv
    a = predict_run(folder / "rc", folder / "d.csv")
    b = predict_run(folder / "rc", folder / "shards")
    assert torch.equal(a.probabilities["output"], b.probabilities["output"])


def test_a_bad_parquet_cell_names_row_and_column(folder):
    table = pa.table({"x0": [1.0, 2.0], "x1": [1.0, float("inf")], "x2": [1.0, 2.0],
                      "colour": ["red", "blue"], "label": ["yes", "no"]})
    pq.write_table(table, folder / "bad.parquet")
    recipe = blocks.load_recipe(parquet_recipe(folder, "b.yaml", "bad.parquet"))
    from blocks.data.splits import load_splits

    with pytest.raises(blocks.SpecError) as info:
        load_splits(recipe)
    assert str(info.value) == ("data.parquet.path: bad.parquet row 2, column 'x1': 'inf' is not a "
                               "finite number; fill in or drop missing values before training")


def test_a_missing_text_label_names_its_row(folder):
    """A null among text class names: the row is named (it used to crash on the null)."""
    table = pa.table({"x0": [1.0, 2.0, 3.0], "x1": [1.0, 2.0, 3.0], "x2": [1.0, 2.0, 3.0],
                      "colour": ["red", "blue", "red"], "label": ["yes", None, "no"]})
    pq.write_table(table, folder / "nolabel.parquet")
    recipe = blocks.load_recipe(parquet_recipe(folder, "n.yaml", "nolabel.parquet"))
    from blocks.data.splits import load_splits

    with pytest.raises(blocks.SpecError, match=r"nolabel.parquet row 2, column 'label': the "
                                               r"target is missing"):
        load_splits(recipe)


def test_a_parquet_run_evaluates_a_held_out_table_by_its_own_target(folder):
    """Without --target, a held-out Parquet file is read with the Parquet run's target column
    (`label`), as the help says; it used to look for a column named `target`."""
    run_recipe(parquet_recipe(folder, "pe.yaml", "d.parquet"), folder / "rpe", force=True,
               plots=False)
    default = evaluate_run(folder / "rpe", folder / "d.parquet")
    named = evaluate_run(folder / "rpe", folder / "d.parquet", target="label")
    assert default == named and 0.5 < default["test/accuracy"] <= 1.0


def test_null_categories_are_missing_cells_as_in_csv(folder):
    """A null among a Parquet table's category names is the empty (missing) cell of the same
    table as CSV: both train to the same weights with imputation (the whole-table reader used
    to crash sorting the null with the names) and both name the row without it."""
    from blocks.data.splits import load_splits

    table = pq.read_table(folder / "d.parquet")
    colour = table.column("colour").to_pylist()
    holes = [None if i % 41 == 7 else c for i, c in enumerate(colour)]
    table = table.set_column(table.column_names.index("colour"), "colour", pa.array(holes))
    pq.write_table(table, folder / "holes.parquet", row_group_size=200)
    pcsv.write_csv(table, folder / "holes.csv")  # a null is written as an empty cell
    csv_text = write_recipe(folder, "hc.yaml").read_text().replace("d.csv", "holes.csv")
    (folder / "hc.yaml").write_text(csv_text.replace("impute: mean", "impute: most_frequent"))
    pq_text = parquet_recipe(folder, "hp.yaml", "holes.parquet").read_text()
    (folder / "hp.yaml").write_text(pq_text.replace("impute: mean", "impute: most_frequent"))
    from_csv = run_recipe(folder / "hc.yaml", folder / "rhc", force=True, plots=False)
    from_parquet = run_recipe(folder / "hp.yaml", folder / "rhp", force=True, plots=False)
    a, b = from_csv.model.state_dict(), from_parquet.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # without imputation (and no other missing cell), the first null category is named
    x1 = table.column_names.index("x1")
    filled = table.set_column(x1, "x1", pc.fill_null(table.column("x1"), 0.0))
    pq.write_table(filled, folder / "holes.parquet", row_group_size=200)
    refusing = blocks.load_recipe(folder / "hp.yaml").model_copy(deep=True)
    refusing.data = refusing.data.model_copy(update={"impute": "refuse"})
    with pytest.raises(blocks.SpecError, match=r"holes.parquet row 8, column 'colour': '' is a "
                                               r"missing value"):
        load_splits(refusing)
