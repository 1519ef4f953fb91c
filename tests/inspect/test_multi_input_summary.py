"""Summaries of multi-input models: a row group per input (its encoder's blocks under it), the
combiner, then the backbone and heads; totals equal the built model's."""

from __future__ import annotations

import blocks
from blocks.cli import main


def test_a_row_group_per_input_then_the_combiner():
    summary = blocks.summarize("tickets_multi_input")
    paths = [(row.path, row.depth) for row in summary.rows]
    assert paths == [("inputs.review", 0), ("inputs.review.encoder[0]", 1), ("inputs.plan", 0),
                     ("inputs.plan.encoder[0]", 1), ("inputs.plan.encoder[1]", 1),
                     ("inputs.order_value", 0), ("combine", 0), ("backbone[0]", 0),
                     ("backbone[1]", 0), ("head", 0)]
    rows = {row.path: row for row in summary.rows}
    assert rows["inputs.review"].params == 200 * 16
    assert rows["inputs.plan"].output_shape == [4]
    assert rows["combine"].output_shape == [21]
    assert summary.total_params == 200 * 16 + 8 * 4 + (21 * 32 + 32) + (32 * 2 + 2)


def test_summary_cli_and_freezing_an_input(tmp_path, capsys):
    assert main(["summary", "tickets_multi_input"]) == 0
    assert "inputs.review.encoder[0] bag_of_words" in capsys.readouterr().out
    model = blocks.build(blocks.load_recipe("tickets_multi_input").model, seed=0)
    from blocks.train.finetune import apply_freeze

    assert apply_freeze(model, ["inputs.review"]) == ["inputs.review.0.embedding.weight"]
    assert blocks.summarize(model).trainable_params == 8 * 4 + (21 * 32 + 32) + (32 * 2 + 2)


def test_graph_has_one_lane_per_input_into_the_combiner():
    from blocks.inspect.graph import model_graph, to_mermaid

    text = to_mermaid(model_graph("tickets_multi_input"))
    for lane in ("inputs.review text", "inputs.plan categorical", "inputs.order_value numeric"):
        assert 'subgraph c' in text and lane in text
    graph = model_graph("tickets_multi_input")
    combine = next(n for n, node in graph.nodes.items() if node.label.startswith("combine concat"))
    assert sum(edge.target == combine for edge in graph.edges) == 3
