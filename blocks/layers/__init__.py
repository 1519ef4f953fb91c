"""Block types for modern classifiers, one module per family (timm's `layers/` habit).

Importing this package registers them: branches (`concat`, `dense_concat`), gating
(`squeeze_excite`, `hardswish`, `hardsigmoid`, `softmax_act`), regularisation (`drop_path`,
`layer_scale`), axis plumbing (`permute`, `reshape`, `unflatten`, `layernorm2d`) and transformer
parts (`patch_embed`, `class_token`, `position_embedding`, `transformer_encoder`,
`select_token`, `token_mean`).
"""

from blocks.layers import axes, branches, gating, regularize, transformer  # noqa: F401

__all__ = ["axes", "branches", "gating", "regularize", "transformer"]
