"""Fine-tuning mechanics: `freeze`, `unfreeze_at_epoch`, `param_groups`, `model.features`."""

from __future__ import annotations

import pytest
import torch
from trainkit import learnable_data

import blocks
from blocks.train.trainer import Trainer


def bn_spec() -> blocks.ModelSpec:
    """A backbone with batchnorm (running statistics) and dropout (in-model randomness)."""
    return blocks.ModelSpec(
        input={"shape": [6]},
        backbone=[{"type": "linear", "out_features": 16}, "batchnorm1d", "relu",
                  {"type": "dropout", "p": 0.2}, {"type": "linear", "out_features": 8}, "relu"],
        head={"type": "softmax", "classes": 3})


def part(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """Parameters and buffers under `prefix`, cloned."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def optimizer_param_ids(trainer: Trainer) -> set[int]:
    return {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}


TRAIN = {"epochs": 3, "batch_size": 16, "seed": 3, "optimizer": {"type": "adam", "lr": 0.01}}


def test_freeze_keeps_the_backbone_and_its_batchnorm_statistics_bit_identical():
    model = blocks.build(bn_spec(), seed=0)
    backbone, head = part(model, "backbone."), part(model, "head.")
    assert any("running_mean" in k for k in backbone)
    # a callback putting the whole model in train mode after each epoch changes nothing
    trainer = Trainer(model, {**TRAIN, "freeze": ["backbone"]}, quiet=True,
                      callbacks=[lambda t, record: t.model.train()])
    assert optimizer_param_ids(trainer) == {id(p) for p in model.head.parameters()}
    modes = []  # the batchnorm's mode at every forward during fit
    model.backbone[1].register_forward_pre_hook(lambda module, args: modes.append(module.training))
    trainer.fit(learnable_data(96), learnable_data(32, seed=1))
    assert len(modes) == 3 * (6 + 2) and not any(modes)  # 6 training + 2 validation batches
    assert same(part(model, "backbone."), backbone)  # weights, running stats, batch counter
    assert not same(part(model, "head."), head)
    assert all(not p.requires_grad for p in model.backbone.parameters())


def test_without_freeze_the_same_run_moves_the_batchnorm_statistics():
    model = blocks.build(bn_spec(), seed=0)
    before = part(model, "backbone.1.")
    Trainer(model, TRAIN, quiet=True).fit(learnable_data(96))
    assert not torch.equal(model.state_dict()["backbone.1.running_mean"], before["backbone.1.running_mean"])


def test_a_deeper_prefix_freezes_only_that_module():
    model = blocks.build(bn_spec(), seed=0)
    first = part(model, "backbone.0.")
    trainer = Trainer(model, {**TRAIN, "epochs": 1, "freeze": ["backbone.0"]}, quiet=True)
    trainer.fit(learnable_data(64))
    assert same(part(model, "backbone.0."), first)
    assert id(model.backbone[4].weight) in optimizer_param_ids(trainer)
    assert model.backbone[1].training is True  # its batchnorm is not under `backbone.0`


def test_unfreeze_at_epoch_trains_the_backbone_from_that_epoch_on_the_current_schedule():
    model = blocks.build(bn_spec(), seed=0)
    initial = part(model, "backbone.")
    seen = []
    spec = {**TRAIN, "epochs": 4, "freeze": ["backbone"], "unfreeze_at_epoch": 3,
            "scheduler": {"type": "step", "step_size": 1, "gamma": 0.5},
            "param_groups": [{"prefix": "backbone", "lr": 0.001}]}
    trainer = Trainer(model, spec, quiet=True, callbacks=[
        lambda t, record: seen.append((same(part(t.model, "backbone."), initial),
                                       [(g["name"], g["lr"]) for g in t.optimizer.param_groups]))])
    trainer.fit(learnable_data(96))
    assert [unchanged for unchanged, _ in seen] == [True, True, False, False]
    # epochs 1-2: the head alone; from epoch 3 the backbone's group, at its lr times the decay
    # the schedule has reached (0.5 per epoch, recorded after each epoch's step)
    assert [groups for _, groups in seen] == [
        [("default", 0.01 * 0.5)], [("default", 0.01 * 0.25)],
        [("default", 0.01 * 0.125), ("backbone", 0.001 * 0.125)],
        [("default", 0.01 * 0.0625), ("backbone", 0.001 * 0.0625)]]
    assert optimizer_param_ids(trainer) == {id(p) for p in model.parameters()}
    assert model.backbone[1].training is True


class Interrupt(Exception):
    pass


def stop_after(epoch: int):
    def callback(trainer, record):
        if record["epoch"] == epoch:
            raise Interrupt

    return callback


RESUME = {"epochs": 4, "batch_size": 16, "seed": 5, "optimizer": {"type": "adamw", "lr": 0.01},
          "scheduler": {"type": "one_cycle", "pct_start": 0.4}, "freeze": ["backbone"],
          "unfreeze_at_epoch": 3, "param_groups": [{"prefix": "backbone.4", "lr": 0.002,
                                                     "weight_decay": 0.1}]}


# callbacks run before the epoch's checkpoint: stopping in epoch 3 resumes from the checkpoint
# of epoch 2 (frozen, the unfreeze still ahead), stopping in epoch 4 from epoch 3's (unfrozen)
@pytest.mark.parametrize("stop", [3, 4])
def test_resume_across_the_unfreeze_epoch_is_bit_identical(tmp_path, stop):
    train, val = learnable_data(90), learnable_data(30, seed=1)
    whole = blocks.build(bn_spec(), seed=1)
    history = Trainer(whole, RESUME, quiet=True).fit(train, val)

    first = blocks.build(bn_spec(), seed=1)
    with pytest.raises(Interrupt):
        Trainer(first, RESUME, run_dir=tmp_path, quiet=True, callbacks=[stop_after(stop)]).fit(train, val)
    second = blocks.build(bn_spec(), seed=42)
    trainer = Trainer(second, RESUME, run_dir=tmp_path, quiet=True)
    resumed = trainer.fit(train, val, resume=True)

    assert same(whole.state_dict(), second.state_dict())
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(resumed) == strip(history)
    assert [g["name"] for g in trainer.optimizer.param_groups] == ["default", "default", "backbone.4"]


def test_param_group_settings_reach_the_optimizer_and_survive_resume(tmp_path):
    spec = {**TRAIN, "epochs": 1, "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
            "param_groups": [{"prefix": "backbone.0", "lr": 0.001, "weight_decay": 0.05},
                             {"prefix": "head", "lr": 0.5}]}
    model = blocks.build(bn_spec(), seed=0)
    trainer = Trainer(model, spec, run_dir=tmp_path, quiet=True)
    expected = [("default", 0.1, 0.0), ("backbone.0", 0.001, 0.05), ("head", 0.5, 0.0)]
    read = lambda t: [(g["name"], g["lr"], g["weight_decay"]) for g in t.optimizer.param_groups]  # noqa: E731
    assert read(trainer) == expected
    assert [len(g["params"]) for g in trainer.optimizer.param_groups] == [4, 2, 2]
    trainer.fit(learnable_data(64))
    fresh = Trainer(blocks.build(bn_spec(), seed=9), spec, run_dir=tmp_path, quiet=True)
    fresh.resume()
    assert read(fresh) == expected
    assert fresh.optimizer.state_dict()["param_groups"] == trainer.optimizer.state_dict()["param_groups"]


RECIPE = """\
model:
  input: {shape: [6]}
  backbone:
    - {type: linear, out_features: 16}
    - relu
  head: {type: softmax, classes: 3}
train:
  epochs: 3
  freeze: [backbone, heads]
  param_groups:
    - {prefix: head, lr: 0.001}
    - {prefix: backbone.0.bais, lr: 0.01}
"""


def test_unknown_prefixes_are_located_errors_with_suggestions():
    with pytest.raises(blocks.SpecError) as err:
        blocks.load_recipe(RECIPE)
    assert [str(p) for p in err.value.problems] == [
        "<string>:9:22: train.freeze[1]: 'heads' names no parameter of the model; did you mean "
        "'head'? (prefixes are module names, e.g. backbone, head)",
        "<string>:12:16: train.param_groups[1].prefix: 'backbone.0.bais' names no parameter of "
        "the model; did you mean 'backbone.0.bias'? (prefixes are module names, e.g. backbone, head)",
    ]
    # the Trainer checks the same for models built in Python (no file, the same spec paths)
    model = blocks.build(bn_spec())
    with pytest.raises(blocks.SpecError, match=r"^train\.freeze\[0\]: 'backbone\.9' names no"):
        Trainer(model, {"freeze": ["backbone.9"]})


@pytest.mark.parametrize(("train", "message"), [
    ({"param_groups": [{"prefix": "backbone"}, {"prefix": "backbone.0", "lr": 0.1}]},
     "train.param_groups: groups 0 ('backbone') and 1 ('backbone.0') overlap; a parameter can be "
     "in one group only"),
    ({"unfreeze_at_epoch": 2}, "train.unfreeze_at_epoch: unfreeze_at_epoch needs `freeze:` prefixes"),
    ({"epochs": 3, "freeze": ["backbone"], "unfreeze_at_epoch": 5},
     "train.unfreeze_at_epoch: epoch 5 is after the last one (3)"),
    ({"freeze": ["backbone"], "unfreeze_at_epoch": 1},
     "train.unfreeze_at_epoch: Input should be greater than or equal to 2"),
])
def test_fine_tuning_keys_are_checked(train, message):
    with pytest.raises(blocks.SpecError) as err:
        blocks.load_recipe({"model": {"input": {"shape": [6]}, "backbone": [
            {"type": "linear", "out_features": 4}], "head": {"type": "softmax", "classes": 2}},
            "train": train})
    assert str(err.value).startswith(message)


def test_init_from_prefixes_are_checked_at_load_and_when_training_starts(tmp_path):
    recipe = {"model": bn_spec().model_dump(mode="json", exclude_none=True),
              "train": {"init_from": {"path": "nowhere", "only": ["backbone", "neck"]}}}
    with pytest.raises(blocks.SpecError, match=r"^train\.init_from\.only\[1\]: 'neck' names no parameter"):
        blocks.load_recipe(recipe)
    source = blocks.build(bn_spec(), seed=1)
    blocks.save(source, tmp_path / "run")
    model = blocks.build(bn_spec(), seed=2)
    Trainer(model, {"epochs": 1, "init_from": {"path": str(tmp_path / "run")}, "freeze": ["backbone"]},
            quiet=True).fit(learnable_data(32))
    assert same(part(model, "backbone."), part(source, "backbone."))
    assert not same(part(model, "head."), part(source, "head."))
    other = blocks.build(blocks.ModelSpec(input={"shape": [6]}, backbone=[
        {"type": "linear", "out_features": 12}], head={"type": "softmax", "classes": 3}))
    with pytest.raises(blocks.SpecError, match=r"^train\.init_from: .* does not fit the model under "
                       r"backbone \(wrong shape: backbone\.0\.weight \[16, 6\] \(model: \[12, 6\]\)"):
        Trainer(other, {"init_from": {"path": str(tmp_path / "run")}}).fit(learnable_data(8))


def test_freezing_everything_is_refused():
    with pytest.raises(blocks.SpecError, match="freezes every parameter"):
        Trainer(blocks.build(bn_spec()), {"freeze": ["backbone", "head"]})


def test_features_is_the_backbone_output_the_heads_see():
    model = blocks.build(bn_spec(), seed=0).eval()
    x = torch.randn(5, 6)
    assert torch.equal(model.features(x), model.backbone(x))
    assert torch.equal(model.head(model.features(x)), model(x))
    with pytest.raises(blocks.InputShapeError):
        model.features(torch.randn(5, 7))


def test_the_summary_marks_frozen_rows_and_counts_them():
    model = blocks.build(bn_spec(), seed=0)
    Trainer(model, {"freeze": ["backbone.0", "backbone.1"]})
    summary = blocks.summarize(model)
    assert summary.trainable_params == 8 * 16 + 8 + 8 * 3 + 3
    assert summary.non_trainable_params == 6 * 16 + 16 + 2 * 16
    assert [r.frozen for r in summary.rows] == [True, True, False, False, False, False, False]
    assert "backbone[0] linear (frozen)" in summary.table()
    assert "backbone[4] linear (frozen)" not in summary.table()
    # a recipe's own `freeze` shows without training anything
    recipe = blocks.Recipe(model=bn_spec(), train={"freeze": ["backbone"]})
    from_recipe = blocks.summarize(recipe)
    assert from_recipe.trainable_params == 8 * 3 + 3
    assert "`backbone[1] batchnorm1d (frozen)`" in from_recipe.to_markdown()


@pytest.mark.parametrize("scheduler", [{"type": "cosine"}, {"type": "one_cycle", "pct_start": 0.5}])
def test_unfrozen_parameters_join_a_per_step_schedule_where_it_is(scheduler):
    seen = []
    model = blocks.build(bn_spec(), seed=0)
    spec = {**TRAIN, "epochs": 3, "freeze": ["backbone"], "unfreeze_at_epoch": 2,
            "scheduler": scheduler, "param_groups": [{"prefix": "backbone", "lr": 0.002}]}
    Trainer(model, spec, quiet=True, callbacks=[  # after epochs 1, 2, 3: steps 6, 12, 18 of 18
        lambda t, r: seen.append([g["lr"] for g in t.optimizer.param_groups])]).fit(learnable_data(96))
    assert len(seen[0]) == 1 and len(seen[1]) == len(seen[2]) == 2
    head_lr, backbone_lr = seen[1]  # mid-schedule: each group at the same fraction of its own lr
    assert 0 < head_lr < 0.01 and head_lr != pytest.approx(seen[0][0])
    assert backbone_lr / 0.002 == pytest.approx(head_lr / 0.01, rel=1e-9)
