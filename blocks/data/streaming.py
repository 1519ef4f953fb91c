"""Tables bigger than memory (`data.stream`): read in chunks, never whole.

`stream_splits` makes three kinds of bounded pass over a CSV or Parquet file:
1. rows are counted and vocabularies learned (categories, class names), chunk by chunk;
2. the model's statistics (fill values, mean, std) are fitted on the training rows in one
   pass (`StreamedTable.statistics`), combining per-chunk moments (Chan et al.); medians
   take a pass or two more (`blocks.data.order_stats`);
3. each epoch reads the file again, chunk by chunk, through a shuffle buffer.
Memory is bounded by the chunk and the buffer, plus one bit per row for the split (the same
seeded permutation as the in-memory split, so the same rows are held out). When the buffer
holds the whole split, the batches are those of the in-memory run, sample for sample.

The trainer takes a `StreamedTable` like a Dataset: it asks it for `batches(...)` with its
own batch size, generator and distributed share (`blocks.train.batches.make_batches`). Under
DDP, over a folder of at least `world_size` Parquet shards, rank r reads shards r::world_size
only (`blocks.data.stream_batches`); otherwise every rank reads the file and keeps its share
of each global batch, as with tensors. Vocabularies and statistics are fitted on the whole training
split either way, so every rank builds the same model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from blocks.core.errors import Problem, SpecError
from blocks.data.arrays import RawData, Split, Splits, learned_spec
from blocks.data.columnar import (
    ArrowCells,
    LineIndex,
    first_record,
    is_columnar_file,
    need_pyarrow,
    parquet_files,
)
from blocks.data.columns import check_header, table_columns
from blocks.data.decode import _distinct
from blocks.data.limits import check_categories
from blocks.data.order_stats import StreamedMedian
from blocks.data.sources import _check_label_counts, _column_heads, target_columns, target_labels
from blocks.data.stream_batches import StreamBatches
from blocks.data.table import _number
from blocks.spec.model import ModelSpec
from blocks.spec.preprocess import PreprocessSpec
from blocks.spec.recipe import Recipe


# --- chunks of a file ------------------------------------------------------------------------------
def iter_chunks(path: Path, chunk_rows: int, delimiter: str = ",", where: str = "data", *,
                names: list[str] | None = None) -> Iterator[tuple[Any, list[str], Any]]:
    """(`pyarrow.Table` of a chunk's rows, header names, the chunk's file lines) in file order.

    `names`: a header-less CSV file's column names (its first row is then data)."""
    need_pyarrow("data in chunks", where)
    import pyarrow as pa  # optional: the `tables` extra

    if is_columnar_file(path):
        import pyarrow.parquet as pq  # optional: the `tables` extra

        start = 1
        for part in parquet_files(path, where):
            # no pre-buffering: one column chunk at a time, not a whole row group's bytes
            handle = pq.ParquetFile(part, pre_buffer=False, buffer_size=1 << 20)
            for batch in handle.iter_batches(batch_size=chunk_rows):
                table = pa.Table.from_batches([batch])
                yield table, list(table.column_names), range(start, start + table.num_rows)
                start += table.num_rows
        return
    import pyarrow.compute as pc  # optional: the `tables` extra
    import pyarrow.csv as pcsv  # optional: the `tables` extra

    header = first_record(path, where, delimiter) if names is None else list(names)
    skip = 1 if names is None else 0  # the header row
    names = [f"c{i}" for i in range(len(header))]
    width = max(64, path.stat().st_size // max(1, _rows_guess(path)))
    reader = pcsv.open_csv(
        path, read_options=pcsv.ReadOptions(column_names=names,
                                            block_size=max(1 << 20, chunk_rows * width)),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                            strings_can_be_null=False,
                                            quoted_strings_can_be_null=False, null_values=[]))
    lines = LineIndex(path, delimiter, 1 << 62)
    seen = 0
    for batch in reader:
        table = pa.Table.from_batches([batch])
        blank = None
        for column in table.columns:
            empty = pc.equal(pc.utf8_trim_whitespace(column), "")
            blank = empty if blank is None else pc.and_(blank, empty)
            if not pc.any(blank).as_py():
                break
        else:
            table = table.filter(pc.invert(blank))
        if skip:
            table, skip = table.slice(skip), 0
            seen = 1
        yield table, header, _Lines(lines, seen, table.num_rows)
        seen += table.num_rows


