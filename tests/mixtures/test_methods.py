"""Mixture methods on hand-made supplies with known answers: natural, temperature, UniMax, targets, rounding, caps."""

import random
from fractions import Fraction

import pytest

from datafactory.mixtures.methods import InfeasiblePlan, Supply, allocate


def supply(name: str, tokens: int, epochs: float = 4) -> Supply:
    return Supply(name, tokens, int(epochs * tokens))


def test_natural_proportions():
    assert allocate(300, [supply("a", 100), supply("b", 200)]) == {"a": 100, "b": 200}


def test_natural_passes_a_capped_groups_excess_to_the_others():
    planned = allocate(200, [supply("a", 10, epochs=1), supply("b", 90)])
    assert planned == {"a": 10, "b": 190}  # natural would give a 20 tokens, two passes


def test_epoch_cap_is_respected_and_infeasible_plans_say_what_to_change():
    assert allocate(1200, [supply("a", 100), supply("b", 200)]) == {"a": 400, "b": 800}
    with pytest.raises(InfeasiblePlan, match=r"supply at most 1,200 .*raise max_epochs"):
        allocate(1201, [supply("a", 100), supply("b", 200)])


def test_temperature_sampling_flattens_toward_uniform():
    groups = [supply("a", 100), supply("b", 400)]
    assert allocate(300, groups, "temperature", temperature=2) == {"a": 100, "b": 200}  # sqrt: 10 : 20
    assert allocate(300, groups, "temperature", temperature=1) == allocate(300, groups, "natural")
    assert allocate(300, groups, "temperature", temperature=1e9) == {"a": 150, "b": 150}


def test_unimax_is_uniform_with_a_cap_of_n_epochs():
    groups = [supply("a", 10), supply("b", 100), supply("c", 1000)]
    # Chung et al.: uniform 200 each, but a holds only 4 x 10; the 560 left split evenly over b and c.
    assert allocate(600, groups, "unimax") == {"a": 40, "b": 280, "c": 280}
    # Budget 2000: a capped at 40, b at 400, c takes the rest.
    assert allocate(2000, groups, "unimax") == {"a": 40, "b": 400, "c": 1560}
    with pytest.raises(InfeasiblePlan, match="supply at most 4,440"):
        allocate(4441, groups, "unimax")


def test_targets_are_fixed_and_the_method_spreads_the_rest():
    groups = [supply("a", 100), supply("b", 100), supply("c", 300)]
    planned = allocate(400, groups, fixed={"a": Fraction(1, 2) * 400})
    assert planned == {"a": 200, "b": 50, "c": 150}


def test_targets_that_cannot_sum_to_one_are_rejected():
    groups = [supply("a", 100), supply("b", 100)]
    fixed = {"a": Fraction(3, 10) * 100, "b": Fraction(3, 10) * 100}
    with pytest.raises(InfeasiblePlan, match="weights cannot sum to one: make the targets sum to 1"):
        allocate(100, groups, fixed=fixed, where="stable phase")
    with pytest.raises(InfeasiblePlan, match=r"target for a needs 600 tokens, 6.00 epochs .*lower that target"):
        allocate(1000, groups, fixed={"a": Fraction(600)})


def test_rounding_is_exact_deterministic_and_never_passes_a_cap():
    assert allocate(10, [supply("c", 5), supply("a", 5), supply("b", 5)]) == {"a": 4, "b": 3, "c": 3}
    rng = random.Random(7)
    for _ in range(300):
        groups = [Supply(f"g{i}", t, int(rng.choice([0.5, 1, 2, 4]) * t))
                  for i, t in enumerate(rng.randint(1, 10_000) for _ in range(rng.randint(1, 8)))]
        method = rng.choice(["natural", "temperature", "unimax"])
        budget = rng.randint(1, sum(g.cap for g in groups))
        planned = allocate(budget, groups, method, temperature=rng.choice([1.5, 3.0]) if method == "temperature"
                           else 1.0)
        assert sum(planned.values()) == budget
        assert all(planned[g.name] <= g.cap for g in groups)


def test_a_sharp_temperature_neither_overflows_nor_starves_the_largest_group():
    planned = allocate(1000, [supply("a", 10**9), supply("b", 10**6)], "temperature", temperature=0.01)
    assert planned == {"a": 1000, "b": 0}
