"""Fuzz, issue 20's surfaces: export paths, weights files, image files of every Pillow mode, and
external backbones whose library is missing or broken. Each case must end in exit 0 or in exit 2
naming the file or field (for images: decoded, or a `BadImageError` naming the file); anything
else fails. The counts are printed (`-s`): tried, exit 0, exit 2 located, other."""

from __future__ import annotations

import io
import os
import random
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import blocks
from blocks.cli import main
from blocks.core.errors import BlocksError
from blocks.data.images import BadImageError, decode_image
from tests.hostile_support import TINY, hashes

SEED = int(os.environ.get("BLOCKS_FUZZ_SEED", "20"))
MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "I;16", "I;16B", "I", "F",
         "CMYK", "YCbCr", "LAB", "HSV"]
FORMATS = {"png": "PNG", "tiff": "TIFF", "jpg": "JPEG", "bmp": "BMP", "gif": "GIF", "webp": "WEBP"}


def _tally(outcomes: Counter, label: str) -> None:
    print(f"\n{label}: tried {sum(outcomes.values())}, exit 0 {outcomes[0]}, exit 2 located "
          f"{outcomes[2]}, other {outcomes['other']}")


def _cli(argv: list[str], capsys, *names: str) -> int | str:
    code = main(argv)
    captured = capsys.readouterr()
    out = captured.out + captured.err
    if code == 0:
        return 0
    if code == 2 and "Traceback" not in out and all(n in out for n in names):
        return 2
    return "other"


# --- export paths ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_fuzzed_export_paths(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(TINY)
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(run), "--quiet", "--no-plots"]) == 0
    box = tmp_path / "box"
    box.mkdir()
    (box / "user.py").write_text("mine")
    (box / "user.pt").write_bytes(b"PK\x03\x04 not an export")
    (box / "plain").write_text("a file")
    (box / "dir.py").mkdir()
    (box / "link.pt").symlink_to(box / "plain")
    rng = random.Random(SEED)
    names = ["m", "user", "plain/m", "dir", "link", "a\nb", "x\x1by", "deep/er/m", "\u202em", ".hidden",
             "-dash", "sp ace", "ünï"]
    outcomes: Counter = Counter()
    for _ in range(40):
        fmt = rng.choice(["python", "torchscript", "torchscript", "python", "pt2"])
        suffix = rng.choice([{"python": ".py", "torchscript": ".pt", "pt2": ".pt2"}[fmt], ".txt", ""])
        out = box / (rng.choice(names) + suffix) if rng.random() < 0.9 else Path("/proc/x/m.py")
        force = rng.random() < 0.3
        users = hashes(box / "user.py", box / "user.pt", box / "plain", run)
        result = _cli(["export", str(run), "--to", fmt, "--out", str(out), *(["--force"] * force)],
                      capsys)
        outcomes[result] += 1
        assert result != "other", (fmt, out, force)
        if not force:  # a refused or own export never changes a user's file
            assert hashes(box / "user.py", box / "user.pt", box / "plain", run) == users
        assert not [p for p in box.rglob(".*staging")]
    _tally(outcomes, "export paths")
    assert outcomes["other"] == 0 and outcomes[0] and outcomes[2]


# --- weights files -----------------------------------------------------------------------------------
def _weights_variants(folder: Path, rng: random.Random) -> list[Path]:
    good = {k: v.clone() for k, v in blocks.build(blocks.load_recipe(TINY).model).state_dict().items()}
    buffer = io.BytesIO()
    torch.save(good, buffer)
    raw = buffer.getvalue()
    out = []
    for i in range(60):
        kind = rng.choice(["text", "random", "truncated", "flipped", "nan", "inf", "shape", "list",
                           "pickle", "empty", "safetensors_text", "safetensors_nan", "folder", "good"])
        path = folder / f"{i:02d}-{kind}{'.safetensors' if kind.startswith('safetensors') else '.pth'}"
        if kind == "text":
            path.write_text(rng.choice(["hello", "{\"a\": 1}", "model: x\n", "\x00" * 3]))
        elif kind == "random":
            path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        elif kind == "truncated":
            path.write_bytes(raw[: rng.randrange(1, len(raw))])
        elif kind == "flipped":
            data = bytearray(raw)
            for _ in range(5):
                data[rng.randrange(len(data))] ^= 0xFF
            path.write_bytes(bytes(data))
        elif kind in ("nan", "inf", "safetensors_nan"):
            bad = {k: v.clone() for k, v in good.items()}
            key = rng.choice(sorted(bad))
            bad[key].view(-1)[0] = float("nan") if kind != "inf" else float("inf")
            save_file(bad, str(path)) if kind == "safetensors_nan" else torch.save(bad, path)
        elif kind == "shape":
            torch.save({k: torch.zeros(3) for k in good}, path)
        elif kind == "list":
            torch.save(list(good.values()), path)
        elif kind == "pickle":
            torch.save({"f": os.getcwd}, path)  # would call os.getcwd when unpickled
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "safetensors_text":
            path.write_text("not safetensors")
        elif kind == "folder":
            path.mkdir()
        else:
            path.write_bytes(raw)
        out.append(path)
    return out


