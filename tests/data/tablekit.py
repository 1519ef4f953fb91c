"""A small table with numbers, a categorical column, missing cells and string labels, and a
run trained on it once per test session (shared by the data and run tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RECIPE = """model:
  input: {shape: [6]}
  backbone: [{type: linear, out_features: 16}, relu]
  head: {type: softmax, classes: 2}
data:
  csv: {path: d.csv, target: label, categorical: [colour]}
  impute: mean
  val_fraction: 0.25
  seed: 3%s
train: {epochs: 2, batch_size: 32, device: cpu, seed: 5}
"""


def write_table(folder: Path, rows: int = 600) -> Path:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, 3)) * [1, 10, 0.1] + [0, 5, 100]
    colour = rng.choice(["amber", "blue", "red"], rows)
    label = np.where(x[:, 0] + (colour == "red") > 0.3, "yes", "no")
    lines = ["x0,x1,x2,colour,label"]
    for i in range(rows):
        cells = [repr(float(v)) for v in x[i]]
        if i % 37 == 0:
            cells[1] = "NA"
        lines.append(",".join([*cells, colour[i], label[i]]))
    path = folder / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_recipe(folder: Path, name: str = "r.yaml", extra: str = "") -> Path:
    path = folder / name
    path.write_text(RECIPE % extra)
    return path
