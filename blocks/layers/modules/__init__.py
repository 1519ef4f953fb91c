"""The torch side of the block types: the `nn.Module` classes their `build` methods create.

They live apart from the specs (`blocks.layers.catalogue`, `blocks.layers`, ...) so that the spec side
imports without torch: validating a recipe or printing its schema never needs a tensor.
"""
