"""The older built-in block types' former home, kept so old imports find the same classes.

They now live one file per family (`blocks.layers.linear`, `conv`, `norm`, `pooling`,
`activations`, `regularize`, `axes`, `embedding`); `from blocks.layers.catalogue import Conv2d`
(and `blocks.catalogue`) still gives the very same class. New code imports the family file.
"""

from __future__ import annotations

from blocks.layers.activations import (
    GELU,
    Elementwise,
    Identity,
    LeakyReLU,
    ReLU,
    SigmoidActivation,
    SiLU,
    Tanh,
    _Elementwise,
)
from blocks.layers.axes import Flatten
from blocks.layers.base import SPATIAL as _SPATIAL
from blocks.layers.base import IntOrList, PadOrList, Probability, module_getattr
from blocks.layers.base import as_tuple as _tuple
from blocks.layers.conv import Conv1d, Conv2d, _ConvNd
from blocks.layers.embedding import Embedding
from blocks.layers.linear import Linear
from blocks.layers.norm import BatchNorm1d, BatchNorm2d, LayerNorm, _BatchNorm
from blocks.layers.pooling import (
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    GlobalAvgPoolBlock,
    MaxPool1d,
    MaxPool2d,
    _AvgPool,
    _MaxPool,
    _Pool,
)
from blocks.layers.regularize import Dropout

__all__ = [
    "GELU", "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d",
    "Conv1d", "Conv2d", "Dropout", "Elementwise", "Embedding", "Flatten", "GlobalAvgPoolBlock",
    "Identity", "IntOrList", "LayerNorm", "LeakyReLU", "Linear", "MaxPool1d", "MaxPool2d",
    "PadOrList", "Probability", "ReLU", "SiLU", "SigmoidActivation", "Tanh", "_AvgPool",
    "_BatchNorm", "_ConvNd", "_Elementwise", "_MaxPool", "_Pool", "_SPATIAL", "_tuple",
]

# the torch class moved with its family; old imports still find it
__getattr__ = module_getattr(__name__, moved={"GlobalAvgPool": "blocks.layers.pooling"})
