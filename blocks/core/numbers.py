"""Strict number types for specs: sizes are real integers in a range torch can hold.

pydantic's `int` accepts `True` (YAML `yes`) as 1 and `PositiveInt` accepts 2**63, which torch
then fails to unpack deep inside a layer. Every size, count and index field uses these instead,
so such values are located spec errors. Floats are finite everywhere (`SpecModel` forbids
inf/NaN), so `lr: 1.0e400` is refused too.
"""

from __future__ import annotations

import functools
import operator
from typing import Annotated, Any, get_args

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

MAX_SIZE = 2**31 - 1  # any one dimension, channel count, class count, ...
MAX_SEED = 2**63 - 1


def _strict_int(value: Any) -> Any:
    """Real integers only: no booleans (`yes`, `true`), no strings, no floats like 3.0."""
    if isinstance(value, bool | Boolean):
        flag = value.value if isinstance(value, Boolean) else value
        raise PydanticCustomError("int_type", "Input should be a valid integer, got {got}",
                                  {"got": f"the boolean {flag} (yes/no/true/false)"})
    if isinstance(value, int):
        return value
    if isinstance(value, str | float | bytes):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise PydanticCustomError("int_type", "Input should be a valid integer, got {got}",
                                  {"got": f"{type(value).__name__} {shown}"})
    try:
        return operator.index(value)  # numpy integers and other exact integer types
    except TypeError:
        return value  # let pydantic say what is wrong with it


def size_type(minimum: int = 1, maximum: int = MAX_SIZE) -> Any:
    """A strict integer type in [minimum, maximum] (`size_type(2)` for softmax classes)."""
    # constraints before the validator, so the JSON Schema keeps `minimum` / `maximum`
    bound = Field(gt=0, le=maximum) if minimum == 1 else Field(ge=minimum, le=maximum)
    return Annotated[int, bound, BeforeValidator(_strict_int)]


#: A positive size (features, channels, classes, kernel, stride, repetitions, ...), at most 2**31 - 1.
Size = size_type(1)
#: A size that may be zero (padding, start_dim), at most 2**31 - 1.
NonNegativeSize = size_type(0)
#: A signed index within the size range (padding_idx).
Index = size_type(-MAX_SIZE)
#: A random seed: numpy and torch take 0 .. 2**63 - 1.
Seed = size_type(0, MAX_SEED)


def _strict_real(value: Any) -> Any:
    """Real numbers only: pydantic's lax `float` turns the text `'12'` into 12.0, so a quoted
    value in a recipe would silently become a learning rate. Integers stay welcome (`lr: 1`)."""
    if isinstance(value, bool):  # inside a list, where `SpecModel` does not mark booleans
        raise PydanticCustomError("float_type", "Input should be a valid number, got {got}",
                                  {"got": f"the boolean {value} (yes/no/true/false)"})
    if isinstance(value, str | bytes):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise PydanticCustomError("float_type", "Input should be a valid number, got {got}",
                                  {"got": f"{type(value).__name__} {shown} (text: remove the quotes)"})
    return value


def real_type(**bounds: float) -> Any:
    """A float type refusing text (`real_type(gt=0)` for a learning rate); bounds as `Field`'s."""
    return Annotated[float, Field(**bounds), BeforeValidator(_strict_real)] if bounds else \
        Annotated[float, BeforeValidator(_strict_real)]


#: Any finite real number given as a number (never as text).
Real = real_type()
#: A real number > 0 given as a number (learning rates, eps, gamma, clip norms).
PositiveReal = real_type(gt=0)
#: A real number >= 0 given as a number (weight decay, eta_min, min_delta).
NonNegativeReal = real_type(ge=0)



class Boolean:
    """A YAML/Python boolean that arrived where the field takes no booleans (`lr: true`).

    pydantic turns `True` into 1 or 1.0 for number fields; `SpecModel` wraps such a value in
    this marker instead, so validation fails at the field's own location, naming the boolean.
    """

    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"{self.value} (a boolean)"


@functools.lru_cache(maxsize=1024)
def accepts_bool(annotation: Any) -> bool:
    """Whether a field's type admits `True`/`False` themselves (`bool`, `bool | None`, `Any`)."""
    if annotation is bool or annotation is Any or annotation == "bool":
        return True
    return any(accepts_bool(arg) for arg in get_args(annotation) if not isinstance(arg, str | int))


def mark_booleans(fields: dict[str, Any], data: Any) -> Any:
    """`data` with each boolean that its field cannot take as a boolean wrapped in `Boolean`."""
    if not isinstance(data, dict):
        return data
    marked = None
    for key, value in data.items():
        if isinstance(value, bool) and key in fields:
            try:
                allowed = accepts_bool(fields[key].annotation)
            except TypeError:  # an unhashable annotation: let pydantic decide
                continue
            if not allowed:
                marked = marked if marked is not None else dict(data)
                marked[key] = Boolean(value)
    return marked if marked is not None else data
