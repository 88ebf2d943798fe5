"""The planner's allocation: natural proportions, the epoch cap, and clear infeasibility errors."""

import pytest

from mixtures.planner import Group, InfeasiblePlan, allocate


def group(name, tokens):
    return Group(name, [{"path": f"{name}.arrow", "sha256": "0" * 64, "rows": 1, "tokens": tokens}])


def test_natural_proportions():
    planned = allocate(300, [group("a", 100), group("b", 200)], max_epochs=4, phase="stable")
    assert planned == {"a": 100, "b": 200}


def test_epoch_cap_is_respected_and_infeasible_plans_say_what_to_change():
    planned = allocate(1200, [group("a", 100), group("b", 200)], max_epochs=4, phase="stable")
    assert planned == {"a": 400, "b": 800}
    with pytest.raises(InfeasiblePlan, match="raise max_epochs"):
        allocate(1201, [group("a", 100), group("b", 200)], max_epochs=4, phase="stable")
