"""`from_module`: a hand-written classifier (an `nn.Sequential`, or any `torch.fx`-traceable module
made of catalogue layers) turned into a recipe, with its weights copied into the built model.

    imported = blocks.from_module(net, input_shape=[1, 28, 28])
    print(imported.yaml)               # the recipe
    model = imported.model             # BlocksModel holding net's weights, outputs checked equal

The module is traced with `torch.fx`; the graph must be a chain of layers, optionally with
residual additions (`f(x) + x`, `f(x) + g(x)`), ending in the `nn.Linear` that emits the logits.
Whatever the recipe language cannot say (an arbitrary op, a second input, a concatenation) is an
`ModuleImportError` naming the fx node, never dropped. Single layers are translated by
`blocks.exporters.layer_blocks`; this module walks the graph and checks the result.
"""

from __future__ import annotations

import contextlib
import io
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.node import _get_qualified_name

from blocks.builder.model import build
from blocks.core.errors import BlocksError, SpecError, escape_name
from blocks.exporters.common import sample_input
from blocks.exporters.layer_blocks import (
    ACTIVATIONS,
    ADDS,
    FINAL_ACTIVATION_FUNCTIONS,
    FINAL_ACTIVATION_MODULES,
    METHOD_ACTIVATIONS,
    MODULES,
    torch_layer_block,
)
from blocks.exporters.source_writer import module_difference
from blocks.recipe.loading import dump_recipe
from blocks.spec.recipe import Recipe
from blocks.spec.registry import AnyBlock

TOLERANCE = 1e-5


class ModuleImportError(BlocksError, ValueError):
    """A module that cannot be expressed as a recipe; the message names the fx node."""


@dataclass
class ImportedModule:
    """What `from_module` produced: the recipe, the built model (weights copied) and the checks."""

    recipe: Any  # blocks.Recipe
    model: Any  # blocks.BlocksModel, eval mode, holding the module's weights
    parameters: int  # equal in the module and the model
    max_abs_diff: float  # |model(x) - module(x)| on a random batch
    key_map: dict[str, str] = field(default_factory=dict)  # model leaf path -> module leaf path

    @property
    def yaml(self) -> str:
        return dump_recipe(self.recipe)


@dataclass
class _Leaf:
    """A block dict for one node, and the source module whose weights it takes (if any)."""

    block: dict[str, Any] | str
    source: str | None = None  # the module path in the traced module


