"""Recipes in and out: YAML/JSON/dicts to specs with located errors, specs back to YAML.

Every error names the file, line and column of the offending value and its spec path, e.g.
`recipes/x.yaml:7:7: model.backbone[0].kernel_size: Input should be a valid integer`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from blocks.core.errors import Problem, RegistryError, SpecError
from blocks.core.numbers import Boolean
from blocks.recipe.bounded_yaml import Positions, parse_yaml, read_recipe_file
from blocks.spec.budget import check_footprint
from blocks.spec.model import ModelSpec
from blocks.spec.recipe import Recipe, multi_input_data_problems
from blocks.spec.registry import Block, block_types, closest, get_block_type
from blocks.spec.schema_tags import tag_unions

Loc = tuple[str | int, ...]


# --- pydantic errors -> located problems ----------------------------------------------------------
def _path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _data_loc(loc: Loc, data: Any) -> Loc:
    """Drop pydantic's union tags (`softmax`, `function-after[...]`) that are not keys in the data."""
    kept: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            kept.append(part)
            node = node[part]
        elif isinstance(node, str) and isinstance(part, int | str):
            continue  # bare-string shorthand block: nothing deeper to point at
        elif isinstance(node, dict | list):
            # a missing or unknown key: keep it, it names what is wrong
            if not (isinstance(part, str) and (part.startswith(("function-", "tagged-union"))
                                               or _is_union_tag(part))):
                kept.append(part)
                node = None
        else:
            kept.append(part)
            node = None
    return tuple(kept)


def _is_union_tag(part: str) -> bool:
    return part in block_types() or part in {"softmax", "sigmoid", "sgd", "adam", "adamw", "step",
                                             "cosine", "one_cycle"}


def _fields_at(root: type[BaseModel], loc: Loc, data: Any) -> list[str]:
    """Field names valid at `loc[:-1]` (for 'did you mean' on unknown keys)."""
    cls: Any = root
    node = data
    for part in loc[:-1]:
        parent = node
        node = node[part] if isinstance(node, dict | list) else None
        if isinstance(part, int):
            continue
        if isinstance(parent, dict) and isinstance(parent.get("type"), str) and parent["type"] in block_types():
            cls = block_types()[parent["type"]]  # a block nested in a block (`repeat`, `residual`)
        if cls is None or not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return []
        info = cls.model_fields.get(part)
        if info is None:
            return []
        cls = _model_in(info.annotation, node)
    if isinstance(node, dict) and isinstance(node.get("type"), str):
        with contextlib.suppress(RegistryError):  # not a block: keep the class found by walking
            cls = get_block_type(node["type"])
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return [name for name in cls.model_fields if name != "type"]
    return []


