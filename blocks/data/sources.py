"""Raw arrays from each `data:` source: bundled scikit-learn sets, CSV, NPZ, synthetic."""

from __future__ import annotations

import csv
import dataclasses
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
    return candidate


def read_csv_rows(path: Path, where: str) -> list[list[str]]:
    """Rows of a CSV file, blank lines skipped; a located error if it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise SpecError(Problem(where, f"cannot read {path}: {err}", "file_unreadable")) from None


def numeric_table(rows: list[list[str]], header: list[str], path: Path, where: str) -> np.ndarray:
    """The data rows as float64, naming the row and column of the first cell that is not a number."""
    table = np.empty((len(rows), len(header)), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise SpecError(Problem(where, f"{path.name} line {i + 2} has {len(row)} cells, the "
                                    f"header has {len(header)}", "bad_row"))
        for j, cell in enumerate(row):
            try:
                table[i, j] = float(cell)
            except ValueError:
                raise SpecError(Problem(where, f"{path.name} line {i + 2}, column {header[j]!r}: "
                                        f"{cell!r} is not a number", "bad_value")) from None
    return table


def _csv(source: CsvSource, model: ModelSpec, base_dir: Path | None) -> RawData:
    path = _resolve(source.path, base_dir, "data.csv.path")
    rows = read_csv_rows(path, "data.csv.path")
    if len(rows) < 2:
        raise SpecError(Problem("data.csv.path", f"{path} needs a header row and at least one data row",
                                "empty_data"))
    header, body = rows[0], rows[1:]
    targets = source.target if isinstance(source.target, list) else [source.target]
    for column in targets + (source.features or []):
        if column not in header:
            raise SpecError(Problem("data.csv", f"column {column!r} is not in {path.name} "
                                    f"(columns: {', '.join(header)})", "unknown_column"))
    features = source.features or [c for c in header if c not in targets]
    table = numeric_table(body, header, path, "data.csv.path")
    x = table[:, [header.index(c) for c in features]].astype(np.float32)
    y = table[:, [header.index(c) for c in targets]]
    return RawData(x, _split_targets(y, model), "tabular", features=list(features))


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


def _split_targets(y: np.ndarray, model: ModelSpec) -> Targets:
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