# --- the graph -----------------------------------------------------------------------------------
class _Converter:
    def __init__(self, module: nn.Module, graph: fx.Graph) -> None:
        self.module = module
        self.graph = graph
        self.placeholder = next((n for n in graph.nodes if n.op == "placeholder"), None)
        self._last_difference: str | None = None

    def fail(self, node: fx.Node, why: str) -> ModuleImportError:
        if node.op == "call_module":
            target = f"{node.target}: {type(self.module.get_submodule(node.target)).__name__}"
        elif isinstance(node.target, str):
            target = node.target
        else:
            try:
                target = _get_qualified_name(node.target).replace("_operator.", "operator.")
            except Exception:  # noqa: BLE001 - a name is all we want
                target = getattr(node.target, "__name__", repr(node.target))
        return ModuleImportError(f"fx node {node.name!r} ({node.op} {target}): {why}")

    def check_logits(self, node: fx.Node) -> None:
        """Pitfall 6: a model ending in softmax/sigmoid; heads emit logits."""
        if node.op == "call_module":
            final = isinstance(self.module.get_submodule(node.target), FINAL_ACTIVATION_MODULES)
        elif node.op == "call_function":
            final = node.target in FINAL_ACTIVATION_FUNCTIONS
        else:
            final = node.op == "call_method" and node.target in ("softmax", "log_softmax", "sigmoid")
        if final:
            raise self.fail(node, "the model ends with a softmax/sigmoid; blocks heads emit logits "
                                  "(the loss and predict_proba apply the activation), so remove "
                                  "it and import the logits")

    def input_of(self, node: fx.Node) -> fx.Node:
        """The one tensor a unary node consumes; other arguments must be constants."""
        tensors = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]
        if not node.args or not isinstance(node.args[0], fx.Node):
            raise self.fail(node, "expected a tensor as the first argument")
        extra = [a for a in tensors[1:] if not self._size_helper(a)]
        if extra:
            raise self.fail(node, f"takes more than one tensor ({', '.join(a.name for a in tensors)}); "
                                  "recipes express chains of layers and residual additions only")
        return node.args[0]

    def _rebuilds(self, node: fx.Node, source: nn.Module, block: dict[str, Any] | str) -> bool:
        """Does `block`, built for this node's input shape, equal `source` in type, options
        (an in-place flag aside) and weight shapes?"""
        from pydantic import TypeAdapter, ValidationError

        shape = node.args[0].meta.get("blocks_shape") if isinstance(node.args[0], fx.Node) else None
        if shape is None:
            self._last_difference = "the input shape is unknown"
            return False
        try:
            spec = TypeAdapter(AnyBlock).validate_python(block)
            with torch.device("meta"):
                built = spec.build(tuple(shape[1:]))
        except (ValidationError, ValueError) as err:
            self._last_difference = str(err).splitlines()[0]
            return False
        self._last_difference = module_difference(source, built, ignore=("inplace",), loose=True)
        return self._last_difference is None

    def _size_helper(self, node: fx.Node) -> bool:
        return node.op == "call_method" and node.target == "size" or (
            node.op == "call_function" and node.target is getattr
            and node.args[1:] == ("shape",)) or (
            node.op == "call_function" and node.target is operator.getitem
            and isinstance(node.args[0], fx.Node) and self._size_helper(node.args[0]))

    def leaf(self, node: fx.Node) -> _Leaf:
        if node.op == "call_module":
            sub = self.module.get_submodule(node.target)
            convert = MODULES.get(type(sub))
            try:
                if convert is not None:
                    block = convert(sub)
                    if self._rebuilds(node, sub, block):
                        return _Leaf(block, node.target)
                # not in the catalogue, or with options it lacks: the generic `torch` block
                block = torch_layer_block(sub)
            except ValueError as err:
                raise self.fail(node, f"{type(sub).__name__} cannot be written as a block: {err}"
                                ) from None
            if not self._rebuilds(node, sub, block):
                raise self.fail(node, f"{type(sub).__name__} cannot be rebuilt from its arguments "
                                      f"(rebuilt: {self._last_difference})")
            return _Leaf(block, node.target)
        if node.op == "call_function":
            if node.target in ACTIVATIONS:
                return _Leaf(ACTIVATIONS[node.target])
            if node.target is F.gelu:
                return _Leaf({"type": "gelu", "approximate": node.kwargs.get("approximate", "none")})
            if node.target is torch.flatten:
                return self._flatten(node, node.args[1:2] or [node.kwargs.get("start_dim", 0)],
                                     node.args[2:3] or [node.kwargs.get("end_dim", -1)])
        if node.op == "call_method":
            if node.target in METHOD_ACTIVATIONS:
                return _Leaf(METHOD_ACTIVATIONS[node.target])
            if node.target == "flatten":
                return self._flatten(node, node.args[1:2] or [node.kwargs.get("start_dim", 0)],
                                     node.args[2:3] or [node.kwargs.get("end_dim", -1)])
            if node.target in ("view", "reshape"):
                return self._view(node)
            if node.target == "mean":
                return self._mean(node)
        raise self.fail(node, "this operation has no block type; recipes cannot express it")

    def _flatten(self, node: fx.Node, start: list, end: list) -> _Leaf:
        if start[0] < 1 or end[0] != -1:
            raise self.fail(node, "only flattening from axis 1 (after the batch) to the end is "
                                  "supported")
        return _Leaf({"type": "flatten", "start_dim": start[0] - 1})

    def _view(self, node: fx.Node) -> _Leaf:
        sizes = node.args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        if len(sizes) == 2 and isinstance(sizes[0], fx.Node) and self._size_helper(sizes[0]) \
                and sizes[1] == -1:
            return _Leaf({"type": "flatten"})
        raise self.fail(node, "only x.view(x.size(0), -1) (a flatten) is supported")

    def _mean(self, node: fx.Node) -> _Leaf:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        shape = node.meta.get("blocks_shape")
        if not keep and shape is not None and sorted(dims) == list(range(2, len(shape))):
            return _Leaf("global_avgpool")
        raise self.fail(node, "only a mean over every spatial axis (global average pooling) "
                              "is supported")

    # walking the graph backwards from the output: chains, and residual additions
    def is_add(self, node: fx.Node) -> bool:
        return (node.op == "call_function" and node.target in ADDS) or (
            node.op == "call_method" and node.target in ("add", "add_"))

    def spine(self, node: fx.Node) -> fx.Node:
        """The node a block (or a whole residual) reads from."""
        return self.fork(node) if self.is_add(node) else self.input_of(node)

    def fork(self, add: fx.Node) -> fx.Node:
        """Where the two branches of a residual addition split."""
        a, b = self._add_operands(add)
        on_a = [a]
        while on_a[-1] is not self.placeholder:
            on_a.append(self.spine(on_a[-1]))
        node = b
        while node not in on_a:
            if node is self.placeholder:
                raise self.fail(add, "the two added branches do not start from one tensor")
            node = self.spine(node)
        return node

    def _add_operands(self, add: fx.Node) -> tuple[fx.Node, fx.Node]:
        args = [*add.args, *add.kwargs.values()]
        if len(args) != 2 or not all(isinstance(a, fx.Node) for a in args) or "alpha" in add.kwargs:
            raise self.fail(add, "only the sum of two tensors is supported (a residual addition)")
        return args[0], args[1]

    def chain(self, node: fx.Node, stop: fx.Node) -> list[_Leaf | tuple]:
        """The blocks from `stop` (exclusive) to `node` (inclusive), in forward order."""
        items: list[_Leaf | tuple] = []
        while node is not stop:
            if node is self.placeholder or node.op in ("get_attr", "output"):
                raise self.fail(node, "not reachable as a chain of layers from the input")
            if self.is_add(node):
                fork = self.fork(node)
                a, b = self._add_operands(node)
                branches = [self.chain(a, fork), self.chain(b, fork)]
                branches.sort(key=len, reverse=True)  # the longer branch is the body
                items.append(("residual", *branches))
                node = fork
            else:
                items.append(self.leaf(node))
                node = self.input_of(node)
        return items[::-1]


