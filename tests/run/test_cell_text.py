"""Predictions written a column at a time (`blocks.run.cell_text`) are the bytes the per-cell
definition writes: `text_of` for every float32, `csv.writer` quoting for every label."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from blocks.run import tables
from blocks.run.cell_text import Coded, csv_text, float_texts, text_of, write_csv_rows
from blocks.run.predicting import Predictions

pytest.importorskip("pyarrow")

EDGES = np.float32([0, -0.0, 1, -1, 0.5, 1e-4, -1e-4, 9.9e-5, 1e-5, 2.754018e-16, 1e16, 1.5e16,
                    -1e16, 9.999999e15, 123456.79, 16777216, 1e7, 12345678, 1e15, 1e-7, 1e-10,
                    1e-45, -1e-44, 1.1754944e-38, 3.4028235e38, -3.4028235e38, np.inf, -np.inf,
                    np.nan, -np.nan, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 0.99999994, 5.9604645e-08])
#: names csv.writer quotes (comma, quote, newline), or does not (unicode; a carriage return,
#: which `csv_quoted` quotes itself)
AWKWARD = ["plain", "a,b", 'say "hi"', "two\nlines", "cr\rlf", "", " spaced ", "naïve 猫", "'"]


def random_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Every kind of float32: random bit patterns (NaNs, subnormals, huge) and log-uniform
    magnitudes across the whole range."""
    bits = rng.integers(0, 2**32, n, dtype=np.uint32).view(np.float32)
    with np.errstate(over="ignore"):  # beyond float32: inf
        magnitudes = (10.0 ** rng.uniform(-46, 39, n) * rng.choice([-1, 1], n)).astype(np.float32)
    return np.concatenate([EDGES, bits, magnitudes, rng.random(n).astype(np.float32) ** 8])


def reference_csv(columns: list) -> str:
    """What `PredictionWriter` writes cell by cell: `text_of` per cell, `csv.writer` rows
    (a row with a carriage return in a field: that field quoted)."""
    buffer = io.StringIO()
    lists = [c.tolist() if isinstance(c, Coded) else c for c in columns]
    write_csv_rows(buffer, ([text_of(v) for v in row] for row in zip(*lists, strict=True)))
    return buffer.getvalue()


def test_every_awkward_name_reads_back():
    """`csv.writer(lineterminator="\\n")` leaves a carriage return bare (`cr\\rlf,`), which
    no CSV reader takes back; the writers quote it, and every other name is as csv writes it."""
    rows = [[name, "1.5"] for name in AWKWARD] + [["x\ry", 'q"\r'], ["\r", ""]]
    written = reference_csv([[r[0] for r in rows], [r[1] for r in rows]])
    assert list(csv.reader(io.StringIO(written, newline=""))) == rows
    bare = [r for r in rows if "\r" not in "".join(r)]
    plain = io.StringIO()
    csv.writer(plain, lineterminator="\n").writerows(bare)
    assert reference_csv([[r[0] for r in bare], [r[1] for r in bare]]) == plain.getvalue()
    assert csv_text([Coded(np.arange(len(rows)), [r[0] for r in rows]),
                     [r[1] for r in rows]]) == written


def test_float_texts_are_text_of_for_every_kind_of_float32():
    values = random_floats(np.random.default_rng(0), 60_000)
    got = float_texts(values).to_pylist()
    want = [text_of(v) for v in values]
    wrong = [(v, g, w) for v, g, w in zip(values, got, want, strict=True) if g != w]
    assert wrong == []
    assert float_texts(np.float32([1e-5, 2.5e-30, 1e16, np.nan, -0.0])).to_pylist() == [
        "1e-05", "2.5e-30", "1e+16", "nan", "-0"]
    assert float_texts(np.float32([])).to_pylist() == []
    # bounds compared as float32 (numpy 1 compared float32(1e-4) = 9.99999974e-05 in float64)
    assert [text_of(np.float32(x)) for x in (1e-4, 9.999999e-05, 1e16)] == [
        "0.0001", "9.999999e-05", "1e+16"]


def test_float_texts_refuses_other_dtypes():
    with pytest.raises(TypeError, match="float64"):
        float_texts(np.array([0.5]))


@pytest.mark.parametrize("slice_cells", [1 << 20, 7])
def test_csv_text_is_what_csv_writer_writes(monkeypatch, slice_cells):
    monkeypatch.setattr("blocks.run.cell_text.SLICE_CELLS", slice_cells)  # several slices
    rng = np.random.default_rng(1)
    n = 500
    codes = rng.integers(0, len(AWKWARD), n)
    files = [f"dir/{AWKWARD[i % len(AWKWARD)]}{i}.png" for i in range(n)]
    shapes = [
        [Coded(codes, AWKWARD), random_floats(rng, n)[:n]],
        [files, Coded(codes, AWKWARD), rng.integers(0, 2, n), rng.random(n).astype(np.float32)],
        [Coded(np.zeros(n, np.int64), [""])],  # one column: a lone empty field is quoted
        [rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64), [None, 1.5, True, "x"] * (n // 4)],
        [Coded(np.zeros(0, np.int64), AWKWARD), np.float32([])],
    ]
    for columns in shapes:
        assert csv_text(columns) == reference_csv(columns)
    assert csv_text([]) == ""
    with pytest.raises(ValueError, match="different lengths"):
        csv_text([np.float32([1, 2]), ["a"]])


def predictions_of(shape: str, n: int, rng: np.random.Generator) -> Predictions:
    names = {"softmax": AWKWARD, "sigmoid": ["cat", "dog,wolf", 'q"'], "binary": ["yes"]}
    heads = {"single": ["softmax"], "sigmoid": ["sigmoid"], "binary": ["binary"],
             "multi": ["softmax", "sigmoid"]}[shape]
    labels, probabilities = {}, {}
    for head in heads:
        k = len(names[head])
        p = torch.from_numpy(rng.random((n, k)).astype(np.float32) ** 12)
        p[0, 0], p[-1, -1] = 0.0, 1.0
        probabilities[head] = p
        labels[head] = p.argmax(1) if head == "softmax" else (p > 0.5).long()
    return Predictions(labels, probabilities, {h: names[h] for h in heads},
                       {h: "softmax" if h == "softmax" else "sigmoid" for h in heads})


@pytest.mark.parametrize("shape", ["single", "sigmoid", "binary", "multi"])
@pytest.mark.parametrize("leading", [False, True])
def test_prediction_files_are_the_bytes_of_the_per_cell_writer(tmp_path, monkeypatch, capsys,
                                                               shape, leading):
    rng = np.random.default_rng(2)
    chunks = [predictions_of(shape, n, rng) for n in (300, 1, 57)]
    firsts = [{"file": [f"{AWKWARD[i % len(AWKWARD)]}/{i}.png" for i in range(len(c.labels[
        next(iter(c.labels))]))]} if leading else None for c in chunks]

    def written(out) -> bytes:
        writer = tables.PredictionWriter(out, "csv")
        for chunk, first in zip(chunks, firsts, strict=True):
            writer.write(chunk, leading=first)
        assert writer.close() == 358
        return out.read_bytes() if out is not None else capsys.readouterr().out.encode()

    columns = written(tmp_path / "columns.csv")
    printed = written(None)
    monkeypatch.setattr(tables, "have_pyarrow", lambda: False)  # the per-cell path
    assert columns == written(tmp_path / "cells.csv")
    assert printed == written(None) == columns
    header, _ = tables.prediction_columns(chunks[0])
    assert columns.decode().startswith(reference_csv([[h] for h in ["file"] * leading + header]))
