"""Training pictures and `blocks report`, on run folders fabricated here (no trainer needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import blocks
import blocks.run.report as report_module
from blocks.cli import main
from blocks.run.report import (
    PLOT_INSTALL_HINT,
    confusion_matrix,
    draw_run_plots,
    plot_confusion,
    plot_history,
    report,
)

pytest.importorskip("matplotlib")

SINGLE = {
    "model": {"name": "tiny", "input": {"shape": [6]},
              "backbone": [{"type": "linear", "out_features": 8}, "relu"],
              "head": {"type": "softmax", "classes": 3, "labels": ["ant", "bee", "cat"]}},
    "data": {"synthetic": {"samples": 64}, "val_fraction": 0.25},
}
MULTI = {
    "model": {"name": "tiny-multi", "input": {"shape": [6]},
              "backbone": [{"type": "linear", "out_features": 8}, "relu"],
              "heads": {"kind": {"type": "softmax", "classes": 4},
                        "tags": {"type": "sigmoid", "classes": 2}}},
    "data": {"synthetic": {"samples": 64}, "val_fraction": 0.25},
}


def _history(heads: list[str] | None, epochs: int = 4) -> list[dict]:
    records = []
    for e in range(1, epochs + 1):
        record = {"epoch": e, "lr": 0.01, "time": 0.5}
        for split, offset in (("train", 0.0), ("val", 0.1)):
            loss = 1.0 / e + offset + (0.3 if e == epochs else 0.0)  # best val loss at epoch 3
            if heads is None:
                record[f"{split}/loss"] = loss
                record[f"{split}/accuracy"] = 0.5 + 0.1 * e - offset
            else:
                record[f"{split}/loss"] = 2 * loss
                for head in heads:
                    record[f"{split}/{head}/loss"] = loss
                    record[f"{split}/{head}/accuracy"] = 0.4 + 0.1 * e
        records.append(record)
    return records


def make_run(path: Path, recipe_data: dict, *, run_info: bool = True) -> tuple[Path, blocks.BlocksModel]:
    recipe = blocks.Recipe.model_validate(recipe_data)
    model = blocks.build(recipe.model, seed=0)
    path.mkdir(parents=True)
    (path / "recipe.yaml").write_text(blocks.dump_recipe(recipe, full=True))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    heads = list(recipe.model.heads) if recipe.model.multi_head else None
    (path / "history.json").write_text(json.dumps(_history(heads)))
    if run_info:
        (path / "run.json").write_text(json.dumps({"wall_time_s": 12.5, "best_epoch": 3,
                                                   "params": 83}))
    return path, model


def _val(model: blocks.BlocksModel, n: int = 40):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=g)
    if model.spec.multi_head:
        return x, {"kind": torch.randint(0, 4, (n,), generator=g),
                   "tags": torch.randint(0, 2, (n, 2), generator=g).float()}
    return x, torch.randint(0, 3, (n,), generator=g)


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def _png(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_single_head_curves_and_confusion(tmp_path) -> None:
    run_dir, model = make_run(tmp_path / "run", SINGLE)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _val(model)
    written, notes = draw_run_plots(run_dir, val_data=(x, y), model=model)
    assert [p.name for p in written] == ["curves.png", "confusion.png"] and notes == []
    assert all(_png(p) for p in written)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    fig = plot_history(json.loads((run_dir / "history.json").read_text()), model.spec)
    assert _titles(fig) == ["loss", "accuracy"]
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["train", "validation"]
    assert list(lines[1].get_xdata()) == [1, 2, 3, 4]

    matrix = confusion_matrix(model, x, y)
    predicted = model.predict(x)
    assert matrix.shape == (3, 3) and int(matrix.sum()) == len(y)
    assert int(matrix.trace()) == int((predicted == y).sum())
    assert int(matrix[1].sum()) == int((y == 1).sum())  # rows are the true classes
    fig = plot_confusion(matrix, ["ant", "bee", "cat"])
    assert len(fig.axes) == 2  # the matrix and its colour bar
    assert fig.axes[0].get_title().startswith("confusion matrix (validation)\n40 samples")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["ant", "bee", "cat"]


def test_multi_head_curves_and_one_confusion_per_softmax_head(tmp_path) -> None:
    run_dir, model = make_run(tmp_path / "run", MULTI)
    written, _ = draw_run_plots(run_dir, val_data=_val(model), model=model)
    assert sorted(p.name for p in written) == ["confusion_kind.png", "curves.png"]
    assert all(_png(p) for p in written)
    fig = plot_history(json.loads((run_dir / "history.json").read_text()), model.spec)
    assert _titles(fig) == ["total: loss", "kind: loss", "kind: accuracy", "tags: loss",
                            "tags: accuracy"]


def test_report_text_and_plots_from_saved_weights(tmp_path, monkeypatch) -> None:
    run_dir, model = make_run(tmp_path / "run", SINGLE)
    val = _val(model)
    monkeypatch.setattr(report_module, "_val_split", lambda recipe: val)
    result = report(run_dir)  # loads the weights with blocks.load
    text = result.text()
    assert "best epoch: 3" in text and "parameters: 83" in text and "wall time: 12.5 s" in text
    assert "val/accuracy" not in text and "accuracy" in text  # a metric x split table
    assert [p.name for p in result.plots] == ["curves.png", "confusion.png"]
    assert result.final["val/loss"] == pytest.approx(1 / 4 + 0.1 + 0.3)


def test_report_without_run_json_computes_best_epoch_params_and_time(tmp_path) -> None:
    run_dir, model = make_run(tmp_path / "run", SINGLE, run_info=False)
    result = report(run_dir, plots=False)
    assert result.best_epoch == 3 and result.best_by == "val/loss"
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.wall_time_s == pytest.approx(2.0)
    assert result.plots == []


def test_cli_report(tmp_path, monkeypatch, capsys) -> None:
    run_dir, model = make_run(tmp_path / "run", MULTI)
    val = _val(model)
    monkeypatch.setattr(report_module, "_val_split", lambda recipe: val)
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "run: " in out and "tiny-multi" in out and "kind/accuracy" in out
    assert _png(run_dir / "curves.png") and _png(run_dir / "confusion_kind.png")


def test_cli_report_without_matplotlib_prints_text_and_how_to_install(tmp_path, monkeypatch, capsys):
    run_dir, _ = make_run(tmp_path / "run", SINGLE)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "best epoch: 3" in out and PLOT_INSTALL_HINT in out
    assert not (run_dir / "curves.png").exists()


def test_confusion_skipped_with_a_note_when_validation_data_cannot_load(tmp_path, monkeypatch):
    run_dir, _ = make_run(tmp_path / "run", SINGLE)

    def no_data(recipe):
        raise blocks.SpecError("data: no such file")

    monkeypatch.setattr(report_module, "_val_split", no_data)
    result = report(run_dir)
    assert [p.name for p in result.plots] == ["curves.png"]
    assert result.notes == ["confusion matrix skipped: data: no such file"]


def test_cli_report_bad_folders(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not a blocks run folder" in capsys.readouterr().err
    run_dir, _ = make_run(tmp_path / "run", SINGLE)
    (run_dir / "history.json").write_text("{not json")
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "history.json: unreadable JSON" in err and "Traceback" not in err
