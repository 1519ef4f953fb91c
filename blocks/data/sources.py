"""Raw arrays from each `data:` source: bundled scikit-learn sets, CSV, NPZ, synthetic."""

from __future__ import annotations

import csv
import dataclasses
import difflib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blocks.budget import check_data_bytes
from blocks.data.spec import CsvSource, DataSpec, NpzSource, SyntheticSource
from blocks.errors import Problem, SpecError
from blocks.spec import ModelSpec

Targets = np.ndarray | dict[str, np.ndarray]


@dataclass
class RawData:
    """One source's samples as loaded, plus what preprocessing must know to repeat it later."""

    x: np.ndarray
    y: Targets
    kind: str  # "image", "tabular" or "array"
    scale: float = 1.0  # fixed scaling of the raw values (digits: pixels 0..16 -> 0..1)
    features: list[str] | None = None  # feature column names, for `blocks predict` on CSV


def load_arrays(spec: DataSpec, model: ModelSpec, base_dir: Path | None) -> RawData:
    """Features, targets and the kind of data for one `data:` section; every target array has
    one entry per sample (checked)."""
    if spec.dataset is not None:
        raw = _bundled(spec.dataset)
    elif spec.csv is not None:
        raw = _csv(spec.csv, model, base_dir)
    elif spec.npz is not None:
        raw = _npz(spec.npz, model, base_dir)
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
    from blocks.budget import check_data_bytes

    if not path.is_file():
        raise SpecError(Problem(where, f"{str(path)!r} is not a regular file", "not_a_file"))
    check_data_bytes(4 * path.stat().st_size, where, f"reading {path.name}")


def read_csv_lines(path: Path, where: str) -> tuple[list[list[str]], list[int]]:
    """Rows of a CSV file (blank lines skipped, a UTF-8 BOM dropped) and the file line of each,
    so errors name the line a person sees in an editor; a located error if it cannot be read."""
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise SpecError(Problem(where, f"cannot read {path}: {err}", "file_unreadable")) from None
    return rows, lines


def read_csv_rows(path: Path, where: str) -> list[list[str]]:
    """Rows of a CSV file, blank lines skipped; a located error if it cannot be read."""
    return read_csv_lines(path, where)[0]


def check_header(header: list[str], path: Path, where: str) -> None:
    """Column names must be unique: with two `a` columns, which one is the feature?"""
    seen: dict[str, int] = {}
    for index, name in enumerate(header):
        if name in seen:
            raise SpecError(Problem(where, f"{path.name} has two columns named {_cell(name)} "
                                    f"(columns {seen[name] + 1} and {index + 1}); rename one",
                                    "duplicate_column"))
        seen[name] = index


