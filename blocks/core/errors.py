"""Exceptions users see. Every one says *where* (file:line, spec path) and *what was expected*."""

from __future__ import annotations

from dataclasses import dataclass


def escape(text: str) -> str:
    """`text` safe to print to a terminal: control, bidi and other invisible characters (and lone
    surrogates) become `\\x..`/`\\u....` escapes, so a name cannot reorder or hide what is shown.
    Newlines and tabs stay."""
    if text.isprintable() or all(c.isprintable() or c in "\n\t" for c in text):
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def escape_name(name: object) -> str:
    """A file, folder or class name for a one-line message: every control character, newlines
    and tabs included, is escaped (`a\\nb`), so a name cannot split or forge a message line."""
    text = str(name)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class BlocksError(Exception):
    """Base of every error `blocks` raises on purpose; the CLI prints these without a traceback."""


@dataclass(frozen=True)
class Problem:
    """One located problem in a spec: where it is and what is wrong."""

    path: str  # spec path, e.g. "model.backbone[0].kernel_size"
    message: str
    type: str = "value_error"  # stable snake_case kind, for tests and tools
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}:{self.column or 1}"
            where += ": "
        elif self.line is not None:
            where = f"<string>:{self.line}:{self.column or 1}: "
        path = f"{self.path}: " if self.path else ""
        return escape(f"{where}{path}{self.message}")


class SpecError(BlocksError, ValueError):
    """A spec or recipe that cannot work. Carries every problem found, each located."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(path="", message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def first(self) -> Problem:
        return self.problems[0]


class ShapeError(ValueError):
    """Raised by a block's shape rule; shape inference turns it into a located `SpecError`.

    `path` is filled in on the way up through nested block lists (`[2].blocks[0]`); `block_type`
    and `input_shape` by the innermost list that caught it, so the message names the failing block.
    """

    def __init__(self, reason: str, *, path: str = "", block_type: str | None = None,
                 input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.block_type = block_type
        self.input_shape = input_shape

    def describe(self) -> str:
        if self.block_type is None:
            return self.reason
        shape = "[" + ", ".join(map(str, self.input_shape or ())) + "]"
        return f"{self.block_type} with input shape {shape}: {self.reason}"


class RegistryError(BlocksError, ValueError):
    """A block type registered twice, or registered wrongly."""


class DeviceMismatchError(BlocksError, RuntimeError):
    """A tensor reached a model on a device other than the model's."""


class InputShapeError(BlocksError, ValueError):
    """A forward input whose per-sample shape or dtype is not the one the spec declares."""


class ExportError(BlocksError, RuntimeError):
    """An export that could not be written, or whose reloaded file did not match the model.

    Defined here, below `exporters/`, because block families raise it from their source emitters
    (`emit_source`) without importing the exporters; `blocks.exporters.common` re-exports it."""
