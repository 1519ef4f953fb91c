"""Old import paths of modules that moved into sub-packages, kept working for one release.

`import blocks.registry` (or `from blocks.runs import load`) still works: an import hook finds
the old name, warns with a `DeprecationWarning` naming the new place, and hands back the new
module itself, so old and new paths give the very same objects.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: old module path -> where it lives now (docs/architecture.md has the map); a module split in
#: several gets a proxy that looks each name up in them, in order
MOVED: dict[str, str | tuple[str, ...]] = {
    "blocks.errors": "blocks.core.errors",
    "blocks.lazy": "blocks.core.lazy",
    "blocks.numbers": "blocks.core.numbers",
    "blocks.io_utils": "blocks.core.files",
    "blocks.tensor_digest": "blocks.core.digest",
    "blocks.limits": "blocks.core.limits",
    "blocks.registry": "blocks.spec.registry",
    "blocks.shapes": "blocks.spec.shapes",
    "blocks.counts": "blocks.spec.counts",
    "blocks.budget": "blocks.spec.budget",
    "blocks.heads": "blocks.spec.heads",
    "blocks.preprocess": "blocks.spec.preprocess",
    "blocks.data.spec": "blocks.spec.data",
    "blocks.train.spec": "blocks.spec.train",
    "blocks.schema_tags": "blocks.spec.schema_tags",
    "blocks.train.metric_names": "blocks.spec.metric_names",
    "blocks.recipe_yaml": "blocks.recipe.bounded_yaml",
    "blocks.recipe_io": ("blocks.run.validate", "blocks.recipe.loading"),
    "blocks.overrides": "blocks.recipe.overrides",
    "blocks.recipe_checks": "blocks.run.validate",
    "blocks.catalogue": "blocks.layers.catalogue",
    "blocks.composites": "blocks.layers.composites",
    "blocks.external": "blocks.layers.external",
    "blocks.block_docs": "blocks.layers.docs",
    "blocks.modules": "blocks.layers.modules",
    "blocks.modules.axes": "blocks.layers.modules.axes",
    "blocks.modules.branches": "blocks.layers.modules.branches",
    "blocks.modules.gating": "blocks.layers.modules.gating",
    "blocks.modules.pooling": "blocks.layers.modules.pooling",
    "blocks.modules.regularize": "blocks.layers.modules.regularize",
    "blocks.modules.residual": "blocks.layers.modules.residual",
    "blocks.modules.transformer": "blocks.layers.modules.transformer",
    "blocks.modules.preprocessing": "blocks.builder.preprocessing",
    "blocks.device": "blocks.builder.device",
    "blocks.weights": "blocks.builder.weights",
    "blocks.summary": "blocks.inspect.summary",
    "blocks.graph": "blocks.inspect.graph",
    "blocks.report": "blocks.run.report",
    "blocks.runs": ("blocks.run.folder", "blocks.run.training", "blocks.run.predicting"),
    "blocks.module_import": "blocks.exporters.from_module",
    # the emitters went into the block family files, as `emit_source` methods
    "blocks.exporters.layer_source": ("blocks.exporters.preprocessing_source",
                                      "blocks.exporters.source_writer", "blocks.layers.axes",
                                      "blocks.layers.norm", "blocks.layers.branches",
                                      "blocks.layers.gating", "blocks.layers.regularize",
                                      "blocks.layers.transformer", "blocks.layers.composites",
                                      "blocks.layers.pooling"),
    "blocks.audit": "blocks.lint.audit",
    "blocks.docgen": "blocks.cli.docgen",
}


class _SplitModule(ModuleType):
    """An old module whose names now live in several modules."""

    def __init__(self, name: str, homes: tuple[str, ...]) -> None:
        super().__init__(name, f"moved to {', '.join(homes)}")
        self.__homes = [importlib.import_module(home) for home in homes]

    def __getattr__(self, attr: str) -> object:
        for home in self.__homes:
            if hasattr(home, attr):
                return getattr(home, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")

    def __dir__(self) -> list[str]:
        return sorted({name for home in self.__homes for name in dir(home)})


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, new: str | tuple[str, ...]) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        where = self.new if isinstance(self.new, str) else " and ".join(self.new)
        warnings.warn(f"{spec.name} moved to {where}; the old path works until the next "
                      "release", DeprecationWarning, stacklevel=_caller_level())
        if isinstance(self.new, str):
            return importlib.import_module(self.new)
        return _SplitModule(spec.name, self.new)

    def exec_module(self, module: ModuleType) -> None:
        """The new module has run already."""


def _caller_level() -> int:
    """`stacklevel` of the user's import statement: the frames of this file count, the import
    machinery's frozen frames do not (`warnings` skips those itself)."""
    frame, level = sys._getframe(2), 2  # 1 is create_module; 2 the first frame outside
    while frame is not None:
        name = frame.f_code.co_filename
        if name == __file__:
            level += 1
        elif not name.startswith("<frozen"):
            break
        frame = frame.f_back
    return level


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old names in `MOVED` (and only those); everything else is left to Python."""

    def find_spec(self, name: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(name)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(name, _MovedLoader(new))


def install() -> None:
    """First on `sys.meta_path`: a submodule of an old package path (`blocks.modules.axes`) must
    be the moved module, not a second copy found through the package's `__path__`."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())
