"""What `blocks validate` can know about a whole recipe without training: `load_recipe`.

`blocks.load_recipe` is the recipe loader (`blocks.recipe.loading`) plus the checks that span
sections, and so need more than the text: fine-tuning prefixes (`train.freeze`,
`param_groups`, `init_from.only`) must name parameters of the model, found by building it on the
`meta` device; and, with `check_data` (`blocks validate`), what can be read of the data.

Each check returns problems with spec paths (`data.csv.path`, `model.head.classes`), which
`blocks.recipe.loading` locates at the recipe's line, the same way as type and shape errors: data files
exist, bundled datasets fit the head and input, CSV target columns exist and fit the heads,
npz targets name the heads, the early-stopping metric is one that training records, an
`embedding` block gets int64 token ids.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from blocks.core.errors import Problem, SpecError, escape_name
from blocks.recipe import loading
from blocks.spec.recipe import Recipe
from blocks.spec.train import prefix_problems

# (classes, features, kind) of the bundled scikit-learn datasets
BUNDLED = {"digits": (10, 64, "image"), "iris": (3, 4, "tabular"), "wine": (3, 13, "tabular"),
           "breast_cancer": (2, 30, "tabular")}


def load_recipe(source: str | os.PathLike[str] | dict[str, Any], *, check_size: bool = False,
                check_data: bool = False, notes: list[str] | None = None) -> Recipe:
    """A validated `Recipe` from a file path, a bundled recipe name, YAML/JSON text, or a dict.

    Checks types, unknown keys and every block's shapes, and that fine-tuning prefixes name
    parameters of the model; raises `SpecError` listing each problem with file, line, column
    and spec path. `check_size` also counts the model's parameters on the `meta` device and
    refuses one whose weights would not fit in memory; `check_data` runs what can be checked
    without training (data files exist, targets fit the heads, the early-stopping metric
    exists, image files decode, ...); both are `blocks validate`'s. `notes` collects what
    `check_data` checked only in part (a large image folder is sampled, bounded in time).
    """

    def checks(recipe: Recipe, base_dir: Path) -> list[Problem]:
        problems = finetune_problems(recipe)
        if check_data and not problems:
            problems = recipe_problems(recipe, base_dir, notes)
        return problems

    return loading.load_recipe(source, check_size=check_size, checks=checks)


def check_recipe(recipe: Recipe) -> None:
    """The cross-section checks of `load_recipe` on a recipe built in Python or changed by
    `--set` (nothing to locate in a file)."""
    problems = finetune_problems(recipe)
    if problems:
        raise SpecError(problems)


def iter_recipe_errors(paths: Sequence[str]) -> Iterator[tuple[str, Recipe | SpecError]]:
    """Validate many recipes, yielding each result or its error."""
    for name, result, _ in validate_recipes(paths):
        yield name, result


def validate_recipes(paths: Sequence[str]) -> Iterator[tuple[str, Recipe | SpecError, list[str]]]:
    """`blocks validate`: each recipe or its error, with notes on what was checked only in part."""
    for name in paths:
        notes: list[str] = []
        try:
            yield name, load_recipe(name, check_size=True, check_data=True, notes=notes), notes
        except SpecError as err:
            yield name, err, notes


def finetune_problems(recipe: Recipe) -> list[Problem]:
    """`train.freeze`, `param_groups` and `init_from.only` prefixes that name no parameter."""
    train = recipe.train
    if not (train.freeze or train.param_groups or train.init_from is not None):
        return []
    names = model_parameter_names(recipe.model)
    return prefix_problems(train, names) if names is not None else []


def model_parameter_names(model_spec: Any) -> list[str] | None:
    """Parameter names of the model a spec builds, from a build on the `meta` device (no
    weights); None when some block cannot be built there (the Trainer checks the real model)."""
    # lazy: `blocks validate` stays torch-free
    from blocks.builder.model import BlocksModel  # lazy: `blocks validate` stays torch-free
    from blocks.core.lazy import torch

    try:
        with torch.device("meta"):
            model = BlocksModel(model_spec)
    except Exception:  # noqa: BLE001 - only a cheaper early check is skipped
        return None
    return [name for name, _ in model.named_parameters()]


def recipe_problems(recipe: Recipe, base_dir: Path | None,
                    notes: list[str] | None = None) -> list[Problem]:
    """Every problem found, in recipe order (model, data, train)."""
    problems = _embedding_problems(recipe) + weights_file_problems(recipe, base_dir)
    if recipe.data is not None:
        problems += _data_problems(recipe, base_dir, notes)
    problems += _early_stopping_problems(recipe)
    return problems


def weights_file_problems(recipe: Recipe, base_dir: Path | None) -> list[Problem]:
    """Weights files the recipe names (`model.weights.file`, a backbone's `weights` /
    `checkpoint`) that are missing or cannot be weights, from their
    first bytes: said now, not when `train` reaches them."""
    # lazy: keeps the external backbones' module (and pydantic models) off `validate`'s start
    from blocks.layers.external import weights_file_problem

    wanted: list[tuple[str, str, Path | None]] = []  # (spec path, file, folder it is relative to)
    if recipe.model.weights is not None:
        wanted.append(("model.weights.file", recipe.model.weights.file, base_dir))

    def walk(blocks: list[Any], path: str) -> None:
        for i, block in enumerate(blocks):
            for key in ("weights", "checkpoint"):
                value = getattr(block, key, None) if getattr(block, "type", None) in (
                    "torchvision", "timm") else None
                if isinstance(value, str):
                    wanted.append((f"{path}[{i}].{key}", value, None))  # read from the cwd
            inner = getattr(block, "blocks", None)
            if isinstance(inner, list):
                walk(inner, f"{path}[{i}].blocks")

    walk(recipe.model.backbone, "model.backbone")
    # train.init_from is not checked: it often names a run that an earlier step is yet to train
    problems = []
    for where, name, base in wanted:
        path = Path(name)
        if not path.is_absolute() and base is not None:
            path = base / path
        if path.is_dir() and not where.startswith("model.backbone"):  # a run folder
            path = path / "model.safetensors"
        problem = weights_file_problem(path)
        if problem is not None:
            problems.append(Problem(where, f"weights file {escape_name(path)!r} {problem}",
                                    "file_not_found" if problem == "does not exist"
                                    else "bad_weights"))
    return problems


def _embedding_problems(recipe: Recipe) -> list[Problem]:
    if recipe.model.input is None or recipe.model.input.dtype == "int64":
        return []  # several inputs: each encoder's ids are checked by shape inference
    found = []

    def walk(blocks: list[Any], path: str) -> None:
        for i, block in enumerate(blocks):
            if getattr(block, "type", None) == "embedding":
                found.append(Problem(f"{path}[{i}]", "an `embedding` block looks up integer token "
                                     f"ids, but the model input is {recipe.model.input.dtype}; set "
                                     "`model.input.dtype: int64`", "embedding_dtype"))
            inner = getattr(block, "blocks", None)
            if isinstance(inner, list):
                walk(inner, f"{path}[{i}].blocks")

    walk(recipe.model.backbone, "model.backbone")
    return found[:1]  # one report: the input dtype is the one fix


def _data_problems(recipe: Recipe, base_dir: Path | None, notes: list[str] | None) -> list[Problem]:
    data, model = recipe.data, recipe.model
    problems: list[Problem] = []
    for key in ("csv", "parquet", "npz", "images"):
        source = getattr(data, key)
        if source is None:
            continue
        path = Path(source.path)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.exists():
            problems.append(Problem(f"data.{key}.path", f"{'folder' if key == 'images' else 'file'} "
                                    f"{str(path)!r} does not exist", "file_not_found"))
        elif key == "csv" and path.is_file():
            problems += _csv_problems(recipe, path)
        elif key == "images" and path.is_dir():
            problems += _image_problems(recipe, path, notes)
    if data.dataset is not None:
        problems += _bundled_problems(recipe)
    if data.npz is not None and isinstance(data.npz.y, dict) != model.multi_head:
        problems.append(Problem("data.npz.y", "name one array per head (head -> key)"
                                if model.multi_head else "the model has one head: give one "
                                "target key", "targets_shape"))
    elif data.npz is not None and isinstance(data.npz.y, dict):
        problems += _head_names(set(data.npz.y), model, "data.npz.y")
    if not problems and (data.csv is not None or data.npz is not None or data.parquet is not None):
        problems += _reading_problems(recipe, base_dir)
    return problems


def _reading_problems(recipe: Recipe, base_dir: Path | None) -> list[Problem]:
    """Read a CSV/npz source as training would (no model is built): every target fits its head
    in type and range, cells parse, the encoded input fits `model.input.shape`."""
    # lazy: `blocks validate` stays torch-free
    from blocks.core.errors import SpecError
    from blocks.data.splits import load_splits

    try:
        load_splits(recipe, base_dir)
    except SpecError as err:
        return list(err.problems)
    return []


def _head_names(given: set[str], model: Any, where: str) -> list[Problem]:
    heads = set(model.head_specs)
    if given == heads:
        return []
    unknown, missing = sorted(given - heads), sorted(heads - given)
    return [Problem(where, (f"names no head {', '.join(map(repr, unknown))}; " if unknown else "")
                    + (f"no target for head(s) {', '.join(map(repr, missing))}; " if missing else "")
                    + f"the model's heads are {', '.join(model.head_specs)}", "unknown_head")]


def _bundled_problems(recipe: Recipe) -> list[Problem]:
    data, model = recipe.data, recipe.model
    classes, features, kind = BUNDLED[data.dataset]
    classes = len(data.classes) if data.classes is not None else classes
    problems = []
    if model.multi_head:
        return [Problem("data.dataset", f"{data.dataset} has one target; the model has heads "
                        f"{', '.join(model.head_specs)} (use `head:`)", "targets_shape")]
    if model.inputs is not None:
        return [Problem("data.dataset", f"{data.dataset} is one array of features; a model with "
                        "`inputs` reads a table (`data.csv`) or tensors", "unsupported")]
    head = model.head
    wanted = classes if head.type == "softmax" else (1 if classes == 2 else classes)
    if head.classes != wanted:
        problems.append(Problem("model.head.classes", f"{data.dataset} has {classes} classes"
                                + (" (after `data.classes`)" if data.classes else "")
                                + f", so the {head.type} head needs classes: {wanted}",
                                "class_count"))
    if data.classes is not None:
        out_of_range = [c for c in data.classes if not 0 <= c < BUNDLED[data.dataset][0]]
        if out_of_range:
            problems.append(Problem("data.classes", f"{data.dataset} has class ids 0.."
                                    f"{BUNDLED[data.dataset][0] - 1}, not {out_of_range[0]}",
                                    "unknown_class"))
    size = math.prod(model.input.shape)
    if model.preprocess is None and model.input.dtype != "int64" and size != features:
        shape = list(model.input.shape)
        resizable = kind == "image" and len(shape) == 3 and shape[0] == 1
        if not resizable:
            problems.append(Problem("model.input.shape", f"{data.dataset} has {features} "
                                    f"features per sample, which cannot be shaped into {shape}",
                                    "shape_mismatch"))
    return problems


def _image_problems(recipe: Recipe, root: Path, notes: list[str] | None) -> list[Problem]:
    """One softmax head over [C, H, W] input, with as many classes as class folders, and
    image files that decode (`image_file_problems`)."""
    # lazy: `blocks validate` stays torch-free
    from blocks.core.errors import SpecError
    from blocks.data.images import image_shape

    model = recipe.model
    try:
        image_shape(model)
    except SpecError as err:
        return list(err.problems)
    if model.multi_head or model.head.type != "softmax":
        return [Problem("data.images", "image folders give one class per image: use a single "
                        "softmax `head`", "targets_shape")]
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) != model.head.classes:
        return [Problem("model.head.classes", f"{root.name} has {len(folders)} class folders "
                        f"({', '.join(folders[:8])}) but the head has {model.head.classes} classes",
                        "class_count")]
    return image_file_problems(recipe, root, notes)


def image_file_problems(recipe: Recipe, root: Path, notes: list[str] | None = None) -> list[Problem]:
    """The folder's image files decoded as training decodes them, up to `CHECK_FILES` files or
    `CHECK_SECONDS` (then `notes` says how many were): a bad file is training's error (or, with
    `skip_bad_files`, a note that it will be skipped)."""
    # lazy: `blocks validate` stays torch-free for recipes without image folders
    from blocks.core.errors import SpecError
    from blocks.data.image_check import check_image_files
    from blocks.data.images import image_shape, list_image_folder

    source, model = recipe.data.images, recipe.model
    try:
        listing = list_image_folder(root, model.head.labels)
    except SpecError as err:
        return list(err.problems)
    check = check_image_files(listing.files, image_shape(model), source.resize)
    count = len(check.bad)
    among = f"{count} bad file{'s' if count > 1 else ''} among {check.checked:,} checked"
    if check.bad and not source.skip_bad_files:
        return [Problem("data.images.path", f"{check.bad[0][1]} ({among}; set "
                        "`skip_bad_files: true` to skip them)", "bad_image")]
    if notes is not None:
        if check.bad:
            shown = ", ".join(str(path) for path, _ in check.bad[:3])
            notes.append(f"data.images: {among} will be skipped (skip_bad_files): {shown}"
                         f"{' ...' if count > 3 else ''}")
        if not check.complete:
            notes.append(f"data.images: decoded {check.checked:,} of {check.total:,} image files "
                         f"(a sample; stopped at {check.stopped_by}); training reads the rest")
    return []


def _csv_problems(recipe: Recipe, path: Path) -> list[Problem]:
    """Target columns exist in the header and fit the heads in number (types need the rows)."""
    # lazy: `blocks validate` stays torch-free
    from blocks.core.errors import SpecError
    from blocks.data.columnar import first_record
    from blocks.data.sources import target_columns

    source, model = recipe.data.csv, recipe.model
    try:
        targets = target_columns(source.target, model)
    except SpecError as err:
        return list(err.problems)
    widths = [1 if h.type == "softmax" else h.classes for h in model.head_specs.values()]
    if len(targets) != sum(widths):
        heads = ", ".join(f"{name} ({w})" for name, w in zip(model.head_specs, widths, strict=True))
        return [Problem("data.csv.target", f"{len(targets)} target column(s) but the head(s) take "
                        f"{sum(widths)}: {heads}", "targets_shape")]
    try:  # a bounded read of the first row: width and line length checked first
        header = first_record(path, "data.csv.path", source.delimiter)
    except SpecError as err:
        return list(err.problems)
    named = [*targets, *(source.features or [])]
    for name, spec in (model.inputs or {}).items():  # several inputs: each names its columns
        named += spec.source_columns or ([] if spec.kind == "sequence" else [name])
    categorical = source.categorical if isinstance(source.categorical, list) else []
    missing = [c for c in [*named, *categorical] if c not in header]
    if missing:
        where = ("data.csv.target" if missing[0] in targets else "data.csv.categorical"
                 if missing[0] in categorical else "data.csv.features")
        return [Problem(where, f"{path.name} has no column {missing[0]!r} (header: "
                        f"{', '.join(header[:8])}{' ...' if len(header) > 8 else ''})",
                        "unknown_column")]
    return []


def _early_stopping_problems(recipe: Recipe) -> list[Problem]:
    # lazy: `blocks validate` stays torch-free
    from blocks.spec.metric_names import record_metric_names

    rule = recipe.train.early_stopping
    if rule is None:
        return []
    split, _, rest = rule.metric.partition("/")
    names = record_metric_names(recipe.model.head_specs)
    if split not in ("train", "val") or rest not in names:
        return [Problem("train.early_stopping.metric", f"{rule.metric!r} is not a metric blocks "
                        f"records; choose one of: {', '.join(sorted(names))} after `train/` or "
                        "`val/`", "unknown_metric")]
    if split == "val" and recipe.data is not None and recipe.data.val_fraction == 0:
        return [Problem("train.early_stopping.metric", f"{rule.metric!r} needs a validation "
                        "split, but data.val_fraction is 0", "unknown_metric")]
    return []
