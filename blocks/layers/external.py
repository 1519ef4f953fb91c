"""Backbones from other libraries as blocks: `{type: timm, model: ...}`, `{type: torchvision, ...}`.

The block is the library's model with its classifier removed, so it outputs the pooled feature
vector and the recipe's head attaches with its input size inferred. The output shape comes from
a forward pass on the `meta` device (no memory, no real weights run). Weights come from a local
file only (`checkpoint:` / `weights:`: safetensors, or a `.pth` read with `weights_only=True`);
nothing is downloaded unless a recipe asks for timm's hub explicitly (`pretrained: true`).
The libraries are optional extras, imported only when a recipe uses them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import re
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from blocks.core.errors import BlocksError, ShapeError, escape_name
from blocks.core.lazy import nn, torch
from blocks.spec.registry import Block, register_block, unknown_name_message
from blocks.spec.shapes import Shape, fmt_shape

__all__ = ["MissingExtraError", "WeightsFileError", "read_state_dict", "skip_weight_files",
           "weights_file_problem"]

_EXTRAS = {"torchvision": "vision", "timm": "timm"}
_SHAPES: dict[tuple[Any, ...], Shape] = {}  # (type, model, kwargs, input shape) -> output shape
_SKIP_WEIGHTS = False


class MissingExtraError(BlocksError, ImportError):
    """A recipe names a library that is not installed; the message names the extra to install."""


class WeightsFileError(BlocksError, ValueError):
    """A weights file that is missing, unreadable, or does not fit the model it is loaded into."""


_BROKEN: dict[str, str] = {}  # library -> why it failed to import (said once, not retried)
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _version(name: str) -> str | None:
    """The installed version from the package metadata: known without importing the package."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def import_library(name: str) -> Any:
    """`torchvision` or `timm`, imported on first use. A missing one names the extra to install;
    one that is installed but fails to import (built for another torch, a broken install) names
    its error and the fix, instead of surfacing as a crash."""
    if name in _BROKEN:
        raise MissingExtraError(_BROKEN[name])
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and err.name.split(".")[0] != name:
            _BROKEN[name] = _broken_message(name, err)
            raise MissingExtraError(_BROKEN[name]) from None
        raise MissingExtraError(
            f"the {name} backbone needs the {name} package, which cannot be imported ({err}); "
            f"install it with: pip install 'blocks[{_EXTRAS[name]}]'") from None
    except Exception as err:  # noqa: BLE001 - a library failing in its own import is any error
        _BROKEN[name] = _broken_message(name, err)
        raise MissingExtraError(_BROKEN[name]) from None


def _broken_message(name: str, err: BaseException) -> str:
    reason = escape_name((str(err).strip().splitlines() or [""])[0][:300])
    installed = _version(name)
    versions = (f"{name} {installed} is installed for torch {_version('torch')}"
                if installed else f"{name} is installed")
    return (f"the {name} backbone needs {name}, which is installed but fails to import: "
            f"{type(err).__name__}: {reason} ({versions}; a {name} built for another torch "
            f"version fails this way); fix: pip install --force-reinstall '{name}' matching "
            f"your torch (or pip install 'blocks[{_EXTRAS[name]}]'), then check with: python -c "
            f"'import {name}'")


def _import_for_validation(name: str, model: str) -> Any:
    """`import_library` inside a validator: a ValueError, so the recipe error is located. What
    can be checked of the model name without the library is checked first."""
    if not _MODEL_NAME.match(model):
        raise ValueError(f"{escape_name(model)!r} is not a {name} model name (letters, digits, "
                         "`_`, `-` and `.`, e.g. resnet18)")
    try:
        return import_library(name)
    except MissingExtraError as err:
        raise ValueError(str(err)) from None


@contextlib.contextmanager
def skip_weight_files() -> Iterator[None]:
    """Build external backbones without reading their weight files: for rebuilding a saved
    model whose own weights file holds every tensor anyway (the original file may be gone)."""
    global _SKIP_WEIGHTS
    before, _SKIP_WEIGHTS = _SKIP_WEIGHTS, True
    try:
        yield
    finally:
        _SKIP_WEIGHTS = before


def _building_on_meta() -> bool:
    return torch.get_default_device().type == "meta"


def _construct(factory: Any, model: str, kwargs: dict[str, Any]) -> nn.Module:
    """The library's constructor; a keyword it does not take is a shape-time error, not a crash."""
    try:
        return factory(model, **kwargs)
    except TypeError as err:
        raise ShapeError(f"{model!r} does not take these kwargs: {err}") from None


