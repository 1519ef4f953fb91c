"""The pyarrow reader and the Python `csv` reader give the same numbers bit for bit, the same
vocabularies and the same located errors, on every CSV here (issue 21, item 1)."""

from __future__ import annotations

import codecs
import random

import numpy as np
import pytest

from blocks.core.errors import SpecError
from blocks.data import columnar, csv_blocks
from blocks.data.sources import load_arrays
from blocks.spec.data import DataSpec
from blocks.spec.model import ModelSpec

pytest.importorskip("pyarrow")


def model(width: int, classes: int = 3, head: str = "softmax") -> ModelSpec:
    return ModelSpec.model_validate({"input": {"shape": [width]},
                                     "head": {"type": head, "classes": classes}})


def read(tmp_path, engine: str, text: str | bytes, csv: dict, width: int, monkeypatch,
         classes: int = 3, **data) -> tuple:
    path = tmp_path / "t.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    monkeypatch.setenv("BLOCKS_CSV_READER", engine)
    spec = DataSpec.model_validate({"csv": {"path": str(path), "target": "y", **csv}, **data})
    try:
        raw = load_arrays(spec, model(width, classes), tmp_path)
    except SpecError as err:
        return ("error", str(err))
    return ("ok", raw.x.dtype.str, raw.x.tobytes(), np.asarray(raw.y).tobytes(), raw.features,
            raw.categories, raw.labels)


def agree(tmp_path, monkeypatch, text, csv=None, width=2, **data):
    python = read(tmp_path, "python", text, dict(csv or {}), width, monkeypatch, **data)
    arrow = read(tmp_path, "arrow", text, dict(csv or {}), width, monkeypatch, **data)
    assert arrow == python
    return python


CASES = [
    "a,b,y\n1,2,0\n3,4,1\n5,6,2\n",
    "a,b,y\r\n1.5,2.25,0\r\n3,4,1\r\n",                      # CRLF
    "a,b,y\r1,2,0\r3,4,1\r",                                  # old Mac line ends
    codecs.BOM_UTF8 + b"a,b,y\n1,2,0\n3,4,1\n",               # a BOM
    "a,b,y\n1,2,0\n\n\n3,4,1\n,,\n5,6,2\n",                   # blank lines and an empty row
    'a,b,y\n"1","2",0\n"3",4,"1"\n',                         # quoted numbers
    'a,b,y\n1,"x\ny",0\n3,4,1\n',                            # a quoted newline (an error)
    "a,b,y\n -0 , +.5 ,0\n1e5,5.,1\n1E-3,-2.5e+2,2\n",       # spellings and spaces
    "a,b,y\n1_000,2,0\n3,4,1\n",                              # Python reads 1_000, pyarrow not
    "a,b,y\n9007199254740993,16777217,0\n3,4,1\n",            # beyond float precision
    "a,b,y\n0.1000000000000000055511151231257827,2,0\n3,4,1\n",
    "a,b,y\n1,inf,0\n3,4,1\n",                                # non-finite: an error
    "a,b,y\n1,-nan,0\n3,4,1\n",
    "a,b,y\n1,nan,0\n3,4,1\n",                                # missing (no impute: an error)
    "a,b,y\n1,NA,0\n3,,1\n",
    "a,b,y\n1,x,0\n3,4,1\n",                                  # text in a numeric column
    "a,b,y\n1,2,0\n3,4\n",                                    # a short row
    "a,b,y\n1,2,0\n3,4,1,5\n",                                # a long row
    "a,a,y\n1,2,0\n",                                         # duplicate header
    "a,b,y\n1,2,\n3,4,1\n",                                   # missing target
    "a,b,y\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,eel\n",            # class names
    "a,b,y\n1,2,cat\n3,4,1\n",                                # names beside ids
    "a,b,y\n1,2,0.5\n3,4,1\n",                                # a fractional class id
    "a,b,y\n1,2,7\n3,4,1\n",                                  # out of range
    "a;b;y\n1;2;0\n3;4;1\n",                                  # wrong delimiter
    "a,b,y\n1,2,0\n3,4,1\n" * 1 + "\xff\n",                   # a stray byte line (bad row)
    b"a,b,y\n1,2,0\n\xff,4,1\n",                              # bad UTF-8
    "a,b,y\n1,  2  ,0\n\t3,4,1\n",
    '"a","b","y"\n1,2,0\n"3","4","1"\n',
]


