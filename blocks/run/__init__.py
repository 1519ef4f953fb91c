"""The run folder's whole life: validate a recipe against its data, train it into a folder,
save, load, evaluate and predict. The one place that joins recipe + data + build + train;
the CLI and the Python API both call it.

May import everything below it: `core`, `spec`, `recipe`, `layers`, `builder`, `data`, `train`,
`inspect`. Never `exporters` or `cli`.
"""
