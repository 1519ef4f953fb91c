"""The rows of a summary: one per spec block (or per submodule of a plain `nn.Module`).

Rows follow the spec, not torch's module tree: `backbone[3].blocks[0] conv2d`, `heads.kind
softmax`, with the shapes of the spec's own shape inference; `spec_module_name` maps a spec path
to the module it built. Parameter counts are read from the user's model, mult-adds from the
probe run; a failed probe run becomes a `SummaryError` naming the block where it failed.
"""

from __future__ import annotations

import re

from torch import nn

from blocks.builder.model import BlocksModel
from blocks.inspect.summary_data import LayerRow, SummaryError
from blocks.inspect.summary_format import fmt_batch_shape
from blocks.inspect.summary_probe import ProbeRun, leaf_macs
from blocks.layers.composites import Repeat, Residual
from blocks.spec.model import ModelSpec


def spec_rows(model: BlocksModel, spec: ModelSpec) -> list[LayerRow]:
    """One row per spec block, in spec order (preprocess, backbone, heads), stats still empty;
    a residual's automatic projection shortcut gets a row after its body."""
    rows: list[LayerRow] = []
    pending: list[tuple[str, LayerRow]] = []  # auto projections, shown after their residual's body
    known = dict(model.named_modules())
    if spec.inputs is not None:  # several inputs: a row group per input, then the combiner
        rows += input_rows(model, spec, known)
    if spec.preprocess is not None:  # raw input -> backbone input; buffers, no parameters
        rows.append(LayerRow("preprocess", "preprocess", "preprocess", "Preprocessing",
                             list(spec.sample_shape), list(model.shapes.input_shape), None, None,
                             None, 0))
    for trace in model.shapes.layers:
        while pending and not trace.path.startswith(pending[-1][0] + "."):
            rows.append(pending.pop()[1])
        name = spec_module_name(spec, trace.path)
        module = known.get(name) if name is not None else None
        rows.append(LayerRow(trace.path, trace.block.type, name if module is not None else None,
                             type(module).__name__ if module is not None else None,
                             list(trace.input_shape), list(trace.output_shape), None, None, None,
                             trace.depth))
        if isinstance(trace.block, Residual) and not trace.block.shortcut and module is not None:
            shortcut = getattr(module, "shortcut", None)
            if shortcut is not None and not isinstance(shortcut, nn.Identity):
                pending.append((trace.path, LayerRow(  # weights without a spec block of their own
                    f"{trace.path}.shortcut", "projection", f"{name}.shortcut",
                    type(shortcut).__name__, list(trace.input_shape), list(trace.output_shape),
                    None, None, None, trace.depth + 1)))
    rows += [row for _, row in reversed(pending)]
    features = list(model.shapes.features)
    for head_name, head in spec.head_specs.items():
        path = f"heads.{head_name}" if spec.multi_head else "head"
        module = known.get(path)
        rows.append(LayerRow(path, head.type, path, type(module).__name__ if module else None,
                             features, list(model.shapes.heads[head_name]), None, None, None, 0))
    return rows


def input_rows(model: BlocksModel, spec: ModelSpec, known: dict[str, nn.Module]) -> list[LayerRow]:
    """`inputs.review` (its kind, raw shape -> encoded shape), its encoder's blocks under it,
    and `combine` (the encoded vectors -> the backbone's input)."""
    traced, rows = model.shapes.inputs, []
    for name, spec_input in spec.inputs.items():
        encoder = f"inputs.{name}"
        rows.append(LayerRow(f"inputs.{name}", spec_input.kind, encoder, "Sequential",
                             list(traced.samples[name]), list(traced.encoded[name]), None, None,
                             None, 0))
        module = known.get(encoder)
        offset = 1 if module is not None and len(module) and type(module[0]).__name__ == \
            "Standardize" else 0
        if offset:
            rows.append(LayerRow(f"inputs.{name}.standardize", "standardize", f"{encoder}.0",
                                 "Standardize", list(traced.samples[name]),
                                 list(traced.samples[name]), None, None, None, 1))
        for trace in traced.encoders[name]:
            index = re.match(rf"inputs\.{name}\.encoder\[(\d+)\]$", trace.path)
            module_name = f"{encoder}.{int(index.group(1)) + offset}" if index else None
            found = known.get(module_name) if module_name else None
            rows.append(LayerRow(trace.path, trace.block.type,
                                 module_name if found is not None else None,
                                 type(found).__name__ if found is not None else None,
                                 list(trace.input_shape), list(trace.output_shape), None, None,
                                 None, trace.depth + 1))
    combine = known.get("combine")
    rows.append(LayerRow("combine", spec.combiner.type, "combine",
                         type(combine).__name__ if combine is not None else None,
                         [sum(s[0] for s in traced.encoded.values())], list(traced.combined),
                         None, None, None, 0))
    return rows