def _blocks(items: list, prefix: str, key_map: dict[str, str]) -> list:
    """Block dicts from converted items; fills `key_map` (built leaf path -> source path)."""
    out = []
    for index, item in enumerate(items):
        here = f"{prefix}.{index}"
        if isinstance(item, _Leaf):
            if item.source is not None:
                key_map[here] = item.source
            out.append(item.block)
        else:
            _, body, shortcut = item
            block: dict[str, Any] = {"type": "residual",
                                     "blocks": _blocks(body, f"{here}.body", key_map)}
            if shortcut:
                block["shortcut"] = _blocks(shortcut, f"{here}.shortcut", key_map)
            out.append(block)
    return out


def from_module(module: nn.Module, input_shape: list[int] | tuple[int, ...], *,
                head: str | None = None, name: str | None = None,
                dtype: str = "float32") -> ImportedModule:
    """A recipe for `module` (per-sample `input_shape`), its built model with `module`'s weights,
    and the checks: equal parameter counts and equal outputs (within 1e-5) on a random batch.

    `head`: "softmax" or "sigmoid" (default: softmax for 2+ logits, sigmoid for one).
    """
    try:
        graph = fx.Tracer().trace(module)
    except Exception as err:  # noqa: BLE001 - fx's reason is the useful part
        raise ModuleImportError(f"{type(module).__name__} cannot be traced by torch.fx "
                                f"({type(err).__name__}: {err}); write it as nn.Sequential or "
                                "avoid data-dependent Python control flow in forward") from None
    converter = _Converter(module, graph)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ModuleImportError(f"{type(module).__name__}.forward takes {len(placeholders)} "
                                "inputs; a recipe model takes exactly one")
    _record_shapes(module, graph, input_shape, dtype)
    output = next(n for n in graph.nodes if n.op == "output")
    result = output.args[0]
    if not isinstance(result, fx.Node):
        raise converter.fail(output, "the model must return one tensor of logits (multi-head "
                                     "modules are not supported by from_module)")
    converter.check_logits(result)
    items = converter.chain(result, converter.placeholder)
    last = items[-1] if items else None
    if not isinstance(last, _Leaf) or not (isinstance(last.block, dict)
                                           and last.block.get("type") == "linear"):
        raise converter.fail(result, "the model must end with the nn.Linear that emits the "
                                     "logits (it becomes the head)")
    if not last.block["bias"]:
        raise converter.fail(result, "the final nn.Linear has no bias; blocks heads always do")
    key_map: dict[str, str] = {}
    backbone = _blocks(items[:-1], "backbone", key_map)
    classes = last.block["out_features"]
    head_type = head or ("softmax" if classes >= 2 else "sigmoid")
    key_map["head"] = last.source
    spec = {"name": name or type(module).__name__, "input": {"shape": list(input_shape),
                                                             "dtype": dtype},
            "backbone": backbone, "head": {"type": head_type, "classes": classes}}

    try:
        recipe = Recipe.model_validate({"model": spec})
    except (SpecError, ValueError) as err:
        raise ModuleImportError(f"the recipe written for {type(module).__name__} is not valid: "
                                f"{err}") from None
    try:
        model = build(recipe.model, seed=0)
    except SpecError as err:
        raise ModuleImportError(f"the recipe written for {type(module).__name__} does not build: "
                                f"{err}") from None
    _copy_weights(module, model, key_map)
    return _checked(module, model, recipe, key_map, input_shape, dtype)


def _record_shapes(module: nn.Module, graph: fx.Graph, input_shape, dtype: str) -> None:
    """Per-node shapes from one forward on a batch of two (ShapeProp), used by `mean`."""
    # lazy: torch.fx's shape pass is needed only here
    from torch.fx.passes.shape_prop import ShapeProp

    gm = fx.GraphModule(module, graph)
    x = torch.zeros((2, *input_shape), dtype=getattr(torch, dtype))
    was_training = module.training
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints a whole traceback
            ShapeProp(gm.eval()).propagate(x)
    except Exception as err:  # noqa: BLE001 - a wrong input shape, usually
        raise ModuleImportError(_shape_failure(module, err, input_shape)) from None
    finally:
        module.train(was_training)
    for node in graph.nodes:
        meta = node.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape"):
            node.meta["blocks_shape"] = tuple(meta.shape)


