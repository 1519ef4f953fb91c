"""CLI behaviour that spans verbs: override errors, internal errors, file permissions."""

from __future__ import annotations

import os
import stat

import pytest

import blocks
from blocks.cli import EXIT_BAD_INPUT, EXIT_INTERNAL, main


def test_bad_override_names_the_flag(tmp_path, capsys):
    assert main(["train", "seed_cnn", "--epochs", "0", "--out", str(tmp_path / "r")]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == "error: --epochs: Input should be greater than 0"
    assert main(["train", "seed_cnn", "--device", "tpu", "--out", str(tmp_path / "r")]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith("error: --device: unknown device 'tpu'")
    assert not (tmp_path / "r").exists()  # nothing written for a refused run


def test_internal_error_is_reported_without_traceback(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("blocks.recipe.loading.bundled_recipes", broken)
    assert main(["recipes"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error in `blocks recipes`: ZeroDivisionError: boom" in err
    assert "Traceback" not in err
    monkeypatch.setenv("BLOCKS_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["recipes"])


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        from importlib import reload

        import blocks.core.files

        reload(blocks.core.files)
        path = blocks.core.files.atomic_write_text(tmp_path / "x.txt", "hi")
    finally:
        os.umask(old)
        reload(blocks.core.files)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_predict_names_a_feature_count_mismatch(tmp_path, capsys):
    spec = blocks.ModelSpec(input={"shape": [3]}, head={"type": "softmax", "classes": 2})
    blocks.save(blocks.build(spec, seed=0), tmp_path / "run")
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "in.csv")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "in.csv: each input row has 2 values but the model takes 3 per sample (shape [3])" in err
