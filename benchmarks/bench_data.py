"""Tabular data at scale (issue 21): `blocks` reading and predicting tables against the
hand-written pandas / pyarrow + `model(x)` a user would write, on the same generated file.

The table: N rows of 20 numeric columns, one categorical column (4 names) and a string label;
a 5,955-parameter MLP. Rows, for N = 200,000 (and 2,000,000 with `BLOCKS_BENCH_DATA=full`):
- data load: `load_splits(recipe)` (read, decode, split, tensors) vs the faster of
  `pandas.read_csv` and `pyarrow.csv.read_csv`, each with category codes, float32 tensors and
  the same train/val split a user writes (a seeded permutation, each split a copy): the same
  work (target <= 1.5x); the note also gives pandas' read alone and that ratio;
- predict: `blocks predict RUN FILE -o out.csv` in process (chunks, full precision) vs pandas
  read + codes + `model(x)` + softmax + `to_csv` (target <= 1.5x);
- peak memory of the load against the float32 feature matrix (<= 2x), the median of
  `MEMORY_PROCESSES` processes that have each loaded a 2,000-row file once (the first load
  of a fresh process also pages in library code and pyarrow's pools, a constant the note
  gives too);
- the same load and memory for the table written as Parquet, against `pyarrow.parquet`, and
  for that table with a tenth of its numbers missing (nulls; `impute: mean`; the reference
  also takes the column means).
With `BLOCKS_BENCH_DATA=full`, also a 10-million-row Parquet file (generated, deleted after)
trained one epoch and predicted with `data.stream`, in a fresh process each: peak RSS must be
under 1.5 GB (an `info` row per step, the ratio being peak / 1.5 GB).
Absolute times are in each row's note. Times are the best of `REPEATS` interleaved runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import interleaved_best

REPEATS = 5  # the first round of a process also pays for its heaps growing: best of the rest
PREDICT_REPEATS = 3  # its first call in a process is 2-4x slower (lazy set-up), its second 1.5x
FEATURES = 20
VAL_FRACTION = 0.2  # the recipes' default `data.val_fraction`
MEMORY_PROCESSES = 3
RECIPE = """model:
  name: bench-mlp
  input: {shape: [24]}
  backbone: [{type: linear, out_features: 64}, relu, {type: linear, out_features: 64}, relu]
  head: {type: softmax, classes: 2}
data:
  %s: {path: %s, target: label, categorical: [colour]}%s
train: {epochs: 1, batch_size: %d, device: cpu, optimizer: {type: adam, lr: 0.001}}
"""


def write_table(path: Path, rows: int, *, parquet: bool = False, chunk: int = 1_000_000,
                missing: float = 0.0) -> None:
    """The generated table, written a chunk at a time (bounded memory even at 10M rows);
    `missing`: the fraction of numeric cells left empty (null)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    w = rng.standard_normal(FEATURES)
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        x = rng.standard_normal((n, FEATURES)).round(5)
        colour = rng.choice(np.array(["amber", "blue", "green", "red"]), n)
        label = np.where(x @ w + (colour == "red") > 0, "yes", "no")
        holes = rng.random((n, FEATURES)) < missing if missing else None
        table = pa.table({**{f"f{i}": pa.array(x[:, i], mask=None if holes is None else holes[:, i])
                             for i in range(FEATURES)},
                          "colour": colour, "label": label})
        if parquet:
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        else:
            options = pcsv.WriteOptions(include_header=start == 0)
            with open(path, "ab" if start else "wb") as handle:
                pcsv.write_csv(table, handle, write_options=options)
    if writer is not None:
        writer.close()
    # on disk before anything is timed: the kernel's writeback of a just-written file would
    # otherwise take a core from whichever side runs in the next 30 s
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _reference_load(path: Path, split: bool = True) -> None:
    """What a user writes: read, category codes, float32 tensors (the faster reader), and the
    rows held out for validation, as `load_splits` gives them (`split=False`: the read alone)."""
    import pandas as pd

    df = pd.read_csv(path)
    x = df[[f"f{i}" for i in range(FEATURES)]].to_numpy(np.float32)
    codes = pd.Categorical(df["colour"]).codes.astype(np.float32)
    y = pd.Categorical(df["label"]).codes.astype(np.int64)
    _tensors(np.column_stack([x, codes]), y, split)