def _cell(text: str, limit: int = 40) -> str:
    """A short, escaped excerpt of a cell for messages (never a whole line of a file)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def numeric_table(rows: list[list[str]], header: list[str], path: Path, where: str,
                  lines: list[int] | None = None) -> np.ndarray:
    """The data rows as float64, naming the line and column of the first cell that is not a
    finite number (`lines`: each row's file line; default: rows follow a header on line 1)."""
    table = np.empty((len(rows), len(header)), dtype=np.float64)
    for i, row in enumerate(rows):
        line = lines[i] if lines is not None else i + 2
        if len(row) != len(header):
            raise SpecError(Problem(where, f"{path.name} line {line} has {len(row)} cells, the "
                                    f"header has {len(header)}", "bad_row"))
        for j, cell in enumerate(row):
            try:
                value = float(cell)
            except ValueError:
                raise SpecError(Problem(where, f"{path.name} line {line}, column {_cell(header[j])}: "
                                        f"{_cell(cell)} is not a number", "bad_value")) from None
            if not math.isfinite(value):
                raise SpecError(Problem(where, f"{path.name} line {line}, column {_cell(header[j])}: "
                                        f"{_cell(cell)} is not a finite number; fill in or drop "
                                        "missing values before training", "bad_value"))
            table[i, j] = value
    return table


def _csv(source: CsvSource, model: ModelSpec, base_dir: Path | None) -> RawData:
    path = _resolve(source.path, base_dir, "data.csv.path")
    rows, lines = read_csv_lines(path, "data.csv.path")
    if len(rows) < 2:
        raise SpecError(Problem("data.csv.path", f"{path} needs a header row and at least one data row",
                                "empty_data"))
    targets = source.target if isinstance(source.target, list) else [source.target]
    for field, names in (("target", targets), ("features", source.features or [])):
        repeated = sorted({c for c in names if names.count(c) > 1})
        if repeated:
            raise SpecError(Problem(f"data.csv.{field}", f"lists column {_cell(repeated[0])} twice",
                                    "duplicate_column"))
    both = [c for c in targets if c in (source.features or [])]
    if both:
        raise SpecError(Problem("data.csv.features", f"column {_cell(both[0])} is the target and a "
                                "feature too: the model would see its own answer; remove it from "
                                "`features`", "target_in_features"))
    check_header(rows[0], path, "data.csv.path")
    x, y = table_columns(rows, path, features=source.features, targets=targets,
                         where="data.csv.path", lines=lines)
    _check_labels(y, targets, model, path, lines[1:])
    features = source.features or [c for c in rows[0] if c not in targets]
    return RawData(x, split_target_columns(y, model), "tabular", features=list(features))


def table_columns(rows: list[list[str]], path: Path, *, features: list[str] | None,
                  targets: list[str], optional_header: bool = False, where: str = "",
                  lines: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 [N, F], targets float64 [N, T]) from CSV rows, columns by header name.

    With `optional_header`, a first row of numbers only is data (a header-less file, columns in
    training order), never silently dropped as a header. `lines`: each row's file line.
    """
    lines = lines if lines is not None else list(range(1, len(rows) + 1))
    first = rows[0]
    if optional_header and all(_is_number(cell) for cell in first):
        if targets:
            raise SpecError(Problem(where, "a header row is needed to find the target column(s)",
                                    "missing_header", str(path)))
        if features is not None and len(first) != len(features):
            raise SpecError(Problem(where, f"the file has no header row and {len(first)} columns, "
                                    f"but the run was trained on {len(features)} features "
                                    f"({short_names(features)}); add a header row naming them",
                                    "shape_mismatch", str(path)))
        return numeric_table(rows, [str(i + 1) for i in range(len(first))], path, where,
                             lines).astype(np.float32), np.empty((len(rows), 0))
    header, body = first, rows[1:]
    if not body:
        raise SpecError(Problem(where, "needs a header row and at least one data row",
                                "empty_data", str(path)))
    check_header(header, path, where)
    wanted = list(targets) + list(features or [])
    missing = [name for name in wanted if name not in header]
    if missing:
        # close matches only: a header line of an arbitrary file is not echoed back
        close = sorted({m for name in missing for m in difflib.get_close_matches(name, header, 2, 0.7)})
        hint = f"; did you mean {short_names(close)}?" if close else ""
        raise SpecError(Problem(where, f"missing column(s) {short_names(missing)} (the file has "
                                f"{len(header)} columns{hint})", "unknown_column", str(path)))
    columns = features if features is not None else [c for c in header if c not in targets]
    picked = [header.index(name) for name in [*columns, *targets]]
    cells = [[row[i] if i < len(row) else "" for i in picked] for row in body]
    for row, line in zip(body, lines[1:], strict=True):
        if len(row) != len(header):
            raise SpecError(Problem(where, f"{path.name} line {line} has {len(row)} cells, the "
                                    f"header has {len(header)}", "bad_row"))
    table = numeric_table(cells, [*columns, *targets], path, where, lines[1:])
    return table[:, :len(columns)].astype(np.float32), table[:, len(columns):]


def short_names(names: list[str], limit: int = 5, width: int = 24) -> str:
    """Column names for a message: escaped, each cut short, at most `limit` of them."""
    def one(name: str) -> str:
        text = repr(name if len(name) <= width else name[:width] + "...")
        return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)

    shown = ", ".join(one(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_labels(y: np.ndarray, columns: list[str], model: ModelSpec, path: Path,
                  lines: list[int]) -> None:
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
            raise SpecError(Problem("data.csv.target", f"{path.name} line {lines[i]}, column "
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
