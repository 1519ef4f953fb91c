"""`build(spec)`: every layer created once, in `__init__`, registered, sized from the input shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.module import (  # torch mutates these dicts in place, never rebinds them
    _global_backward_hooks,
    _global_backward_pre_hooks,
    _global_forward_hooks,
    _global_forward_pre_hooks,
)

from blocks.builder import multi
from blocks.builder.device import DevicePolicy, mismatch_message, resolve_device, single_device
from blocks.builder.preprocessing import Preprocessing
from blocks.builder.weights import import_from_spec
from blocks.core.errors import DeviceMismatchError, InputShapeError, SpecError
from blocks.recipe.loading import load_recipe, validate_model_dict
from blocks.spec.budget import check_footprint
from blocks.spec.model import ModelSpec, ShapeReport
from blocks.spec.recipe import Recipe
from blocks.spec.shapes import fmt_shape

Output = torch.Tensor | dict[str, torch.Tensor]


def _hooked(module: nn.Module) -> bool:
    """Whether calling `module` would run hooks (its own or global) besides its `forward`: the
    test `nn.Module._call_impl` makes before its fast path."""
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks or _global_forward_hooks or _global_forward_pre_hooks
                or _global_backward_hooks or _global_backward_pre_hooks)
_INTS = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)


class BlocksModel(nn.Module):
    """The module `build` returns: `preprocess` (when the spec has one), `backbone`
    (nn.Sequential), then `head` or `heads` (ModuleDict).

    `forward` returns logits: a tensor for a single `head`, a dict for named `heads`. Inputs are
    checked for device, per-sample shape and dtype before any op runs (a few hundred ns). A model
    with `preprocess` takes raw inputs (`spec.preprocess.raw_shape`), like every path that
    predicts with it.
    """

    spec: ModelSpec  # what was built
    shapes: ShapeReport  # every block's input/output shape, from static inference
    on_device_mismatch: DevicePolicy

    def __init__(self, spec: ModelSpec, *, on_device_mismatch: DevicePolicy = "raise",
                 shapes: ShapeReport | None = None) -> None:
        """`shapes`: `spec.infer_shapes()` when the caller has just run it (`build` has)."""
        super().__init__()
        if on_device_mismatch not in ("raise", "move"):
            raise ValueError(f"on_device_mismatch must be 'raise' or 'move', got {on_device_mismatch!r}")
        if shapes is None:
            shapes = spec.infer_shapes()
        if spec.inputs is not None:
            self._init_inputs(spec, shapes, on_device_mismatch)
            return
        # plain (non-module, non-tensor) attributes skip nn.Module.__setattr__'s registry checks
        self.__dict__.update(
            spec=spec, shapes=shapes, on_device_mismatch=on_device_mismatch,
            _sample_shape=torch.Size(spec.sample_shape), _input_dtype=spec.input.torch_dtype,
            _device=torch.device("cpu"), _single_head=spec.heads is None,
            _preprocesses=spec.preprocess is not None, _multi_input=False,
        )
        if spec.preprocess is not None:
            self.preprocess = Preprocessing(spec.preprocess, shapes.input_shape)
        self._init_trunk(spec, shapes)

    def _init_inputs(self, spec: ModelSpec, shapes: ShapeReport, policy: DevicePolicy) -> None:
        """A multi-input model: `inputs` (ModuleDict of encoders by input name), `combine`, `backbone`,
        heads; `forward` takes a dict of tensors keyed by input name."""
        self.__dict__.update(
            spec=spec, shapes=shapes, on_device_mismatch=policy, _device=torch.device("cpu"),
            _single_head=spec.heads is None, _preprocesses=False, _multi_input=True,
            _input_names=tuple(spec.inputs), _input_dtypes=multi.input_dtypes(spec),
            _input_shapes={name: torch.Size(s) for name, s in spec.input_shapes.items()},
            _input_dtype=torch.float32, raw_encoder=None,
        )
        self.inputs = multi.build_encoders(spec, shapes)  # `freeze: [inputs.photo]` reads as written
        self.combine = spec.combiner.build(shapes.inputs.encoded)
        self._init_trunk(spec, shapes)

    def _init_trunk(self, spec: ModelSpec, shapes: ShapeReport) -> None:
        """The backbone and the head(s), after the input (or the inputs' combiner)."""
        # sizes come from the shape inference just done: each block's rule runs once per build
        self.backbone = nn.Sequential(*(
            layer.block.build(layer.input_shape) for layer in shapes.layers if layer.depth == 0))
        if spec.heads is not None:
            self.heads = nn.ModuleDict({name: head.build(shapes.features)
                                        for name, head in spec.heads.items()})
        else:
            self.head = spec.head.build(shapes.features)

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor | dict[str, torch.Tensor]) -> Output:
        if self._multi_input:
            features = multi.forward_features(self, x)
            if self._single_head:
                return self._modules["head"](features)
            return {name: head(features) for name, head in self._modules["heads"].items()}
        try:
            wrong = x.device != self._device or x.dtype != self._input_dtype or x.shape[1:] != self._sample_shape
        except AttributeError:  # not a tensor: let _fix_input say so
            wrong = True
        if wrong:
            x = self._fix_input(x)
        # submodules read from `_modules` (nn.Module.__getattr__ is slow) and the backbone's
        # layers called directly, as nn.Sequential would, unless something hooks the backbone:
        # the same calls a flat nn.Sequential makes, so a built model costs no more per forward
        modules = self._modules
        if self._preprocesses:
            x = modules["preprocess"](x)
        backbone = modules["backbone"]
        if type(backbone) is nn.Sequential and not _hooked(backbone):
            for layer in backbone._modules.values():
                x = layer(x)
        else:
            x = backbone(x)
        if self._single_head:
            return modules["head"](x)
        return {name: head(x) for name, head in modules["heads"].items()}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's output for `x`, what the heads see (embeddings, fine-tuning checks);
        inputs are checked as in `forward`."""
        if self._multi_input:
            return multi.forward_features(self, x)
        if not (isinstance(x, torch.Tensor) and x.device == self._device
                and x.dtype == self._input_dtype and x.shape[1:] == self._sample_shape):
            x = self._fix_input(x)
        return self.backbone(self.preprocess(x) if self._preprocesses else x)

    def _fix_input(self, x: Any) -> torch.Tensor:
        """The slow path, taken only when an input is wrong: explain it, or move it if allowed."""
        if not isinstance(x, torch.Tensor):
            raise InputShapeError(f"model {self.name!r} takes a tensor, got {type(x).__name__}")
        if x.shape[1:] != self._sample_shape:
            raise InputShapeError(
                f"model {self.name!r} expects input of shape [batch, {fmt_shape(self._sample_shape)[1:]}"
                f" but got {fmt_shape(tuple(x.shape))} (per-sample {fmt_shape(tuple(x.shape[1:]))})"
            )
        if x.device != self._device:
            if self.on_device_mismatch == "raise":
                raise DeviceMismatchError(mismatch_message("input", x.device, self.name, self._device))
            x = x.to(self._device, non_blocking=True)
        if x.dtype != self._input_dtype:
            if x.dtype.is_floating_point and self._input_dtype.is_floating_point:
                if self.on_device_mismatch == "raise":
                    raise InputShapeError(
                        f"model {self.name!r} expects {self._input_dtype} input but got {x.dtype}; "
                        f"cast it with x.to({self._input_dtype})"
                    )
                x = x.to(self._input_dtype)
            elif self._input_dtype == torch.int64 and not x.dtype.is_floating_point:
                x = x.long()
            else:
                raise InputShapeError(f"model {self.name!r} expects {self._input_dtype} input but got {x.dtype}")
        return x

    # --- predictions -----------------------------------------------------------------------------
    @torch.inference_mode()
    def _eval_logits(self, x: Any) -> Output:
        x = self.as_input(x)
        if not self.training:  # eval mode already (blocks.load's): switching walks every module
            return self(x)
        self.eval()
        try:
            return self(x)
        finally:
            self.train(True)

    def as_input(self, x: Any) -> torch.Tensor:
        """A batch as this model takes it, from a tensor, numpy array or nested lists; for a
        model trained on a table, also raw rows as users hold them (a pandas DataFrame or
        pyarrow Table by column name, a list of dicts, rows holding category names), read by
        `blocks.data.features.feature_matrix` exactly as `blocks predict FILE` reads a file.

        Rows may also come flat (`[batch, n]` with n the per-sample size, as CSV rows do);
        values are cast to the model's input dtype and moved to its device. Anything that does
        not fit is an `InputShapeError`, never a silent reshape of the batch axis. A multi-input
        model takes a dict keyed by input name (raw strings for text and category inputs when
        loaded from a run folder).
        """
        if self._multi_input:
            return multi.as_inputs(self, x)
        pre = self.spec.preprocess
        if not isinstance(x, torch.Tensor) and pre is not None and pre.features:
            # lazy: raw rows (DataFrame, pyarrow Table, dicts, category names) need the readers
            from blocks.data.features import feature_matrix, is_tabular

            if is_tabular(x):
                x = feature_matrix(x, self.spec)
        if not isinstance(x, torch.Tensor):
            try:
                x = torch.as_tensor(np.asarray(x))
            except (TypeError, ValueError) as err:
                raise InputShapeError(f"model {self.name!r} takes a batch of numbers (tensor, numpy "
                                      f"array or nested lists), got {type(x).__name__}: {err}") from None
        if x.dim() == 2 and x.shape[1:] != self._sample_shape and x.shape[1] == self._sample_shape.numel():
            x = x.reshape(len(x), *self._sample_shape)
        if x.dtype != self._input_dtype:
            if self._input_dtype.is_floating_point and (x.dtype.is_floating_point or x.dtype in _INTS):
                x = x.to(self._input_dtype)
            elif self._input_dtype == torch.int64 and x.dtype in _INTS:
                x = x.long()
        return x if x.device == self._device else x.to(self._device)

    def predict_proba(self, x: Any) -> Output:
        """Softmax / sigmoid probabilities, in eval mode, without tracking gradients.

        `x` is a raw batch (tensor, numpy array or lists; see `as_input`)."""
        return self._per_head(self._eval_logits(x), "probabilities")

    def predict(self, x: Any) -> Output:
        """Class indices (softmax: argmax) or 0/1 labels (sigmoid: logit above the threshold).

        `x` is a raw batch (tensor, numpy array or lists; see `as_input`)."""
        return self._per_head(self._eval_logits(x), "labels_from_logits")

    def label_names(self, head: str | None = None) -> list[str]:
        """Class names of a head (its `labels`, else "0", "1", ...)."""
        spec = self.spec.head_specs[head or next(iter(self.spec.head_specs))]
        return list(spec.labels or (str(i) for i in range(spec.classes)))

    def _per_head(self, logits: Output, method: str) -> Output:
        heads = self.spec.head_specs
        if isinstance(logits, dict):
            return {name: getattr(heads[name], method)(value) for name, value in logits.items()}
        return getattr(next(iter(heads.values())), method)(logits)

    @property
    def preprocess_module(self) -> nn.Module | None:
        """The `preprocess` submodule (raw input -> backbone input), or None."""
        return self._modules.get("preprocess")

    # --- device bookkeeping ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def multi_head_expected(self) -> bool:
        return self.spec.heads is not None

    @property
    def name(self) -> str:
        return self.spec.name or "model"

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        """`.to()`, `.cuda()`, `.double()` all pass here: keep the checked device and dtype current."""
        result = super()._apply(fn, recurse)
        self.check_device()
        floating = next((p.dtype for p in self.parameters() if p.dtype.is_floating_point), None)
        if floating is not None and self._multi_input:
            self._input_dtypes = {name: floating if dtype.is_floating_point else dtype
                                  for name, dtype in self._input_dtypes.items()}
        elif floating is not None and self._input_dtype.is_floating_point:
            self._input_dtype = floating
        return result

    def check_device(self) -> torch.device:
        """Verify every parameter and buffer is on one device; remember it for input checks."""
        device = self.__dict__["_device"] = single_device(self, self._device)  # a plain attribute
        return device


def build(
    spec: ModelSpec | Recipe | dict | str | Path,
    *,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    on_device_mismatch: DevicePolicy = "raise",
    weights: bool = True,
) -> BlocksModel:
    """Build the `nn.Module` a spec describes.

    Weights are initialised on the CPU (so a seed gives the same weights whatever the device)
    and then moved once; `device="auto"` picks cuda, then mps, then cpu. `model.weights`, when
    the spec names a file, is imported then (`weights=False` skips it: `blocks.load`).
    """
    model_spec = _as_model_spec(spec)
    target = resolve_device(device)
    shapes = model_spec.infer_shapes()  # once, for the size check and the modules
    check_footprint(model_spec, dtype=dtype, shapes=shapes)  # a model too big for memory is refused
    if seed is None:
        model = BlocksModel(model_spec, on_device_mismatch=on_device_mismatch, shapes=shapes)
    else:
        # weights are drawn on the CPU, so only its generator is seeded and then restored
        # (torch.manual_seed would also seed every accelerator, lazily, at a real cost)
        saved = torch.default_generator.get_state()
        torch.default_generator.manual_seed(seed)
        try:
            model = BlocksModel(model_spec, on_device_mismatch=on_device_mismatch, shapes=shapes)
        finally:
            torch.default_generator.set_state(saved)
    if weights and model_spec.weights is not None:
        import_from_spec(model, model_spec.weights)
    if dtype is not None:
        if not dtype.is_floating_point:
            raise SpecError(f"dtype must be a floating-point torch dtype, got {dtype}")
        model.to(dtype=dtype)
    elif (model_spec.input is not None and model_spec.input.torch_dtype.is_floating_point
          and model_spec.input.torch_dtype != torch.float32):
        model.to(dtype=model_spec.input.torch_dtype)
    if target.type != "cpu":
        model.to(target)
    model.check_device()
    return model


def _as_model_spec(spec: ModelSpec | Recipe | dict | str | Path) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, Recipe):
        return spec.model

    if isinstance(spec, dict) and "model" not in spec:
        return validate_model_dict(spec)
    return load_recipe(spec).model
