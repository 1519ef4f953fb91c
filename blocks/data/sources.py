"""Raw arrays from each `data:` source: bundled scikit-learn sets, CSV, NPZ, synthetic."""

from __future__ import annotations

import csv
import difflib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    return raw


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
    return candidate


def read_csv_rows(path: Path, where: str) -> list[list[str]]:
    """Rows of a CSV file, blank lines skipped; a located error if it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # a BOM is not part of a name
            return [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise SpecError(Problem(where, f"cannot read {path}: {err}", "file_unreadable")) from None


def numeric_table(rows: list[list[str]], header: list[str], path: Path, where: str, *,
                  first_line: int = 2) -> np.ndarray:
    """The data rows as float64, naming the line and column of the first cell that is not a
    finite number (the cell is quoted short and escaped: a file's content is not echoed)."""
    table = np.empty((len(rows), len(header)), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise SpecError(Problem(where, f"{path.name} line {i + first_line} has {len(row)} "
                                    f"cells, the header has {len(header)}", "bad_row"))
        for j, cell in enumerate(row):
            try:
                table[i, j] = value = float(cell)
            except ValueError:
                raise SpecError(Problem(where, f"{path.name} line {i + first_line}, column "
                                        f"{short_names([header[j]])}: {short_names([cell], 1, 12)} "
                                        "is not a number", "bad_value")) from None
            if not np.isfinite(value):
                raise SpecError(Problem(where, f"{path.name} line {i + first_line}, column "
                                        f"{short_names([header[j]])}: {cell.strip()} is not a "
                                        "finite number", "bad_value"))
    return table


def _csv(source: CsvSource, model: ModelSpec, base_dir: Path | None) -> RawData:
    path = _resolve(source.path, base_dir, "data.csv.path")
    rows = read_csv_rows(path, "data.csv.path")
    if len(rows) < 2:
        raise SpecError(Problem("data.csv.path", f"{path} needs a header row and at least one data row",
                                "empty_data"))
    targets = source.target if isinstance(source.target, list) else [source.target]
    overlap = [name for name in targets if name in (source.features or [])]
    if overlap:
        raise SpecError(Problem("data.csv.features", f"target column(s) {short_names(overlap)} "
                                "are also listed as features; a model must not see its target",
                                "target_in_features"))
    x, y = table_columns(rows, path, features=source.features, targets=targets, where="data.csv")
    header = rows[0]
    features = source.features or [c for c in header if c not in targets]
    return RawData(x, split_target_columns(y, model), "tabular", features=list(features))


def table_columns(rows: list[list[str]], path: Path, *, features: list[str] | None,
                  targets: list[str], optional_header: bool = False,
                  where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(features float32 [N, F], targets float64 [N, T]) from CSV rows, columns by header name.

    With `optional_header`, a first row of numbers only is data (a header-less file, columns in
    training order), never silently dropped as a header.
    """
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
                             first_line=1).astype(np.float32), np.empty((len(rows), 0))
    header, body = first, rows[1:]
    if not body:
        raise SpecError(Problem(where, "needs a header row and at least one data row",
                                "empty_data", str(path)))
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise SpecError(Problem(where, f"the header names column(s) {short_names(duplicates)} "
                                "more than once; column names must be unique", "duplicate_column",
                                str(path)))
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
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise SpecError(Problem(where, f"{path.name} line {i + 2} has {len(row)} cells, the "
                                    f"header has {len(header)}", "bad_row"))
    table = numeric_table(cells, [*columns, *targets], path, where)
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
    return RawData(arrays[source.x], y, "array")


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
