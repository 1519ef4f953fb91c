"""`data.stream`: a table read in chunks trains like the same table read whole (issue 21,
item 3): with a shuffle buffer holding the whole split, the same batches, the same weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tablekit import write_recipe, write_table

import blocks
from blocks.data.splits import load_splits
from blocks.run.training import build_model, run_recipe

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream")
    write_table(path)
    return path


def weights(run) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def test_a_full_buffer_trains_exactly_like_memory(folder):
    memory = run_recipe(write_recipe(folder, "m.yaml"), folder / "rm", force=True, plots=False)
    streamed = run_recipe(write_recipe(folder, "s.yaml", "\n  stream: {chunk_rows: 70, "
                                       "shuffle_buffer: 10000}"), folder / "rs", force=True,
                          plots=False)
    a, b = weights(memory), weights(streamed)
    assert a.keys() == b.keys()
    for key in a:  # preprocessing statistics (fill, mean, std) and every trained weight
        assert torch.equal(a[key], b[key]), key
    assert json.loads((folder / "rm" / "history.json").read_text())[-1]["val/loss"] == \
        json.loads((folder / "rs" / "history.json").read_text())[-1]["val/loss"]


def test_a_small_buffer_streams_every_row_once_per_epoch(folder):
    recipe = blocks.load_recipe(write_recipe(folder, "b.yaml", "\n  stream: {chunk_rows: 64, "
                                             "shuffle_buffer: 50}"))
    splits = load_splits(recipe)
    assert splits.info == {"samples": 600, "kind": "tabular", "train": 450, "val": 150,
                           "streamed": True}
    table = splits.train.dataset
    seen = []
    for _, _, index in table.chunks():
        seen += index.tolist()
    memory = load_splits(blocks.load_recipe(write_recipe(folder, "m.yaml")))
    batches = table.batches(32, shuffle=True, drop_last=False, generator=torch.Generator().manual_seed(0))
    xs = torch.cat([x for x, _ in batches])
    assert len(batches) == 15 and len(xs) == 450
    # the same rows as the in-memory split, in another order
    key = lambda t: sorted(map(tuple, torch.nan_to_num(t, nan=-9).tolist()))  # noqa: E731
    assert key(xs) == key(memory.train.x)
    assert len(set(seen)) == 450


def test_statistics_in_one_bounded_pass_match_the_in_memory_fit(folder):
    memory = load_splits(blocks.load_recipe(write_recipe(folder, "m.yaml")))
    streamed = load_splits(blocks.load_recipe(write_recipe(
        folder, "c.yaml", "\n  stream: {chunk_rows: 33, shuffle_buffer: 10}")))
    assert streamed.model_spec == memory.model_spec
    fitted = build_model(memory).preprocess_module
    stats = streamed.train.dataset.statistics()
    for name in ("fill", "mean", "std"):
        np.testing.assert_allclose(stats[name], getattr(fitted, name).double().numpy(),
                                   rtol=1e-6, atol=1e-9)


def median_recipe(folder, name: str, extra: str = ""):
    text = write_recipe(folder, name, extra).read_text()
    (folder / name).write_text(text.replace("impute: mean", "impute: median"))
    return folder / name


def test_median_imputation_streams_to_the_in_memory_fill_bit_for_bit(folder):
    memory = run_recipe(median_recipe(folder, "mm.yaml"), folder / "rmm", force=True,
                        plots=False)
    streamed = run_recipe(median_recipe(folder, "ms.yaml", "\n  stream: {chunk_rows: 70, "
                                        "shuffle_buffer: 10000}"), folder / "rms", force=True,
                          plots=False)
    fill = memory.model.preprocess_module.fill
    assert not torch.isnan(fill).any() and fill.abs().sum() > 0  # x1 has missing cells
    a, b = weights(memory), weights(streamed)
    for key in a:  # the fill values, the statistics after filling, every trained weight
        assert torch.equal(a[key], b[key]), key


def test_streamed_medians_equal_torch_quantile_for_any_chunking_and_budget():
    from blocks.data.order_stats import StreamedMedian

    rng = np.random.default_rng(0)
    for trial in range(60):
        rows, columns = int(rng.integers(1, 300)), int(rng.integers(1, 5))
        x = (rng.standard_normal((rows, columns)) * 10.0 ** rng.integers(-30, 30)).astype(
            np.float32)
        if trial % 3 == 1:
            x = rng.integers(-2, 3, (rows, columns)).astype(np.float32)  # ties, -0.0 and 0.0
            x[x == 0] = np.float32(-0.0) * (trial % 2)
        x[rng.random((rows, columns)) < 0.2] = np.nan
        x[:, 0] = np.nan if trial % 11 == 0 else x[:, 0]
        median = StreamedMedian(columns, histogram_bytes=[32 << 20, 1024, 64][trial % 3])
        chunk = int(rng.integers(1, 80))
        while True:
            for start in range(0, rows, chunk):
                median.add(x[start:start + chunk])
            if not median.next_pass():
                break
        got = median.medians()
        for j in range(columns):
            column = torch.from_numpy(x[:, j].astype(np.float64))
            column = column[~torch.isnan(column)]
            if len(column) == 0:
                assert np.isnan(got[j])
            else:
                assert got[j] == torch.quantile(column, 0.5).item(), (trial, j)
    assert StreamedMedian(21).passes == 2 and StreamedMedian(5000).passes == 4


def test_most_frequent_of_numeric_columns_is_refused_when_streaming(folder, monkeypatch):
    """Refused before the first pass over the data: by `blocks validate` and by `train`, at the
    recipe's `impute` line (it used to pass validate and fail once training started)."""
    from blocks.run.training import run_recipe
    from blocks.run.validate import validate_recipes

    text = write_recipe(folder, "x.yaml", "\n  stream: {chunk_rows: 50}").read_text()
    (folder / "x.yaml").write_text(text.replace("impute: mean", "impute: most_frequent"))
    message = ("data.impute: `impute: most_frequent` of numeric columns counts every distinct "
               "value; with `data.stream` use mean, median or constant")
    with pytest.raises(blocks.SpecError, match=message):
        load_splits(blocks.load_recipe(folder / "x.yaml"))
    monkeypatch.chdir(folder)
    [(_, validated, _)] = validate_recipes(["x.yaml"])
    assert str(validated) == f"x.yaml:7:11: {message}"
    with pytest.raises(blocks.SpecError) as trained:
        run_recipe("x.yaml", folder / "rx", force=True, plots=False)
    assert str(trained.value) == f"x.yaml:7:11: {message}"
    assert not (folder / "rx").exists()  # refused before the run folder is made


