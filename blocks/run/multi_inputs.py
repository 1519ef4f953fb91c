"""A multi-input run folder's extra part: the tokenizers (`tokenizer.<input>.json`, Hugging Face
format) saved beside the weights and attached again by `load`, and raw rows read for
`blocks predict` / `evaluate` with them, so every path gives one answer for one raw row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from blocks.core.errors import BlocksError, Problem, SpecError
from blocks.core.files import atomic_write_text
from blocks.data.multi_table import read_rows, read_table, targets
from blocks.data.text import RawInputs
from blocks.spec.inputs import TextInput

TOKENIZER_PATTERN = "tokenizer.*.json"


def tokenizer_file(name: str) -> str:
    return f"tokenizer.{name}.json"


def text_inputs(model: Any) -> list[str]:
    return [name for name, spec in (model.spec.inputs or {}).items() if isinstance(spec, TextInput)]


def save_tokenizers(model: Any, run_dir: Path) -> list[Path]:
    """Write each text input's tokenizer (atomically); a text model without them is refused:
    it could not predict on raw text again."""
    names = text_inputs(model)
    if not names:
        return []
    raw = getattr(model, "raw_encoder", None)
    if raw is None or set(names) - set(raw.tokenizers):
        raise BlocksError(f"model {model.name!r} has text inputs ({', '.join(names)}) but no "
                          "tokenizers attached; train it from a table (blocks train) or attach "
                          "model.raw_encoder before saving")
    return [atomic_write_text(run_dir / tokenizer_file(name), text)
            for name, text in raw.to_json().items()]


def attach_tokenizers(model: Any, run_dir: Path) -> None:
    """`model.raw_encoder` from the folder's tokenizer files (and the spec's categories)."""
    if model.spec.inputs is None:
        return
    texts = {}
    for name in text_inputs(model):
        file = run_dir / tokenizer_file(name)
        if not file.is_file():
            raise SpecError(Problem(f"model.inputs.{name}", f"{run_dir} has no {file.name}: the "
                                    "run folder is incomplete (its text input cannot be read)",
                                    "missing_file", str(run_dir)))
        texts[name] = file.read_text(encoding="utf-8")
    model.raw_encoder = RawInputs.from_json(model.spec.inputs, texts)


def rows_as_inputs(model: Any, inputs: Any) -> dict[str, torch.Tensor]:
    """A `.csv`/`.parquet` path of raw rows, or a dict by input name (raw strings allowed)."""
    if isinstance(inputs, str | Path):
        raw = model.raw_encoder or RawInputs(model.spec.inputs, {})
        return read_rows(model.spec, raw, Path(inputs))
    return model.as_input(inputs)


def read_labelled_table(path: Path, model: Any, target: str) -> tuple[dict[str, torch.Tensor], Any]:
    """A held-out table's inputs and target column, read with the run's fitted state."""
    x = rows_as_inputs(model, path)
    y, _ = targets(model.spec, read_table(path), target)
    return x, y
