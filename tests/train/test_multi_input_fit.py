"""`Trainer.fit` on a dict of tensors keyed by input name: batches, shuffles, accumulates and
resumes exactly like one tensor."""

from __future__ import annotations

import pytest
import torch

import blocks
from blocks.core.errors import DeviceMismatchError, InputShapeError
from blocks.train.batches import make_batches

INPUTS = {"words": {"kind": "text", "max_length": 6, "vocab_size": 20},
          "kind": {"kind": "categorical", "vocab_size": 5},
          "size": {"kind": "numeric", "features": 2}}
SPEC = {"inputs": INPUTS, "backbone": [{"type": "linear", "out_features": 8}, "relu"],
        "head": {"type": "softmax", "classes": 2}}


def data(n: int = 90, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = {"words": torch.randint(0, 20, (n, 6), generator=g),
         "kind": torch.randint(0, 5, (n, 1), generator=g),
         "size": torch.randn(n, 2, generator=g)}
    y = ((x["size"][:, 0] > 0) ^ (x["kind"][:, 0] > 2)).long()
    return x, y


def test_dict_batches_follow_the_same_permutation_as_a_tensor():
    x, y = data()
    tensor = make_batches((x["size"], y), 16, shuffle=True, drop_last=False,
                          generator=torch.Generator().manual_seed(3))
    mapping = make_batches((x, y), 16, shuffle=True, drop_last=False,
                           generator=torch.Generator().manual_seed(3))
    pairs = list(zip(tensor, mapping, strict=True))
    assert len(pairs) == 6
    for (xt, yt), (xd, yd) in pairs:
        assert torch.equal(xt, xd["size"]) and torch.equal(yt, yd)
        assert len(xd["words"]) == len(xt)


def train(x, y, accumulate: int = 1, batch: int = 30, epochs: int = 2):
    model = blocks.build(SPEC, seed=0)
    spec = blocks.TrainSpec(epochs=epochs, batch_size=batch, accumulate=accumulate, shuffle=False,
                            optimizer={"type": "sgd", "lr": 0.1})
    blocks.Trainer(model, spec, quiet=True).fit((x, y))
    return model


def test_accumulated_micro_batches_give_the_full_batch_step():
    x, y = data()
    whole = train(x, y, batch=90, epochs=1)
    parts = train(x, y, accumulate=3, batch=30, epochs=1)
    for a, b in zip(whole.parameters(), parts.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fit_learns_from_all_inputs_and_evaluates():
    x, y = data(400)
    model = blocks.build(SPEC, seed=0)
    trainer = blocks.Trainer(model, blocks.TrainSpec(epochs=30, batch_size=64,
                                                     optimizer={"type": "adam", "lr": 0.02}),
                             quiet=True)
    trainer.fit((x, y))
    assert trainer.evaluate((x, y))["test/accuracy"] > 0.9


def test_wrong_inputs_are_named():
    x, y = data()
    model = blocks.build(SPEC, seed=0)
    with pytest.raises(InputShapeError, match="missing: size"):
        model({"words": x["words"], "kind": x["kind"]})
    with pytest.raises(InputShapeError, match=r"input 'size' expects shape \[batch, 2\]"):
        model({**x, "size": x["size"][:, :1]})
    with pytest.raises(InputShapeError, match="pass a dict of tensors keyed by input name"):
        model(x["size"])
    meta = {**x, "size": x["size"].to("meta")}
    with pytest.raises(DeviceMismatchError, match="input 'size' is on device meta"):
        model(meta)
    trainer = blocks.Trainer(model, blocks.TrainSpec(epochs=1), quiet=True)
    with pytest.raises(blocks.TrainingError, match=r"input 'words' holds ids outside \[0, 20\)"):
        trainer.fit(({**x, "words": x["words"] + 20}, y))


class Interrupt(Exception):
    pass


def test_an_interrupted_multi_input_run_resumes_bit_identically(tmp_path):
    x, y = data(90)
    spec = {"epochs": 4, "batch_size": 16, "seed": 7, "optimizer": {"type": "adam", "lr": 0.01}}
    whole = blocks.build(SPEC, seed=1)
    blocks.Trainer(whole, spec, quiet=True).fit((x, y))

    def stop(trainer, record):
        if record["epoch"] == 2:
            raise Interrupt

    first = blocks.build(SPEC, seed=1)
    with pytest.raises(Interrupt):
        blocks.Trainer(first, spec, run_dir=tmp_path, quiet=True, callbacks=[stop]).fit((x, y))
    second = blocks.build(SPEC, seed=99)
    blocks.Trainer(second, spec, run_dir=tmp_path, quiet=True).fit((x, y), resume=True)
    for (name, a), b in zip(whole.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_distributed_shards_of_a_dict_are_the_shards_of_a_tensor():
    x, y = data(50)
    for rank in range(3):
        tensor = make_batches((x["size"], y), 16, shuffle=True, drop_last=False, shard=(rank, 3),
                              generator=torch.Generator().manual_seed(5))
        mapping = make_batches((x, y), 16, shuffle=True, drop_last=False, shard=(rank, 3),
                               generator=torch.Generator().manual_seed(5))
        for (xt, yt), (xd, yd) in zip(tensor, mapping, strict=True):
            assert torch.equal(xt, xd["size"]) and torch.equal(yt, yd)
            assert len(xd["words"]) == len(xd["kind"]) == len(xt)


def test_freezing_an_input_keeps_its_encoder_and_trains_the_rest():
    x, y = data(64)
    model = blocks.build(SPEC, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = {"epochs": 2, "batch_size": 16, "freeze": ["inputs.words"],
            "optimizer": {"type": "adam", "lr": 0.05}}
    blocks.Trainer(model, spec, quiet=True).fit((x, y))
    after = model.state_dict()
    assert torch.equal(before["inputs.words.0.embedding.weight"],
                       after["inputs.words.0.embedding.weight"])
    assert not torch.equal(before["inputs.kind.0.weight"], after["inputs.kind.0.weight"])


def test_a_freeze_prefix_that_names_no_input_is_located(tmp_path):
    from blocks.core.errors import SpecError

    path = tmp_path / "r.yaml"
    path.write_text("model:\n  inputs:\n    words: {kind: text, max_length: 4, vocab_size: 9}\n"
                    "  head: {type: softmax, classes: 2}\ntrain:\n  freeze: [inputs.photo]\n")
    with pytest.raises(SpecError, match=r"train.freeze\[0\]: .*inputs.photo"):
        blocks.load_recipe(path)
