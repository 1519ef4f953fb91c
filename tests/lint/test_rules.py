"""Rule behaviour beyond the fixtures: more wrong shapes found, and ordinary code left alone."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch.nn as nn

from blocks.lint import lint_paths, lint_source
from blocks.lint.rules import is_init_near_miss
from blocks.lint.torch_names import ALL_LAYERS, MODULE_METHODS, STATEFUL_LAYERS

HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def codes(body: str) -> list[str]:
    return [f.code for f in lint_source(HEADER + textwrap.dedent(body))]


FOUND = {
    "dropout in forward ignores eval": (
        """
        class M(nn.Module):
            def forward(self, x):
                return nn.Dropout(0.5)(x)
        """, ["BLK001"]),
    "lazy layer in forward": (
        """
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = None
            def forward(self, x):
                if self.fc is None:
                    self.fc = nn.Linear(x.shape[1], 2)
                return self.fc(x)
        """, ["BLK001"]),
    "parameter in forward": (
        """
        class M(nn.Module):
            def forward(self, x):
                w = nn.Parameter(torch.randn(3, 3, device=x.device))
                return x @ w
        """, ["BLK001"]),
    "user block through a subclass chain": (
        """
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(2, 2)
        class Base(nn.Module):
            pass
        class M(Base):
            def forward_features(self, x):
                return Block()(x)
        """, ["BLK001"]),
    "from-import of the layer": (
        """
        from torch.nn import Conv2d, Module
        class M(Module):
            def forward(self, x):
                return Conv2d(1, 2, 3)(x)
        """, ["BLK001"]),
    "__inti__ transposed": (
        """
        class M(nn.Module):
            def __inti__(self):
                super().__init__()
        """, ["BLK002"]),
    "register_buffer before super": (
        """
        class M(nn.Module):
            def __init__(self):
                self.register_buffer("mask", torch.ones(3))
                super().__init__()
        """, ["BLK003"]),
    "append to a plain list": (
        """
        class M(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.blocks = []
                for _ in range(n):
                    self.blocks.append(nn.Linear(4, 4))
        """, ["BLK004"]),
    "dict of heads": (
        """
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                head = nn.Linear(4, 2)
                self.heads = {"a": head, "b": nn.Linear(4, 3)}
        """, ["BLK004"]),
    "requires_grad_ on a plain attribute": (
        """
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.randn(3).requires_grad_()
        """, ["BLK005"]),
    "builtin sum in a script (the seed)": (
        """
        t = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
        m = 1.0
        m *= sum(t)
        """, ["BLK006"]),
    "builtin max on a functional output": (
        """
        def f(x):
            y = F.relu(x).view(-1)
            return max(y)
        """, ["BLK006"]),
    "arange in forward": (
        """
        class M(nn.Module):
            def forward(self, x):
                pos = torch.arange(x.shape[1])
                return x + pos
        """, ["BLK007"]),
    "criterion attribute after softmax method": (
        """
        class Trainer(nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net
                self.loss = nn.CrossEntropyLoss()
            def step(self, x, y):
                return self.loss(self.net(x).softmax(dim=1), y)
        """, ["BLK008"]),
    "sigmoid before BCEWithLogitsLoss": (
        """
        criterion = nn.BCEWithLogitsLoss()
        def step(model, x, y):
            p = torch.sigmoid(model(x))
            return criterion(p, y)
        """, []),  # module-level criterion is out of the function: not followed (conservative)
    "sigmoid before a local BCEWithLogitsLoss": (
        """
        def step(model, x, y):
            criterion = nn.BCEWithLogitsLoss()
            p = torch.sigmoid(model(x))
            return criterion(p, y)
        """, ["BLK008"]),
}


@pytest.mark.parametrize("case", sorted(FOUND))
def test_rule_cases(case: str) -> None:
    body, expected = FOUND[case]
    assert codes(body) == expected


CLEAN = {
    "stateless layers and functionals in forward": """
        class M(nn.Module):
            def forward(self, x):
                x = nn.ReLU()(x)
                x = nn.Flatten()(x)
                return F.relu(x) + nn.functional.gelu(x)
        """,
    "layer class held in a variable (cannot tell)": """
        class M(nn.Module):
            def __init__(self, norm_layer=nn.LayerNorm):
                super().__init__()
                self.norm = norm_layer(4)
            def forward(self, x, act=nn.GELU):
                return act()(self.norm(x))
        """,
    "sum over a list of feature maps": """
        class FPN(nn.Module):
            def forward(self, features):
                return sum(features) + sum(f.mean() for f in features)
        """,
    "sum of Python numbers and of parameter counts": """
        def count(model):
            return sum(p.numel() for p in model.parameters()) + sum([1, 2]) + max(3, 4)
        """,
    "factories with device, *_like, new_*, moved, index-only, scalars": """
        class M(nn.Module):
            def forward(self, x):
                a = torch.zeros(3, device=x.device) + torch.ones_like(x) + x.new_zeros(3)
                b = torch.arange(5).to(x.device)
                r = torch.randperm(x.shape[0])
                return a + b + x[r] + torch.tensor(0.5) + torch.tensor(-1)
        """,
    "factories outside forward": """
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("pos", torch.arange(10))
                self.w = nn.Parameter(torch.randn(3, requires_grad=True))
        """,
    "the hide-from-registration trick on a passed-in module": """
        class Student(nn.Module):
            def __init__(self, teacher):
                super().__init__()
                self._teacher = [teacher]
                self.names = ["a", "b"]
                self.cache = {}
        """,
    "layers built in a helper called from __init__": """
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self._build()
            def _build(self):
                self.fc = nn.Linear(2, 2)
            def reset_classifier(self, n):
                self.fc = nn.Linear(2, n)
        """,
    "template method: base __init__ calls a hook": """
        class Base(nn.Module):
            def __init__(self):
                super().__init__()
                self.build()
        class M(Base):
            def build(self):
                self.fc = nn.Linear(2, 2)
        """,
    "__init__ delegating to a helper that calls super().__init__": """
        class Base(nn.Module):
            def __init__(self):
                raise NotImplementedError
            def _init(self):
                super().__init__()
        class M(Base):
            def __init__(self):
                super()._init()
                self.fc = nn.Linear(2, 2)
        """,
    "plain attributes before super().__init__ are fine": """
        class M(nn.Module):
            def __init__(self, n):
                self.n = n
                super().__init__()
                self.fc = nn.Linear(n, n)
        """,
    "a real __int__ conversion": """
        class Index(nn.Module):
            def __int__(self):
                return 3
        """,
    "log_softmax before nll_loss, logits into cross_entropy": """
        def step(model, x, y):
            logp = F.log_softmax(model(x), dim=1)
            loss = F.nll_loss(logp, y)
            probs = torch.softmax(model(x), dim=1)  # for metrics only
            return loss + F.cross_entropy(model(x), y) + probs.max()
        """,
    "not an nn.Module": """
        class Helper:
            def forward(self, x):
                return nn.Linear(2, 2)(x) + torch.zeros(3)
        """,
    "user-defined sum shadows the builtin": """
        from torch import sum
        def f(x):
            return sum(torch.ones(3))
        """,
    "overloaded __init__ stubs": """
        from typing import overload
        class M(nn.Module):
            @overload
            def __init__(self, a: int) -> None: ...
            @overload
            def __init__(self, a: str) -> None: ...
            def __init__(self, a):
                super().__init__()
        """,
}


@pytest.mark.parametrize("case", sorted(CLEAN))
def test_ordinary_code_is_left_alone(case: str) -> None:
    assert codes(CLEAN[case]) == []


@pytest.mark.parametrize(
    "name", ["__int__", "__init_", "_init_", "__inti__", "__innit__", "__init", "__iniit__"]
)
def test_near_misses(name: str) -> None:
    assert is_init_near_miss(name)


@pytest.mark.parametrize(
    "name", ["__init__", "_init", "init", "_init_weights", "__iter__", "__index__", "initialize"]
)
def test_not_near_misses(name: str) -> None:
    assert not is_init_near_miss(name)


def test_base_class_in_another_file(tmp_path: Path) -> None:
    """Module-ness flows through the file set: `Base` is an nn.Module defined elsewhere."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text("from torch import nn\n\nclass Base(nn.Module):\n    pass\n")
    (pkg / "model.py").write_text(
        "from torch import nn\nfrom .base import Base\n\n"
        "class M(Base):\n    def forward(self, x):\n        return nn.Linear(2, 2)(x)\n"
    )
    found = lint_paths([pkg]).findings
    assert [(Path(f.path).name, f.code, f.line) for f in found] == [("model.py", "BLK001", 6)]
    alone = lint_paths([pkg / "model.py"]).findings  # without base.py: unknown, so silent
    assert alone == []


def test_name_lists_match_installed_torch() -> None:
    """The static names cover exactly torch.nn's module classes and nn.Module's methods."""
    torch_layers = {
        n for n in dir(nn) if isinstance(getattr(nn, n), type) and issubclass(getattr(nn, n), nn.Module)
    }
    assert torch_layers <= ALL_LAYERS | {"Module"}
    missing = {n for n in ALL_LAYERS if not hasattr(nn, n)}
    assert missing <= {"NLLLoss2d", "Container", "LinearCrossEntropyLoss"}
    for name in STATEFUL_LAYERS - {"Container"}:
        cls = getattr(nn, name, None)
        assert cls is None or issubclass(cls, nn.Module)
    assert {m for m in MODULE_METHODS if not hasattr(nn.Module, m)} == set()
