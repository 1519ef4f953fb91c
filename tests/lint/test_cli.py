"""`blocks lint` / `blocks audit` through the real CLI entry: exit codes, options, output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lint_support import FIXTURES, ROOT

from blocks.cli import main

WRONG = str(FIXTURES / "BLK001_wrong.py")
RIGHT = str(FIXTURES / "BLK001_right.py")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_0_when_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "lint", RIGHT)
    assert code == 0 and out == "" and "0 findings" in err


def test_exit_1_and_one_line_per_finding(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lint", str(FIXTURES / "seed_forward_wrong.py"))
    lines = out.strip().splitlines()
    assert code == 1 and len(lines) == 2
    assert lines[0].startswith(f"{FIXTURES / 'seed_forward_wrong.py'}:7:17: BLK001 nn.Conv2d")


def test_folder_is_scanned_recursively(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lint", str(FIXTURES))
    assert code == 1
    assert {line.split(": ")[1].split()[0] for line in out.splitlines()} == {
        f"BLK00{i}" for i in range(1, 9)
    }


def test_exit_2_on_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "lint", "no/such/file.py", RIGHT)
    assert code == 2
    assert "no/such/file.py:1:1: no such file or directory" in err
    assert "Traceback" not in err


def test_exit_2_with_located_syntax_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\n\nclass M(torch.nn.Module):\n    def forward(self, x:\n")
    code, _, err = run(capsys, "lint", str(bad), WRONG)
    assert code == 2
    assert f"{bad}:4:" in err and "SyntaxError" in err
    assert "Traceback" not in err


def test_findings_are_still_printed_next_to_input_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "lint", WRONG, str(tmp_path / "missing.py"))
    assert code == 2 and "BLK001" in out


def test_select_and_ignore(capsys: pytest.CaptureFixture[str]) -> None:
    seed = str(FIXTURES / "seed_int_wrong.py")
    _, out, _ = run(capsys, "lint", seed, "--select", "BLK002")
    assert [line.split()[1] for line in out.splitlines()] == ["BLK002"]
    _, out, _ = run(capsys, "lint", seed, "--ignore", "BLK002")
    assert [line.split()[1] for line in out.splitlines()] == ["BLK001", "BLK001"]
    code, out, _ = run(capsys, "lint", seed, "--ignore", "BLK001,BLK002")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, "lint", seed, "--select", "BLK00")  # a prefix selects all
    assert code == 1 and len(out.splitlines()) == 3


def test_unknown_rule_code_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "lint", RIGHT, "--select", "BLK999")
    assert code == 2
    assert "unknown rule code 'BLK999'" in err and "BLK001" in err


def test_noqa(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = (FIXTURES / "seed_forward_wrong.py").read_text()
    src = src.replace("kernel_size=3)", "kernel_size=3)  # noqa: BLK001")
    src = src.replace("26, 10)", "26, 10)  # noqa")
    path = tmp_path / "model.py"
    path.write_text(src)
    assert run(capsys, "lint", str(path))[0] == 0
    path.write_text(src.replace("# noqa: BLK001", "# noqa: BLK006"))  # other code: still found
    code, out, _ = run(capsys, "lint", str(path))
    assert code == 1 and ":7:17: BLK001" in out


def test_json_output_parses(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lint", str(FIXTURES / "seed_int_wrong.py"), "--format", "json")
    data = json.loads(out)
    assert code == 1 and data["files_scanned"] == 1 and data["errors"] == []
    assert [(f["code"], f["line"], f["column"]) for f in data["findings"]] == [
        ("BLK002", 6, 5), ("BLK001", 9, 17), ("BLK001", 10, 15)
    ]
    assert set(data["findings"][0]) == {"path", "line", "column", "code", "message"}


def test_json_output_with_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lint", "nowhere.py", "--format", "json")
    assert code == 2 and json.loads(out)["errors"][0]["path"] == "nowhere.py"


def test_lint_help_lists_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["lint", "--help"])
    out = capsys.readouterr().out
    assert all(f"BLK00{i}" in out for i in range(1, 9))


# -- audit ------------------------------------------------------------------------------------
def test_audit_cli_reports_the_seed_model(capsys: pytest.CaptureFixture[str]) -> None:
    target = f"{FIXTURES / 'seed_forward_wrong.py'}:MyModel"
    code, out, _ = run(capsys, "audit", target, "--input-shape", "1,28,28")
    assert code == 1
    assert "created_in_forward conv1" in out and "no_parameters" in out


def test_audit_cli_clean_model_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    target = f"{FIXTURES / 'seed_right.py'}:MyModel"
    code, out, _ = run(capsys, "audit", target, "--input-shape", "1,28,28", "--batch-size", "3")
    assert code == 0 and "no problems found" in out
    code, out, _ = run(capsys, "audit", target, "--input-shape", "1,28,28", "--format", "json")
    assert code == 0 and json.loads(out) == {"model": "MyModel", "ok": True, "findings": []}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["seed_right.py:Nope", "--input-shape", "1,28,28"], "no class 'Nope'; nn.Module classes"),
        (["seed_right.py", "--input-shape", "1,28,28"], "expected FILE.py:ClassName"),
        (["missing.py:M", "--input-shape", "1,28,28"], "missing.py: no such file"),
        (["seed_right.py:MyModel", "--input-shape", "1,x"], "--input-shape '1,x'"),
        (["seed_right.py:MyModel", "--input-shape", "3,28,28"], "forward_failed"),
    ],
)
def test_audit_cli_bad_input(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(FIXTURES)
    code, out, err = run(capsys, "audit", *argv)
    assert message in out + err
    assert code == (1 if message == "forward_failed" else 2)
    assert "Traceback" not in err


def test_lint_of_the_project_itself_is_clean() -> None:
    """`blocks lint blocks` (what `make lint` runs) finds nothing in our own code."""
    from blocks.lint import lint_paths

    result = lint_paths([ROOT / "blocks"])
    assert result.errors == []
    assert result.files_scanned > 5
    assert [str(f) for f in result.findings] == []
