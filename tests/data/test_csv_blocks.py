"""The training CSV read in parallel pieces (`blocks.data.csv_blocks`): the same numbers as the
Python reader bit for bit, rows written straight into the split's shuffled order, and every
file the pieces cannot take as they are (a cut inside a quoted cell) read by the whole-table
readers instead."""

from __future__ import annotations

import numpy as np
import pytest

from blocks.data import csv_blocks, row_blocks
from blocks.data.splits import load_splits
from blocks.spec.recipe import Recipe

pytest.importorskip("pyarrow")


@pytest.fixture
def tiny_pieces(monkeypatch):
    """Pieces of 2 kB and buckets of 1 kB: a small file is cut dozens of times."""
    monkeypatch.setattr(csv_blocks, "PIECE_BYTES", 1 << 11)
    monkeypatch.setattr(csv_blocks, "MIN_PIECE_BYTES", 1 << 11)
    monkeypatch.setattr(row_blocks, "BUCKET_BYTES", 1 << 10)
    monkeypatch.setattr(row_blocks, "MIN_BUCKET_BYTES", 1 << 10)


def write(path, rows: int, *, text_first: bool = False, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    names = np.array(["amber", "blue", '"green, light"', "red"])
    lines = ["colour,a,b,c,label" if text_first else "a,b,colour,c,label"]
    for r in range(rows):
        a, b, c = (repr(float(v)) for v in rng.standard_normal(3).round(int(rng.integers(1, 17))))
        colour, label = names[rng.integers(4)], ["no", "yes"][r % 2]
        lines.append(",".join([colour, a, b, c, label] if text_first else [a, b, colour, c, label]))
    path.write_text("\n".join(lines) + "\n")


def recipe(path, val_fraction: float = 0.25, seed: int = 3, categorical=("colour",)) -> Recipe:
    return Recipe.model_validate({
        "model": {"input": {"shape": [7]}, "head": {"type": "softmax", "classes": 2}},
        "data": {"csv": {"path": str(path), "target": "label", "categorical": list(categorical)},
                 "val_fraction": val_fraction, "seed": seed}})


def splits_bytes(splits) -> tuple:
    return (splits.train.x.numpy().tobytes(), splits.train.y.numpy().tobytes(),
            splits.val.x.numpy().tobytes(), splits.val.y.numpy().tobytes(),
            splits.model_spec.preprocess.categories, splits.info)


def both_readers(spec: Recipe, monkeypatch) -> list:
    """The split (or the error) of the pyarrow reader, then of the Python reader."""
    outcome = []
    for engine in ("arrow", "python"):
        monkeypatch.setenv("BLOCKS_CSV_READER", engine)
        try:
            outcome.append(splits_bytes(load_splits(spec)))
        except Exception as err:  # noqa: BLE001 - both readers must fail alike
            outcome.append(("error", type(err).__name__, str(err)))
    return outcome


@pytest.mark.parametrize("text_first", [False, True])
def test_shuffled_blocks_equal_the_python_readers_split(tmp_path, monkeypatch, tiny_pieces,
                                                        text_first):
    """Dozens of pieces and buckets: train and val features, targets and vocabularies are the
    Python reader's (which reads the whole file, then permutes) byte for byte."""
    path = tmp_path / "t.csv"
    write(path, 1500, text_first=text_first)
    calls = []
    real = row_blocks.assemble
    monkeypatch.setattr(row_blocks, "assemble",
                        lambda *a: calls.append(a[3] is not None) or real(*a))
    fast = splits_bytes(load_splits(recipe(path)))
    assert calls == [True]  # the pieces were read and written straight into the split's order
    monkeypatch.setenv("BLOCKS_CSV_READER", "python")
    assert fast == splits_bytes(load_splits(recipe(path)))


def test_numbers_only_take_the_direct_copy(tmp_path, monkeypatch, tiny_pieces):
    path = tmp_path / "t.csv"
    rng = np.random.default_rng(1)
    rows = ["a,b,label"] + [f"{rng.standard_normal():.9g},{rng.standard_normal():.3g},{r % 2}"
                            for r in range(800)]
    path.write_text("\n".join(rows) + "\n")
    spec = {"model": {"input": {"shape": [2]}, "head": {"type": "softmax", "classes": 2}},
            "data": {"csv": {"path": str(path), "target": "label"}, "seed": 9}}
    fast = load_splits(Recipe.model_validate(spec))
    monkeypatch.setenv("BLOCKS_CSV_READER", "python")
    slow = load_splits(Recipe.model_validate(spec))
    assert fast.train.x.numpy().tobytes() == slow.train.x.numpy().tobytes()
    assert fast.val.x.numpy().tobytes() == slow.val.x.numpy().tobytes()
    assert fast.train.y.tolist() == slow.train.y.tolist()


def test_one_thread_reads_the_same(tmp_path, monkeypatch, tiny_pieces):
    path = tmp_path / "t.csv"
    write(path, 600)
    many = splits_bytes(load_splits(recipe(path)))
    monkeypatch.setenv("BLOCKS_READ_THREADS", "1")
    assert splits_bytes(load_splits(recipe(path))) == many


@pytest.mark.parametrize("where", ["text", "number", "label"])
def test_a_cut_inside_a_quoted_cell_goes_back_to_the_whole_table_readers(
        tmp_path, monkeypatch, tiny_pieces, where):
    """Quoted cells holding line ends, every few rows: some piece cuts fall inside one, which
    the pieces must notice (the file is then read whole), never reading half a cell as a row."""
    rng = np.random.default_rng(4)
    lines = ["a,colour,b,label"]
    for r in range(3000):
        a, b = (f"{v:.6f}" for v in rng.standard_normal(2))
        colour, label = ["red", "blue"][r % 2], ["no", "yes"][r // 2 % 2]
        if r % 3 == 1:
            if where == "text":
                colour = '"line one\nline two"' if r % 2 else '"blue\r\nsky"'
            elif where == "number":
                a = f'"{a}"'  # a quoted number is a number; no line end in it
                colour = '"x\ny"'
            else:
                label = '"no\nreally"'
        lines.append(",".join([a, colour, b, label]))
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    # with these rows some cut does fall inside a quoted cell (checked): noticed, not misread
    assert csv_blocks.read_blocks(path, lines[0].split(","), {"a", "b"}, ",") is None
    spec = Recipe.model_validate({
        "model": {"input": {"shape": [{"text": 6, "number": 5, "label": 4}[where]]},
                  "head": {"type": "softmax", "classes": 3 if where == "label" else 2}},
        "data": {"csv": {"path": str(path), "target": "label", "categorical": ["colour"]}}})
    outcome = both_readers(spec, monkeypatch)
    assert outcome[0] == outcome[1] and outcome[0][0] != "error", outcome


def test_lines_longer_than_a_piece_equal_the_python_reader(tmp_path, monkeypatch, tiny_pieces):
    """Rows of 3-9 kB among short ones, pieces of 2 kB: a piece waits for its line end across
    reads, and the reused piece buffers grow for it without mixing bytes of earlier pieces."""
    rng = np.random.default_rng(4)
    lines = ["a,colour,b,label"]
    for r in range(400):
        colour = ("x" * 3000, "y" * 9000)[r % 2] if r % 37 == 5 else ("red", "blue")[r % 2]
        lines.append(f"{rng.standard_normal():.6f},{colour},{r * 0.25},{['no', 'yes'][r % 3 > 0]}")
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    spec = Recipe.model_validate({
        "model": {"input": {"shape": [6]}, "head": {"type": "softmax", "classes": 2}},
        "data": {"csv": {"path": str(path), "target": "label", "categorical": ["colour"]},
                 "seed": 1}})
    calls = []
    real = row_blocks.assemble
    monkeypatch.setattr(row_blocks, "assemble", lambda *a: calls.append(1) or real(*a))
    outcome = both_readers(spec, monkeypatch)
    assert calls == [1] and outcome[0] == outcome[1] and outcome[0][0] != "error"


def test_a_cut_at_every_byte_of_a_quoted_row_is_noticed(tmp_path, monkeypatch):
    """Pieces sized so that cuts fall at each line end inside one multi-line quoted cell."""
    body = "".join(f"{i}.5,plain,{i % 2}\n" for i in range(40))
    quoted = '1.5,"a\nb\nc\nd\ne",0\n'
    path = tmp_path / "t.csv"
    refused = 0
    for piece in range(8, 64, 3):
        path.write_text("a,colour,label\n" + body + quoted + body)
        monkeypatch.setattr(csv_blocks, "PIECE_BYTES", piece)
        monkeypatch.setattr(csv_blocks, "MIN_PIECE_BYTES", piece)
        cells = csv_blocks.read_blocks(path, ["a", "colour", "label"], {"a"}, ",")
        if cells is None:
            refused += 1
            continue
        # no cut fell inside the quoted cell: every row is whole
        decoded = cells.decode([0, 1, 2], 0, ["a", "colour"], ["label"], path, "x",
                               categorical=["colour"])
        expected = [i + 0.5 for i in range(40)] + [1.5] + [i + 0.5 for i in range(40)]
        assert decoded.x[:, 0].tolist() == expected
        assert decoded.categories["colour"] == ["a\nb\nc\nd\ne", "plain"]
    assert refused >= 3  # cuts inside the quoted cell did happen, and were noticed


# --- Parquet: row groups read a column at a time into the same blocks -------------------------
def parquet_table(rows: int, shape: str = ""):
    """Int, bool, float32/64 features, a dictionary column and integer class ids; `shape`
    puts a null target, a NaN, nulls among the features or an infinity in."""
    import pyarrow as pa

    rng = np.random.default_rng(7)
    a = rng.standard_normal(rows)
    if shape.startswith("nan"):
        a[rows // 2] = np.nan
    if shape == "inf":
        a[rows // 3] = -np.inf
    holes = (np.arange(rows) % 97 == 5) if shape == "null features" else None
    colour = pa.array(rng.choice(["amber", "blue", "red"], rows), mask=holes).dictionary_encode()
    label = rng.integers(0, 3, rows)
    return pa.table({
        "a": a, "n": pa.array(rng.integers(-5, 10**9, rows), mask=holes),
        "flag": rng.random(rows) > 0.5,
        "f32": pa.array(rng.standard_normal(rows).astype(np.float32),
                        mask=None if holes is None else np.roll(holes, 3)),
        "colour": colour,
        "label": pa.array(label, mask=(np.arange(rows) == 3) if shape == "nulls" else None)})


#: shape -> (imputed, whole-table road, an error)
PARQUET_SHAPES = {
    "one file": (False, False, False), "shards": (False, False, False),
    "unsorted features": (False, False, False),
    "nulls": (False, True, True),  # a null target: the whole-table reader names its row
    "nan": (True, False, False),  # imputed: NaN on the way in, as the whole-table reader makes it
    "null features": (True, False, False),  # null numbers and a null category, imputed
    "nan refused": (False, True, True),  # not imputed: the whole-table reader names the row
    "inf": (True, True, True),
}


@pytest.mark.parametrize("readers", [1, 2])
@pytest.mark.parametrize("shape", list(PARQUET_SHAPES))
def test_parquet_columns_equal_the_whole_table_read(tmp_path, monkeypatch, shape, readers):
    """Several row groups (and shards) of int, bool, float32/64 features, a dictionary column
    and integer class ids, read by one or two readers, in batches, into many small buckets: the
    whole-table reader's split byte for byte, missing cells (imputed) included; a null target,
    a missing cell without imputation or an infinity met while reading sends the table to the
    whole-table reader (which names it)."""
    import pyarrow.parquet as pq

    from blocks.data import parquet_columns, sources

    imputed, whole, error = PARQUET_SHAPES[shape]
    monkeypatch.setattr(row_blocks, "BUCKET_BYTES", 1 << 10)  # the shared bucket size
    monkeypatch.setattr(row_blocks, "MIN_BUCKET_BYTES", 1 << 10)
    monkeypatch.setattr(parquet_columns, "reader_count", lambda matrix, threads: readers)
    monkeypatch.setattr(parquet_columns, "BATCH_ROWS", 128)  # several batches a row group
    table = parquet_table(2000, shape)
    path = tmp_path / ("shards" if shape == "shards" else "t.parquet")
    if shape == "shards":
        path.mkdir()
        pq.write_table(table.slice(0, 1200), path / "part-0.parquet", row_group_size=500)
        pq.write_table(table.slice(1200), path / "part-1.parquet", row_group_size=500)
    else:
        pq.write_table(table, path, row_group_size=700)
    features = (["colour", "f32", "a", "flag"] if shape == "unsorted features" else None)
    spec = Recipe.model_validate({
        "model": {"input": {"shape": [7 if features is None else 6]},
                  "head": {"type": "softmax", "classes": 3}},
        "data": {"parquet": {"path": str(path), "target": "label", "categorical": ["colour"],
                             "features": features},
                 "seed": 5, "impute": "mean" if imputed else "refuse"}})
    used = []
    real = sources.parquet_cells
    monkeypatch.setattr(sources, "parquet_cells", lambda *a: used.append(real(*a)) or used[-1])

    def outcome():
        try:
            return splits_bytes(load_splits(spec))
        except Exception as err:  # noqa: BLE001 - both roads must fail alike
            return ("error", str(err))

    fast = outcome()
    assert used[0].whole_table_read == whole
    monkeypatch.setattr(sources, "parquet_cells", lambda *a: None)
    assert fast == outcome()
    assert (fast[0] == "error") == error
    if shape == "null features":  # the holes came through as missing cells, then imputed
        x = np.frombuffer(fast[0], dtype=np.float32)
        assert np.isnan(x).sum() > 0


@pytest.mark.parametrize("case", ["every spelling", "refused", "quoted", "a whole column",
                                  "-nan"])
def test_missing_cells_in_pieces_equal_the_python_reader(tmp_path, monkeypatch, tiny_pieces,
                                                         case):
    """With `impute`, a numeric cell spelled as one of `MISSING` is NaN in the pieces too (the
    piece road is kept); without it, or spelled otherwise, the file goes to the whole-table
    readers: either way the Python reader's numbers or its located error."""
    from blocks.data.table import MISSING

    rng = np.random.default_rng(8)
    spellings = sorted(MISSING)
    lines = ["a,b,colour,label"]
    for r in range(900):
        a, b = f"{rng.standard_normal():.7g}", f"{rng.standard_normal():.4g}"
        if r % 9 == 4:
            a = {"quoted": '"NA"', "-nan": "-nan"}.get(case, spellings[r % len(spellings)])
        if case == "a whole column":
            b = ""
        lines.append(",".join([a, b, ["red", "blue"][r % 2], ["no", "yes"][r // 3 % 2]]))
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    impute = "refuse" if case == "refused" else "mean"
    header = lines[0].split(",")
    taken = csv_blocks.read_blocks(path, header, {"a", "b"}, ",", missing_ok=impute != "refuse")
    assert (taken is not None) == (case in ("every spelling", "a whole column"))
    spec = Recipe.model_validate({
        "model": {"input": {"shape": [4]}, "head": {"type": "softmax", "classes": 2}},
        "data": {"csv": {"path": str(path), "target": "label", "categorical": ["colour"]},
                 "impute": impute}})
    outcome = both_readers(spec, monkeypatch)
    assert outcome[0] == outcome[1]
    assert (outcome[0][0] == "error") == (case in ("refused", "-nan")), outcome[0]
