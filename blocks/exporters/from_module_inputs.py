"""`from_module` for a hand-written module that takes several tensors: each argument's chain of
layers becomes an input's encoder, a `torch.cat` of them the `concat` combiner, and what follows
the backbone and head. Weights are copied and the outputs compared, as for one input.

    imported = blocks.from_module(net, input_shape={"image": [3, 8, 8], "extra": [4]})

Arguments are float tensors: `[n]` becomes a `numeric` input (no standardisation), `[C, H, W]`
an `image` input and `[L, F]` a `sequence`. Anything else the recipe language cannot say (no
single concatenation, an argument used after it, a concatenation on another axis) is a
`ModuleImportError` naming the fx node.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from blocks.builder.model import build
from blocks.core.errors import SpecError
from blocks.exporters.from_module import (
    ImportedModule,
    ModuleImportError,
    _blocks,
    _Converter,
    _copy_weights,
    _Leaf,
    compared,
)
from blocks.exporters.from_module import from_module as one_input
from blocks.spec.recipe import Recipe

KINDS = {1: "numeric", 2: "sequence", 3: "image"}


def from_module_inputs(module: nn.Module, input_shapes: dict[str, list[int]], *,
                       head: str | None = None, name: str | None = None) -> ImportedModule:
    """A multi-input recipe for `module` (per-sample shape of each `forward` argument by name),
    its model holding `module`'s weights, and the checks (parameters, outputs within 1e-5)."""
    try:
        graph = fx.Tracer().trace(module)
    except Exception as err:  # noqa: BLE001 - fx's reason is the useful part
        raise ModuleImportError(f"{type(module).__name__} cannot be traced by torch.fx "
                                f"({type(err).__name__}: {err})") from None
    placeholders = {n.target: n for n in graph.nodes if n.op == "placeholder"}
    if set(placeholders) != set(input_shapes):
        raise ModuleImportError(f"{type(module).__name__}.forward takes {', '.join(placeholders)}; "
                                f"input_shape names {', '.join(input_shapes)}")
    for arg, shape in input_shapes.items():
        if len(shape) not in KINDS:
            raise ModuleImportError(f"input {arg!r}: per-sample shape {list(shape)} is not [n], "
                                    "[L, F] or [C, H, W]")
    _shapes(module, graph, [input_shapes[n] for n in placeholders])
    converter = _Converter(module, graph)
    output = next(n for n in graph.nodes if n.op == "output")
    result = output.args[0]
    if not isinstance(result, fx.Node):
        raise converter.fail(output, "the model must return one tensor of logits")
    converter.check_logits(result)
    cats = [n for n in graph.nodes if n.op == "call_function" and n.target in (torch.cat, torch.concat)]
    if len(cats) != 1:
        raise converter.fail(result, f"expected one torch.cat joining the inputs, found {len(cats)}")
    cat = cats[0]
    dim = cat.args[1] if len(cat.args) > 1 else cat.kwargs.get("dim", 0)
    if dim not in (1, -1) or len(cat.meta.get("blocks_shape", ())) != 2:
        raise converter.fail(cat, "the inputs must be joined as vectors (torch.cat(..., dim=1) "
                                  "of [batch, d] tensors)")
    key_map: dict[str, str] = {}
    inputs: dict[str, Any] = {}
    for part in cat.args[0]:
        sources = _placeholders(part)
        if len(sources) != 1 or sources[0].target in inputs:
            raise converter.fail(part, "each part of the concatenation must come from one input "
                                       "of its own")
        arg = sources[0].target
        converter.placeholder = sources[0]
        items = converter.chain(part, sources[0])
        shape = list(input_shapes[arg])
        spec: dict[str, Any] = {"kind": KINDS[len(shape)],
                                "encoder": _blocks(items, f"inputs.{arg}", key_map)}
        if len(shape) == 1:
            spec |= {"features": shape[0], "standardize": False}
        else:
            spec["shape"] = shape
        inputs[arg] = spec
    if set(inputs) != set(placeholders):
        raise converter.fail(cat, f"inputs {sorted(set(placeholders) - set(inputs))} do not reach "
                                  "the concatenation")
    converter.placeholder = cat
    items = converter.chain(result, cat)
    last = items[-1] if items else None
    if not isinstance(last, _Leaf) or not (isinstance(last.block, dict)
                                           and last.block.get("type") == "linear"
                                           and last.block["bias"]):
        raise converter.fail(result, "the model must end with the nn.Linear (with bias) that "
                                     "emits the logits")
    backbone = _blocks(items[:-1], "backbone", key_map)
    classes = last.block["out_features"]
    key_map["head"] = last.source
    spec = {"name": name or type(module).__name__, "inputs": inputs, "backbone": backbone,
            "head": {"type": head or ("softmax" if classes >= 2 else "sigmoid"), "classes": classes}}
    try:
        recipe = Recipe.model_validate({"model": spec})
        model = build(recipe.model, seed=0)
    except (SpecError, ValueError) as err:
        raise ModuleImportError(f"the recipe written for {type(module).__name__} is not valid: "
                                f"{err}") from None
    _copy_weights(module, model, key_map)
    return _checked(module, model, recipe, key_map, input_shapes, list(placeholders))


def _placeholders(node: fx.Node) -> list[fx.Node]:
    seen, stack, found = set(), [node], []
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if current.op == "placeholder":
            found.append(current)
        stack.extend(current.all_input_nodes)
    return found


def _shapes(module: nn.Module, graph: fx.Graph, shapes: list[list[int]]) -> None:
    from torch.fx.passes.shape_prop import ShapeProp  # lazy: only imports need it

    was_training = module.training
    try:
        ShapeProp(fx.GraphModule(module, graph).eval()).propagate(
            *(torch.zeros((2, *shape)) for shape in shapes))
    except Exception as err:  # noqa: BLE001 - a wrong input shape, usually
        raise ModuleImportError(f"{type(module).__name__} fails on inputs of per-sample shapes "
                                f"{shapes}: {type(err).__name__}: {err}") from None
    finally:
        module.train(was_training)
    for node in graph.nodes:
        meta = node.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape"):
            node.meta["blocks_shape"] = tuple(meta.shape)


def _checked(module, model, recipe, key_map, input_shapes, order) -> ImportedModule:
    generator = torch.Generator().manual_seed(0)
    x = {arg: torch.randn((3, *input_shapes[arg]), generator=generator) for arg in order}
    return compared(module, model, recipe, key_map, tuple(x[arg] for arg in order), x)


def from_module(module: nn.Module, input_shape: list[int] | tuple[int, ...] | dict[str, list[int]],
                **options: Any) -> ImportedModule:
    """`blocks.from_module`: one input shape (`blocks.exporters.from_module`), or a mapping from
    each `forward` argument's name to its per-sample shape (a multi-input recipe)."""
    if isinstance(input_shape, dict):
        unknown = set(options) - {"head", "name"}
        if unknown:
            raise ModuleImportError(f"from_module with several inputs takes head= and name=, not "
                                    f"{', '.join(sorted(unknown))} (inputs are float tensors)")
        return from_module_inputs(module, input_shape, **options)
    return one_input(module, input_shape, **options)
