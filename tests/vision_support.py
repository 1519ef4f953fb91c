"""Importing torchvision (and timm, which needs it) on the CPU-only torch 2.13 wheel.

That wheel's torchvision 0.28 build cannot load its compiled ops, and `import torchvision` then
fails while registering fake kernels for `torchvision::nms`. Declaring the two operator schemas
first lets the model definitions load. Tests only: the package never does this.
"""

from __future__ import annotations

import importlib

import pytest
import torch

_library: torch.library.Library | None = None


def _declare_nms_schemas() -> None:
    global _library
    if _library is not None:
        return
    try:
        torch.ops.torchvision.nms  # noqa: B018 - present when torchvision's ops did load
        return
    except (AttributeError, RuntimeError):
        pass
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def import_torchvision():
    """torchvision, or skip the test when it is not installed."""
    _declare_nms_schemas()
    return pytest.importorskip("torchvision")


def import_timm():
    """timm (which imports torchvision), or skip the test when it is not installed."""
    import_torchvision()
    return pytest.importorskip("timm")


def try_import(name: str):
    """For scripts outside pytest: the module, or None."""
    _declare_nms_schemas()
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
