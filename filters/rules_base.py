"""What every heuristic rule set shares: a threshold Rule, and a Document view measured lazily, once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from datafactory.factory.config import HeuristicRules
from datafactory.filters.segment import Words, split_words


@dataclass(frozen=True)
class Rule:
    """Drop when ``signal`` is below (kind "min") or above (kind "max") the settings' ``field``.

    A rule with ``needs`` applies only where that setting is non-empty (no stop-word list, no stop-word rule).
    """

    name: str
    signal: str
    kind: Literal["min", "max"]
    field: str
    needs: str | None = None

    def applies(self, rules: HeuristicRules) -> bool:
        return self.name not in rules.disable and (self.needs is None or bool(getattr(rules, self.needs)))

    def passes(self, value: float, rules: HeuristicRules) -> bool:
        bound = getattr(rules, self.field)
        return value >= bound if self.kind == "min" else value <= bound


class Document:
    """One text and the settings of its language; each split of the text is made on first use and kept."""

    def __init__(self, text: str, rules: HeuristicRules) -> None:
        self.text = text
        self.rules = rules
        self.signals: dict[str, float] = {}
        self.kept_lines: list[str] | None = None  # C4's surviving lines, once C4 has measured the text

    @cached_property
    def words(self) -> Words:
        return split_words(self.text, self.rules.word_split)

    @cached_property
    def lines(self) -> list[str]:
        """``str.splitlines`` lines, blank ones included (Gopher's line ratios and C4 count these)."""
        return self.text.splitlines()

    @cached_property
    def newline_lines(self) -> list[str]:
        """Lines split on "\\n" only, blank ones dropped (FineWeb's lines)."""
        return [line for line in self.text.split("\n") if line.strip()]

    @cached_property
    def line_runs(self) -> list[str]:
        """The text split on runs of "\\n" (Gopher repetition's lines): ``re.split("\\n+")`` without the regex."""
        parts = self.text.split("\n")
        if len(parts) == 1:
            return parts
        return [parts[0], *(part for part in parts[1:-1] if part), parts[-1]]

    @cached_property
    def paragraphs(self) -> list[str]:
        """The stripped text split on runs of two or more "\\n": ``re.split("\\n{2,}")`` without the regex."""
        first, *rest = self.text.strip().split("\n\n")
        return [first, *(part for part in (piece.lstrip("\n") for piece in rest) if part)]


def ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def duplicates(items: Iterable[str]) -> tuple[int, int]:
    """(items repeating an earlier item, characters in those repeats)."""
    counts = Counter(items)
    extra = [(count - 1, len(item)) for item, count in counts.items() if count > 1]
    return sum(n for n, _ in extra), sum(n * size for n, size in extra)