def _reference_load_arrow(path: Path) -> None:
    import pyarrow.csv as pcsv

    _tensors_of(pcsv.read_csv(path))


def _reference_load_parquet(path: Path, split: bool = True) -> None:
    import pyarrow.parquet as pq

    _tensors_of(pq.read_table(path), split)


def _reference_load_missing(path: Path) -> None:
    """The Parquet reference for a table with missing cells: the column means to fill them
    with (what `impute: mean` learns) as well."""
    import pyarrow.parquet as pq

    x = _tensors_of(pq.read_table(path))
    np.nanmean(x, axis=0)


def _tensors_of(table, split: bool = True) -> np.ndarray:
    """A pyarrow Table's features (category codes included) and labels as tensors (a null
    as NaN); the feature matrix."""
    import pyarrow.compute as pc

    x = np.column_stack([table.column(f"f{i}").to_numpy() for i in range(FEATURES)]
                        + [pc.dictionary_encode(table.column("colour")).combine_chunks()
                           .indices.to_numpy()]).astype(np.float32)
    y = pc.dictionary_encode(table.column("label")).combine_chunks().indices.to_numpy()
    _tensors(x, y.astype(np.int64), split)
    return x


def _tensors(x: np.ndarray, y: np.ndarray, split: bool) -> None:
    """Train and validation tensors the way a user holds rows out (sklearn's
    `train_test_split` does the same): a seeded permutation, the validation fraction first,
    each split a copy. `load_splits` returns the same two splits; without `split`, the whole
    table as one tensor (the read alone)."""
    import torch

    if not split:
        torch.from_numpy(x), torch.from_numpy(y)
        return
    order = np.random.default_rng(0).permutation(len(x))
    n_val = round(len(x) * VAL_FRACTION)
    val, train = order[:n_val], order[n_val:]
    torch.from_numpy(x[train]), torch.from_numpy(y[train])
    torch.from_numpy(x[val]), torch.from_numpy(y[val])


def _reference_predict(path: Path, model, out: Path) -> None:
    import pandas as pd
    import torch

    vocab = model.spec.preprocess.categories["colour"]
    df = pd.read_csv(path)
    x = df[[f"f{i}" for i in range(FEATURES)]].to_numpy(np.float32)
    codes = pd.Categorical(df["colour"], categories=vocab).codes.astype(np.float32)
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.column_stack([x, codes])))
        p = torch.softmax(logits, dim=1).numpy()
    frame = pd.DataFrame({"label": np.array(["no", "yes"])[p.argmax(1)], "p/no": p[:, 0],
                          "p/yes": p[:, 1]})
    frame.to_csv(out, index=False)


