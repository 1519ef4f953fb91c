"""Issue 20, items 1, 2 and 7: `blocks export --out` never replaces a file it did not write
(unless --force), an unwritable or full place is exit 2 naming it, a killed export leaves nothing
that blocks `train --force`; `blocks import` reports a wrong --input-shape in one line."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blocks.cli import main
from tests.hostile_support import TINY, fill, hashes, small_tmpfs

SUFFIX = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt", "python": ".py"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export_hardening")
    (root / "r.yaml").write_text(TINY)
    assert main(["train", str(root / "r.yaml"), "--out", str(root / "run"), "--quiet",
                 "--no-plots"]) == 0
    return root / "run"


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# --- 1. --out over an existing file ------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_export_refuses_a_file_it_did_not_write_and_replaces_its_own(fmt, run_dir, tmp_path, capsys):
    mine = tmp_path / f"notes{SUFFIX[fmt]}"
    mine.write_text("my own file, not an export\n")
    before = hashes(mine, run_dir)
    code, out = _run(["export", str(run_dir), "--to", fmt, "--out", str(mine)], capsys)
    assert code == 2, out
    assert f"{mine} already exists and is not a previous `blocks export --to {fmt}`; pass --force" in out
    assert hashes(mine, run_dir) == before and "Traceback" not in out
    # an export of another format is not "ours" either
    other = tmp_path / f"other{SUFFIX[fmt]}"
    assert _run(["export", str(run_dir), "--to", fmt, "--out", str(other)], capsys)[0] == 0
    first = hashes(other)
    assert _run(["export", str(run_dir), "--to", fmt, "--out", str(other)], capsys)[0] == 0  # its own
    assert set(hashes(other)) == set(first)
    assert _run(["export", str(run_dir), "--to", fmt, "--out", str(mine), "--force"], capsys)[0] == 0
    assert hashes(mine) != before  # replaced, as asked
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_export_refuses_a_folder_a_device_and_a_symlink_without_force(run_dir, tmp_path, capsys):
    (tmp_path / "dir.onnx").mkdir()
    link = tmp_path / "link.py"
    target = tmp_path / "target.txt"
    target.write_text("kept")
    link.symlink_to(target)
    before = hashes(tmp_path)
    for out, words in ((tmp_path / "dir.onnx", "is a folder; give the file to write"),
                       (link, "is a symbolic link; pass --force")):
        fmt = "onnx" if out.suffix == ".onnx" else "python"
        code, text = _run(["export", str(run_dir), "--to", fmt, "--out", str(out)], capsys)
        assert code == 2 and f"{out} {words}" in text, text
    assert hashes(tmp_path) == before


# --- 2. unwritable places, a full disk, kills ------------------------------------------------------
def test_export_to_an_unwritable_place_is_exit_2_naming_it(run_dir, tmp_path, capsys):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    before = hashes(tmp_path, run_dir)
    for out, words in ((a_file / "m.onnx", f"{a_file} is a file, not a folder"),
                       (Path("/proc/blocks-test/m.py"), "cannot write the export here")):
        code, text = _run(["export", str(run_dir), "--to", "onnx" if out.suffix == ".onnx"
                           else "python", "--out", str(out)], capsys)
        assert code == 2, text
        assert f"{out}: cannot write the export here" in text and words in text, text
    assert hashes(tmp_path, run_dir) == before


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_export_on_a_full_disk_is_exit_2_and_leaves_nothing(fmt, run_dir, tmp_path, capsys,
                                                            monkeypatch):
    with small_tmpfs(tmp_path / "full", "16k") as mounted:
        if mounted is not None:  # a real full filesystem
            fill(mounted)
            out = mounted / f"m{SUFFIX[fmt]}"
        else:  # simulated: every write of a staged export file fails with ENOSPC
            out = tmp_path / f"m{SUFFIX[fmt]}"
            real = Path.write_bytes, Path.write_text

            def full(self, *args, **kwargs):
                if ".staging" in str(self):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real[0 if isinstance(args[0], bytes | memoryview) else 1](self, *args, **kwargs)

            monkeypatch.setattr(Path, "write_bytes", full)
            monkeypatch.setattr(Path, "write_text", full)
            if fmt == "onnx":
                pytest.skip("ONNX writes through onnx's C++ writer: only a real tmpfs fills it")
        before = hashes(run_dir)
        code, text = _run(["export", str(run_dir), "--to", fmt, "--out", str(out)], capsys)
        assert code == 2, text
        assert f"{out}: cannot write the export here (No space left on device); free some space" in text
        assert not out.exists() and not [p for p in out.parent.iterdir() if ".staging" in p.name]
        assert hashes(run_dir) == before


KILLED_EXPORT = """
import sys, time
import blocks.exporters.onnx_export as onnx_export
real = onnx_export.check_onnx
def slow(*args):
    print("staged", flush=True)
    time.sleep(60)
    return real(*args)
