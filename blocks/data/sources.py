"""Raw arrays from each `data:` source: bundled scikit-learn sets, CSV, NPZ, synthetic."""

from __future__ import annotations

import dataclasses
import math
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blocks.core.errors import Problem, SpecError
from blocks.data.arrays import RawData, Targets
from blocks.data.columnar import (  # noqa: F401  (read_csv_lines, sniff_delimiter: old homes)
    Cells,
    need_pyarrow,
    parquet_files,
    read_columnar,
    read_csv_cells,
    read_csv_lines,
    sniff_delimiter,
    typed_cells,
)
from blocks.data.columns import check_header, short_names, table_columns  # noqa: F401
from blocks.data.csv_blocks import read_training_csv
from blocks.data.parquet_columns import parquet_cells
from blocks.spec.budget import check_data_bytes
from blocks.spec.data import CsvSource, DataSpec, NpzSource, ParquetSource, SyntheticSource
from blocks.spec.model import ModelSpec


def load_arrays(spec: DataSpec, model: ModelSpec, base_dir: Path | None, *,
                row_order: Callable[[int], np.ndarray] | None = None) -> RawData:
    """Features, targets and the kind of data for one `data:` section; every target array has
    one entry per sample (checked). `row_order` (`n -> order`): the split's row order, which a
    CSV reader may apply as it writes the features (`RawData.order` then says so)."""
    if spec.dataset is not None:
        raw = _bundled(spec.dataset)
    elif spec.csv is not None:
        missing_ok = spec.impute != "refuse" or bool(model.preprocess and model.preprocess.impute)
        raw = _csv(spec.csv, model, base_dir, missing_ok=missing_ok,
                   row_order=row_order if spec.classes is None else None)
    elif spec.parquet is not None:
        missing_ok = spec.impute != "refuse" or bool(model.preprocess and model.preprocess.impute)
        raw = _parquet(spec.parquet, model, base_dir, missing_ok=missing_ok,
                       row_order=row_order if spec.classes is None else None)
    elif spec.npz is not None:
        raw = _npz(spec.npz, model, base_dir)
    elif spec.images is not None:
        from blocks.data.images import load_image_folder  # lazy: torch loads for image folders only

        return load_image_folder(spec.images, model, base_dir)
    else:
        x, y = _synthetic(spec.synthetic, model, spec.seed)
        raw = RawData(x, y, "array")
    targets = raw.y.items() if isinstance(raw.y, dict) else [("y", raw.y)]
    for name, values in targets:
        if len(values) != len(raw.x):
            raise SpecError(Problem("data", f"{len(raw.x)} samples of features but {len(values)} "
                                    f"targets ({name}); they must pair up one to one",
                                    "length_mismatch"))
    return raw if spec.classes is None else _select_classes(raw, spec.classes)


def _select_classes(raw: RawData, classes: list[int]) -> RawData:
    """The samples whose class id is in `classes`, relabelled to its position there."""
    y = raw.y
    if isinstance(y, dict) or y.ndim != 1 or not np.all(y == np.round(y)):
        raise SpecError(Problem("data.classes", "selecting classes needs one array of integer "
                                "class ids (a single softmax head)", "classes_unsupported"))
    present = set(np.unique(y).astype(int).tolist())
    absent = [c for c in classes if c not in present]
    if absent:
        raise SpecError(Problem("data.classes", f"no samples of class {', '.join(map(str, absent))} "
                                f"(the data has {', '.join(map(str, sorted(present)))})",
                                "unknown_class"))
    relabel = {c: i for i, c in enumerate(classes)}
    keep = np.isin(y, classes)
    y = np.array([relabel[int(v)] for v in y[keep]], dtype=np.int64)
    return dataclasses.replace(raw, x=raw.x[keep], y=y)


def _bundled(name: str) -> RawData:
    try:
        from sklearn import datasets
    except ImportError:
        raise SpecError(Problem("data.dataset", f"the bundled dataset {name!r} ships with "
                                "scikit-learn, which is not installed: pip install 'blocks[data]'",
                                "missing_extra")) from None
    loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
              "iris": datasets.load_iris, "wine": datasets.load_wine}[name]
    bunch = loader()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    if name == "digits":
        return RawData(x, y, "image", scale=1 / 16)  # 8x8 images, pixel values 0..16
    return RawData(x, y, "tabular", features=[str(f) for f in bunch.feature_names])


