"""Text to `Recipe` and back: bounded YAML with line/column positions, loading and dumping,
located validation errors, `--set` overrides, the JSON Schema.

May import: `blocks.core`, `blocks.spec`. Never `layers`, `builder`, `data`, `train`, `run`:
checks that need the data or a built model live in `blocks.run.validate`.
"""