@pytest.mark.parametrize("text", CASES, ids=range(len(CASES)))
def test_numeric_tables_agree(tmp_path, monkeypatch, text):
    agree(tmp_path, monkeypatch, text)


@pytest.mark.parametrize("impute", ["mean", "refuse"])
@pytest.mark.parametrize("text", [
    "a,b,y\n1,NA,0\n3,,1\n5, nan ,2\n",
    "a,b,y\nred,1,0\nblue,NA,1\ngreen,3,2\n",
    "a,b,y\nred,1,0\n,2,1\nred,3,2\n",
    "a,b,y\nred,1,0\nblue,2,1\n3,3,2\n",                       # mixed categorical column
    "a,b,y\n red ,1,0\nred,2,1\n\"blue\",3,2\n",
], ids=range(5))
def test_categorical_tables_agree(tmp_path, monkeypatch, text, impute):
    for categorical in (["a"], "auto", {"a": "embedding"}):
        agree(tmp_path, monkeypatch, text, {"categorical": categorical}, width=4, impute=impute)


def test_bundled_datasets_written_as_csv_agree(tmp_path, monkeypatch):
    datasets = pytest.importorskip("sklearn.datasets")
    for loader in (datasets.load_iris, datasets.load_wine, datasets.load_breast_cancer,
                   datasets.load_digits):
        bunch = loader()
        names = [f"f{i}" for i in range(bunch.data.shape[1])]
        lines = [",".join([*names, "y"])]
        lines += [",".join([*(repr(float(v)) for v in row), str(bunch.target_names[t])])
                  for row, t in zip(bunch.data, bunch.target, strict=True)]
        classes = len(bunch.target_names)
        python = read(tmp_path, "python", "\n".join(lines) + "\n", {}, len(names), monkeypatch,
                      classes=classes)
        arrow = read(tmp_path, "arrow", "\n".join(lines) + "\n", {}, len(names), monkeypatch,
                     classes=classes)
        assert python[0] == "ok" and arrow == python


def test_random_cells_agree(tmp_path, monkeypatch):
    """Cells drawn from spellings that readers disagree on most easily; every table agrees."""
    spellings = ["0", "-0", "1", "+1", "1.", ".5", "-.5", "1e3", "1E-3", "1_0", " 2 ", "\t3",
                 "NA", "", "nan", "NaN", "-nan", "inf", "x", "1.5.2", "0x10", "1e", "007",
                 "123456789012345678901", "3.4028235e38", "1e-46", '"4"', "٣"]
    rng = random.Random(0)
    for _ in range(60):
        rows = ["a,b,y"] + [f"{rng.choice(spellings)},{rng.choice(spellings[:12])},"
                            f"{rng.choice(['0', '1', '2'])}" for _ in range(rng.randint(1, 6))]
        for impute in ("mean", "refuse"):
            agree(tmp_path, monkeypatch, "\n".join(rows) + "\n", impute=impute)


