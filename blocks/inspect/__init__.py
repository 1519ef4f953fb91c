"""Looking at models and runs: torchinfo summaries, graphs, training plots and reports.

May import everything below it: `core`, `spec`, `recipe`, `layers`, `builder`, `data`, `train`.
Never `run`, `exporters` or `cli`.
"""
