"""Pitfall 7: the batch loss is the mean of per-sample losses, and every way of batching keeps it.

One optimizer step with SGD (no momentum) moves each weight by `-lr * grad`, so the gradient the
trainer used is read back from the weights, or captured just before `optimizer.step()`.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset
from trainkit import linear_spec

import blocks

SGD1 = {"type": "sgd", "lr": 1.0, "momentum": 0.0}


def one_step_spec(batch_size: int = 10, **extra) -> dict:
    return {"epochs": 1, "batch_size": batch_size, "shuffle": False, "optimizer": SGD1, **extra}


def captured_step_grads(trainer: blocks.Trainer) -> list[dict[str, torch.Tensor]]:
    """Gradients as the optimizer sees them, one dict per step."""
    seen: list[dict[str, torch.Tensor]] = []
    names = {id(p): n for n, p in trainer.model.named_parameters()}

    def hook(optimizer, args, kwargs):
        seen.append({names[id(p)]: p.grad.detach().clone()
                     for group in optimizer.param_groups for p in group["params"]})

    trainer.optimizer.register_step_pre_hook(hook)
    return seen


def data(n=10, features=4, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


# micro-batches of sizes 5, 3 and 2 (a DataLoader batch_sampler)
UNEVEN = [[0, 1, 2, 3, 4], [5, 6, 7], [8, 9]]


def grads_full_and_accumulated(spec, x, y, make_dataset, **train):
    full = blocks.build(spec, seed=3)
    t_full = blocks.Trainer(full, one_step_spec(**train), quiet=True)
    g_full = captured_step_grads(t_full)
    t_full.fit((x, y))
    acc = blocks.build(spec, seed=3)
    t_acc = blocks.Trainer(acc, one_step_spec(accumulate=3, **train), quiet=True)
    g_acc = captured_step_grads(t_acc)
    t_acc.fit(DataLoader(make_dataset(x, y), batch_sampler=UNEVEN))
    assert len(g_full) == len(g_acc) == 1, "both runs take exactly one optimizer step"
    return g_full[0], g_acc[0], full, acc


def test_one_step_gradient_is_mean_of_per_sample_gradients():
    spec = linear_spec()
    x, y = data()
    model = blocks.build(spec, seed=0)
    w0, b0 = model.head.weight.detach().clone(), model.head.bias.detach().clone()
    blocks.Trainer(model, one_step_spec(), quiet=True).fit((x, y))
    grad_w = w0 - model.head.weight.detach()  # lr = 1
    grad_b = b0 - model.head.bias.detach()
    # Hand-computed: d CE / d logits = softmax - onehot, per sample; then the mean over samples.
    p = torch.softmax(x @ w0.T + b0, dim=1)
    delta = p - F.one_hot(y, 3).float()
    per_sample_w = delta[:, :, None] * x[:, None, :]  # [N, C, F]
    torch.testing.assert_close(grad_w, per_sample_w.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(grad_b, delta.mean(0), atol=1e-6, rtol=0)
    # ... which is not the sum: a sum-loss would take a 10x larger step.
    assert not torch.allclose(grad_w, per_sample_w.sum(0), atol=1e-3)


def test_accumulating_uneven_micro_batches_equals_the_full_batch_softmax():
    x, y = data()
    g_full, g_acc, full, acc = grads_full_and_accumulated(linear_spec(), x, y, TensorDataset)
    for name in g_full:
        torch.testing.assert_close(g_acc[name], g_full[name], atol=1e-6, rtol=0)
    for a, b in zip(full.parameters(), acc.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # The naive average of the three micro-batch means is a different (wrong) gradient.
    model = blocks.build(linear_spec(), seed=3)
    naive = []
    for idx in UNEVEN:
        model.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        naive.append(model.head.weight.grad.clone())
    assert not torch.allclose(sum(naive) / 3, g_full["head.weight"], atol=1e-4)


def test_accumulation_sigmoid_multi_label():
    spec = linear_spec({"type": "sigmoid", "classes": 2})
    g = torch.Generator().manual_seed(2)
    x = torch.randn(10, 4, generator=g)
    y = torch.randint(0, 2, (10, 2), generator=g).float()
    g_full, g_acc, full, _ = grads_full_and_accumulated(spec, x, y, TensorDataset)
    for name in g_full:
        torch.testing.assert_close(g_acc[name], g_full[name], atol=1e-6, rtol=0)
    # and the full gradient is BCE-with-logits averaged over samples x labels
    ref = blocks.build(spec, seed=3)
    F.binary_cross_entropy_with_logits(ref(x), y).backward()
    torch.testing.assert_close(g_full["head.weight"], ref.head.weight.grad, atol=1e-6, rtol=0)
    w = ref.head.weight.detach()
    delta = torch.sigmoid(x @ w.T + ref.head.bias.detach()) - y
    # the mean over the N x C (sample, label) terms: sum over samples, divided by N * C
    hand = (delta[:, :, None] * x[:, None, :]).sum(0) / (10 * 2)
    torch.testing.assert_close(g_full["head.weight"], hand, atol=1e-6, rtol=0)


def test_accumulation_with_class_weights_is_the_weighted_mean():
    weights = [1.0, 3.0, 0.5]
    spec = linear_spec({"type": "softmax", "classes": 3, "class_weights": weights})
    x, y = data(seed=4)
    g_full, g_acc, _, _ = grads_full_and_accumulated(spec, x, y, TensorDataset)
    for name in g_full:
        torch.testing.assert_close(g_acc[name], g_full[name], atol=1e-6, rtol=0)
    ref = blocks.build(spec, seed=3)
    w0, b0 = ref.head.weight.detach(), ref.head.bias.detach()
    delta = torch.softmax(x @ w0.T + b0, 1) - F.one_hot(y, 3).float()
    sw = torch.tensor(weights)[y]
    hand = (sw[:, None, None] * delta[:, :, None] * x[:, None, :]).sum(0) / sw.sum()
    torch.testing.assert_close(g_full["head.weight"], hand, atol=1e-6, rtol=0)


class TwoHeadDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {k: v[i] for k, v in self.y.items()}


def two_head_spec():
    return blocks.ModelSpec(input={"shape": [4]}, heads={
        "kind": {"type": "softmax", "classes": 3},
        "tags": {"type": "sigmoid", "classes": 2, "loss_weight": 0.25}})


def two_head_data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(10, 4, generator=g)
    return x, {"kind": torch.randint(0, 3, (10,), generator=g),
               "tags": torch.randint(0, 2, (10, 2), generator=g).float()}


def test_multi_head_loss_is_weighted_sum_of_head_means():
    spec = two_head_spec()
    x, y = two_head_data()
    model = blocks.build(spec, seed=0)
    ref = copy.deepcopy(model)
    trainer = blocks.Trainer(model, one_step_spec(batch_size=4), quiet=True)
    metrics = trainer.evaluate((x, y))
    out = ref(x)  # keeps the graph: reused for the gradient check below
    kind = F.cross_entropy(out["kind"], y["kind"])
    tags = F.binary_cross_entropy_with_logits(out["tags"], y["tags"])
    assert metrics["test/loss"] == pytest.approx(float((kind + 0.25 * tags).detach()), abs=1e-6)
    assert metrics["test/kind/loss"] == pytest.approx(float(kind.detach()), abs=1e-6)
    assert metrics["test/tags/loss"] == pytest.approx(float(tags.detach()), abs=1e-6)
    # the gradient of one step is the gradient of that weighted sum
    trainer = blocks.Trainer(model, one_step_spec(), quiet=True)
    grads = captured_step_grads(trainer)
    trainer.fit((x, y))
    (kind + 0.25 * tags).backward()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(grads[0][name], p.grad, atol=1e-6, rtol=0)


def test_multi_head_accumulation_equals_full_batch():
    x, y = two_head_data()
    g_full, g_acc, _, _ = grads_full_and_accumulated(two_head_spec(), x, y, TwoHeadDataset)
    for name in g_full:
        torch.testing.assert_close(g_acc[name], g_full[name], atol=1e-6, rtol=0)


def test_epoch_loss_weights_the_partial_last_batch_by_its_size():
    spec = linear_spec()
    x, y = data()
    model = blocks.build(spec, seed=0)
    outputs: list[torch.Tensor] = []
    model.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    trainer = blocks.Trainer(model, {"epochs": 1, "batch_size": 4, "shuffle": False,
                                     "optimizer": {"type": "sgd", "lr": 0.5}}, quiet=True)
    record = trainer.fit((x, y)).last
    assert [len(o) for o in outputs] == [4, 4, 2]
    # each batch's logits were computed with that step's weights; the epoch loss is the mean
    # over all 10 samples of those per-sample losses
    per_sample = F.cross_entropy(torch.cat(outputs), y, reduction="none")
    assert record["train/loss"] == pytest.approx(float(per_sample.mean()), abs=1e-6)
    naive = sum(float(per_sample[s:s + 4].mean()) for s in (0, 4, 8)) / 3
    assert record["train/loss"] != pytest.approx(naive, abs=1e-6)


def test_evaluate_loss_is_the_sample_mean_with_a_partial_batch():
    x, y = data(n=10)
    model = blocks.build(linear_spec(), seed=0)
    metrics = blocks.Trainer(model, {"batch_size": 4}, quiet=True).evaluate((x, y))
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y)
    assert metrics["test/loss"] == pytest.approx(float(expected), abs=1e-6)