def _peak_rss(code: str, warm_up: str = "") -> int:
    """Peak resident bytes of a fresh Python process running `code`, above its resident size
    after the imports it needs and `warm_up` (Linux: the peak is reset there,
    `/proc/self/clear_refs`)."""
    text = ("import blocks, torch, pyarrow, numpy\n"
            "from blocks.data.splits import load_splits\n"
            "torch.set_num_threads(1)\n"
            "def status(key):\n"
            "    line = next(x for x in open('/proc/self/status') if x.startswith(key))\n"
            "    return int(line.split()[1]) * 1024\n"
            + warm_up +
            "\nbase = status('VmRSS')\n"
            "open('/proc/self/clear_refs', 'w').write('5')  # peak RSS from here on\n"
            + code +
            "\nprint('PEAK', status('VmHWM') - base)\n")
    done = subprocess.run([sys.executable, "-c", text], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    line = next(x for x in done.stdout.splitlines() if x.startswith("PEAK "))
    return int(line.split()[1])


def _size_rows(rows: int, folder: Path) -> list[dict]:
    import torch

    import blocks
    from blocks.data.splits import load_splits
    from blocks.run.predict_stream import predict_file
    from blocks.run.training import run_recipe

    torch.set_num_threads(1)
    path = folder / f"t{rows}.csv"
    write_table(path, rows)
    recipe_path = folder / f"r{rows}.yaml"
    recipe_path.write_text(RECIPE % ("csv", path.name, "", 256))
    recipe = blocks.load_recipe(recipe_path)
    label = f"{rows // 1000}k" if rows < 10**6 else f"{rows // 10**6}M"
    load, ref_pandas, ref_arrow, read_pandas = interleaved_best(
        [lambda: load_splits(recipe), lambda: _reference_load(path),
         lambda: _reference_load_arrow(path), lambda: _reference_load(path, split=False)],
        REPEATS)
    reference = min(ref_pandas, ref_arrow)
    out_rows = [{"name": f"data load {label} rows (vs best of pandas/pyarrow)",
                 "blocks_ms": load * 1e3, "reference_ms": reference * 1e3,
                 "ratio": load / reference, "target": 1.5,
                 "note": f"blocks {load:.2f} s, pandas {ref_pandas:.2f} s, pyarrow "
                         f"{ref_arrow:.2f} s, each with the train/val split; pandas' read "
                         f"alone {read_pandas:.2f} s ({load / read_pandas:.2f}x; "
                         f"{path.stat().st_size / 1e6:.0f} MB CSV)"}]
    run = run_recipe(recipe_path, folder / f"run{rows}", force=True, plots=False)
    model = run.model.eval()
    predict, ref_predict = interleaved_best(
        [lambda: predict_file(folder / f"run{rows}", path, folder / "p.csv", "csv"),
         lambda: _reference_predict(path, model, folder / "q.csv")], PREDICT_REPEATS)
    out_rows.append({"name": f"predict {label} rows end to end (vs pandas + model(x))",
                     "blocks_ms": predict * 1e3, "reference_ms": ref_predict * 1e3,
                     "ratio": predict / ref_predict, "target": 1.5,
                     "note": f"blocks predict {predict:.2f} s, pandas + model(x) + to_csv "
                             f"{ref_predict:.2f} s"})
    matrix = rows * 21 * 4  # the float32 feature matrix (20 numbers + 1 category code)
    out_rows.append(_memory_row(folder, recipe_path, "csv", label, matrix))
    # the same table as Parquet (one row group per million rows, pyarrow's default)
    parquet = folder / f"t{rows}.parquet"
    write_table(parquet, rows, parquet=True)
    parquet_recipe = folder / f"rp{rows}.yaml"
    parquet_recipe.write_text(RECIPE % ("parquet", parquet.name, "", 256))
    recipe = blocks.load_recipe(parquet_recipe)
    load, reference, read_alone = interleaved_best(
        [lambda: load_splits(recipe), lambda: _reference_load_parquet(parquet),
         lambda: _reference_load_parquet(parquet, split=False)], REPEATS)
    out_rows.append({"name": f"data load {label} rows, Parquet (vs pyarrow.parquet)",
                     "blocks_ms": load * 1e3, "reference_ms": reference * 1e3,
                     "ratio": load / reference, "target": 1.5,
                     "note": f"blocks {load:.2f} s, pyarrow read_table + codes + the split "
                             f"{reference:.2f} s; the read alone {read_alone:.2f} s "
                             f"({load / read_alone:.2f}x; "
                             f"{parquet.stat().st_size / 1e6:.0f} MB Parquet)"})
    out_rows.append(_memory_row(folder, parquet_recipe, "parquet", label, matrix))
    # the same table with a tenth of its numbers missing (nulls), imputed: the common case
    holes = folder / f"t{rows}-missing.parquet"
    write_table(holes, rows, parquet=True, missing=0.1)
    holes_recipe = folder / f"rm{rows}.yaml"
    holes_recipe.write_text(RECIPE % ("parquet", holes.name, "\n  impute: mean", 256))
    recipe = blocks.load_recipe(holes_recipe)
    load, reference = interleaved_best(
        [lambda: load_splits(recipe), lambda: _reference_load_missing(holes)], REPEATS)
    out_rows.append({"name": f"data load {label} rows, Parquet, 10% missing (vs pyarrow.parquet)",
                     "blocks_ms": load * 1e3, "reference_ms": reference * 1e3,
                     "ratio": load / reference, "target": 1.5,
                     "note": f"blocks (impute: mean) {load:.2f} s, pyarrow read_table + codes + "
                             f"the split + column means {reference:.2f} s"})
    memory = _memory_row(folder, holes_recipe, "parquet", label, matrix)
    memory["name"] = memory["name"].replace("Parquet", "Parquet, 10% missing")
    out_rows.append(memory)
    for done in (path, parquet, holes):
        done.unlink()
    return out_rows


def _memory_row(folder: Path, recipe_path: Path, kind: str, label: str, matrix: int) -> dict:
    """Peak memory of a training load, in a process that has done one load of a 2,000-row file
    of the same kind already: the first load also pages in library code and pyarrow's pools,
    about the same MB whatever the rows (the note gives that cold peak too)."""
    load = f"load_splits(blocks.load_recipe({str(recipe_path)!r}))"
    cold = _peak_rss(load)
    small = folder / f"warm.{kind}"
    if not small.exists():
        write_table(small, 2_000, parquet=kind == "parquet")
        (folder / f"warm-{kind}.yaml").write_text(RECIPE % (kind, small.name, "", 256))
    warm = f"load_splits(blocks.load_recipe({str(folder / f'warm-{kind}.yaml')!r}))"
    # the median of a few fresh processes: one process's peak moves by a few MB with where
    # the allocators' pages happen to fall (the note gives the range)
    peaks = sorted(_peak_rss(load, warm) for _ in range(MEMORY_PROCESSES))
    peak = peaks[len(peaks) // 2]
    return {"name": f"peak memory of the load, {label} rows{', Parquet' if kind == 'parquet' else ''}"
                    " (vs float32 features)",
            "blocks_ms": peak / 1e6, "reference_ms": matrix / 1e6, "ratio": peak / matrix,
            "target": 2.0,
            "note": f"peak RSS above a warm process {peak / 1e6:.1f} MB, the median of "
                    f"{MEMORY_PROCESSES} processes ({peaks[0] / 1e6:.1f} to {peaks[-1] / 1e6:.1f} "
                    f"MB; a fresh process's first load: {cold / 1e6:.0f} MB); the float32 "
                    f"feature matrix {matrix / 1e6:.0f} MB (columns in MB)"}


def _streaming_rows(folder: Path, rows: int = 10_000_000) -> list[dict]:
    path = folder / "big.parquet"
    write_table(path, rows, parquet=True)
    recipe_path = folder / "stream.yaml"
    recipe_path.write_text(RECIPE % ("parquet", path.name, "\n  stream: {chunk_rows: 262144, "
                                     "shuffle_buffer: 262144}", 4096))
    limit = 1.5e9
    out = []
    for step, code in [
            ("train 1 epoch", "from blocks.run.training import run_recipe\n"
             f"run_recipe({str(recipe_path)!r}, {str(folder / 'srun')!r}, force=True, "
             "plots=False)\n"),
            ("predict", "from blocks.run.predict_stream import predict_file\n"
             f"predict_file({str(folder / 'srun')!r}, __import__('pathlib').Path("
             f"{str(path)!r}), {str(folder / 'sp.parquet')!r}, 'parquet')\n")]:
        started = time.perf_counter()
        peak = _peak_rss(code)
        took = time.perf_counter() - started
        out.append({"name": f"streamed 10M-row Parquet: {step} (peak RSS vs 1.5 GB)",
                    "blocks_ms": peak / 1e6, "reference_ms": limit / 1e6,
                    "ratio": peak / limit, "target": 1.0,
                    "note": f"{took:.0f} s wall, peak RSS above start-up {peak / 1e9:.2f} GB "
                            f"({path.stat().st_size / 1e9:.2f} GB Parquet; columns in MB)"})
    return out


def run(sizes: tuple[int, ...] | None = None) -> list[dict]:
    full = os.environ.get("BLOCKS_BENCH_DATA", "").lower() == "full"
    sizes = sizes or ((200_000, 2_000_000) if full else (200_000,))
    folder = Path(tempfile.mkdtemp(prefix="blocks-bench-data-"))
    try:
        rows = []
        for size in sizes:
            rows += _size_rows(size, folder)
        if full:
            rows += _streaming_rows(folder)
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    from benchmarks.__main__ import format_table

    print(format_table(run()))
