"""The fixture corpus: each wrong model gives exactly its findings (code, line, column), each
fixed one gives none, statically and, where both apply, at runtime."""

from __future__ import annotations

import pytest
import torch
from lint_support import FIXTURES, load_fixture

from blocks.lint import lint_paths
from blocks.lint.audit import audit

# file -> exact findings (code, line, column); every location was checked by eye.
WRONG = {
    "BLK001_wrong.py": [("BLK001", 9, 14)],
    "BLK002_wrong.py": [("BLK002", 8, 5)],
    "BLK002_wrong_build.py": [("BLK002", 9, 9)],
    "BLK003_wrong.py": [("BLK003", 9, 9)],
    "BLK003_wrong_missing.py": [("BLK003", 8, 5)],
    "BLK004_wrong.py": [("BLK004", 10, 9)],
    "BLK005_wrong.py": [("BLK005", 10, 9)],
    "BLK006_wrong.py": [("BLK006", 13, 16)],
    "BLK007_wrong.py": [("BLK007", 13, 17)],
    "BLK008_wrong.py": [("BLK008", 18, 12)],
    # the seed's two models, verbatim
    "seed_forward_wrong.py": [("BLK001", 7, 17), ("BLK001", 8, 15)],
    "seed_int_wrong.py": [("BLK002", 6, 5), ("BLK001", 9, 17), ("BLK001", 10, 15)],
}
RIGHT = sorted(p.name for p in FIXTURES.glob("*_right.py"))

# file -> (class, input shape, expected audit codes); None: the audit does not apply
# (BLK003 cannot even be constructed; BLK006-008 are not visible at runtime on a CPU).
AUDIT = {
    "BLK001": ("Model", (2, 4), ["created_in_forward", "no_parameters"]),
    "BLK002": ("Model", (2, 4), ["misspelled_init", "forward_failed"]),
    "BLK004": ("Model", (2, 4), ["plain_container"]),
    "BLK005": ("Model", (2, 4), ["plain_tensor_attribute"]),
    "seed": ("MyModel", (2, 1, 28, 28), None),
}


def _found(name: str) -> list[tuple[str, int, int]]:
    result = lint_paths([FIXTURES / name])
    assert result.errors == []
    return sorted((f.code, f.line, f.column) for f in result.findings)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_fixture_gives_exactly_its_findings(name: str) -> None:
    assert _found(name) == sorted(WRONG[name])


@pytest.mark.parametrize("name", RIGHT)
def test_right_fixture_is_clean(name: str) -> None:
    assert _found(name) == []


def test_every_rule_has_a_wrong_and_a_right_fixture() -> None:
    from blocks.lint import RULE_CODES

    for code in RULE_CODES:
        assert (FIXTURES / f"{code}_wrong.py").exists()
        assert (FIXTURES / f"{code}_right.py").exists()
        assert any(code in [c for c, _, _ in v] for v in WRONG.values())


@pytest.mark.parametrize("rule", sorted(k for k, v in AUDIT.items() if v[2] is not None))
def test_audit_agrees_on_wrong_and_right(rule: str) -> None:
    cls_name, shape, codes = AUDIT[rule]
    wrong = getattr(load_fixture(f"{rule}_wrong.py"), cls_name)()
    report = audit(wrong, torch.randn(*shape))
    assert report.codes == codes, str(report)
    right = getattr(load_fixture(f"{rule}_right.py"), cls_name)()
    assert audit(right, torch.randn(*shape)).ok


def test_audit_of_the_seed_models() -> None:
    x = torch.randn(2, 1, 28, 28)
    forward_report = audit(load_fixture("seed_forward_wrong.py").MyModel(), x)
    assert forward_report.codes == ["created_in_forward", "created_in_forward", "no_parameters"]
    assert [f.path for f in forward_report][:2] == ["conv1", "fc1"]
    int_report = audit(load_fixture("seed_int_wrong.py").MyModel(), x)
    assert int_report.codes[0] == "misspelled_init"
    assert "created_in_forward" in int_report.codes
    assert audit(load_fixture("seed_right.py").MyModel(), x).ok


def test_training_the_seed_model_changes_nothing_registered() -> None:
    """The pitfall itself: SGD on parameters() of a model whose layers live in forward."""
    model = load_fixture("seed_forward_wrong.py").MyModel()
    assert list(model.parameters()) == []
    with pytest.raises(ValueError, match="empty parameter list"):
        torch.optim.SGD(model.parameters(), lr=0.1)
    # the __int__ variant: also nothing registered, and the state dict is empty before and after
    int_model = load_fixture("seed_int_wrong.py").MyModel()
    before = {k: v.clone() for k, v in int_model.state_dict().items()}
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    loss = torch.nn.functional.cross_entropy(int_model(x), y)
    loss.backward()  # gradients go to throw-away layers
    assert before == {} and int_model.state_dict() == {}


def test_training_the_fixed_seed_model_updates_its_parameters() -> None:
    model = load_fixture("seed_right.py").MyModel()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
