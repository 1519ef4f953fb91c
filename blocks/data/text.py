"""Text and category inputs as ids: Hugging Face `tokenizers` trained on the training split only
(word-level, BPE or WordPiece), or a local tokenizer.json; category names to ids.

`RawInputs` is what a model carries to take raw rows: `raw("review", ["great", ...])` gives the
ids the model was trained on, the same way in training, `blocks predict`, `blocks.load(...)
.predict` and the export helper, so one raw row gives one answer everywhere.

Hostile text is bounded: each text is cut to `CHAR_LIMIT_PER_TOKEN * max_length` characters
before tokenising (a 1 MB cell costs no more than a short one, and the cut is the same on
every path), empty cells become all padding, and the vocabulary never exceeds `vocab_size`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blocks.core.errors import Problem, SpecError
from blocks.spec.inputs import PAD_ID, UNKNOWN_ID, CategoricalInput, TextInput

PAD, UNKNOWN = "[PAD]", "[UNK]"
#: characters kept per token of `max_length` before tokenising (bounds the time of huge cells)
CHAR_LIMIT_PER_TOKEN = 64


def _tokenizers() -> Any:
    try:
        import tokenizers  # optional: the `text` extra
    except ImportError:
        raise SpecError(Problem("model.inputs", "text inputs need Hugging Face `tokenizers`: "
                                "pip install 'blocks[text]'", "missing_dependency")) from None
    return tokenizers


def clip(texts: Iterable[str], max_length: int) -> list[str]:
    limit = CHAR_LIMIT_PER_TOKEN * max_length
    return [text[:limit] for text in texts]


def train_tokenizer(spec: TextInput, texts: Sequence[str], where: str,
                    base: Path | None = None) -> Any:
    """A tokenizer for `spec`, fitted on `texts` (the training split only), or read from the
    local file `spec.tokenizer.path` (relative to `base`); padding and truncation set."""
    tk = _tokenizers()
    kind = spec.tokenizer.type
    if kind == "file":
        tokenizer = read_tokenizer(Path(base or ".") / spec.tokenizer.path, f"{where}.tokenizer.path")
    else:
        model_type = {"word": tk.models.WordLevel, "bpe": tk.models.BPE,
                      "wordpiece": tk.models.WordPiece}[kind]
        trainer_type = {"word": tk.trainers.WordLevelTrainer, "bpe": tk.trainers.BpeTrainer,
                        "wordpiece": tk.trainers.WordPieceTrainer}[kind]
        tokenizer = tk.Tokenizer(model_type(unk_token=UNKNOWN))
        steps = [tk.normalizers.NFKC()] + ([tk.normalizers.Lowercase()] if spec.lowercase else [])
        tokenizer.normalizer = tk.normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = tk.pre_tokenizers.Whitespace()
        trainer = trainer_type(vocab_size=spec.vocab_size, min_frequency=spec.tokenizer.min_frequency,
                               special_tokens=[PAD, UNKNOWN], show_progress=False)
        tokenizer.train_from_iterator(clip(texts, spec.max_length), trainer=trainer,
                                      length=len(texts))
    return configure(tokenizer, spec, where)


def read_tokenizer(path: Path, where: str) -> Any:
    tk = _tokenizers()
    try:
        return tk.Tokenizer.from_file(str(path))
    except FileNotFoundError:
        raise SpecError(Problem(where, f"no tokenizer file {path}", "file_not_found")) from None
    except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception on bad JSON
        raise SpecError(Problem(where, f"{path} is not a Hugging Face tokenizer.json: "
                                f"{str(err)[:200]}", "bad_tokenizer")) from None


def configure(tokenizer: Any, spec: TextInput, where: str) -> Any:
    """Check the tokenizer fits the input (vocabulary, [PAD] = 0) and pad/truncate to length."""
    size = tokenizer.get_vocab_size()
    if size > spec.vocab_size:
        raise SpecError(Problem(f"{where}.vocab_size", f"the tokenizer has {size:,} tokens but "
                                f"vocab_size is {spec.vocab_size:,}; raise vocab_size to {size}",
                                "vocab_too_small"))
    pad = tokenizer.token_to_id(PAD)
    if pad != PAD_ID:
        raise SpecError(Problem(f"{where}.tokenizer", f"the tokenizer's {PAD} token must have id "
                                f"{PAD_ID} (found {pad}); the encoders leave id {PAD_ID} out",
                                "bad_tokenizer"))
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=PAD, length=spec.max_length)
    tokenizer.enable_truncation(max_length=spec.max_length)
    return tokenizer


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> np.ndarray:
    """`[N, max_length]` int64 token ids (padded with 0, truncated)."""
    if not texts:
        return np.zeros((0, max_length), dtype=np.int64)
    encoded = tokenizer.encode_batch(clip(texts, max_length))
    return np.asarray([e.ids for e in encoded], dtype=np.int64).reshape(len(texts), max_length)


def fit_categories(spec: CategoricalInput, values: Sequence[str | None], where: str) -> list[str]:
    """The most frequent names of the training split (ties by name), at most vocab_size - 1."""
    counts = Counter(v for v in values if v is not None)
    ranked = sorted(counts, key=lambda name: (-counts[name], name))
    return ranked[:spec.vocab_size - 1]


def encode_categories(categories: Sequence[str], values: Sequence[str | None]) -> np.ndarray:
    """`[N, 1]` ids: 1.. for known names, 0 for unknown or missing ones."""
    index = {name: i + 1 for i, name in enumerate(categories)}
    return np.asarray([index.get(v, 0) if v is not None else 0 for v in values],
                      dtype=np.int64).reshape(-1, 1)


class RawInputs:
    """Raw text and category names to the ids a multi-input model takes (`model.raw_encoder`)."""

    def __init__(self, inputs: dict[str, Any], tokenizers: dict[str, Any]) -> None:
        self.inputs, self.tokenizers = inputs, tokenizers

    def __call__(self, name: str, values: Sequence[Any]) -> np.ndarray:
        spec = self.inputs.get(name)
        if isinstance(spec, TextInput):
            texts = ["" if v is None else str(v) for v in values]
            return encode_texts(self.tokenizers[name], texts, spec.max_length)
        if isinstance(spec, CategoricalInput):
            return encode_categories(spec.categories or [], [None if v is None else str(v)
                                                            for v in values])
        return np.asarray(values)

    def to_json(self) -> dict[str, str]:
        """Each tokenizer as its tokenizer.json text."""
        return {name: tokenizer.to_str() for name, tokenizer in self.tokenizers.items()}

    @classmethod
    def from_json(cls, inputs: dict[str, Any], texts: dict[str, str]) -> RawInputs:
        tk = _tokenizers()
        tokenizers = {}
        for name, text in texts.items():
            tokenizers[name] = configure(tk.Tokenizer.from_str(text), inputs[name],
                                         f"model.inputs.{name}")
        return cls(inputs, tokenizers)


__all__ = ["PAD_ID", "UNKNOWN_ID", "RawInputs", "encode_categories", "encode_texts",
           "fit_categories", "train_tokenizer"]
