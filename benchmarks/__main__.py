"""`python -m benchmarks [NAME...]`: run every `bench_*.py` module (or those named) and print a table.

Exit 0 when every module ran (a ratio over its target is reported, not fatal), 1 if one crashed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import benchmarks


def discover() -> list[str]:
    """Module names `bench_*` in this package, sorted."""
    return sorted(info.name for info in pkgutil.iter_modules([str(Path(benchmarks.__file__).parent)])
                  if info.name.startswith("bench_"))


def status(row: dict) -> str:
    target = row.get("target")
    if target is None:
        return "info"
    return "PASS" if row["ratio"] <= target else "OVER TARGET"


def format_table(rows: Sequence[dict]) -> str:
    header = ("benchmark", "blocks ms", "reference ms", "ratio", "target", "status")
    cells = [header] + [
        (row["name"], f"{row['blocks_ms']:.4f}", f"{row['reference_ms']:.4f}", f"{row['ratio']:.3f}",
         "-" if row.get("target") is None else f"<= {row['target']}", status(row))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = []
    for index, line in enumerate(cells):
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths, strict=True))))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {row['name']}: {row['note']}" for row in rows if row.get("note")]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def main(argv: Sequence[str] | None = None) -> int:
    wanted = list(sys.argv[1:] if argv is None else argv)
    names = [n for n in discover() if not wanted or any(w in n for w in wanted)]
    rows: list[dict] = []
    crashed = []
    for name in names:
        start = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            rows += module.run()
        except Exception:  # noqa: BLE001 - report and go on with the other benchmarks
            crashed.append(name)
            traceback.print_exc()
        print(f"  {name} took {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print(format_table(rows))
    if crashed:
        print(f"\ncrashed: {', '.join(crashed)}", file=sys.stderr)
        return 1
    over = [row["name"] for row in rows if status(row) == "OVER TARGET"]
    if over:
        print(f"\n{len(over)} row(s) over target: {', '.join(over)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