def _model_in(annotation: Any, node: Any) -> Any:
    """The pydantic model inside an annotation (`list[X]`, `X | None`, a tagged union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation is Block and isinstance(node, dict):
            return block_types().get(node.get("type"), Block)
        return annotation
    candidates = [a for a in get_args(annotation) if a is not type(None)]
    for arg in candidates:
        found = _model_in(arg, node)
        if found is not None:
            tag = getattr(found, "model_fields", {}).get("type")
            if isinstance(node, dict) and tag is not None and node.get("type") not in (tag.default, None):
                continue
            return found
    if get_origin(annotation) in (list, dict) and candidates:
        return _model_in(candidates[-1], node)
    return None


def _message(error: dict[str, Any], valid_fields: list[str]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        hint = closest(key, valid_fields)
        suggestion = f"; did you mean {hint!r}?" if hint else ""
        listing = f" (valid: {', '.join(valid_fields)})" if valid_fields else ""
        return f"unknown key {key!r}{suggestion}{listing}"
    if kind == "missing":
        return f"missing required key {str(error['loc'][-1])!r}"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        hint = closest(str(ctx.get("tag", "")), tags)
        suggestion = f"; did you mean {hint!r}?" if hint else ""
        key = str(ctx.get("discriminator", "'type'")).strip("'")  # `kind` for model.inputs
        return f"unknown {key} {ctx.get('tag')!r}{suggestion} (valid: {', '.join(tags)})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        # pydantic names the class (`instance of CsvSource`): users wrote YAML, not classes
        return f"expected a mapping of keys (`key: value`), got {_shown(error.get('input'))}"
    if kind == "literal_error" and isinstance(error.get("input"), str):
        expected = [t.strip(" '") for t in str(error.get("ctx", {}).get("expected", ""))
                    .replace(" or ", ", ").split(",")]
        hint = closest(error["input"], expected)
        suggestion = f"; did you mean {hint!r}?" if hint else ""
        return f"{error['msg']}, got {error['input']!r}{suggestion}"
    message = error["msg"]
    if isinstance(error.get("input"), Boolean) and "boolean" not in message:
        message += f", got the boolean {error['input'].value} (yes/no/true/false)"
    return message[len("Value error, "):] if message.startswith("Value error, ") else message


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Boolean):
        return f"the boolean {value.value}"
    return f"the number {value!r}" if isinstance(value, int | float) else "a value of another kind"


def _special_case(error: dict[str, Any]) -> str | None:
    """Messages for mistakes a newcomer makes, where pydantic's words do not help."""
    loc = error["loc"]
    if (loc and loc[-1] == "classes" and "softmax" in loc and error["input"] == 1
            and error["type"] == "greater_than_equal"):
        return ("a softmax head needs at least 2 classes; for a binary (yes/no) problem use "
                "`{type: sigmoid}` (classes: 1, 0/1 targets)")
    at_head = loc and loc[-1] in ("head", "heads") or len(loc) > 1 and loc[-2] == "heads"
    if at_head and error["input"] in ("softmax", "sigmoid") and error["type"] == "model_attributes_type":
        return (f"a head needs its settings as a mapping, e.g. `{{type: {error['input']}, "
                f"classes: {3 if error['input'] == 'softmax' else 1}}}`")
    return None


def _one_typo_one_error(problems: list[Problem], valid: dict[int, list[str]]) -> list[Problem]:
    """A misspelt required key is one error: `unknown key 'out_chanels'; did you mean
    'out_channels'?`, not that plus `missing required key 'out_channels'`."""
    misspelt = set()
    for i, problem in enumerate(problems):
        if problem.type != "extra_forbidden":
            continue
        parent, _, key = problem.path.rpartition(".")
        hint = closest(key, valid.get(i, []))
        if hint:
            misspelt.add(f"{parent}.{hint}" if parent else hint)
    return [p for p in problems if not (p.type == "missing" and p.path in misspelt)]


def problems_from(err: ValidationError, data: Any, positions: Positions | None, source: str | None,
                  root: type[BaseModel], prefix: Loc = ()) -> list[Problem]:
    problems: list[Problem] = []
    valid_by_index: dict[int, list[str]] = {}
    seen_union_paths = set()
    for error in err.errors(include_url=False):
        loc = _data_loc(tuple(error["loc"]), data)
        if len(loc) < len(error["loc"]) and error["type"] not in ("missing", "extra_forbidden"):
            # one report per value that failed every member of a union (int | list[int], ...)
            if loc in seen_union_paths:
                continue
            seen_union_paths.add(loc)
        if error["type"] == "missing":
            where = positions.find(loc[:-1]) if positions else None
        else:
            where = positions.find(loc, key=error["type"] == "extra_forbidden") if positions else None
        valid = _fields_at(root, loc, data) if error["type"] == "extra_forbidden" else []
        valid_by_index[len(problems)] = valid
        line, column = where if where else (None, None)
        problems.append(Problem(_path((*prefix, *loc)), _special_case(error) or _message(error, valid),
                                error["type"], source, line, column))
    return _one_typo_one_error(problems, valid_by_index)


def _locate_shape_problems(err: SpecError, positions: Positions | None, source: str | None) -> SpecError:
    located = []
    for problem in err.problems:
        loc = _loc_from_path(problem.path)
        where = positions.find(loc) if positions else None
        line, column = where if where else (None, None)
        located.append(Problem(problem.path, problem.message, problem.type, source, line, column))
    return SpecError(located)


