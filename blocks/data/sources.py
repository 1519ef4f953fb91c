"""Raw arrays from each `data:` source: bundled scikit-learn sets, CSV, NPZ, synthetic."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from blocks.data.spec import CsvSource, DataSpec, NpzSource, SyntheticSource
from blocks.errors import Problem, SpecError
from blocks.spec import ModelSpec

Targets = np.ndarray | dict[str, np.ndarray]


def load_arrays(spec: DataSpec, model: ModelSpec, base_dir: Path | None) -> tuple[np.ndarray, Targets, str]:
    """Features, targets and the kind of data (`image`, `tabular`) for one `data:` section."""
    if spec.dataset is not None:
        return _bundled(spec.dataset)
    if spec.csv is not None:
        return (*_csv(spec.csv, model, base_dir), "tabular")
    if spec.npz is not None:
        return (*_npz(spec.npz, model, base_dir), "array")
    return (*_synthetic(spec.synthetic, model, spec.seed), "array")


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray, str]:
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
    if name == "digits":
        return x / 16.0, np.asarray(bunch.target, dtype=np.int64), "image"
    return x, np.asarray(bunch.target, dtype=np.int64), "tabular"


def _resolve(path: str, base_dir: Path | None, where: str) -> Path:
    candidate = Path(path)
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    if not candidate.exists():
        raise SpecError(Problem(where, f"file {str(candidate)!r} does not exist", "file_not_found"))
    return candidate


def _csv(source: CsvSource, model: ModelSpec, base_dir: Path | None) -> tuple[np.ndarray, Targets]:
    path = _resolve(source.path, base_dir, "data.csv.path")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
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
    try:
        table = np.array([[float(v) for v in row] for row in body], dtype=np.float64)
    except ValueError as err:
        raise SpecError(Problem("data.csv.path", f"{path.name}: every cell must be a number ({err})",
                                "bad_value")) from None
    x = table[:, [header.index(c) for c in features]].astype(np.float32)
    y = table[:, [header.index(c) for c in targets]]
    return x, _split_targets(y, model)


def _npz(source: NpzSource, model: ModelSpec, base_dir: Path | None) -> tuple[np.ndarray, Targets]:
    path = _resolve(source.path, base_dir, "data.npz.path")
    with np.load(path, allow_pickle=False) as archive:
        keys = [source.x] + ([source.y] if isinstance(source.y, str) else list(source.y.values()))
        for key in keys:
            if key not in archive:
                raise SpecError(Problem("data.npz", f"array {key!r} is not in {path.name} "
                                        f"(arrays: {', '.join(archive.files)})", "unknown_array"))
        x = archive[source.x]
        if isinstance(source.y, dict):
            return x, {head: archive[key] for head, key in source.y.items()}
        return x, archive[source.y]


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
