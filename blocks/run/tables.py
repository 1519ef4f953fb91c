"""Tables in and out of a trained run: held-out CSV/Parquet files read as the run's data was
(features by name, targets by the run's columns and label names), and predictions written as
CSV, JSON or Parquet at full precision (every probability reads back to the same float32)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from blocks.core.errors import Problem, SpecError
from blocks.core.files import atomic_write
from blocks.data.columnar import (
    Cells,
    csv_engine,
    have_pyarrow,
    is_columnar_file,
    need_pyarrow,
    parquet_files,
    read_columnar,
    read_csv_cells,
    sniff_delimiter,
    typed_cells,
)
from blocks.data.columns import table_columns
from blocks.data.features import decoding_options, feature_cells, feature_names
from blocks.data.sources import split_target_columns, target_labels
from blocks.data.splits import prepare_targets, raw_inputs
from blocks.data.streaming import StreamedTable, iter_chunks
from blocks.run.cell_text import Coded, csv_text, text_of, write_csv_rows
from blocks.spec.model import ModelSpec

FORMATS = ("csv", "json", "parquet")


def table_cells(path: Path, where: str, delimiter: str | None = None) -> Cells:
    """A CSV (delimiter sniffed unless given), Parquet or Arrow file as cells."""
    if is_columnar_file(path):
        return typed_cells(read_columnar(path, where))
    cells = read_csv_cells(path, where, delimiter or sniff_delimiter(path))
    if not cells.count:
        raise SpecError(Problem("", "the file holds no rows", "empty_data", str(path)))
    return cells


def feature_table(path: Path, spec: ModelSpec, *, delimiter: str | None = None) -> np.ndarray:
    """Raw feature rows of a CSV/Parquet file for `blocks predict`: `feature_cells`, the same
    decoding as `model.predict_proba(rows)` in Python."""
    return feature_cells(table_cells(path, "input", delimiter), spec, path)


def labelled_table(path: Path, spec: ModelSpec, targets: list[str]) -> tuple[np.ndarray, Any]:
    """Raw features and targets of a held-out CSV/Parquet file, as the run's data had them."""
    cells = table_cells(path, "data")
    if cells.count < (1 if cells.has_names else 2):
        raise SpecError(Problem("", "needs a header row and at least one data row",
                                "empty_data", str(path)))
    table = table_columns(cells, path, features=feature_names(spec), targets=targets,
                          warn_extra=True, **decoding_options(spec),
                          target_labels=target_labels(targets, spec))
    return table.x, split_target_columns(table.y, spec)


# --- predictions out -----------------------------------------------------------------------------
def format_for(out: str | None, wanted: str | None) -> str:
    """`--format`, else the output file's suffix (`.json`, `.parquet`), else CSV."""
    if wanted is not None:
        return wanted
    suffix = Path(out).suffix.lower() if out else ""
    return {".json": "json", ".parquet": "parquet", ".pq": "parquet"}.get(suffix, "csv")


def prediction_columns(predictions: Any) -> tuple[list[str], list[list[Any]]]:
    """Column names and full-precision columns (labels as names or 0/1, probabilities as
    float32 values) of `Predictions`."""
    header, columns = coded_columns(predictions)
    return header, [c.tolist() if isinstance(c, Coded) or c.dtype.kind in "iu" else c
                    for c in columns]


def coded_columns(predictions: Any) -> tuple[list[str], list[Any]]:
    """`prediction_columns` as arrays: label names as `Coded` columns, 0/1 labels as int64 and
    probabilities as float32 arrays (the form `csv_text` writes without a loop per cell)."""
    header: list[str] = []
    columns: list[Any] = []
    several = len(predictions.labels) > 1
    for head, lab in predictions.labels.items():
        prefix = f"{head}/" if several else ""
        names = predictions.names[head]
        lab = lab.reshape(len(lab), -1).cpu().numpy()
        if predictions.kinds[head] == "softmax":
            header.append(f"{prefix}label")
            columns.append(Coded(lab[:, 0], names))
        else:
            for j in range(lab.shape[1]):
                header.append(f"{prefix}label/{names[j]}")
                columns.append(lab[:, j].astype(np.int64))
        probs = predictions.probabilities[head].float().cpu().numpy()
        for j in range(probs.shape[-1]):
            header.append(f"{prefix}p/{names[j]}")
            columns.append(probs[:, j])
    return header, columns