_STEP = re.compile(r"\.(blocks|shortcut|branches\[\d+\])(?:#(\d+))?\[(\d+)\]")


def spec_module_name(spec: ModelSpec, path: str) -> str | None:
    """The qualified module name of the block at spec `path` in a model built from `spec`.

    `backbone[3]` -> `backbone.3`; residual `backbone[3].blocks[1]` -> `backbone.3.body.1` and
    `.shortcut[0]` -> `backbone.3.shortcut.0`; repeat `backbone[4].blocks#1[0]` (repetition 1,
    block 0) -> `backbone.4.1.0`. `None` for children of composites it does not know.
    """
    head = re.match(r"backbone\[(\d+)\]", path)
    if head is None:
        return None
    index = int(head.group(1))
    if index >= len(spec.backbone):
        return None
    block, name, rest = spec.backbone[index], f"backbone.{index}", path[head.end():]
    while rest:
        step = _STEP.match(rest)
        if step is None:
            return None
        kind, rep, idx = step.group(1), step.group(2), int(step.group(3))
        if isinstance(block, Repeat) and kind == "blocks" and rep is not None:
            name, block = f"{name}.{rep}.{idx}", block.blocks[idx]
        elif isinstance(block, Residual) and kind == "blocks" and rep is None:
            name, block = f"{name}.body.{idx}", block.blocks[idx]
        elif isinstance(block, Residual) and kind == "shortcut" and block.shortcut:
            name, block = f"{name}.shortcut.{idx}", block.shortcut[idx]
        elif (child := getattr(block, "child_module", None)) and (found := child(kind, rep, idx)):
            name, block = f"{name}.{found[0]}", found[1]  # composites that name their children
        else:
            return None
        rest = rest[step.end():]
    return name


def module_rows(model: nn.Module, run: ProbeRun) -> list[LayerRow]:
    """Rows of a plain `nn.Module`: every submodule, with the shapes of its first call."""
    rows = []
    for name, module in model.named_modules():
        if not name:
            continue
        shape_in, shape_out = run.shapes.get(name, (None, None))
        rows.append(LayerRow(name, type(module).__name__, name, type(module).__name__,
                             shape_in, shape_out, None, None, None, name.count(".")))
    return rows


def fill_stats(rows: list[LayerRow], model: nn.Module, run: ProbeRun) -> None:
    """Params from the user's model (read only); mult-adds from torchinfo's leaf layers, summed
    into every enclosing module so a composite's row shows what its whole subtree costs."""
    macs: dict[str, int] = {}
    for info in run.infos:
        if not info.is_leaf_layer:
            continue
        name = run.names.get(id(info.module))
        if name is None:
            continue
        parts = name.split(".") if name else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            macs[key] = macs.get(key, 0) + leaf_macs(info)
    for name, count in run.attention_macs.items():
        parts = name.split(".") if name else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            macs[key] = macs.get(key, 0) + count
    modules = dict(model.named_modules())
    for row in rows:
        module = modules.get(row.module) if row.module is not None else None
        if module is None:
            continue
        params = list(module.parameters())
        row.params = sum(p.numel() for p in params)
        row.trainable_params = sum(p.numel() for p in params if p.requires_grad)
        if run.error is None or row.module in run.finished:
            row.mult_adds = macs.get(row.module, 0)


def raise_forward_error(run: ProbeRun, rows: list[LayerRow]) -> None:
    """Raise the probe run's failure as a `SummaryError` naming the innermost block with a row
    that encloses the failing module, and listing the blocks that ran before it."""
    err = run.error
    assert err is not None
    failed = run.failed_module
    by_module = {r.module: r for r in rows if r.module is not None}
    row = None
    name = failed
    while name is not None:
        if name in by_module:
            row = by_module[name]
            break
        name = name.rsplit(".", 1)[0] if "." in name else (None if name == "" else "")
    done = [r for r in rows if r.module is not None and r.module in run.finished]
    if row is None:
        where = f"module {failed!r}" if failed else "the model's forward"
    elif row.module == row.path:
        where = row.label
    else:
        where = f"{row.label} (module {failed!r}, {run.types.get(failed or '', '?')})"
    lines = [f"summary forward pass failed in {where}: {type(err).__name__}: {err}"]
    if done:
        lines.append("blocks that ran before it:")
        lines += [f"  {'  ' * r.depth}{r.label}: {fmt_batch_shape(r.input_shape)} -> "
                  f"{fmt_batch_shape(r.output_shape)}" for r in done]
    raise SummaryError("\n".join(lines), path=row.path if row else None, module=failed,
                       rows=done) from err
