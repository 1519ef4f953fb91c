"""`scaled_tanh`: tanh, then a learned scale per feature of the last axis (a soft clip)."""

from __future__ import annotations

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.pysource import literal, number
from blocks.layers.base import module_getattr, torch_modules
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape

SCALED_TANH = '''
class ScaledTanh(nn.Module):
    """scale * tanh(x), one learned scale per feature of the last axis."""

    def __init__(self, features: int, init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((features,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(x)
'''


@torch_modules("ScaledTanh")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    class ScaledTanh(nn.Module):
        """`scale * tanh(x)`, one learned scale per feature of the last axis."""

        def __init__(self, features: int, init: float) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.full((features,), float(init)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scale * torch.tanh(x)

        def emit_source(self, writer, path: str):
            name = writer.helper("ScaledTanh", SCALED_TANH)
            args = [str(self.scale.shape[0])]
            first = self.scale.detach().flatten()[0]
            if not self.scale.is_meta and bool((self.scale == first).all()) and first != 1.0:
                args.append(literal(number(first), f"{path}.scale"))
            return writer.checked(self, f"{name}({', '.join(args)})", path)

    return {"ScaledTanh": ScaledTanh}


@register_block("scaled_tanh")
class ScaledTanhBlock(Block):
    """`scale * tanh(x)` with a learned scale per feature of the last axis, starting at `init`."""

    example = ([64], {"type": "scaled_tanh", "init": 0.5})

    init: float = Field(1.0, description="initial value of every scale")

    def output_shape(self, shape: Shape) -> Shape:
        if not shape:
            raise ShapeError("expects at least one feature axis, got a scalar per sample")
        return shape

    def build(self, shape: Shape):
        return modules().ScaledTanh(shape[-1], self.init)

    def parameter_count(self, shape: Shape) -> tuple[int, int]:
        return shape[-1], 0


EXAMPLE_RECIPES = {
    "scaled_tanh": ("A soft clip with a learned height per feature.", """\
model:
  input: {shape: [8]}
  backbone: [{type: linear, out_features: 16}, {type: scaled_tanh, init: 0.5}]
  head: {type: softmax, classes: 3}
"""),
}

__getattr__ = module_getattr(__name__, modules)
