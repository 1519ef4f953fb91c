"""Reload exported files in a fresh process where `import blocks` fails, and compare them with
the outputs the blocks model gave. Run by the export tests as a subprocess:

    python reload_exports.py MANIFEST.json RESULTS.json

MANIFEST: a list of {format, path, weights, data, outputs}; `data` is a safetensors file holding
`x/<batch>` inputs and `<output>/<batch>` expected outputs. RESULTS: per entry, the max |diff| per
batch size (or the error text).
"""

import importlib.abc
import importlib.util
import json
import os
import sys


class _NoBlocks(importlib.abc.MetaPathFinder):
    """Makes `blocks` unimportable, as in an environment where it is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "blocks" or name.startswith("blocks."):
            raise ImportError(f"blocks is not installed here (blocked import of {name})")
        return None


sys.meta_path.insert(0, _NoBlocks())

import torch  # noqa: E402

if os.environ.get("BLOCKS_TEST_THREADS"):
    torch.set_num_threads(int(os.environ["BLOCKS_TEST_THREADS"]))
from safetensors.torch import load_file  # noqa: E402


def load_python(path, weights):
    spec = importlib.util.spec_from_file_location("exported_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load(weights)


def runner(entry):
    fmt, path = entry["format"], entry["path"]
    if fmt == "python":
        return load_python(path, entry["weights"])
    if fmt == "pt2":
        return torch.export.load(path).module()
    if fmt == "torchscript":
        return torch.jit.load(path)
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(x):
        values = session.run(None, {"x": x.numpy()})
        return {name: torch.from_numpy(v) for name, v in zip(names, values, strict=True)}

    return run


def check(entry):
    data = load_file(entry["data"])
    model = runner(entry)
    diffs = {}
    for key in sorted(k for k in data if k.startswith("x/")):
        batch = key.split("/")[1]
        # a fresh copy: safetensors hands out tensors at any 8-byte offset of the file, and
        # AVX-512 matrix kernels round differently on an input that is not 64-byte aligned
        x = data[key].clone()
        with torch.no_grad():
            out = model(x)
        if isinstance(out, torch.Tensor):
            out = {entry["outputs"][0]: out}
        if sorted(out) != sorted(entry["outputs"]):
            return f"outputs {sorted(out)} instead of {entry['outputs']}"
        worst = 0.0
        for name in entry["outputs"]:
            want, got = data[f"{name}/{batch}"], out[name]
            if got.shape != want.shape:
                return f"{name} at batch {batch}: shape {tuple(got.shape)} != {tuple(want.shape)}"
            if entry["format"] == "python" and not torch.equal(got, want):
                return f"{name} at batch {batch}: not bit-for-bit equal"
            worst = max(worst, (got.double() - want.double()).abs().max().item())
        diffs[batch] = worst
    return diffs


def main():
    try:
        import blocks  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("blocks is importable; the check would prove nothing")
    with open(sys.argv[1]) as handle:
        manifest = json.load(handle)
    results = []
    for entry in manifest:
        try:
            results.append(check(entry))
        except Exception as err:  # noqa: BLE001 - reported to the test
            results.append(f"{type(err).__name__}: {err}")
    with open(sys.argv[2], "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main()