def _resolve(path: str, base_dir: Path | None, where: str) -> Path:
    candidate = Path(path)
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    if not candidate.exists():
        raise SpecError(Problem(where, f"file {str(candidate)!r} does not exist", "file_not_found"))
    check_data_file(candidate, where)
    return candidate


def check_data_file(path: Path, where: str) -> None:
    """A regular file whose size fits in memory (a CSV parses to a few times its size), checked
    before a byte is read: never a device, a FIFO or a folder."""

    if not path.is_file():
        raise SpecError(Problem(where, f"{str(path)!r} is not a regular file", "not_a_file"))
    check_data_bytes(4 * path.stat().st_size, where, f"reading {path.name}")


def _cell(text: str, limit: int = 40) -> str:
    """A short, escaped excerpt of a cell for messages (never a whole line of a file)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _csv(source: CsvSource, model: ModelSpec, base_dir: Path | None, *,
         missing_ok: bool = False, row_order: Callable[[int], np.ndarray] | None = None) -> RawData:
    path = _resolve(source.path, base_dir, "data.csv.path")
    cells = read_training_csv(path, "data.csv.path", source.delimiter,
                              numeric=lambda header: _numeric_columns(header, source, model),
                              missing_ok=missing_ok)
    cells.row_order = row_order
    if cells.count - (0 if cells.has_names else 1) < 1:
        raise SpecError(Problem("data.csv.path", f"{path} needs a header row and at least one data row",
                                "empty_data"))
    return table_source(cells, source, model, path, "data.csv", missing_ok=missing_ok)


def _numeric_columns(header: list[str], source: CsvSource, model: ModelSpec) -> set[str]:
    """Feature columns that hold numbers unless the file is wrong (not categorical, not the
    target): pyarrow parses these as it reads."""
    if source.categorical == "auto":
        return set()
    targets = set(target_columns(source.target, model))
    pre = model.preprocess
    names = set(source.categorical or ()) | set(pre.categories or {} if pre else {})
    return {c for c in (source.features or header) if c not in targets and c not in names}


def _parquet(source: ParquetSource, model: ModelSpec, base_dir: Path | None, *,
             missing_ok: bool = False, row_order: Callable[[int], np.ndarray] | None = None
             ) -> RawData:
    path = resolve_table_path(source.path, base_dir, "data.parquet.path")
    need_pyarrow(path.suffix or "a folder of Parquet shards", "data.parquet.path")
    cells = parquet_cells(path, "data.parquet.path",
                          lambda header: _numeric_columns(header, source, model))
    if cells is None:
        cells = typed_cells(read_columnar(path, "data.parquet.path"))
    if cells.count < 1:
        raise SpecError(Problem("data.parquet.path", f"{path} holds no rows", "empty_data"))
    cells.row_order = row_order
    return table_source(cells, source, model, path, "data.parquet", missing_ok=missing_ok)


def resolve_table_path(path: str, base_dir: Path | None, where: str) -> Path:
    """A Parquet/Arrow file or a folder of Parquet shards, its size checked like a file's."""
    candidate = Path(path)
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    if not candidate.exists():
        raise SpecError(Problem(where, f"file {str(candidate)!r} does not exist", "file_not_found"))
    if candidate.is_dir():
        size = sum(p.stat().st_size for p in parquet_files(candidate, where))
        check_data_bytes(4 * size, where, f"reading {candidate.name}")
        return candidate
    check_data_file(candidate, where)
    return candidate