def _loc_from_path(path: str) -> Loc:
    loc: list[str | int] = []
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            index = part[1:-1]
            loc.append(int(index.split("#")[0]) if index[0].isdigit() else index)
        else:
            loc.append(part.split("#")[0])
    return tuple(loc)


# --- public loading -------------------------------------------------------------------------------
def bundled_recipes() -> dict[str, Path]:
    """Recipes shipped with the package, by name (file stem)."""
    folder = resources.files("blocks") / "recipes"
    return {Path(str(entry)).stem: Path(str(entry)) for entry in sorted(folder.iterdir(), key=str)
            if str(entry).endswith(".yaml")}


def _is_file(name: str | os.PathLike[str]) -> bool:
    """`Path.exists`, but False for strings no file system accepts as a name (too long, NUL)."""
    try:
        return Path(name).exists()
    except (OSError, ValueError):
        return False


def resolve_recipe_path(name: str | os.PathLike[str]) -> Path:
    """A path as given, or the name of a bundled recipe (`seed_cnn`, `seed_cnn.yaml`)."""
    path = Path(name)
    if _is_file(path):
        return path
    bundled = bundled_recipes()
    stem = path.name[:-5] if path.name.endswith((".yaml", ".json")) else path.name
    if len(path.parts) == 1 and stem in bundled:
        return bundled[stem]
    hint = closest(stem, bundled)
    suggestion = f"; did you mean the bundled recipe {hint!r}?" if hint else ""
    raise SpecError(Problem("", f"no recipe file {str(name)!r}{suggestion} (bundled: "
                            f"{', '.join(bundled)})", "file_not_found", str(name)))


#: checks a caller adds to loading: `(recipe, the folder its relative paths start from) ->
#: problems`, located in the recipe's text like its own (`blocks.run.validate` passes the
#: checks that need the data or a model built on `meta`)
RecipeChecks = Callable[[Recipe, Path], list[Problem]]


def _validate(cls: type[BaseModel], data: Any, positions: Positions | None, source: str | None,
              prefix: Loc = (), check_size: bool = False, checks: RecipeChecks | None = None,
              base_dir: Path | None = None):
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(Problem(_path(prefix), f"expected a mapping at the top of the "
                                f"{'recipe' if cls is Recipe else 'spec'}, got a {kind}",
                                "not_a_mapping", source, 1, 1))
    try:
        spec = cls.model_validate(data)
    except ValidationError as err:
        raise SpecError(problems_from(err, data, positions, source, cls, prefix)) from None
    model = spec.model if isinstance(spec, Recipe) else spec
    try:
        where = "model" if isinstance(spec, Recipe) else _path(prefix) or "model"
        shapes = model.infer_shapes(prefix=where)
        if check_size:
            check_footprint(model, prefix=where, shapes=shapes)
    except SpecError as err:
        raise _locate_shape_problems(err, positions, source) from None
    if isinstance(spec, Recipe) and (problems := multi_input_data_problems(spec)):
        raise _locate_shape_problems(SpecError(problems), positions, source)
    if checks is not None and isinstance(spec, Recipe):
        problems = checks(spec, base_dir)
        if problems:
            raise _locate_shape_problems(SpecError(problems), positions, source)
    return spec