@pytest.mark.slow
def test_fuzzed_weights_files(tmp_path, capsys):
    rng = random.Random(SEED)
    outcomes: Counter = Counter()
    for path in _weights_variants(tmp_path, rng):
        recipe = tmp_path / "r.yaml"
        recipe.write_text(TINY.replace("classes: 2}\n", f"classes: 2}}\n  weights: {{file: '{path}'}}\n"))
        before = hashes(path) if path.is_file() else {}
        result = _cli(["validate", str(recipe)], capsys, str(recipe), "model.weights.file")
        if result == 0:  # validate found nothing: the import (what train does first) decides
            try:
                blocks.build(blocks.load_recipe(recipe).model)
            except BlocksError as err:
                result = 2 if path.name in str(err) or "model.weights" in str(err) else "other"
            except Exception:  # noqa: BLE001 - exactly what must not happen
                result = "other"
        outcomes[result] += 1
        assert result != "other", path
        assert (hashes(path) if path.is_file() else {}) == before
    _tally(outcomes, "weights files")
    assert outcomes["other"] == 0 and outcomes[2]


# --- image files of every mode -------------------------------------------------------------------
def _bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _image_of(mode: str, rng: random.Random) -> Image.Image:
    size = (rng.randrange(1, 40), rng.randrange(1, 40))
    if mode in ("I;16", "I;16B"):
        return Image.fromarray(np.random.default_rng(rng.randrange(99)).integers(
            0, 65536, size[::-1], dtype=np.uint16)).convert(mode) if mode == "I;16" else \
            Image.new(mode, size, rng.randrange(65536))
    if mode == "I":
        return Image.fromarray(np.random.default_rng(rng.randrange(99)).integers(
            rng.choice([0, -5]), rng.choice([255, 65535, 2**31 - 1]), size[::-1], dtype=np.int32))
    if mode == "F":
        return Image.fromarray(np.random.default_rng(rng.randrange(99)).random(size[::-1]).astype(
            np.float32) * rng.choice([1.0, 255.0, 1e6, float("nan")]))
    base = Image.fromarray(np.random.default_rng(rng.randrange(99)).integers(
        0, 256, (*size[::-1], 3), dtype=np.uint8))
    return base.convert(mode) if mode not in ("La", "RGBa", "PA") else base.convert(mode[:-1] + "A").convert(mode) \
        if mode != "PA" else base.convert("P").convert("PA")


def test_fuzzed_image_files_of_every_mode(tmp_path):
    rng = random.Random(SEED)
    outcomes: Counter = Counter()
    for i in range(160):
        mode = MODES[i % len(MODES)]
        ext = rng.choice(list(FORMATS))
        path = tmp_path / f"{i:03d}-{mode.replace(';', '_')}-\n.{ext}"
        try:
            image = _image_of(mode, rng)
            buffer = io.BytesIO()
            image.save(buffer, FORMATS[ext])
            data = buffer.getvalue()
        except (OSError, ValueError, KeyError, TypeError):
            data = bytes(rng.randrange(256) for _ in range(50))  # a mode the format cannot hold
        damage = rng.random()
        if damage < 0.15:
            data = data[: rng.randrange(1, max(2, len(data)))]
        elif damage < 0.2:
            data = _bomb()
        elif damage < 0.25:
            data = b"GIF89a" + data
        path.write_bytes(data)
        channels = rng.choice([1, 3])
        try:
            x = decode_image(path, (channels, 8, 8), rng.choice(["crop", "stretch"]))
            result = 0 if x.shape == (channels, 8, 8) and x.dtype == torch.uint8 else "other"
        except BadImageError as err:
            text = str(err)
            result = 2 if text.startswith(str(path).replace("\n", "\\n")) and "\n" not in text else "other"
        except Exception:  # noqa: BLE001 - exactly what must not happen
            result = "other"
        outcomes[result] += 1
        assert result != "other", (mode, ext, damage)
    _tally(outcomes, "image files")
    assert outcomes["other"] == 0 and outcomes[0] and outcomes[2]


# --- external backbones without their library -----------------------------------------------------
@pytest.mark.parametrize("how", ["missing", "broken"])
def test_fuzzed_external_backbones_without_the_library(how, tmp_path, capsys, monkeypatch):
    from blocks.layers import external

    monkeypatch.setattr(external, "_BROKEN", {})
    monkeypatch.setattr(external, "_SHAPES", {})
    for library in ("torchvision", "timm"):
        if how == "missing":
            monkeypatch.setitem(sys.modules, library, None)
    if how == "broken":
        real = external.importlib.import_module

        def broken(name, *args):
            if name in ("torchvision", "timm"):
                raise RuntimeError(f"operator {name}::nms does not exist")
            return real(name, *args)

        monkeypatch.setattr(external.importlib, "import_module", broken)
    rng = random.Random(SEED)
    outcomes: Counter = Counter()
    for i in range(30):
        library = rng.choice(["torchvision", "timm"])
        model = rng.choice(["resnet18", "vit_b_16", "nope", "bad name", "", "a\nb", "x" * 300])
        extra = rng.choice(["", ", kwargs: {device: meta}", ", weights: w.pth", ", checkpoint: c.pth",
                            ", pretrained: true"])
        recipe = tmp_path / f"{i}.yaml"
        recipe.write_text(f"model:\n  input: {{shape: [3, 32, 32]}}\n  backbone: [{{type: {library}, "
                          f"model: {model!r}{extra}}}]\n  head: {{type: softmax, classes: 2}}\n"
                          .replace("'", '"').replace("\n\"", "\\n\""))
        result = _cli(["validate", str(recipe)], capsys, str(recipe), "model.backbone[0]")
        outcomes[result] += 1
        assert result == 2, recipe.read_text()
    _tally(outcomes, f"external backbones ({how} library)")