def _rows_guess(path: Path) -> int:
    with open(path, "rb") as handle:
        sample = handle.read(1 << 16)
    return max(1, sample.count(b"\n")) * max(1, path.stat().st_size // max(1, len(sample)))


class _Lines:
    def __init__(self, base: Any, start: int, count: int) -> None:
        self.base, self.start, self.count = base, start, count

    def __getitem__(self, i: int) -> int:
        return self.base[self.start + i]

    def __len__(self) -> int:
        return self.count


# --- the bounded passes ------------------------------------------------------------------------
def _scan(path: Path, source: Any, model: ModelSpec, targets: list[str], delimiter: str,
          chunk_rows: int, where: str) -> tuple[int, list[str], list[str], dict, dict]:
    """Pass 1: rows, header, features, category vocabularies and learned class names."""
    rows, header = 0, None
    categorical = [] if source.categorical in (None, "auto") else list(source.categorical)
    auto = source.categorical == "auto"
    values: dict[str, set] = {}
    numeric_seen: dict[str, bool] = {}
    heads = _column_heads(targets, model)
    labels: dict[str, set] = {c: set() for c in heads if model.head_specs[heads[c]].labels is None}
    features: list[str] = []
    for table, names, _ in iter_chunks(path, chunk_rows, delimiter, where):
        if header is None:
            header = names
            check_header(header, path, f"{where}.path")
            features = source.features or [c for c in header if c not in targets]
            missing = [c for c in [*features, *targets] if c not in header]
            if missing:
                raise SpecError(Problem(f"{where}.path", f"{path.name}: missing column(s) "
                                        f"{', '.join(map(repr, missing))}", "unknown_column"))
        rows += table.num_rows
        position = {n: i for i, n in enumerate(header)}
        for name in features:
            if name not in categorical and not auto:
                continue
            column = table.column(position[name])
            _, _, unique = _distinct(column, name, f"{where}.path", path)
            if auto and name not in categorical:
                numbers = [u for u in unique if _number(u) is not None]
                numeric_seen[name] = numeric_seen.get(name, False) or bool(numbers)
                unique = [u for u in unique if _number(u) is None]
            values.setdefault(name, set()).update(unique)
            check_categories(len(values[name]), name, f"{where}.path", path)
        for name in labels:
            _, _, unique = _distinct(table.column(position[name]), name, f"{where}.path", path)
            if not all(_number(u) is not None for u in unique):
                labels[name].update(unique)
    if header is None or rows == 0:
        raise SpecError(Problem(f"{where}.path", f"{path} needs a header row and at least one data "
                                "row", "empty_data"))
    categories = {}
    for name, found in values.items():
        if auto and name not in categorical and (not found or numeric_seen.get(name)):
            if found and numeric_seen.get(name):
                raise SpecError(Problem(f"{where}.path", f"{path.name}: column {name!r} holds "
                                        "numbers and names; list it in `categorical` or fix the "
                                        "cells", "mixed_column"))
            continue
        if not found:
            raise SpecError(Problem(f"{where}.path", f"{path.name}: categorical column "
                                    f"{name!r} has no values", "empty_column"))
        categories[name] = sorted(found)
    learned = {heads[c]: sorted(found) for c, found in labels.items() if found}
    return rows, header, features, categories, learned


def _check_streamable(pre: PreprocessSpec | None) -> None:
    """Refuse statistics no bounded pass can fit: the most frequent value of a numeric column
    needs a count of every distinct value."""
    if pre is not None and pre.impute == "most_frequent" and \
            len(pre.category_columns) < pre.raw_size:
        raise SpecError(Problem("data.impute", "`impute: most_frequent` of numeric columns "
                                "counts every distinct value; with `data.stream` use mean, "
                                "median or constant", "unsupported"))


def stream_splits(recipe: Recipe, path: Path, source: Any, where: str, missing_ok: bool, *,
                  derive: Callable[..., PreprocessSpec | None],
                  prepare: Callable[[np.ndarray, np.ndarray, ModelSpec], tuple],
                  model_spec: ModelSpec | None = None) -> Splits:
    """Train/val `StreamedTable`s of a `data.stream` recipe and the model spec they teach (or,
    given a trained run's `model_spec`, the splits as that run reads them).

    `derive` is `blocks.data.splits.derive_preprocess` and `prepare` turns raw rows and
    targets into the tensors the trainer takes (`raw_inputs`, `prepare_targets`): given by
    `load_splits`, which imports this module."""
    spec, model = recipe.data, recipe.model
    stream = spec.stream
    delimiter = getattr(source, "delimiter", ",")
    targets = target_columns(source.target, model, f"{where}.target")
    rows, header, features, categories, labels = _scan(path, source, model, targets, delimiter,
                                                       stream.chunk_rows, where)
    _check_label_counts(labels, model, path)
    probe = RawData(np.empty((0, len(features)), np.float32), np.empty(0), "tabular",
                    features=list(features), categories=categories or None, labels=labels or None,
                    unknown_category=source.unknown_category,
                    encodings=dict(source.categorical) if isinstance(source.categorical, dict)
                    else None)
    if model_spec is None:
        preprocess = model.preprocess or derive(probe, spec.standardize, model,
                                                impute=spec.impute, fill_value=spec.fill_value)
        model_spec = learned_spec(model, preprocess, labels)
        _check_streamable(model_spec.preprocess)  # now, not after the first passes
    order = np.random.default_rng(spec.seed).permutation(rows)
    n_val = int(round(rows * spec.val_fraction))
    if rows - n_val == 0:
        raise SpecError(Problem("data.val_fraction", f"leaves no training samples out of {rows}",
                                "empty_split"))
    split = np.zeros(rows, dtype=np.int8)  # 1: validation
    split[order[:n_val]] = 1
    del order
    common = {"path": path, "header": header, "features": list(features), "targets": targets,
              "delimiter": delimiter, "chunk_rows": stream.chunk_rows, "where": where,
              "model_spec": model_spec, "missing_ok": missing_ok, "mask": split,
              "seed": spec.seed, "buffer": stream.shuffle_buffer,
              "prepare": lambda x, y: prepare(x, y, model_spec)}
    train = StreamedTable(part=0, **common)
    val = StreamedTable(part=1, **common) if n_val else None
    info = {"samples": rows, "kind": "tabular", "train": rows - n_val, "val": n_val,
            "streamed": True}
    return Splits(Split(None, None, train), Split(None, None, val) if val else None,
                  model_spec.preprocess, model_spec, info)


class StreamedTable(IterableDataset):
    """One split of a table file, read in chunks; `len` is its row count."""

    def __init__(self, *, part: int, path: Path, header: list[str], features: list[str],
                 targets: list[str], delimiter: str, chunk_rows: int, where: str,
                 model_spec: ModelSpec, missing_ok: bool, mask: np.ndarray, seed: int,
                 buffer: int, prepare: Callable[[np.ndarray, np.ndarray], tuple]) -> None:
        self.part, self.path, self.header = part, path, header
        self.features, self.targets, self.delimiter = features, targets, delimiter
        self.chunk_rows, self.where, self.model_spec = chunk_rows, where, model_spec
        self.missing_ok, self.mask, self.seed, self.buffer = missing_ok, mask, seed, buffer
        self.prepare = prepare  # raw rows, targets -> (x tensor, targets as the losses want)
        self.count = int((mask == part).sum())
        self._shard_rows: list[int] | None = None  # this split's rows per Parquet shard

    def __len__(self) -> int:
        return self.count

    # --- decoded chunks ----------------------------------------------------------------------
    def shard_files(self, rank: int, world: int) -> list[int] | None:
        """The Parquet shards (indexes into the folder's sorted files) rank `rank` reads under
        DDP: `rank::world` when the folder has at least `world` shards, else None (every rank
        reads the whole table and keeps its share of each batch)."""
        if world < 2 or not self.path.is_dir():
            return None
        count = len(parquet_files(self.path, self.where))
        return list(range(rank, count, world)) if count >= world else None

    def rows_in(self, shards: list[int]) -> int:
        """This split's rows in the given shards (every shard's counted once, from the Parquet
        footers: each epoch of each rank asks for every rank's)."""
        if self._shard_rows is None:
            every = range(len(parquet_files(self.path, self.where)))
            self._shard_rows = [int((self.mask[start:stop] == self.part).sum())
                                for start, stop in _shard_ranges(self.path, self.where, every)]
        return sum(self._shard_rows[i] for i in shards)

    def _tables(self, shards: list[int] | None) -> Iterator[tuple[Any, list[str], Any, int]]:
        """(chunk, header, lines, index of its first row in the whole table) in file order;
        with `shards`, those Parquet shards only."""
        if shards is None:
            start = 0
            for table, names, lines in iter_chunks(self.path, self.chunk_rows, self.delimiter,
                                                   self.where):
                yield table, names, lines, start
                start += table.num_rows
            return
        import pyarrow as pa  # optional: the `tables` extra
        import pyarrow.parquet as pq  # optional: the `tables` extra

        files = parquet_files(self.path, self.where)
        for shard, (start, _) in zip(shards, _shard_ranges(self.path, self.where, shards),
                                     strict=True):
            handle = pq.ParquetFile(files[shard], pre_buffer=False, buffer_size=1 << 20)
            for batch in handle.iter_batches(batch_size=self.chunk_rows):
                table = pa.Table.from_batches([batch])
                yield (table, list(table.column_names),
                       range(start + 1, start + 1 + table.num_rows), start)
                start += table.num_rows

    def chunks(self, shards: list[int] | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(raw features float32, targets float64, file row indexes) of this split, chunk by
        chunk, decoded with the run's vocabularies (the same decoding as a whole file);
        `shards`: only those Parquet shards of a folder (`shard_files`)."""
        pre = self.model_spec.preprocess
        options = {"categories": pre.categories if pre is not None else None,
                   "missing_ok": self.missing_ok,
                   "unknown_category": pre.unknown_category if pre is not None else "error",
                   "target_labels": target_labels(self.targets, self.model_spec)}
        for table, names, lines, start in self._tables(shards):
            count = table.num_rows
            keep = self.mask[start:start + count] == self.part
            index = np.arange(start, start + count)
            if not keep.any():
                continue
            cells = ArrowCells(table, lines, names=names)
            cells.unit = "row" if is_columnar_file(self.path) else "line"
            decoded = table_columns(cells, self.path, features=self.features,
                                    targets=self.targets, where=f"{self.where}.path", **options)
            yield decoded.x[keep], decoded.y[keep], index[keep]

    def statistics(self) -> dict[str, np.ndarray]:
        """The preprocessing statistics of this split in one bounded pass: `fill` (impute),
        `mean` and `std` (standardize), as `Preprocessing.fit` computes them in memory."""
        pre: PreprocessSpec | None = self.model_spec.preprocess
        if pre is None or (pre.impute is None and not pre.standardize):
            return {}
        _check_streamable(pre)
        categorical = list(pre.category_columns)
        fill = None
        if pre.impute is not None:
            total = np.zeros(pre.raw_size)
            count = np.zeros(pre.raw_size)
            codes = {j: {} for j in categorical}
            median = StreamedMedian(pre.raw_size) if pre.impute == "median" else None
            for x, _, _ in self.chunks():
                if median is not None:
                    median.add(x)
                values = x.astype(np.float64)
                present = ~np.isnan(values)
                total += np.where(present, values, 0.0).sum(axis=0)
                count += present.sum(axis=0)
                for j in categorical:
                    found, times = np.unique(values[present[:, j], j], return_counts=True)
                    for v, c in zip(found.tolist(), times.tolist(), strict=True):
                        codes[j][v] = codes[j].get(v, 0) + c
            empty = np.flatnonzero(count == 0)
            if len(empty):
                raise SpecError(Problem("data.impute", f"raw feature {int(empty[0])} has no values "
                                        "in the training split, so there is nothing to impute "
                                        "from", "empty_column"))
            if median is not None:
                while median.next_pass():  # a few more passes: the exact middle values
                    for x, _, _ in self.chunks():
                        median.add(x)
                fill = median.medians()
            elif pre.impute == "mean":
                fill = total / count
            else:
                fill = np.full(pre.raw_size, pre.fill_value)
            for j in categorical:
                best = max(codes[j].values())
                fill[j] = min(v for v, c in codes[j].items() if c == best)  # ties: the smallest
        out = {"fill": fill} if fill is not None else {}
        if not pre.standardize:
            return out
        n, mean, m2 = 0, np.zeros(pre.raw_size), np.zeros(pre.raw_size)
        for x, _, _ in self.chunks():
            values = x.astype(np.float64)
            if fill is not None:
                values = np.where(np.isnan(values), fill, values)
            values = values * pre.scale
            k = len(values)
            chunk_mean = values.mean(axis=0)
            chunk_m2 = ((values - chunk_mean) ** 2).sum(axis=0)
            delta = chunk_mean - mean
            total = n + k
            mean = mean + delta * (k / total)
            m2 = m2 + chunk_m2 + delta ** 2 * (n * k / total)
            n = total
        std = np.sqrt(m2 / n)
        std = np.where(std > 0, std, 1.0)
        mean[categorical], std[categorical] = 0.0, 1.0
        return {**out, "mean": mean, "std": std}

    def head(self, limit: int) -> tuple[torch.Tensor, Any]:
        """The first `limit` rows of this split as tensors (a bounded sample, for plots)."""
        xs, ys, held = [], [], 0
        for x, y, _ in self.chunks():
            xs.append(x[:limit - held])
            ys.append(y[:limit - held])
            held += len(xs[-1])
            if held >= limit:
                break
        return self.prepare(np.concatenate(xs), np.concatenate(ys))

    # --- batches for the trainer -------------------------------------------------------------
    def batches(self, batch_size: int, *, shuffle: bool, drop_last: bool,
                generator: torch.Generator, shard: tuple[int, int] | None = None) -> StreamBatches:
        return StreamBatches(self, batch_size, shuffle, drop_last, generator, shard)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Any]]:
        for x, y, _ in self.chunks():
            xs, ys = self.prepare(x, y)
            for i in range(len(xs)):
                yield xs[i], ({k: v[i] for k, v in ys.items()} if isinstance(ys, dict) else ys[i])


def _shard_ranges(path: Path, where: str, shards: list[int]) -> list[tuple[int, int]]:
    """[start, stop) of each given shard's rows in the whole table (the folder's files in
    order), from the Parquet footers: no rows are read."""
    import pyarrow.parquet as pq  # optional: the `tables` extra

    files = parquet_files(path, where)
    starts, total = [], 0
    for f in files:
        starts.append(total)
        total += pq.ParquetFile(f).metadata.num_rows
    starts.append(total)
    return [(starts[i], starts[i + 1]) for i in shards]
