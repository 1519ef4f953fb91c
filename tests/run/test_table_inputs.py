"""Raw rows reach a tabular run the same way on every road (issue 24, items 1, 3, 5, 6): the
CLI in a subprocess and Python in a fresh process give the same probabilities, bit for bit."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from tablekit import write_recipe, write_table  # noqa: E402

from blocks.run.training import run_recipe  # noqa: E402

pytest.importorskip("pyarrow")
pytest.importorskip("pandas")

ROWS = "x0,x1,x2,colour,extra,x1_typo\n0.5,3.25,100.1,red,7,1\n-1.5,NA,99.9,amber,8,2\n" \
       "0.25,,100.0,blue,9,3\n2,12.5,100.2,red,1,4\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    write_table(folder)
    run_recipe(write_recipe(folder), folder / "run", force=True, plots=False)
    (folder / "p.csv").write_text(ROWS)
    return folder


def blocks_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blocks", *args], capture_output=True,
                          text=True, timeout=120)


def cli_probabilities(text: str) -> np.ndarray:
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == ["label", "p/no", "p/yes"]
    return np.array([[np.float32(v) for v in row[1:]] for row in rows[1:]], dtype=np.float32)


PYTHON = """
import json, sys, warnings
import numpy as np, pandas as pd, pyarrow as pa
import blocks
warnings.simplefilter("ignore")
model = blocks.load(sys.argv[1])
df = pd.read_csv(sys.argv[2])
records = df.to_dict("records")
raw = [[0.5, 3.25, 100.1, "red"], [-1.5, None, 99.9, "amber"], [0.25, float("nan"), 100.0, "blue"],
       [2, 12.5, 100.2, "red"]]
out = {}
for name, rows in [("dataframe", df), ("table", pa.Table.from_pandas(df)), ("dicts", records),
                   ("raw", raw), ("object", np.array(raw, dtype=object))]:
    p = model.predict_proba(rows).numpy()
    out[name] = [[np.format_float_positional(v, unique=True) for v in row] for row in p]
out["labels"] = model.predict(df).tolist()
print(json.dumps(out))
"""


@pytest.mark.slow  # CLI subprocesses
def test_python_rows_give_the_cli_answer(run):
    done = blocks_cli("predict", str(run / "run"), str(run / "p.csv"))
    assert done.returncode == 0, done.stderr
    expected = cli_probabilities(done.stdout)
    # item 6: the columns the run does not use are named, a misspelt feature among them
    assert "p.csv: 2 column(s) the run does not use are ignored: 'extra', 'x1_typo'" in done.stderr
    fresh = subprocess.run([sys.executable, "-c", PYTHON, str(run / "run"), str(run / "p.csv")],
                           capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    answers = json.loads(fresh.stdout)
    for name in ("dataframe", "table", "dicts", "raw", "object"):
        got = np.array([[np.float32(v) for v in row] for row in answers[name]], dtype=np.float32)
        assert np.array_equal(got, expected), name
    labels = [row[0] for row in csv.reader(done.stdout.splitlines()[1:])]
    assert [["no", "yes"][i] for i in answers["labels"]] == labels


@pytest.mark.slow  # CLI subprocesses
def test_a_header_less_file_with_category_names_is_data(run):
    """Item 3: the header is told by its names, so rows holding category names are rows."""
    lines = ROWS.splitlines()
    body = [",".join(line.split(",")[:4]) for line in lines[1:]]
    (run / "noheader.csv").write_text("\n".join(body) + "\n")
    headed = blocks_cli("predict", str(run / "run"), str(run / "p.csv"))
    bare = blocks_cli("predict", str(run / "run"), str(run / "noheader.csv"))
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout == headed.stdout
    (run / "renamed.csv").write_text("a,b,c,d\n" + "\n".join(body) + "\n")
    renamed = blocks_cli("predict", str(run / "run"), str(run / "renamed.csv"))
    assert renamed.returncode == 2
    assert "missing column(s) 'x0', 'x1', 'x2', 'colour'" in renamed.stderr


@pytest.mark.slow  # CLI subprocesses
def test_every_output_format_reads_back_to_the_same_float32(run):
    """Item 5: csv, json and parquet at full precision; the same numbers in each."""
    import pyarrow.parquet as pq

    base = blocks_cli("predict", str(run / "run"), str(run / "p.csv"))
    expected = cli_probabilities(base.stdout)
    as_json = blocks_cli("predict", str(run / "run"), str(run / "p.csv"), "--format", "json")
    records = json.loads(as_json.stdout)
    assert np.array_equal(np.array([[r["p/no"], r["p/yes"]] for r in records], np.float32),
                          expected)
    out = run / "out.parquet"
    done = blocks_cli("predict", str(run / "run"), str(run / "p.csv"), "-o", str(out))
    assert done.returncode == 0 and f"wrote 4 predictions to {out}" in done.stdout
    table = pq.read_table(out)
    assert table.column_names == ["label", "p/no", "p/yes"]
    assert np.array_equal(np.stack([table.column("p/no").to_numpy(),
                                    table.column("p/yes").to_numpy()], axis=1), expected)
    refused = blocks_cli("predict", str(run / "run"), str(run / "p.csv"), "--format", "parquet")
    assert refused.returncode == 2 and "--format parquet writes a file: give --out FILE" \
        in refused.stderr


def test_python_errors_name_the_row_and_column(run):
    import blocks

    model = blocks.load(run / "run")
    with pytest.raises(blocks.SpecError) as info:
        model.predict_proba([{"x0": 1, "x1": 2, "x2": 3, "colour": "red"},
                             {"x0": 1, "x1": 2, "x2": 3, "colour": "purple"}])
    assert str(info.value) == ("input row 2, column 'colour': 'purple' is not a known category "
                               "(amber, blue, red); set `unknown_category: ignore` to encode "
                               "unseen ones as all-zero")
    with pytest.raises(blocks.SpecError, match="missing column"):
        model.predict_proba([{"x0": 1, "x1": 2, "colour": "red"}])


@pytest.mark.parametrize("value", [2.7540183e-16, 1e-5, 1e-45, 1.1754944e-38, 0.5, 1.0, 0.0,
                                   0.022251675, 3e20, float("inf")])
def test_a_probability_cell_is_short_and_reads_back_to_the_same_float32(value):
    from blocks.run.tables import text_of

    cell = text_of(np.float32(value))
    assert np.float32(cell) == np.float32(value)
    assert len(cell) <= 15, cell  # scientific for tiny values, never 20+ positional digits
