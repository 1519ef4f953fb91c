"""Helpers for the export tests: export a model to every format and reload the files in a fresh
process where `blocks` cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import blocks
from blocks.exporters.common import sample_input

HERE = Path(__file__).resolve().parent
FORMATS = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt", "python": ".py"}
TOLERANCE = {"onnx": 1e-5, "pt2": 1e-6, "torchscript": 1e-6, "python": 0.0}
BATCHES = (1, 5)  # neither is the batch size of 2 the graphs are exported with


def expected_outputs(model, x: torch.Tensor, probabilities: bool) -> dict[str, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        out = model.predict_proba(x) if probabilities else model(x)
    return out if isinstance(out, dict) else {"output": out}


def export_all(model, folder: Path, *, probabilities: bool = False,
               formats=tuple(FORMATS)) -> list[dict]:
    """Save the model's weights, export it to `formats`, write inputs and expected outputs;
    returns the manifest entries for `reload_exports.py`."""
    folder.mkdir(parents=True, exist_ok=True)
    blocks.save(model, folder)
    data = {}
    for batch in BATCHES:
        x = sample_input(model, batch, seed=batch)  # data-like raw inputs for a preprocessing model
        data[f"x/{batch}"] = x
        for name, value in expected_outputs(model, x, probabilities).items():
            data[f"{name}/{batch}"] = value.contiguous()
    save_file(data, str(folder / "expected.safetensors"))
    entries = []
    for fmt in formats:
        result = blocks.export(model, to=fmt, path=folder / f"model{FORMATS[fmt]}",
                               probabilities=probabilities)
        entries.append({"format": fmt, "path": str(result.path),
                        "weights": str(folder / "model.safetensors"),
                        "data": str(folder / "expected.safetensors"),
                        "outputs": list(result.outputs)})
    return entries


def reload_without_blocks(manifest: list[dict], folder: Path) -> list:
    """Run `reload_exports.py` in a fresh interpreter with `blocks` unimportable."""
    manifest_file, results_file = folder / "manifest.json", folder / "results.json"
    manifest_file.write_text(json.dumps(manifest))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # the same intra-op thread count as this process: float sums depend on it in the last bits
    env["BLOCKS_TEST_THREADS"] = str(torch.get_num_threads())
    done = subprocess.run([sys.executable, str(HERE / "reload_exports.py"), str(manifest_file),
                           str(results_file)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(results_file.read_text())


def assert_reloads_match(manifest: list[dict], results: list) -> None:
    problems = []
    for entry, result in zip(manifest, results, strict=True):
        where = f"{entry['path']} ({entry['format']})"
        if isinstance(result, str):
            problems.append(f"{where}: {result}")
            continue
        assert sorted(result) == sorted(str(b) for b in BATCHES), where
        worst = max(result.values())
        if worst > TOLERANCE[entry["format"]]:
            problems.append(f"{where}: max |diff| {worst:.3g} > {TOLERANCE[entry['format']]}")
    assert not problems, "\n".join(problems)
