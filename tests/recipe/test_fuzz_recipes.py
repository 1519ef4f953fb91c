"""Fuzz: mutated bundled recipes through `blocks validate` / `blocks summary`, in-process.

A seeded generator makes a few hundred hostile variants per run (structural edits of the parsed
recipe and raw text/byte edits) and asserts that every one ends in exit 0 or 2, never 3, never
a traceback, each within a few seconds. `BLOCKS_FUZZ_SEED` / `BLOCKS_FUZZ_CASES` explore more.
"""

from __future__ import annotations

import copy
import os
import random
import time
from pathlib import Path

import pytest
import yaml

import blocks
from blocks.cli import main

SEED = int(os.environ.get("BLOCKS_FUZZ_SEED", "15"))
CASES = int(os.environ.get("BLOCKS_FUZZ_CASES", "300"))
PER_CALL_S = 10.0

HOSTILE_VALUES: list[object] = [
    0, -1, 1, 2, 3, 2**31, 2**31 - 1, 2**63 - 1, -(2**63), 10**9, 1e400, -1e-300, 0.5, float("nan"),
    True, False, None, "", "x", "yes", "010", "1:30", "\u202e", "\ud800", [], [1, 2, 3], {}, {"type": "relu"},
    [[[[[]]]]], "relu", "conv2d", {"type": "repeat", "times": 10**6, "blocks": ["relu"]},
    {"type": "torch", "layer": "Linear", "kwargs": {"in_features": 1, "out_features": 2**40}},
]
TEXT_SNIPPETS = [
    "\x00", "\x01", "\x1b[2J", "\ufffe", "\u202e", "\ud800", "\t", ":", "- ", "{", "}", "[", "]", "&a ",
    "*a", "*nope", "<<: 5", "!!python/object/apply:os.system ['true'] ", "!!binary AAAA", "? ",
    "'", '"', "|", ">", "#", "%YAML 1.1\n---\n", "---\n", "...\n", "9" * 5000, "0x1F", "1e400", ".nan",
]
BYTE_SNIPPETS = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x80\x80", bytes(range(256))]


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside nested dicts/lists."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


def _parent(root: object, path: tuple) -> object:
    for part in path[:-1]:
        root = root[part]  # type: ignore[index]
    return root


def mutate_data(data: dict, rng: random.Random) -> dict:
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(data) if p]
        path = rng.choice(paths)
        parent, key = _parent(data, path), path[-1]
        action = rng.random()
        if action < 0.25:
            del parent[key]  # type: ignore[arg-type,union-attr]
        elif action < 0.35 and isinstance(key, str):
            value = parent.pop(key)  # type: ignore[union-attr]
            typo = list(key)
            typo[rng.randrange(len(typo))] = rng.choice("abcxyz_")
            parent["".join(typo)] = value  # type: ignore[index]
        elif action < 0.45:
            value = parent[key]  # type: ignore[index]
            parent[key] = [value, value] if rng.random() < 0.5 else {"x": value}  # type: ignore[index]
        else:
            parent[key] = copy.deepcopy(rng.choice(HOSTILE_VALUES))  # type: ignore[index]
    return data


def mutate_text(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines(keepends=True)
    action = rng.random()
    if action < 0.2 and lines:
        del lines[rng.randrange(len(lines))]
    elif action < 0.35 and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif action < 0.45 and lines:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif action < 0.55:
        return text.encode()[: rng.randrange(len(text) + 1)]
    elif action < 0.8:
        joined = "".join(lines)
        at = rng.randrange(len(joined) + 1)
        return (joined[:at] + rng.choice(TEXT_SNIPPETS) + joined[at:]).encode("utf-8", "surrogatepass")
    else:
        raw = "".join(lines).encode()
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + rng.choice(BYTE_SNIPPETS) + raw[at:]
    return "".join(lines).encode()


def variants(count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    sources = {name: path.read_text() for name, path in sorted(blocks.bundled_recipes().items())}
    parsed = {name: yaml.safe_load(text) for name, text in sources.items()}
    out = []
    for index in range(count):
        name = rng.choice(sorted(sources))
        if rng.random() < 0.55:
            text = yaml.safe_dump(mutate_data(parsed[name], rng), allow_unicode=True, sort_keys=False)
            data = text.encode("utf-8", "surrogatepass")
        else:
            data = mutate_text(sources[name], rng)
        out.append((f"{index:03d}-{name}", data))
    return out


def run(argv: list[str], capsys) -> tuple[int, str, float]:
    began = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - began
    captured = capsys.readouterr()
    return code, captured.out + captured.err, elapsed


def test_fuzzed_recipes_exit_0_or_2_without_tracebacks(tmp_path: Path, capsys):
    began = time.perf_counter()
    outcomes: dict[int, int] = {}
    for label, data in variants(CASES, SEED):
        path = tmp_path / f"{label}.yaml"
        path.write_bytes(data)
        code, output, elapsed = run(["validate", str(path)], capsys)
        outcomes[code] = outcomes.get(code, 0) + 1
        context = f"{label} (seed {SEED}): exit {code} in {elapsed:.1f} s\n{output[-2000:]}"
        assert code in (0, 2), context
        assert "Traceback" not in output and "internal error" not in output, context
        assert elapsed < PER_CALL_S, context
        if code == 2:
            assert str(path) in output, context  # every problem names the file
        else:  # accepted: the summary must work too, on `meta`
            code, output, elapsed = run(["summary", str(path)], capsys)
            assert code in (0, 2) and "Traceback" not in output and elapsed < PER_CALL_S, context
        path.unlink()
    assert outcomes.get(2, 0) > CASES // 3  # the mutations do break most recipes
    assert time.perf_counter() - began < 60 * max(1.0, CASES / 300)  # CI budget: under a minute


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_generator_is_deterministic(seed):
    assert variants(20, seed) == variants(20, seed)
