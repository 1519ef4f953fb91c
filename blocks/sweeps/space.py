"""A sweep's search space: recipe keys and the distribution each is drawn from.

    train.optimizer.lr: {log_uniform: [1e-4, 1e-1]}
    model.backbone[0].out_features: {choice: [32, 64, 128]}
    model.backbone[2].p: {uniform: [0.0, 0.5]}
    train.batch_size: {int: [16, 128], step: 16}

Keys are the paths of `--set` (`blocks.recipe.overrides`), so they get the same did-you-mean.
`check_space` validates the whole space against the recipe before any trial runs: every key
exists and every value the sweep can draw type-checks (both bounds, a value between them for
floats, every choice), each problem located at the space file's line and key. No torch, no
Optuna here: Optuna is only touched by `Param.suggest`, given a trial.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blocks.core.errors import Problem, SpecError
from blocks.recipe.bounded_yaml import Positions, parse_yaml, read_recipe_file
from blocks.recipe.overrides import Override, apply_overrides, as_number, dotted, parse_set
from blocks.run.validate import check_recipe, recipe_problems
from blocks.spec.recipe import Recipe

KINDS = ("log_uniform", "uniform", "int", "choice")
#: the options each kind takes besides its bounds or choices
OPTIONS = {"log_uniform": (), "uniform": ("step",), "int": ("step", "log"), "choice": ()}
_PRIMITIVE = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Param:
    """One searched recipe key: `kind` is one of KINDS; `low`/`high` bound the numeric kinds,
    `choices` lists a choice's values; `file`/`line`/`column` locate it in the space file."""

    key: str
    path: tuple[str | int, ...]
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    file: str = "<space>"
    line: int | None = None
    column: int | None = None

    def override(self, value: Any) -> Override:
        return Override(self.path, value, self.file, self.line, self.column)

    def problem(self, message: str, kind: str = "bad_space") -> Problem:
        return Problem(self.key, message, kind, self.file, self.line, self.column)

    def probes(self) -> list[Any]:
        """The values checked before the first trial: the bounds (and, for floats, a value
        with a fraction between them, which an integer key refuses), or every choice."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [self.low, self.high]
        between = (math.sqrt(self.low * self.high) if self.kind == "log_uniform"
                   else (self.low + self.high) / 2)
        for fraction in (0.37, 0.123):  # an integral midpoint (1.0 of [0, 2]) proves nothing
            if float(between).is_integer() and self.low != self.high:
                between = self.low + (self.high - self.low) * fraction
        return [float(self.low), float(between), float(self.high)]

    def suggest(self, trial: Any) -> Any:
        """Draw this key's value from an `optuna.Trial`."""
        if self.kind == "log_uniform":
            return trial.suggest_float(self.key, self.low, self.high, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.key, self.low, self.high, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return _decode(trial.suggest_categorical(self.key, [_encode(c) for c in self.choices]),
                       self.choices)

    def describe(self) -> dict[str, Any]:
        """The distribution as written (what sweep.json records and a resumed study compares)."""
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        out: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out


@dataclass
class Space:
    """The searched keys in file order, and the file they came from."""

    params: list[Param] = field(default_factory=list)
    source: str | None = None

    def describe(self) -> dict[str, Any]:
        return {p.key: p.describe() for p in self.params}

    def encode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values as Optuna stores them (choices of lists or mappings as their JSON text)."""
        kinds = {p.key: p.kind for p in self.params}
        return {k: _encode(v) if kinds.get(k) == "choice" else v for k, v in values.items()}

    def overrides(self, values: Mapping[str, Any]) -> list[Override]:
        return [p.override(values[p.key]) for p in self.params if p.key in values]


def _encode(choice: Any) -> Any:
    """Optuna's categorical values are None, bool, int, float or str: lists and mappings
    (`[3, 3]`, `{type: cosine}`) are drawn as their JSON text and decoded back."""
    return choice if isinstance(choice, _PRIMITIVE) else json.dumps(choice, sort_keys=True)


def _decode(drawn: Any, choices: tuple[Any, ...]) -> Any:
    for choice in choices:
        if _encode(choice) == drawn and type(_encode(choice)) is type(drawn):
            return choice
    return drawn


# --- reading ------------------------------------------------------------------------------------
def load_space(source: str | os.PathLike[str] | Mapping[str, Any] | Space) -> Space:
    """A `Space` from a YAML file or a mapping `{key: {kind: ...}}`; every problem of its
    shape (unknown kind, bad bounds, a key that is no path) raised at once, located."""
    space, problems = read_space(source)
    if problems:
        raise SpecError(problems)
    return space


def read_space(source: str | os.PathLike[str] | Mapping[str, Any] | Space
               ) -> tuple[Space, list[Problem]]:
    """The well-formed part of a space and the problems of the rest (so that a sweep reports
    the shape problems and the recipe problems of the good keys together)."""
    if isinstance(source, Space):
        return source, []
    positions: Positions | None = None
    shown = "<space>"
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        path = Path(source)
        shown = str(source)
        if not path.is_file():
            raise SpecError(Problem("", "no such space file", "no_file", shown))
        data, positions = parse_yaml(read_recipe_file(path, shown), shown)
    if not isinstance(data, dict) or not data:
        raise SpecError(Problem("", "a space is a mapping of recipe keys to distributions, e.g. "
                                "`train.optimizer.lr: {log_uniform: [1e-4, 1e-1]}`", "bad_space",
                                shown, 1 if positions else None, 1 if positions else None))
    params: list[Param] = []
    problems: list[Problem] = []
    seen: dict[tuple[str | int, ...], str] = {}
    for key, spec in data.items():
        where = positions.find((key,), key=True) if positions is not None else None
        line, column = where or (None, None)
        try:
            param = _param(str(key), spec, shown, line, column, positions)
        except SpecError as err:
            problems += err.problems
            continue
        if param.path in seen:
            problems.append(param.problem(f"the same key as {seen[param.path]!r}", "duplicate_key"))
            continue
        seen[param.path] = param.key
        params.append(param)
    return Space(params, shown), problems


def _param(key: str, spec: Any, file: str, line: int | None, column: int | None,
           positions: Positions | None) -> Param:
    def fail(message: str, kind: str = "bad_space", at: tuple[Any, ...] = ()) -> SpecError:
        where = positions.find((key, *at)) if positions is not None and at else None
        return SpecError(Problem(key, message, kind, file, *(where or (line, column))))

    try:
        path, _ = parse_set(f"{key}=0")
    except SpecError as err:
        raise fail(err.first.message.replace("--set ", ""), "bad_key") from None
    if not isinstance(spec, dict):
        raise fail(f"expected a distribution such as {{log_uniform: [1e-4, 1e-1]}}, got "
                   f"{spec!r}; one of: {', '.join(KINDS)}")
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        raise fail(f"expected exactly one of {', '.join(KINDS)}, got "
                   f"{', '.join(map(str, spec)) or 'nothing'}", "unknown_distribution")
    kind = kinds[0]
    extra = [k for k in spec if k != kind and k not in OPTIONS[kind]]
    if extra:
        allowed = ", ".join(OPTIONS[kind]) or "no options"
        raise fail(f"{kind} takes {allowed}, not {', '.join(map(str, extra))}", "bad_space",
                   (extra[0],))
    values = spec[kind]
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise fail("choice takes a non-empty list of values, e.g. {choice: [32, 64]}",
                       at=(kind,))
        choices = tuple(as_number(v) for v in values)
        if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
            raise fail("choice lists a value twice", at=(kind,))
        return Param(key, path, kind, choices=choices, file=file, line=line, column=column)
    if not isinstance(values, list) or len(values) != 2:
        raise fail(f"{kind} takes [low, high], e.g. {{{kind}: [1, 10]}}", at=(kind,))
    low, high = (as_number(v) for v in values)
    step = as_number(spec.get("step"))
    log = spec.get("log", False)
    number = int if kind == "int" else (int, float)
    for i, bound in enumerate((low, high)):
        if isinstance(bound, bool) or not isinstance(bound, number):
            what = "an integer" if kind == "int" else "a number"
            raise fail(f"{('low', 'high')[i]} must be {what}, got {bound!r}", at=(kind, i))
    if low > high:
        raise fail(f"low {low} is above high {high}", at=(kind,))
    if not isinstance(log, bool):
        raise fail(f"log is true or false, got {log!r}", at=("log",))
    if (kind == "log_uniform" or log) and low <= 0:
        raise fail(f"a log scale needs low > 0, got {low}", at=(kind, 0))
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, number) or step <= 0:
            raise fail(f"step must be a positive {'integer' if kind == 'int' else 'number'}, "
                       f"got {step!r}", at=("step",))
        if log:
            raise fail("step and log cannot be combined (Optuna draws either on a grid or on a "
                       "log scale)", at=("step",))
        span = (high - low) / step
        if abs(span - round(span)) > 1e-9:
            raise fail(f"high {high} is not low {low} plus a whole number of steps {step}",
                       at=(kind, 1))
    return Param(key, path, kind, low=low, high=high, step=step, log=log, file=file, line=line,
                 column=column)


# --- checking against the recipe ---------------------------------------------------------------
def check_space(recipe: Recipe, space: Space) -> None:
    """Every key exists in the recipe and every value the sweep may draw gives a valid recipe
    (each key at each probe alone, then all keys at their low ends and at their high ends
    together); all problems at once, each located at its key in the space file."""
    problems = space_problems(recipe, space)
    if problems:
        raise SpecError(problems)


def space_problems(recipe: Recipe, space: Space) -> list[Problem]:
    """What `check_space` raises, as a list."""
    problems: list[Problem] = []
    for param in space.params:
        for value in param.probes():
            found = _trial_problems(recipe, [param.override(value)])
            if found:
                problems += [_with_value(p, param, value) for p in found]
                break  # one value's problems per key: the others usually repeat them
    if not problems and len(space.params) > 1:
        for end in (0, -1):
            values = {p.key: p.probes()[end] for p in space.params}
            found = _trial_problems(recipe, space.overrides(values))
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            problems += [Problem(p.path, f"{p.message} (when the sweep draws {shown})", p.type,
                                 p.file, p.line, p.column) for p in found]
    return _unique(problems)


def trial_recipe(recipe: Recipe, space: Space, values: Mapping[str, Any]) -> Recipe:
    """The recipe with one trial's values applied and checked like `blocks train --set`."""
    updated = apply_overrides(recipe, space.overrides(values))
    check_recipe(updated)
    base = Path(recipe.source_path).parent if recipe.source_path is not None else None
    problems = recipe_problems(updated, base)
    if problems:
        raise SpecError(problems)
    return updated


def _trial_problems(recipe: Recipe, overrides: list[Override]) -> list[Problem]:
    try:
        updated = apply_overrides(recipe, overrides)
        check_recipe(updated)
    except SpecError as err:
        return err.problems
    base = Path(recipe.source_path).parent if recipe.source_path is not None else None
    located = overrides[0] if len(overrides) == 1 else None
    found = recipe_problems(updated, base)
    if located is None:
        return found
    return [located.problem(p.path, p.message, p.type) for p in found]


def _with_value(problem: Problem, param: Param, value: Any) -> Problem:
    if problem.type == "extra_forbidden" or problem.type == "bad_argument":
        return problem  # the key itself is wrong: which value is beside the point
    return Problem(problem.path, f"{problem.message} (when the sweep draws {param.key}="
                   f"{value!r})", problem.type, problem.file, problem.line, problem.column)


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


__all__ = ["KINDS", "Param", "Space", "check_space", "dotted", "load_space", "read_space",
           "space_problems", "trial_recipe"]
