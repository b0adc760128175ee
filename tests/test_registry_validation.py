"""The ground of every config check: registries name what exists; the validation walk names full keys."""

from dataclasses import dataclass, field

import pytest

from pipeline.errors import UsageError
from pipeline.registry import Registry
from pipeline.validation import InvalidValue, check, validate


def test_registry_lists_known_names_and_refuses_duplicates():
    reg = Registry("widget")
    reg.register("a")(1)
    reg.add("b", 2)
    assert reg.get("b") == 2 and list(reg) == ["a", "b"] and "a" in reg and "c" not in reg
    with pytest.raises(UsageError, match=r"^section.widget='c' is invalid; use one of: a, b$"):
        reg.get("c", "section.widget")
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 3)


@dataclass
class _Leaf:
    eps: float = 0.1

    def check(self):
        check(0 < self.eps <= 1, "eps", self.eps, "use (0, 1]; see {at}norm")


@dataclass
class _Node:
    attack: _Leaf = field(default_factory=_Leaf)
    n: int = 1

    def check(self):
        if self.n < 0:
            raise InvalidValue("n", self.n, message="{key} is negative; set {at}n=0")


def test_walk_prefixes_keys_children_first():
    validate(_Node(), "pretrain")
    with pytest.raises(InvalidValue) as err:
        validate(_Node(attack=_Leaf(eps=2.0), n=-1), "pretrain")
    assert str(err.value) == "pretrain.attack.eps=2.0 is invalid; use (0, 1]; see pretrain.attack.norm"
    with pytest.raises(InvalidValue, match=r"^top.n is negative; set top.n=0$"):
        validate(_Node(n=-1), "top")
