"""`blocks export` and `blocks.export`: defaults, located errors, nothing half-written, and the
caller's model left as it was."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import blocks
from blocks.cli import EXIT_BAD_INPUT, main
from blocks.exporters import ExportError, common, pt2_export


@pytest.fixture
def run_dir(tmp_path):
    model = blocks.build(blocks.load_recipe("tabular_mlp").model, seed=0)
    return blocks.save(model, tmp_path / "run")


def test_export_run_to_python_writes_beside_the_weights(run_dir, capsys):
    assert main(["export", str(run_dir), "--to", "python"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (f"wrote {run_dir / 'model.py'} (python, blocks source writer); "
                           "reloaded, its logits (output) match the model bit for bit at batch "
                           "sizes 2, 3, 1")
    assert (run_dir / "model.py").exists()


def test_export_run_to_pt2_with_probabilities(run_dir, tmp_path, capsys):
    target = tmp_path / "out" / "mlp.pt2"
    assert main(["export", str(run_dir), "--to", "pt2", "--out", str(target),
                 "--probabilities"]) == 0
    assert "its probabilities (output) match the model within 1e-06" in capsys.readouterr().out
    program = torch.export.load(str(target)).module()
    model = blocks.load(run_dir)
    x = torch.randn(7, 30)
    assert torch.allclose(program(x), model.predict_proba(x), atol=1e-6, rtol=0)


def test_export_recipe_says_the_weights_are_untrained(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "seed_cnn", "--to", "python"]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "seed_cnn.py").exists()
    assert captured.err.startswith("note: exported from a recipe: the weights are untrained")


def test_missing_onnx_extra_is_named(run_dir, monkeypatch, capsys):
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name in ("onnxscript", "onnxruntime") else real(name, *args)

    monkeypatch.setattr(common.importlib.util, "find_spec", find_spec)
    assert main(["export", str(run_dir), "--to", "onnx"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == (
        "error: ONNX export needs onnxscript, onnxruntime (not installed); install them with: "
        "pip install 'blocks[onnx]'")
    assert not (run_dir / "model.onnx").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "onnx", "--out", "RUN/recipe.yaml"],
     "error: RUN/recipe.yaml: an export to onnx is written to a .onnx file, not .yaml"),
    (["--to", "python", "--out", "RUN/model.safetensors"],
     "error: RUN/model.safetensors: an export to python is written to a .py file, not "
     ".safetensors"),
])
def test_out_must_have_the_format_suffix(run_dir, args, message, capsys):
    args = [a.replace("RUN", str(run_dir)) for a in args]
    before = (run_dir / "recipe.yaml").read_bytes()
    assert main(["export", str(run_dir), *args]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == message.replace("RUN", str(run_dir))
    assert (run_dir / "recipe.yaml").read_bytes() == before


@pytest.mark.slow
def test_a_run_with_preprocessing_exports_it_inside_the_model(tmp_path, capsys):
    """A trained run takes raw inputs; so does every export of it (its preprocessing is part of
    the model): the same raw rows give the same outputs."""
    from export_support import assert_reloads_match, export_all, reload_without_blocks

    manifest = []
    for name in ("tabular_mlp", "seed_cnn"):  # z-scores; scale + 8x8 -> 28x28 resize
        run = blocks.run_recipe(name, tmp_path / name, epochs=1, plots=False).out
        model = blocks.load(run)
        assert model.preprocess_module is not None
        manifest += export_all(model, tmp_path / f"{name}-export")
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))
    assert main(["export", str(tmp_path / "seed_cnn"), "--to", "python"]) == 0
    assert capsys.readouterr().err.startswith(
        "note: the exported model takes raw inputs, as the run's data source gave them (per "
        "sample [64]): its preprocessing is part of it")


def test_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--to", "pt2"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path} is a folder but not a blocks run (no recipe.yaml); give a run folder "
        "or a recipe")


def test_unknown_format_from_python(run_dir):
    model = blocks.load(run_dir)
    with pytest.raises(ExportError, match="unknown export format 'tflite'; choose one of onnx, "
                                          "pt2, torchscript, python"):
        blocks.export(model, to="tflite", path=run_dir / "m.tflite")


def test_a_failed_check_leaves_nothing_behind(run_dir, monkeypatch):
    target = run_dir / "model.pt2"
    target.write_bytes(b"an older export")  # not marked as an export: replaced only with force

    def mismatch(*args):
        raise ExportError("the reloaded torch.export program differs")

    monkeypatch.setattr(pt2_export, "check_pt2", mismatch)
    with pytest.raises(ExportError, match="differs"):
        blocks.export(blocks.load(run_dir), to="pt2", path=target, force=True)
    assert target.read_bytes() == b"an older export"
    assert sorted(p.name for p in run_dir.iterdir()) == ["model.pt2", "model.safetensors",
                                                         "recipe.yaml", "run.json"]


def test_export_leaves_the_model_and_global_rng_alone(tmp_path):
    model = blocks.build(blocks.load_recipe("residual_cnn").model, seed=0).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    blocks.export(model, to="python", path=tmp_path / "m.py")
    blocks.export(model, to="torchscript", path=tmp_path / "m.pt")
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_only_blocks_models_are_exported(tmp_path):
    with pytest.raises(ExportError, match="blocks.export takes a model built by blocks"):
        blocks.export(torch.nn.Linear(2, 2), to="pt2", path=tmp_path / "m.pt2")


def test_onnx_falls_back_to_the_torchscript_exporter_and_says_so(run_dir, monkeypatch, capsys):
    from blocks.exporters import onnx_export

    def dynamo_fails(*args, **kwargs):
        raise RuntimeError("unsupported operator\nmore detail")

    monkeypatch.setattr(onnx_export, "_export_dynamo", dynamo_fails)
    assert main(["export", str(run_dir), "--to", "onnx"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ("note: the dynamo exporter failed (RuntimeError: unsupported operator); "
                            "used the TorchScript-based exporter\n")
    assert "(onnx, torch.onnx.export (TorchScript-based)); reloaded" in captured.out
    assert sorted(p.name for p in run_dir.iterdir()) == ["model.onnx", "model.safetensors",
                                                         "recipe.yaml", "run.json"]


def test_onnxruntime_that_cannot_run_the_file_is_an_export_error(tmp_path, monkeypatch, capsys):
    from blocks.exporters import onnx_export

    def dynamo_fails(*args, **kwargs):  # the legacy exporter is faster here; same runtime check
        raise RuntimeError("skip")

    monkeypatch.setattr(onnx_export, "_export_dynamo", dynamo_fails)
    recipe = tmp_path / "f64.yaml"
    recipe.write_text("model:\n  input: {shape: [1, 8, 8], dtype: float64}\n"
                      "  backbone: [{type: conv2d, out_channels: 2, kernel_size: 3}, flatten]\n"
                      "  head: {type: softmax, classes: 3}\n")
    assert main(["export", str(recipe), "--to", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: onnxruntime cannot run the exported file: [ONNXRuntimeError]")
    assert err.rstrip().endswith("the model computes in torch.float64, for which onnxruntime's "
                                 "CPU kernels are incomplete: build it in float32 to export to ONNX")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f64.yaml"]


class BakedBatchFlatten(torch.nn.Module):
    """Flattens with the batch size read as a Python int: a trace bakes it in."""

    def forward(self, x):
        return x.reshape(int(x.shape[0]), -1)


@pytest.mark.parametrize(("fmt", "message"), [
    ("torchscript", r"^the reloaded TorchScript module fails at batch size 3: RuntimeError: mat1 "
                    r"and mat2 shapes cannot be multiplied \(2x32448 and 21632x10\)$"),
    ("pt2", r"^torch.export could not capture the model with a dynamic batch dimension"),
])
def test_a_batch_size_baked_into_the_graph_is_caught(tmp_path, fmt, message):
    model = blocks.build(blocks.load_recipe("seed_cnn").model, seed=0)
    model.backbone[2] = BakedBatchFlatten()
    with pytest.raises(ExportError, match=message):
        blocks.export(model, to=fmt, path=tmp_path / f"m.{'pt' if fmt == 'torchscript' else fmt}")
    assert not list(tmp_path.iterdir())
