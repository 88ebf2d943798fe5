"""Mixture methods (natural, temperature, UniMax) as one water-filling under per-group token caps, in exact
rational arithmetic so the same inputs always give the same integer token counts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from datafactory.factory.errors import UserError
from datafactory.mixtures.policy import Method


class InfeasiblePlan(UserError, ValueError):
    """A policy the available data cannot satisfy; the message says what to change."""


@dataclass(frozen=True)
class Supply:
    """One mixture component as a phase sees it."""

    name: str
    tokens: int  # available (unique) tokens
    cap: int  # most tokens the phase may take: the repetition cap less what other phases already repeat


def exact(value: float) -> Fraction:
    """The decimal a policy wrote (0.1 is 1/10, not the float nearest it), so shares of budgets come out whole."""
    return Fraction(repr(value))


def preference(method: Method, tokens: int, largest: int, temperature: float = 1.0) -> Fraction:
    """Uncapped relative weight of a group: its size (natural), size^(1/T) (temperature), or 1 (UniMax).
    Temperature weights are taken relative to the largest group so a small T cannot overflow a float."""
    if method == "natural":
        return Fraction(tokens)
    if method == "temperature":
        return Fraction((tokens / largest) ** (1.0 / temperature))
    return Fraction(1)


def water_fill(budget: Fraction, supplies: list[Supply], prefs: dict[str, Fraction]) -> dict[str, Fraction]:
    """Split budget in proportion to prefs; a group that would pass its cap gets the cap and the others share
    its excess. With uniform prefs this is UniMax (Chung et al. 2023): groups sorted by size, each takes the
    uniform share of what is left or its N-epoch cap. Returns partial shares when the caps cannot hold budget."""
    shares = {supply.name: Fraction(0) for supply in supplies}
    active = [supply for supply in supplies if supply.cap > 0 and prefs[supply.name] > 0]
    remaining = budget
    while active and remaining > 0:
        level = remaining / sum(prefs[supply.name] for supply in active)
        # Removing a capped group never lowers the level, so a group capped now stays capped.
        capped = [supply for supply in active if level * prefs[supply.name] >= supply.cap]
        if not capped:
            shares |= {supply.name: level * prefs[supply.name] for supply in active}
            return shares
        for supply in capped:
            shares[supply.name] = Fraction(supply.cap)
            remaining -= supply.cap
        active = [supply for supply in active if supply not in capped]
    return shares


def largest_remainder(shares: dict[str, Fraction]) -> dict[str, int]:
    """Integers summing to the (integral) total of shares: floors, then +1 by largest remainder, ties by name."""
    floors = {name: math.floor(share) for name, share in shares.items()}
    left = int(sum(shares.values())) - sum(floors.values())
    order = sorted(shares, key=lambda name: (-(shares[name] - floors[name]), name))
    for name in order[:left]:
        floors[name] += 1
    return floors


def allocate(
    budget: int,
    supplies: list[Supply],
    method: Method = "natural",
    temperature: float = 1.0,
    fixed: dict[str, Fraction] | None = None,
    where: str = "phase",
    advice: str = "lower total_tokens or raise max_epochs",
) -> dict[str, int]:
    """Planned tokens per supply, summing to budget: `fixed` groups get their tokens, the method spreads the rest
    over the others, and no group passes its cap. `where` and `advice` go into the error when that is impossible."""
    fixed = fixed or {}
    by_name = {supply.name: supply for supply in supplies}
    for name, tokens in sorted(fixed.items()):
        supply = by_name[name]
        if tokens > supply.cap:
            raise InfeasiblePlan(
                f"{where}: the target for {name} needs {math.ceil(tokens):,} tokens, "
                f"{float(tokens / supply.tokens):.2f} epochs of its {supply.tokens:,}, past the {supply.cap:,} "
                f"({supply.cap / supply.tokens:.2f} epochs) the repetition cap leaves it: lower that target, raise "
                f"max_epochs, or lower total_tokens"
            )
    rest = budget - sum(fixed.values())
    free = [supply for supply in supplies if supply.name not in fixed]
    if rest < 0:
        raise InfeasiblePlan(f"{where}: targets take {math.ceil(budget - rest):,} of its {budget:,} tokens: lower them")
    if rest > 0 and not free:
        share = 1 - rest / budget
        raise InfeasiblePlan(
            f"{where}: targets cover {float(share):.4g} of the tokens and no other group is left to take the rest, "
            f"so the weights cannot sum to one: make the targets sum to 1 or drop one"
        )
    largest = max((s.tokens for s in free), default=1)
    shares = water_fill(rest, free, {s.name: preference(method, s.tokens, largest, temperature) for s in free})
    if sum(shares.values()) < rest:
        raise InfeasiblePlan(
            f"{where} needs {math.ceil(rest):,} tokens from {', '.join(s.name for s in free)} but they supply at "
            f"most {sum(s.cap for s in free):,} within the repetition cap: {advice}"
        )
    return largest_remainder(shares | fixed)