class PredictionWriter:
    """Predictions written as they come, chunk by chunk, to a temporary file renamed over
    `out` when closed (a failed run leaves no half-written file), or to stdout."""

    def __init__(self, out: str | Path | None, fmt: str) -> None:
        if fmt not in FORMATS:
            raise SpecError(Problem("", f"--format {fmt!r}: choose one of {', '.join(FORMATS)}",
                                    "bad_argument"))
        if fmt == "parquet":
            need_pyarrow("Parquet output", "--format")
            if out is None:
                raise SpecError(Problem("", "--format parquet writes a file: give --out FILE",
                                        "bad_argument"))
        self.out, self.fmt, self.rows = (Path(out) if out is not None else None), fmt, 0
        self._parquet: Any = None
        self._tmp: Path | None = None
        self._handle: Any = None
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{self.out.name}.", suffix=".tmp",
                                        dir=self.out.parent)
            os.close(fd)
            self._tmp = Path(name)
            if fmt != "parquet":
                self._handle = open(self._tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by close() or abort()
        else:
            self._handle = sys.stdout

    def write(self, predictions: Any, *, leading: dict[str, list[Any]] | None = None) -> None:
        whole_columns = self.fmt == "csv" and have_pyarrow()  # csv_text: no loop per cell
        header, columns = (coded_columns if whole_columns else prediction_columns)(predictions)
        if leading:
            header, columns = [*leading, *header], [*leading.values(), *columns]
        count = len(columns[0]) if columns else 0
        if self.fmt == "parquet":
            import pyarrow as pa  # optional: the `tables` extra
            import pyarrow.parquet as pq  # optional: the `tables` extra

            table = pa.table({name: (pa.array(col, type=pa.float32())
                                     if isinstance(col, np.ndarray) else pa.array(col))
                              for name, col in zip(header, columns, strict=True)})
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            self._parquet.write_table(table)
        elif self.fmt == "json":
            for row in zip(*columns, strict=True):
                record = {name: (float(text_of(v)) if isinstance(v, np.floating) else v)
                          for name, v in zip(header, row, strict=True)}
                self._handle.write(("[" if self.rows == 0 else ",\n") + json.dumps(record))
                self.rows += 1
            return
        else:
            if self.rows == 0:
                write_csv_rows(self._handle, [header])
            if whole_columns:
                self._handle.write(csv_text(columns))
            else:
                write_csv_rows(self._handle, ([text_of(v) for v in row]
                                              for row in zip(*columns, strict=True)))
        self.rows += count

    def close(self) -> int:
        """Finish the file (rename it over `out`); the number of rows written."""
        if self.fmt == "json":
            self._handle.write("[]\n" if self.rows == 0 else "]\n")
        if self._parquet is not None:
            self._parquet.close()
        if self._handle is not None and self._handle is not sys.stdout:
            self._handle.close()
        if self._tmp is not None:
            if self.fmt == "parquet" and self._parquet is None:
                self._tmp.unlink(missing_ok=True)
                raise SpecError(Problem("", "no predictions to write", "empty_data"))
            atomic_write(self.out, lambda tmp: os.replace(self._tmp, tmp))
        return self.rows

    def abort(self) -> None:
        if self._handle is not None and self._handle is not sys.stdout:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def write_predictions(predictions: Any, out: str | Path | None, fmt: str, *,
                      leading: dict[str, list[Any]] | None = None) -> int:
    """Write (atomically) or print the predictions, after the `leading` columns (e.g. the
    file each row is for); the number of rows."""
    writer = PredictionWriter(out, fmt)
    try:
        writer.write(predictions, leading=leading)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


# --- held-out tables in chunks ----------------------------------------------------------------
#: held-out files larger than this are evaluated in chunks (smaller ones are read whole)
STREAM_EVALUATE_BYTES = 64 * 2**20
CHUNK_ROWS = 65_536

def held_out_stream(path: Path, model: Any, targets: list[str], *,
                    chunk_rows: int = CHUNK_ROWS, min_bytes: int = STREAM_EVALUATE_BYTES) -> Any:
    """A held-out CSV/Parquet file larger than `min_bytes` as a dataset read in chunks (the
    trainer's evaluation takes it like tensors: the same batches, the same metrics), or None:
    the file is small, not a table, or pyarrow is missing."""
    if not _streamable(path, model):
        return None
    size = (sum(p.stat().st_size for p in parquet_files(path, "data")) if path.is_dir()
            else path.stat().st_size)
    if size <= min_bytes:
        return None
    spec = model.spec
    pre = spec.preprocess
    delimiter = "," if is_columnar_file(path) else sniff_delimiter(path)
    rows = sum(table.num_rows for table, _, _ in iter_chunks(path, chunk_rows, delimiter, "data"))
    header = next(iter_chunks(path, 1, delimiter, "data"))[1]

    def prepare(x: np.ndarray, y: np.ndarray) -> tuple:
        return raw_inputs(x, spec), prepare_targets(split_target_columns(y, spec), spec)

    return StreamedTable(part=0, path=path, header=header, features=feature_names(spec),
                         targets=targets, delimiter=delimiter, chunk_rows=chunk_rows,
                         where="data", model_spec=spec,
                         missing_ok=pre is not None and pre.impute is not None,
                         mask=np.zeros(rows, dtype=np.int8), seed=0, buffer=0, prepare=prepare)


def _streamable(path: Path, model: Any) -> bool:
    if not have_pyarrow() or feature_names(model.spec) is None or not path.exists():
        return False
    return is_columnar_file(path) or (path.suffix.lower() == ".csv" and csv_engine() == "arrow")