def _shape_failure(module: nn.Module, err: Exception, input_shape) -> str:
    """One line: the operation that failed (ShapeProp's node) and the library's own reason."""
    cause = err.__cause__ if err.__cause__ is not None else err
    node = re.search(r"node=%(\w+)", str(err))
    where = f" at `{node.group(1)}`" if node else ""
    reason = (str(cause).strip().splitlines() or [""])[0][:300]
    return (f"{escape_name(type(module).__name__)} fails on an input of per-sample shape "
            f"{list(input_shape)}{where}: {type(cause).__name__}: {escape_name(reason)}; "
            "check --input-shape (per sample, without the batch axis)")


def _copy_weights(module: nn.Module, model: nn.Module, key_map: dict[str, str]) -> None:
    covered = set()
    for target, source in key_map.items():
        src, dst = module.get_submodule(source), model.get_submodule(target)
        state = src.state_dict()
        if set(state) != set(dst.state_dict()):
            raise ModuleImportError(f"{source} -> {target}: the weights do not correspond "
                                    f"({sorted(state)} vs {sorted(dst.state_dict())})")
        dst.load_state_dict(state)
        covered |= {f"{target}.{k}" for k in state}
    left = sorted(set(model.state_dict()) - covered)
    if left:
        raise ModuleImportError(f"the built model has weights the module does not: {left[:5]}")


def _checked(module, model, recipe, key_map, input_shape, dtype) -> ImportedModule:
    model.eval()
    x = sample_input(model, 3)
    return compared(module, model, recipe, key_map, (x,), x)


def compared(module: nn.Module, model: nn.Module, recipe: Any, key_map: dict[str, str],
             module_args: tuple[torch.Tensor, ...], model_input: Any) -> ImportedModule:
    """The import, once the built model (holding the module's weights) has the module's
    parameter count and, on the same inputs, its outputs within `TOLERANCE`."""
    source_params = sum(p.numel() for p in module.parameters())
    params = sum(p.numel() for p in model.parameters())
    if params != source_params:
        raise ModuleImportError(f"the recipe's model has {params:,} parameters, the module "
                                f"{source_params:,}")
    model.eval()
    was_training = module.training
    try:
        with torch.no_grad():
            want, got = module.eval()(*module_args), model(model_input)
    finally:
        module.train(was_training)
    diff = (got.double() - want.double()).abs().max().item()
    if not diff <= TOLERANCE:
        raise ModuleImportError(f"the recipe's model, holding the module's weights, differs from "
                                f"it by {diff:.3g} (tolerance {TOLERANCE:g})")
    return ImportedModule(recipe, model, params, diff, key_map)


def load_module_object(reference: str) -> nn.Module:
    """`path/to/file.py:Name` -> the module: `Name` is an nn.Module instance in the file, or a
    class / function called without arguments to make one."""
    import importlib.util
    import sys
    from pathlib import Path

    file, sep, attr = reference.rpartition(":")
    if not sep or not file or not attr:
        raise ModuleImportError(f"{reference!r}: expected FILE.py:NAME (a class, a function or "
                                "an nn.Module defined in the file)")
    path = Path(file)
    if not path.is_file():
        raise ModuleImportError(f"{file}: no such file")
    spec = importlib.util.spec_from_file_location(f"blocks_import_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ModuleImportError(f"{file}: not a Python file")
    source = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # so the file can import its neighbours
    try:
        spec.loader.exec_module(source)
    except Exception as err:  # noqa: BLE001 - the user's file failed to run
        raise ModuleImportError(f"{file}: running it failed: {type(err).__name__}: {err}") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    if not hasattr(source, attr):
        names = sorted(n for n, v in vars(source).items()
                       if isinstance(v, nn.Module) or (isinstance(v, type) and issubclass(v, nn.Module)))
        raise ModuleImportError(f"{file} defines no {attr!r} (nn.Module classes and instances "
                                f"there: {', '.join(names) or 'none'})")
    obj = getattr(source, attr)
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise ModuleImportError(f"{reference}: {type(obj).__name__} is not an nn.Module")
        try:
            obj = obj()
        except TypeError as err:
            raise ModuleImportError(f"{reference}: cannot be called without arguments ({err}); "
                                    "give a module instance or a function that builds one") from None
    if not isinstance(obj, nn.Module):
        raise ModuleImportError(f"{reference}() returned {type(obj).__name__}, not an nn.Module")
    return obj
