"""`blocks.lint.audit`: what it reports, and that it leaves the model exactly as it found it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blocks.lint.audit import AuditError, AuditReport, audit

SHARED = nn.Linear(4, 4)  # a module living outside any model


class Good(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.bn(self.fc(x))))


class Messy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)
        self.frozen_out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = SHARED(self.fc(x))
        return self.frozen_out(x.detach())


class Lazy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            self.head = nn.Linear(x.shape[1], 2)
        return self.head(x)


class NoGradOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.fc(x)


def test_good_model_is_ok_and_str_says_so() -> None:
    report = audit(Good(), torch.randn(4, 4), optimizer=torch.optim.SGD(Good().parameters(), 0.1))
    # a different model's optimizer: every parameter is missing from it
    assert set(report.codes) == {"not_in_optimizer"}
    model = Good()
    report = audit(model, torch.randn(4, 4), optimizer=torch.optim.Adam(model.parameters()))
    assert report.ok and len(report) == 0 and "no problems found" in str(report)


def test_messy_model_findings_name_paths_and_fixes() -> None:
    report = audit(Messy(), torch.randn(2, 4))
    by_code = {(f.code, f.path) for f in report}
    assert ("no_gradient", "unused.weight") in by_code
    assert ("no_gradient", "fc.weight") in by_code  # cut off by .detach()
    assert ("no_gradient", "frozen_out.weight") not in by_code
    unregistered = [f for f in report if f.code == "unregistered_module"]
    assert len(unregistered) == 1 and "Linear" in unregistered[0].path
    assert all(f.fix for f in report)
    text = str(report)
    assert text.startswith("audit Messy: ") and "Fix:" in text


def test_lazily_created_layer_is_reported_with_its_path() -> None:
    model = Lazy()
    report = audit(model, torch.randn(2, 4))
    created = [f for f in report if f.code == "created_in_forward"]
    assert [f.path for f in created] == ["head"]
    assert "registered only then" in created[0].message


def test_output_without_grad() -> None:
    assert audit(NoGradOutput(), torch.randn(2, 4)).codes == ["output_has_no_grad"]


def test_optimizer_missing_parameters() -> None:
    model = Good()
    opt = torch.optim.SGD(model.out.parameters(), lr=0.1)
    report = audit(model, torch.randn(4, 4), optimizer=opt)
    assert [f.path for f in report] == ["fc.weight", "fc.bias", "bn.weight", "bn.bias"]
    assert set(report.codes) == {"not_in_optimizer"}


def test_devices_with_the_meta_device() -> None:
    """A parameter, a plain tensor and an input on another device than the model (CPU)."""

    class Split(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.fc2 = nn.Linear(4, 2)
            self.extra = nn.Parameter(torch.zeros(2, device="meta"))
            self.mask = torch.ones(2, device="meta")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) + self.fc2(x)

    report = audit(Split(), torch.randn(2, 4))
    assert ("wrong_device", "extra") in {(f.code, f.path) for f in report}
    assert ("wrong_device", "mask") in {(f.code, f.path) for f in report}
    meta_input = audit(Good(), torch.randn(2, 4, device="meta"))
    assert meta_input.codes[0] == "input_device" and "forward_failed" in meta_input.codes


def test_nothing_is_changed() -> None:
    torch.manual_seed(0)
    model = Good()
    model.eval()
    model.drop.train()  # mixed flags must come back exactly
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    model(x).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    grad_objects = {n: p.grad for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: m.training for n, m in model.named_modules()}
    rng = torch.random.get_rng_state()
    init = nn.Module.__init__

    report = audit(model, x, optimizer=opt)

    assert isinstance(report, AuditReport)
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # BN stats too
    for n, p in model.named_parameters():
        assert p.grad is grad_objects[n] and torch.equal(p.grad, grads[n])
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert nn.Module.__init__ is init
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks


def test_hooks_and_patch_removed_when_forward_raises() -> None:
    init = nn.Module.__init__
    report = audit(Good(), torch.randn(2, 5))  # wrong feature size
    assert report.codes == ["forward_failed"] and "mat1 and mat2" in report.findings[0].message
    assert nn.Module.__init__ is init
    assert not torch.nn.modules.module._global_forward_hooks


def test_tuple_and_dict_inputs_and_outputs() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 2)
            self.b = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"a": self.a(x), "b": self.b(y), "n": torch.tensor(3)}

    assert audit(Two(), (torch.randn(2, 4), torch.randn(2, 4))).ok
    assert audit(Two(), {"x": torch.randn(2, 4), "y": torch.randn(2, 4)}).ok


def test_not_a_module() -> None:
    with pytest.raises(AuditError, match="expects an nn.Module, got function"):
        audit(lambda x: x, torch.randn(1))  # type: ignore[arg-type]


def test_to_dict_is_json_ready() -> None:
    import json

    data = json.loads(json.dumps(audit(Lazy(), torch.randn(2, 4)).to_dict()))
    assert data["ok"] is False and data["findings"][0]["code"] == "created_in_forward"
    assert data["findings"][0]["rule"] == "BLK001"