def weights_file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be a weights file, from its kind and first bytes (None: it may be one).

    Torch-free and cheap, so `blocks validate` can say it before anything is loaded. `torch.save`
    writes a zip archive (or, before torch 1.6, a pickle starting with byte 0x80); a
    `.safetensors` file starts with the 8-byte length of a JSON header that fits in the file."""
    file = Path(path)
    try:
        if file.is_dir():
            return "is a folder, not a weights file"
        if not file.exists():
            return "does not exist"
        if not file.is_file():
            return "is not a regular file"
        size = file.stat().st_size
        with open(file, "rb") as handle:
            head = handle.read(8)
    except OSError as err:
        return f"cannot be read ({err.strerror or type(err).__name__})"
    if size == 0:
        return "is empty"
    if file.suffix == ".safetensors":
        header = int.from_bytes(head, "little") if len(head) == 8 else size
        if not 2 <= header <= size - 8:
            return f"is not a safetensors file (it starts with {head!r})"
        return None
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None
    kind = "text" if head.isascii() and head.decode("ascii").isprintable() else "binary"
    return (f"is not a PyTorch weights file: torch.save writes a zip archive, this file "
            f"starts with {head!r} ({kind})")


def nonfinite_problem(state: dict[str, torch.Tensor]) -> str | None:
    """The first floating tensor holding NaN or inf, described (None: all finite). Such weights
    would train or predict NaN without a word."""
    for name, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                return (f"tensor {escape_name(name)!r} holds {bad:,} NaN or infinite value"
                        f"{'s' if bad > 1 else ''} (of {tensor.numel():,})")
    return None


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file: `.safetensors`, or a `.pth`/`.pt`/`.bin` read with
    `torch.load(weights_only=True)` (plain tensors only: nothing is unpickled). A checkpoint
    dict holding the weights under `state_dict` or `model` is unwrapped."""
    file = Path(path)
    shown = escape_name(path)
    problem = weights_file_problem(file)
    if problem is not None:
        where = (f" (relative paths are read from the working folder {Path.cwd()})"
                 if problem == "does not exist" and not file.is_absolute() else "")
        raise WeightsFileError(f"{what}: weights file {shown!r} {problem}{where}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure means the same to the user
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise WeightsFileError(f"{what}: cannot read weights file {shown!r} ({type(err).__name__}"
                               f"{': ' + escape_name(reason) if reason else ''})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(f"{what}: {shown!r} does not hold a state dict (name -> tensor)")
    problem = nonfinite_problem(state)
    if problem is not None:
        raise WeightsFileError(f"{what}: {shown!r}: {problem}; refusing to load it")
    return state


def load_backbone_state(module: nn.Module, state: dict[str, torch.Tensor], *,
                        classifier: tuple[str, ...], what: str, path: str) -> None:
    """Load `state` (the library model's own, classifier included) into the classifier-less
    `module`: every tensor of `module` must be there with its shape; only the removed
    classifier's tensors may be left over."""
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
    expected = module.state_dict()
    extra = [k for k in state if k not in expected
             and not any(k == c or k.startswith(f"{c}.") for c in classifier)]
    missing = [k for k in expected if k not in state]
    wrong = [f"{k} {list(state[k].shape)} (model: {list(v.shape)})" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if extra or missing or wrong:
        parts = [f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                 for label, items in (("missing", missing), ("unexpected", extra),
                                      ("wrong shape", wrong)) if items]
        raise WeightsFileError(f"{what}: {path!r} does not fit the model ({'; '.join(parts)})")
    module.load_state_dict({k: state[k] for k in expected}, strict=True)


class _External(Block):
    """Shared by the library backbones: build, meta-device shape, located name checks."""

    model: str = Field(description="the library's model name, e.g. resnet18")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="more arguments for the "
                                   "library's model constructor (timm: in_chans, drop_path_rate)")

    @field_validator("kwargs")
    @classmethod
    def _not_ours(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(kwargs) & {"num_classes", "pretrained", "weights", "pretrained_cfg"})
        placed = sorted(set(kwargs) & {"device", "dtype"})
        if placed:
            raise ValueError(f"{', '.join(placed)} cannot go in kwargs: blocks builds the whole "
                             "model on one device and dtype (`train.device`)")
        if taken:
            raise ValueError(f"{', '.join(taken)} cannot go in kwargs: the block removes the "
                             "classifier itself and reads weights only from `checkpoint`/`weights`")
        return kwargs

    @abstractmethod
    def _create(self, *, download: bool = False) -> tuple[nn.Module, tuple[str, ...]]:
        """The library model without its classifier, and the classifier's key prefixes.
        `download`: the library may fetch weights the recipe asked for (`pretrained: true`)."""

    @abstractmethod
    def _weights_path(self) -> str | None:
        """The local weights file the recipe names, if any."""

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ShapeError(f"expects images [channels, height, width] per sample, got {fmt_shape(shape)}")
        # the shape depends on nothing else (weights files and `pretrained` do not change it),
        # and shape inference asks for it on every validation and build
        key = (self.type, self.model, repr(sorted(self.kwargs.items())), tuple(shape))
        if key not in _SHAPES:
            if len(_SHAPES) >= 256:
                _SHAPES.clear()
            _SHAPES[key] = _feature_shape(self, tuple(shape))
        return _SHAPES[key]

    def build(self, shape: Shape) -> nn.Module:
        real = not _SKIP_WEIGHTS and not _building_on_meta()
        module, classifier = self._create(download=real)
        path = self._weights_path()
        if path is not None and real:
            what = f"{self.type} backbone {self.model!r}"
            load_backbone_state(module, read_state_dict(path, what), classifier=classifier,
                                what=what, path=path)
        return module


@register_block("torchvision")
class TorchvisionBackbone(_External):
    """A torchvision classification model (`resnet18`, `convnext_tiny`, ...) with its final
    `nn.Linear` replaced by `nn.Identity`; `weights`: a local file of the model's state dict."""

    #: its shape needs the library loaded: the example's output is stated, not computed
    example = ([3, 224, 224], {"type": "torchvision", "model": "resnet18"}, [512])

    weights: str | None = Field(
        None, description="torchvision weights name (e.g. IMAGENET1K_V1) or a local file")

    @field_validator("model")
    @classmethod
    def _known(cls, name: str) -> str:
        tv = _import_for_validation("torchvision", name)
        names = tv.models.list_models(module=tv.models)
        if name not in names:
            raise ValueError(unknown_name_message("torchvision classification model", name, names))
        return name

    def _weights_path(self) -> str | None:
        return self.weights

    def _create(self, *, download: bool = False) -> tuple[nn.Module, tuple[str, ...]]:
        tv = import_library("torchvision")
        kwargs: dict[str, Any] = {"weights": None}
        if self.model in ("googlenet", "inception_v3"):
            kwargs |= {"aux_logits": False, "init_weights": False}  # one output, no scipy init
        module = _construct(tv.models.get_model, self.model, kwargs | self.kwargs)
        linear = [name for name, m in module.named_modules()
                  if isinstance(m, nn.Linear) and m.out_features == 1000]
        if not linear:
            raise ShapeError(f"torchvision model {self.model!r} has no final nn.Linear classifier "
                             "to remove; use a `torch` block or a timm model instead")
        module.set_submodule(linear[-1], nn.Identity())
        return module, (linear[-1],)


@register_block("timm")
class TimmBackbone(_External):
    """A timm model created with `num_classes=0` (pooled features, no classifier).
    `checkpoint`: a local file of the model's state dict; `pretrained: true` downloads timm's
    weights from the Hugging Face hub (the only block that may reach the network)."""

    #: its shape needs the library loaded: the example's output is stated, not computed
    example = ([3, 224, 224], {"type": "timm", "model": "resnet18"}, [512])

    checkpoint: str | None = Field(
        None, description="local checkpoint file with the model's weights")
    pretrained: bool = Field(
        False, description="let timm load its pretrained weights (needs them cached: no network)")

    @field_validator("model")
    @classmethod
    def _known(cls, name: str) -> str:
        timm = _import_for_validation("timm", name)
        if not timm.is_model(name):
            raise ValueError(unknown_name_message("timm model", name, timm.list_models()))
        return name

    @model_validator(mode="after")
    def _one_source(self) -> TimmBackbone:
        if self.pretrained and self.checkpoint is not None:
            raise ValueError("give `checkpoint` (a local file) or `pretrained: true` (timm's hub "
                             "download), not both")
        return self

    def _weights_path(self) -> str | None:
        return self.checkpoint

    def _create(self, *, download: bool = False) -> tuple[nn.Module, tuple[str, ...]]:
        timm = import_library("timm")
        module = _construct(timm.create_model, self.model, {
            **self.kwargs, "pretrained": self.pretrained and download, "num_classes": 0})
        classifier = module.pretrained_cfg.get("classifier") or ()
        return module, (classifier,) if isinstance(classifier, str) else tuple(classifier)


def _feature_shape(block: _External, shape: Shape) -> Shape:
    """Per-sample output shape of `block`'s model on `shape`, from a forward on the `meta`
    device (never with downloaded or loaded weights)."""
    try:
        with torch.device("meta"):
            module, _ = block._create()
    except (NotImplementedError, RuntimeError):
        module = block._create()[0].to("meta")  # an __init__ that reads tensor values
    try:
        out = module.eval()(torch.empty((1, *shape), device="meta"))
    except Exception as err:  # noqa: BLE001 - a failing forward means this input does not fit
        raise ShapeError(f"{block.type} model {block.model!r} cannot take input {fmt_shape(shape)}: "
                         f"{str(err).strip().splitlines()[0][:200]}") from None
    if not isinstance(out, torch.Tensor):
        raise ShapeError(f"{block.type} model {block.model!r} returns {type(out).__name__}, "
                         "not one feature tensor")
    return tuple(out.shape[1:])
