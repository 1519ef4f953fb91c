"""Per-epoch metric records, and their files in a run folder (JSON, JSON lines, CSV)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blocks.core.files import atomic_write_text


class History:
    """One dict per epoch (`epoch`, `train/loss`, `val/accuracy`, ...), oldest first."""

    def __init__(self, records: list[dict[str, Any]] | None = None) -> None:
        self.records: list[dict[str, Any]] = list(records or [])

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def to_list(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.records[index]

    @property
    def last(self) -> dict[str, Any]:
        return self.records[-1] if self.records else {}

    def metric(self, key: str) -> list[float]:
        return [r[key] for r in self.records if key in r]

    def best(self, key: str, mode: str = "min") -> dict[str, Any] | None:
        scored = [r for r in self.records if key in r and not math.isnan(r[key])]
        if not scored:
            return None
        return (min if mode == "min" else max)(scored, key=lambda r: r[key])

    def write(self, run_dir: Path) -> None:
        """history.json, metrics.jsonl and metrics.csv, each replaced atomically."""
        atomic_write_text(run_dir / "history.json", json.dumps(self.records, indent=1) + "\n")
        atomic_write_text(run_dir / "metrics.jsonl",
                          "".join(json.dumps(r) + "\n" for r in self.records))
        keys: list[str] = []
        for record in self.records:
            keys += [k for k in record if k not in keys]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.records)
        atomic_write_text(run_dir / "metrics.csv", buffer.getvalue())