def test_stream_needs_a_table_source():
    with pytest.raises(Exception, match="`stream` reads a `csv` or `parquet` source"):
        blocks.DataSpec.model_validate({"dataset": "iris", "stream": {}})


def test_a_held_out_file_evaluated_in_chunks_gives_the_whole_file_metrics(folder):
    from blocks.run.predicting import read_labelled_file
    from blocks.run.tables import held_out_stream
    from blocks.train.trainer import Trainer

    run_recipe(write_recipe(folder, "m.yaml"), folder / "rm", force=True, plots=False)
    model = blocks.load(folder / "rm")
    recipe = blocks.load_recipe(folder / "rm" / "recipe.yaml")
    whole = read_labelled_file(folder / "d.csv", model, recipe)
    chunks = held_out_stream(folder / "d.csv", model, ["label"], chunk_rows=50, min_bytes=0)
    assert len(chunks) == 600
    trainer = Trainer(model, recipe.train, quiet=True)
    assert trainer.evaluate(chunks, split="test") == trainer.evaluate(whole, split="test")
    assert held_out_stream(folder / "d.csv", model, ["label"]) is None  # small: read whole


def test_evaluating_a_streamed_run_reads_its_split_in_chunks(folder, monkeypatch):
    """`blocks evaluate RUN` of a `data.stream` run: its own val split, read in chunks with the
    run's preprocessing (never the whole file), with the metrics of the in-memory split."""
    from blocks.data import splits as splits_module
    from blocks.run.predicting import evaluate_run

    run_recipe(write_recipe(folder, "s.yaml", "\n  stream: {chunk_rows: 70, "
                            "shuffle_buffer: 10000}"), folder / "rs", force=True, plots=False)
    streamed = evaluate_run(folder / "rs")
    read_whole = []
    real = splits_module.load_arrays
    monkeypatch.setattr(splits_module, "load_arrays", lambda *a, **k: read_whole.append(1)
                        or real(*a, **k))
    assert evaluate_run(folder / "rs") == streamed and not read_whole  # chunks only
    model = blocks.load(folder / "rs")
    recipe = blocks.load_recipe(folder / "rs" / "recipe.yaml")
    recipe.data.stream = None
    memory = load_splits(recipe, model_spec=model.spec)
    from blocks.train.trainer import Trainer

    whole = Trainer(model, recipe.train, quiet=True).evaluate(memory.val.data(), split="val")
    assert read_whole and whole.keys() == streamed.keys()
    for key in whole:  # the same rows; sums in another order: equal to float rounding
        assert whole[key] == pytest.approx(streamed[key], rel=1e-6), key