onnx_export.check_onnx = slow
from blocks.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_killed_onnx_export_does_not_block_train_force(sig, tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(TINY)
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(run), "--quiet", "--no-plots"]) == 0
    proc = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, "export", str(run), "--to", "onnx"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "staged"  # the model is written into the staging folder
    assert [p for p in run.iterdir() if p.name.endswith(".staging")]
    proc.send_signal(sig)
    proc.wait(timeout=60)
    left = [p for p in run.iterdir() if p.name.endswith(".staging")]
    assert bool(left) == (sig == signal.SIGKILL)  # SIGTERM cleans up on its way out
    assert not (run / "model.onnx").exists()
    code, text = _run(["train", str(tmp_path / "r.yaml"), "--out", str(run), "--force", "--quiet",
                       "--no-plots"], capsys)
    assert code == 0, text
    assert not [p for p in run.iterdir() if p.name.endswith(".staging")]


def test_the_next_export_removes_a_dead_process_staging_folder(run_dir, tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    time.sleep(0.1)
    stale = tmp_path / f".m.py.{dead}.abcd1234.staging"
    stale.mkdir()
    (stale / "m.py").write_text("half")
    assert _run(["export", str(run_dir), "--to", "python", "--out", str(tmp_path / "m.py")], capsys)[0] == 0
    assert not stale.exists()


# --- 7. blocks import -----------------------------------------------------------------------------
NET = """import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))
"""


@pytest.mark.parametrize(("shape", "node", "reason"), [
    (["3", "28", "28"], "conv", "expected input[2, 3, 28, 28] to have 1 channels, but got 3"),
    (["1", "10", "10"], "fc", "mat1 and mat2 shapes cannot be multiplied (2x256 and 2704x10)"),
])
def test_import_with_a_wrong_input_shape_is_one_located_line(shape, node, reason, tmp_path, capsys):
    source = tmp_path / "nets.py"
    source.write_text(NET)
    before = hashes(tmp_path)
    code, text = _run(["import", f"{source}:Net", "--input-shape", *shape], capsys)
    assert code == 2
    assert "Traceback" not in text and "ShapeProp" not in text and len(text.strip().splitlines()) == 1
    assert (f"Net fails on an input of per-sample shape [{', '.join(shape)}] at `{node}`: "
            f"RuntimeError: ") in text and reason in text and "check --input-shape" in text
    assert hashes(tmp_path) == before


def test_import_out_refuses_an_existing_file_without_force(tmp_path, capsys):
    source = tmp_path / "nets.py"
    source.write_text(NET)
    mine = tmp_path / "net.yaml"
    mine.write_text("my notes\n")
    before = hashes(tmp_path)
    code, text = _run(["import", f"{source}:Net", "--input-shape", "1", "28", "28", "-o", str(mine)],
                      capsys)
    assert code == 2 and f"{mine} already exists; pass --force" in text
    assert hashes(tmp_path) == before
    assert _run(["import", f"{source}:Net", "--input-shape", "1", "28", "28", "-o", str(mine),
                 "--force"], capsys)[0] == 0
    assert mine.read_text().startswith("model:")
