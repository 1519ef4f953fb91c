"""`blocks predict RUN TABLE` in chunks: a CSV/Parquet file of any size is read a chunk at a
time, predicted in the same 1,024-row batches as `predict_run` (so the answers are the same
bits), and written as it goes; memory is bounded by the chunk, not the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blocks.builder.model import BlocksModel
from blocks.core.errors import Problem, SpecError
from blocks.data.columnar import (
    ArrowCells,
    csv_engine,
    first_record,
    have_pyarrow,
    is_columnar_file,
)
from blocks.data.columns import first_row_is_header
from blocks.data.features import feature_cells, feature_names
from blocks.data.sources import sniff_delimiter
from blocks.data.streaming import iter_chunks
from blocks.run.folder import load
from blocks.run.predicting import predict_run
from blocks.run.tables import CHUNK_ROWS, PredictionWriter, write_predictions

BATCH = 1024


def is_streamable(path: Path, model: BlocksModel) -> bool:
    """A table file of a model trained on named columns, with pyarrow installed."""
    if not have_pyarrow() or feature_names(model.spec) is None or not path.exists():
        return False
    if is_columnar_file(path):
        return True
    return csv_engine() == "arrow" and (path.is_file() and path.suffix.lower() not in
                                      (".npz", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"))


def predict_table(run: BlocksModel | str | Path, path: Path, out: str | Path | None, fmt: str, *,
                  chunk_rows: int = CHUNK_ROWS) -> int:
    """Predict every row of a CSV/Parquet file, writing as it goes; the number of rows."""
    model = run if isinstance(run, BlocksModel) else load(run)
    spec = model.spec
    names = None
    delimiter = ","
    if not is_columnar_file(path):
        delimiter = sniff_delimiter(path)
        first = first_record(path, "input", delimiter)
        pre = spec.preprocess
        if not first_row_is_header(first, feature_names(spec), pre.categories if pre else None):
            names = feature_names(spec) if len(first) == len(feature_names(spec)) else None
            if names is None:  # the located message of the whole-file reader
                from blocks.run.tables import feature_table  # lazy: the error path only

                feature_table(path, spec, delimiter=delimiter)
    writer = PredictionWriter(out, fmt)
    pending: list[np.ndarray] = []
    held = 0
    try:
        for table, header, lines in iter_chunks(path, chunk_rows, delimiter, "input",
                                                names=names):
            cells = ArrowCells(table, lines, names=header)
            cells.unit = "row" if is_columnar_file(path) else "line"
            pending.append(feature_cells(cells, spec, path, optional_header=False))
            held += len(pending[-1])
            if held >= BATCH:
                rows = np.concatenate(pending)
                cut = (len(rows) // BATCH) * BATCH
                writer.write(predict_run(model, rows[:cut], batch_size=BATCH))
                pending, held = [rows[cut:]], len(rows) - cut
        if held:
            writer.write(predict_run(model, np.concatenate(pending), batch_size=BATCH))
        if writer.rows == 0:
            raise SpecError(Problem("", "needs a header row and at least one data row",
                                    "empty_data", str(path)))
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def predict_file(run: str | Path, path: Path, out: str | Path | None, fmt: str) -> int:
    """What `blocks predict RUN INPUT` does: a table in chunks, anything else (NPZ, images)
    whole; the number of rows written."""
    model = load(run)
    if is_streamable(path, model):
        return predict_table(model, path, out, fmt)
    return write_predictions(predict_run(model, path), out, fmt)