def table_source(cells: Cells, source: CsvSource | ParquetSource, model: ModelSpec, path: Path,
                 where: str, *, missing_ok: bool = False) -> RawData:
    """Features, targets and vocabularies of a CSV or Parquet table, as `data.<where>` says."""
    targets = target_columns(source.target, model, f"{where}.target")
    categorical = ([] if source.categorical in (None, "auto") else list(source.categorical))
    for field, names in (("target", targets), ("features", source.features or []),
                         ("categorical", categorical)):
        repeated = sorted({c for c in names if names.count(c) > 1})
        if repeated:
            raise SpecError(Problem(f"{where}.{field}", f"lists column {_cell(repeated[0])} twice",
                                    "duplicate_column"))
    both = [c for c in targets if c in (source.features or [])]
    if both:
        raise SpecError(Problem(f"{where}.features", f"column {_cell(both[0])} is the target and a "
                                "feature too: the model would see its own answer; remove it from "
                                "`features`", "target_in_features"))
    header = cells.first
    check_header(header, path, f"{where}.path")
    features = source.features or [c for c in header if c not in targets]
    stray = [c for c in categorical if c not in features]
    if stray:
        raise SpecError(Problem(f"{where}.categorical", f"column {_cell(stray[0])} is not a "
                                f"feature column (features: {short_names(features)})",
                                "unknown_column"))
    pre = model.preprocess
    decoded = table_columns(
        cells, path, features=source.features, targets=targets, where=f"{where}.path",
        missing_ok=missing_ok, categorical=categorical,
        infer_categorical=source.categorical == "auto",
        categories=pre.categories if pre is not None else None,
        unknown_category=source.unknown_category,
        target_labels=target_labels(targets, model), learn_labels=_learnable(targets, model))
    heads = _column_heads(targets, model)
    labels = {heads[c]: names for c, names in decoded.labels.items()}
    _check_label_counts(labels, model, path)
    _check_labels(decoded.y, targets, model, path, cells.lines(0 if cells.has_names else 1),
                  f"{where}.target", cells.unit)
    return RawData(decoded.x, split_target_columns(decoded.y, model), "tabular",
                   features=list(features), categories=decoded.categories or None,
                   labels=labels or None, unknown_category=source.unknown_category,
                   encodings=dict(source.categorical) if isinstance(source.categorical, dict)
                   else None, order=decoded.order)


def target_columns(target: str | list[str] | dict[str, Any], model: ModelSpec,
                   where: str = "data.csv.target") -> list[str]:
    """The target column names in head order (one per softmax head, `classes` per sigmoid
    head); `target` may name them per head (`{kind: kind, tags: [a, b]}`)."""
    if not isinstance(target, dict):
        return [target] if isinstance(target, str) else list(target)
    heads = model.head_specs
    unknown = [name for name in target if name not in heads]
    missing = [name for name in heads if name not in target]
    if unknown or missing:
        raise SpecError(Problem(where, (f"names no head {', '.join(map(repr, unknown))}; " if unknown
                                        else "") + (f"no column(s) for head(s) "
                                        f"{', '.join(map(repr, missing))}; " if missing else "")
                                + f"the model's heads are {', '.join(heads)}", "unknown_head"))
    columns: list[str] = []
    for name, head in heads.items():
        given = target[name]
        names = [given] if isinstance(given, str) else list(given)
        wanted = 1 if head.type == "softmax" else head.classes
        if len(names) != wanted:
            raise SpecError(Problem(f"{where}.{name}", f"the {head.type} head {name!r} takes "
                                    f"{wanted} target column(s), got {len(names)}",
                                    "targets_shape"))
        columns += names
    return columns


def _column_heads(columns: list[str], model: ModelSpec) -> dict[str, str]:
    """Target column -> the head it feeds, for softmax heads (one column each)."""
    heads = list(model.head_specs.items())
    if not model.multi_head:
        return {c: heads[0][0] for c in columns} if heads[0][1].type == "softmax" else {}
    out, start = {}, 0
    for name, head in heads:
        width = 1 if head.type == "softmax" else head.classes
        if head.type == "softmax" and start < len(columns):
            out[columns[start]] = name
        start += width
    return out


def target_labels(columns: list[str], model: ModelSpec) -> dict[str, list[str] | None]:
    heads = model.head_specs
    return {c: heads[h].labels for c, h in _column_heads(columns, model).items()}


def _learnable(columns: list[str], model: ModelSpec) -> list[str]:
    """Softmax target columns whose class names may be learned from the data."""
    return list(_column_heads(columns, model))


def _check_label_counts(labels: dict[str, list[str]], model: ModelSpec, path: Path) -> None:
    for head_name, names in labels.items():
        head = model.head_specs[head_name]
        if len(names) != head.classes:
            shown = ", ".join(map(repr, names[:8])) + (" ..." if len(names) > 8 else "")
            where = "model.head" if not model.multi_head else f"model.heads.{head_name}"
            raise SpecError(Problem(where, f"{path.name} has {len(names)} class names in the "
                                    f"target ({shown}) but the head has {head.classes} classes",
                                    "class_count"))


