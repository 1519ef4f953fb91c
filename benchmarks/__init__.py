"""Benchmarks of `blocks` against hand-written PyTorch, run by `make bench` (`python -m benchmarks`).

Each `bench_*.py` module here exposes `run() -> list[dict]`; every row has the keys
`name`, `blocks_ms`, `reference_ms`, `ratio` (blocks / reference) and `target` (the highest
acceptable ratio, or None for a row that only informs). Rows may carry extra keys (`note`).
"""
