"""Small recipes showing each modern-classifier block type; `docs/architectures.md` prints
each with its shape trace (generated, so the shapes shown are the ones inference gives)."""

from __future__ import annotations

from blocks.recipe.loading import load_recipe
from blocks.spec.shapes import fmt_shape

EXAMPLES: dict[str, tuple[str, str]] = {  # title -> (what it shows, recipe)
    "concat": ("Two branches on the same input, joined on the channels (an Inception module).", """\
model:
  input: {shape: [3, 32, 32]}
  backbone:
    - type: concat
      branches:
        - [{type: conv2d, out_channels: 8, kernel_size: 1}, relu]
        - [{type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}, relu]
    - global_avgpool
  head: {type: softmax, classes: 10}
"""),
    "dense_concat": ("DenseNet's connection: each layer's 4 new channels appended to its input.", """\
model:
  input: {shape: [8, 16, 16]}
  backbone:
    - type: repeat
      times: 3
      blocks:
        - type: dense_concat
          blocks: [batchnorm2d, relu, {type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}]
    - global_avgpool
  head: {type: softmax, classes: 10}
"""),
    "squeeze_excite, hardswish, hardsigmoid": (
        "MobileNetV3's gate: a quarter of the channels, rounded to a multiple of 8.", """\
model:
  input: {shape: [3, 32, 32]}
  backbone:
    - {type: conv2d, out_channels: 72, kernel_size: 3, padding: 1}
    - hardswish
    - {type: squeeze_excite, ratio: 4, divisor: 8, gate: hardsigmoid}
    - global_avgpool
  head: {type: softmax, classes: 10}
"""),
    "layernorm2d, permute, layer_scale, drop_path": (
        "A ConvNeXt block: channels-last MLP, learned scale and stochastic depth on the branch.", """\
model:
  input: {shape: [3, 32, 32]}
  backbone:
    - {type: conv2d, out_channels: 16, kernel_size: 4, stride: 4}
    - {type: layernorm2d, eps: 1.0e-6}
    - type: residual
      blocks:
        - {type: conv2d, out_channels: 16, kernel_size: 7, padding: 3, groups: 16}
        - {type: permute, dims: [1, 2, 0]}
        - {type: layernorm, eps: 1.0e-6}
        - {type: linear, out_features: 64}
        - gelu
        - {type: linear, out_features: 16}
        - {type: permute, dims: [2, 0, 1]}
        - {type: layer_scale, init_value: 1.0e-6}
        - {type: drop_path, p: 0.1}
    - global_avgpool
  head: {type: softmax, classes: 10}
"""),
    "reshape, unflatten, softmax_act": (
        "Axis plumbing: features to a grid and back; a softmax inside the backbone.", """\
model:
  input: {shape: [48]}
  backbone:
    - {type: reshape, shape: [3, -1]}
    - {type: unflatten, dim: 1, sizes: [4, 4]}
    - {type: softmax_act, dim: 0}
    - flatten
  head: {type: softmax, classes: 10}
"""),
    "patch_embed, class_token, position_embedding, transformer_encoder, select_token": (
        "A tiny ViT: 8x8 patches become 16 tokens, plus a class token read by the head.", """\
model:
  input: {shape: [3, 32, 32]}
  backbone:
    - {type: patch_embed, dim: 32, patch_size: 8}
    - class_token
    - position_embedding
    - type: repeat
      times: 2
      blocks:
        - {type: transformer_encoder, heads: 4, mlp_ratio: 2.0, drop_path: 0.1}
    - {type: layernorm, eps: 1.0e-6}
    - select_token
  head: {type: softmax, classes: 10}
"""),
    "token_mean": ("Mean pooling over tokens instead of a class token.", """\
model:
  input: {shape: [3, 32, 32]}
  backbone:
    - {type: patch_embed, dim: 32, patch_size: 8}
    - position_embedding
    - {type: transformer_encoder, heads: 4, mlp_dim: 64}
    - token_mean
  head: {type: softmax, classes: 10}
"""),
}


def examples_markdown() -> str:
    """Each example recipe with the per-sample shape after every block."""
    parts = ["## Block types for modern classifiers", "",
             "Each recipe below runs as written; the table is its shape inference "
             "(per-sample shapes, batch axis left out).", ""]
    for title, (what, recipe) in EXAMPLES.items():
        spec = load_recipe(recipe).model
        report = spec.infer_shapes()
        parts += [f"### {', '.join(f'`{name}`' for name in title.split(', '))}", "", what, "",
                  "```yaml", recipe.rstrip(), "```", "",
                  "| block | type | input | output |", "| --- | --- | --- | --- |"]
        parts += [f"| `{t.path}` | {t.block.type} | {fmt_shape(t.input_shape)} | "
                  f"{fmt_shape(t.output_shape)} |" for t in report.layers
]
        parts.append("")
    return "\n".join(parts)