def _check_labels(y: np.ndarray, columns: list[str], model: ModelSpec, path: Path,
                  lines: Sequence[int], where: str = "data.csv.target", unit: str = "line") -> None:
    """Every target cell fits its head, named by CSV line (the file's, not a shuffled index)."""
    heads = list(model.head_specs.values())
    per_column = []
    if not model.multi_head:
        per_column = heads * len(columns)
    else:
        for head in heads:
            per_column += [head] * (1 if head.type == "softmax" else head.classes)
    if len(per_column) != len(columns):
        return  # the column count itself is wrong: reported when targets are prepared
    for j, (column, head) in enumerate(zip(columns, per_column, strict=True)):
        values = y[:, j]
        if head.type == "softmax":
            bad = (values != np.round(values)) | (values < 0) | (values >= head.classes)
            wanted = f"a class id of the softmax head: a whole number 0..{head.classes - 1}"
        else:
            bad = (values < 0) | (values > 1)
            wanted = "a sigmoid target: 0 or 1 (or a probability in between)"
        count = int(bad.sum())
        if count:
            i = int(np.flatnonzero(bad)[0])
            raise SpecError(Problem(where, f"{path.name} {unit} {lines[i]}, column "
                                    f"{_cell(column)}: {values[i]:g} is not {wanted} ({count} such "
                                    f"row{'s' if count > 1 else ''} of {len(values)})", "bad_target"))


def load_npz(path: Path, keys: list[str], where: str) -> dict[str, np.ndarray]:
    """Named arrays of an `.npz` archive (never unpickled); located errors for the rest."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in keys:
                if key not in archive:
                    raise SpecError(Problem(where, f"array {key!r} is not in {path.name} "
                                            f"(arrays: {', '.join(archive.files)})", "unknown_array"))
            return {key: archive[key] for key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise SpecError(Problem(where, f"cannot read {path.name} as a NumPy .npz archive of plain "
                                f"arrays: {err}", "file_unreadable")) from None


def _npz(source: NpzSource, model: ModelSpec, base_dir: Path | None) -> RawData:
    path = _resolve(source.path, base_dir, "data.npz.path")
    y_keys = {"y": source.y} if isinstance(source.y, str) else dict(source.y)
    arrays = load_npz(path, [source.x, *y_keys.values()], "data.npz")
    y = arrays[source.y] if isinstance(source.y, str) else {h: arrays[k] for h, k in y_keys.items()}
    for key in (source.x, *y_keys.values()):
        _check_finite(arrays[key], key, path)
    return RawData(arrays[source.x], y, "array")


def _check_finite(values: np.ndarray, key: str, path: Path) -> None:
    """NaN/inf in an array is refused with its sample index in the file (not in a shuffled split)."""
    if not np.issubdtype(values.dtype, np.floating) or values.ndim == 0 or len(values) == 0:
        return
    flat = values.reshape(len(values), -1)
    bad = ~np.isfinite(flat)
    if bad.any():
        rows = bad.any(axis=1)
        row = int(np.flatnonzero(rows)[0])
        column = int(np.flatnonzero(bad[row])[0])
        raise SpecError(Problem("data.npz", f"{path.name}: array {_cell(key)}, sample {row} (value "
                                f"{column} of it) is {flat[row, column]}; {int(rows.sum())} samples "
                                "hold NaN or inf: fill in or drop missing values first", "bad_value"))


def split_target_columns(y: np.ndarray, model: ModelSpec) -> Targets:
    """One target column per softmax head / one per label of a sigmoid head, in head order."""
    heads = model.head_specs
    if not model.multi_head:
        return y[:, 0] if y.shape[1] == 1 else y
    out, start = {}, 0
    for name, head in heads.items():
        width = 1 if head.type == "softmax" else head.classes
        out[name] = y[:, start:start + width]
        start += width
    return out


def _synthetic(source: SyntheticSource, model: ModelSpec, seed: int) -> tuple[np.ndarray, Targets]:
    """Gaussian inputs labelled by a fixed random linear teacher: learnable, for any input shape."""
    if model.input.dtype == "int64":
        raise SpecError(Problem("data.synthetic", "synthetic data needs a floating-point model input",
                                "unsupported"))
    values = source.samples * math.prod(model.input.shape)
    check_data_bytes(values * 12, "data.synthetic.samples",  # float64 draws, then float32
                     f"{source.samples:,} synthetic samples of shape {list(model.input.shape)}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((source.samples, *model.input.shape)).astype(np.float32)
    flat = x.reshape(source.samples, -1)
    targets: dict[str, np.ndarray] = {}
    for name, head in model.head_specs.items():
        width = head.classes
        teacher = rng.standard_normal((flat.shape[1], width)) / np.sqrt(flat.shape[1])
        scores = flat @ teacher + source.noise * rng.standard_normal((source.samples, width))
        if head.type == "softmax":
            targets[name] = scores.argmax(axis=1).astype(np.int64)
        else:
            targets[name] = (scores > 0).astype(np.float32)
    return x, targets if model.multi_head else next(iter(targets.values()))