def load_recipe(source: str | os.PathLike[str] | dict[str, Any], *, check_size: bool = False,
                checks: RecipeChecks | None = None) -> Recipe:
    """A validated `Recipe` from a file path, a bundled recipe name, YAML/JSON text, or a dict.

    Checks types, unknown keys and every block's shapes; raises `SpecError` listing each problem
    with file, line, column and spec path. `check_size` also counts the model's parameters on
    the `meta` device and refuses one whose weights would not fit in memory. `checks` run on
    the validated recipe and their problems are located the same way: `blocks.load_recipe`
    (`blocks.run.validate`) passes the fine-tuning name checks and, for `blocks validate`, the
    data checks.
    """
    if isinstance(source, dict):
        return _validate(Recipe, source, None, None, check_size=check_size, checks=checks,
                         base_dir=Path.cwd())
    if isinstance(source, str) and ("\n" in source or ":" in source and not _is_file(source)):
        data, positions = parse_yaml(source, None)
        return _validate(Recipe, data, positions, None, check_size=check_size, checks=checks,
                         base_dir=Path.cwd())
    path = resolve_recipe_path(source)
    shown = str(source) if _is_file(source) else str(path)
    data, positions = parse_yaml(read_recipe_file(path, shown), shown)
    recipe = _validate(Recipe, data, positions, shown, check_size=check_size, checks=checks,
                       base_dir=path.resolve().parent)
    recipe._source_path = path.resolve()  # relative data paths resolve against this
    weights = recipe.model.weights
    if weights is not None and not Path(weights.file).is_absolute():  # like data paths
        weights.file = str(path.resolve().parent / weights.file)
    return recipe


def locate_in_recipe(err: SpecError, recipe: Recipe, *, skip: Sequence[str] = ()) -> SpecError:
    """`err`'s problems that have a spec path and no place yet (raised after loading, by the
    data a recipe reads), located at that path's line of the recipe's file, as loading locates
    its own; `skip`: spec paths whose value is not the file's (a `--set` override). `err`
    itself when the recipe has no file or nothing is to be located."""
    path = recipe.source_path
    wanted = [p for p in err.problems if p.path and p.file is None and p.line is None
              and not any(p.path == key or p.path.startswith((f"{key}.", f"{key}["))
                          for key in skip)]
    if path is None or not wanted:
        return err
    shown = os.path.relpath(path)
    shown = str(path) if shown.startswith("..") else shown
    try:
        _, positions = parse_yaml(read_recipe_file(path, shown), shown)
    except SpecError:  # the file changed since: the problems as they are
        return err
    located = []
    for problem in err.problems:
        where = positions.find(_loc_from_path(problem.path)) if problem in wanted else None
        located.append(problem if where is None else
                       Problem(problem.path, problem.message, problem.type, shown, *where))
    return SpecError(located)


def validate_section(cls: type[BaseModel], data: Any, prefix: Loc = ()) -> Any:
    """A spec (`TrainSpec`, `DataSpec`, ...) from a Python dict, with the same located,
    did-you-mean problems as a recipe file (`train.optimizer.lrr: unknown key 'lrr'; did you
    mean 'lr'?`), never a raw pydantic `ValidationError`."""
    if not isinstance(data, dict):
        raise SpecError(Problem(_path(prefix), f"expected a mapping, got a {type(data).__name__}",
                                "not_a_mapping"))
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise SpecError(problems_from(err, data, None, None, cls, prefix)) from None


def validate_model_dict(data: dict[str, Any]) -> ModelSpec:
    return _validate(ModelSpec, data, None, None)


def dump_recipe(spec: Recipe | ModelSpec, *, full: bool = False) -> str:
    """YAML text that loads back to an equal spec (defaults left out unless `full`)."""
    data = spec.model_dump(mode="json", exclude_defaults=not full, exclude_none=True)
    if not full:  # a default `type` tag (adam, cosine) is still needed to pick the union member
        data = _keep_tags(data, spec.model_dump(mode="json", exclude_none=True))
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def _keep_tags(lean: Any, full: Any) -> Any:
    """Put back the `type` keys that `exclude_defaults` dropped, wherever the full dump has one."""
    if isinstance(lean, dict) and isinstance(full, dict):
        kept = {key: _keep_tags(value, full.get(key)) for key, value in lean.items()}
        if "type" in full and "type" not in kept:
            kept = {"type": full["type"], **kept}
        return kept
    if isinstance(lean, list) and isinstance(full, list) and len(lean) == len(full):
        return [_keep_tags(a, b) for a, b in zip(lean, full, strict=True)]
    return lean


def recipe_schema() -> dict[str, Any]:
    """JSON Schema of the recipe format, including plugin block types registered so far."""
    schema = tag_unions(Recipe.model_json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "blocks recipe"
    return schema