def test_pyarrow_accepts_no_number_python_refuses():
    """The fast road's premise: every spelling pyarrow casts, Python's float reads alike."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for text in ["1", "-0", "+1.5", ".5", "5.", "1e5", "1E+05", "-1e-400", "1e400", "inf",
                 "-Infinity", "nan", "0x1", "1_0", " 1", "1 ", "1d5", "1,5", "٣", "1e", "+",
                 "-", ".", "e5", "--1", "1.2.3", "0b1", "infinit", "nanx", "1f"]:
        try:
            ours = pc.cast(pa.array([text]), pa.float64())[0].as_py()
        except pa.ArrowInvalid:
            continue
        theirs = float(text)
        assert repr(ours) == repr(theirs), text


def test_the_python_reader_is_used_without_pyarrow(monkeypatch, tmp_path):
    monkeypatch.setattr(columnar, "have_pyarrow", lambda: False)
    monkeypatch.delenv("BLOCKS_CSV_READER", raising=False)
    assert columnar.csv_engine() == "python"
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    assert isinstance(columnar.read_csv_cells(path, "x"), columnar.PythonCells)


@pytest.mark.parametrize("messy", [False, True])
def test_a_larger_table_agrees_on_the_parallel_and_typed_roads(tmp_path, monkeypatch, messy):
    """5,000 x 50 cells: plain numbers take pyarrow's typed read; with missing cells and odd
    spellings, the text read and its parallel casts."""
    rng = np.random.default_rng(2)
    values = rng.standard_normal((5000, 50))
    rows = [",".join([*(f"f{i}" for i in range(50)), "y"])]
    odd = ["NA", "", " 1.5", "1_0", "-0"]
    for r, row in enumerate(values):
        cells = [repr(float(v)) for v in row]
        if messy and r % 97 == 0:
            cells[r % 50] = odd[r % len(odd)]
        rows.append(",".join([*cells, str(r % 3)]))
    result = agree(tmp_path, monkeypatch, "\n".join(rows) + "\n", width=50, impute="mean")
    assert result[0] == "ok"


@pytest.mark.parametrize("bad", [None, "x", "inf", "", "teal"])
def test_a_table_read_in_many_blocks_agrees(tmp_path, monkeypatch, bad):
    """The typed reader's small blocks (numbers as float32 row blocks, names dictionary-encoded
    and decoded once per distinct value): the same numbers, vocabularies and class names as the
    Python reader, and a bad cell far into the file named by its own line."""
    monkeypatch.setattr(csv_blocks, "PIECE_BYTES", 1 << 12)
    monkeypatch.setattr(csv_blocks, "MIN_PIECE_BYTES", 1 << 12)
    rng = np.random.default_rng(5)
    values = rng.standard_normal((3000, 3))
    names = np.array(["red", " blue", "green", '"amber"'])
    rows = ["a,colour,b,c,y"]
    for r, row in enumerate(values):
        cells = [repr(float(v)) for v in row]
        colour = names[(r * 7) % 4] if r < 2000 else names[r % 3]
        rows.append(",".join([cells[0], colour, *cells[1:], ["no", "yes", "maybe"][r % 3]]))
    if bad is not None:  # line 2,900 of the file
        parts = rows[2899].split(",")
        parts[1 if bad == "teal" else 3] = bad
        rows[2899] = ",".join(parts)
    for categorical in (["colour"], {"colour": "embedding"}):
        result = agree(tmp_path, monkeypatch, "\n".join(rows) + "\n",
                       {"categorical": categorical}, width=7)
        if bad is None or bad == "teal":
            assert result[0] == "ok"
            assert result[5] == {"colour": sorted({n.strip().strip('"') for n in names}
                                               | ({"teal"} if bad else set()))}
            assert list(result[6].values()) == [["maybe", "no", "yes"]]
        else:
            assert result[0] == "error" and "line 2900" in result[1], result


def test_the_typed_blocks_are_decoded_once(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,y\n1,0\n2,1\n")
    cells = csv_blocks.read_training_csv(path, "x", ",", numeric=lambda header: {"a"})
    assert isinstance(cells, csv_blocks.BlockCells) and cells.count == 2
    cells.decode([0, 1], 0, ["a"], ["y"], path, "x")
    with pytest.raises(RuntimeError, match="twice"):
        cells.decode([0, 1], 0, ["a"], ["y"], path, "x")
