"""Gopher / FineWeb-style document rules, CJK-aware: signals are measured once, thresholds applied after.

Each rule names one measured signal and one bound from HeuristicsConfig; a document fails with the first
rule (in RULES order) whose bound it breaks, and the Verdict carries every signal either way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import regex

from factory.config import HeuristicsConfig
from filters.langid import base_lang
from filters.text import CJK_DOMINANT_RATIO, cjk_ratio, count_cjk, words

NO_SPACE_LANGS = frozenset({"zh", "ja", "ko", "th", "yue", "wuu", "lo", "km", "my", "bo"})
SHORT_LINE_CHARS = 30  # FineWeb's short_line_length, for space-delimited text
SHORT_LINE_CJK_CHARS = 10  # a CJK line this short carries about as much as 30 Latin characters
BULLETS = ("•", "●", "○", "◦", "▪", "▫", "■", "□", "‣", "➢", "►", "▶", "✓", "✔", "·", "-", "*")
LINE_END_PUNCT = (".", "!", "?", '"', "'", "。", "！", "？", "”", "’", "」", "』", "…", "．", "｡")
ELLIPSES = ("...", "…")

_ELLIPSIS_RUN = regex.compile(r"\.\.\.|…+")
_ALPHA_TOKEN = regex.compile(r"\S*\p{L}\S*")  # one match per whitespace token holding a letter


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str | None  # the first failing rule
    signals: dict[str, float]
    value: float | None = None  # the failing rule's measured signal


@dataclass(frozen=True)
class Rule:
    """Drop when ``signal`` is below (kind "min") or above (kind "max") ``config.<field>``."""

    name: str
    signal: str
    kind: Literal["min", "max"]
    field: str
    applies: Literal["all", "cjk", "non_cjk"] = "all"

    def threshold(self, config: HeuristicsConfig) -> float:
        return float(getattr(config, self.field))

    def applies_to(self, cjk_mode: bool) -> bool:
        return self.applies == "all" or (self.applies == "cjk") == cjk_mode

    def passes(self, value: float, config: HeuristicsConfig) -> bool:
        bound = self.threshold(config)
        return value >= bound if self.kind == "min" else value <= bound


RULES: tuple[Rule, ...] = (
    Rule("gopher_min_words", "n_words", "min", "min_words", "non_cjk"),
    Rule("gopher_min_cjk_chars", "n_cjk_chars", "min", "min_cjk_chars", "cjk"),
    Rule("gopher_max_words", "n_words", "max", "max_words"),
    Rule("gopher_min_mean_word_length", "mean_word_length", "min", "min_mean_word_length", "non_cjk"),
    Rule("gopher_max_mean_word_length", "mean_word_length", "max", "max_mean_word_length", "non_cjk"),
    Rule("gopher_symbol_word_ratio", "symbol_word_ratio", "max", "max_symbol_word_ratio"),
    Rule("gopher_bullet_lines_ratio", "bullet_lines_ratio", "max", "max_bullet_lines_ratio"),
    Rule("gopher_ellipsis_lines_ratio", "ellipsis_lines_ratio", "max", "max_ellipsis_lines_ratio"),
    Rule("gopher_alpha_words_ratio", "alpha_words_ratio", "min", "min_alpha_words_ratio", "non_cjk"),
    Rule("gopher_duplicate_line_fraction", "duplicate_line_fraction", "max", "max_duplicate_line_fraction"),
    Rule("gopher_top_2gram_fraction", "top_2gram_fraction", "max", "max_top_2gram_fraction"),
    Rule("fineweb_line_punct_ratio", "line_punct_ratio", "min", "min_line_punct_ratio"),
    Rule("fineweb_short_line_ratio", "short_line_ratio", "max", "max_short_line_ratio"),
)


RULES_BY_NAME = {rule.name: rule for rule in RULES}


def rule_names() -> list[str]:
    """Names of all rules in evaluation order; a failing rule's name is the drop reason."""
    return [rule.name for rule in RULES]


# --- signals ---------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line for line in (raw.strip() for raw in text.split("\n")) if line]


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def mean_word_length(tokens: list[str]) -> float:
    return _ratio(sum(map(len, tokens)), len(tokens))


def symbol_word_ratio(text: str, n_words: int) -> float:
    """(# hashes + ellipses) per word, Gopher's symbol-to-word ratio; a run of "……" counts once."""
    return _ratio(text.count("#") + len(_ELLIPSIS_RUN.findall(text)), n_words)


def bullet_lines_ratio(lines: list[str]) -> float:
    return _ratio(sum(line.startswith(BULLETS) for line in lines), len(lines))


def ellipsis_lines_ratio(lines: list[str]) -> float:
    return _ratio(sum(line.endswith(ELLIPSES) for line in lines), len(lines))


def alpha_words_ratio(text: str) -> float:
    """Share of whitespace-separated tokens holding at least one letter (so "|" and "2024" count against)."""
    return _ratio(len(_ALPHA_TOKEN.findall(text)), len(text.split()))


def duplicate_line_fraction(lines: list[str]) -> float:
    """Share of lines that repeat an earlier line (Gopher repetition, line count)."""
    return _ratio(len(lines) - len(set(lines)), len(lines))


def top_2gram_fraction(tokens: list[str]) -> float:
    """Share of word characters covered by the most frequent word 2-gram (0 when none repeats)."""
    if len(tokens) < 2:
        return 0.0
    grams = Counter(zip(tokens, tokens[1:], strict=False))
    (first, second), count = grams.most_common(1)[0]
    if count < 2:
        return 0.0
    return _ratio(count * (len(first) + len(second)), sum(map(len, tokens)))


def line_punct_ratio(lines: list[str]) -> float:
    """Share of lines ending in terminal punctuation (FineWeb), CJK 。！？ and closing quotes included."""
    return _ratio(sum(line.endswith(LINE_END_PUNCT) for line in lines), len(lines))


def short_line_ratio(lines: list[str], cjk_mode: bool) -> float:
    limit = SHORT_LINE_CJK_CHARS if cjk_mode else SHORT_LINE_CHARS
    return _ratio(sum(len(line) <= limit for line in lines), len(lines))


def is_cjk_mode(ratio: float, lang: str | None) -> bool:
    """CJK rules apply when no-space scripts dominate, or the language is written without spaces."""
    if ratio > CJK_DOMINANT_RATIO:
        return True
    return lang is not None and base_lang(lang) in NO_SPACE_LANGS and ratio > 0


def compute_signals(text: str, lang: str | None = None) -> dict[str, float]:
    """Every signal the rules read, measured once ("cjk_mode" is 1.0 when CJK rules apply)."""
    tokens = words(text)
    lines = _lines(text)
    ratio = cjk_ratio(text, tokens)
    cjk_mode = is_cjk_mode(ratio, lang)
    return {
        "cjk_mode": float(cjk_mode),
        "cjk_ratio": ratio,
        "n_words": float(len(tokens)),
        "n_cjk_chars": float(count_cjk(text)),
        "n_lines": float(len(lines)),
        "mean_word_length": mean_word_length(tokens),
        "symbol_word_ratio": symbol_word_ratio(text, len(tokens)),
        "bullet_lines_ratio": bullet_lines_ratio(lines),
        "ellipsis_lines_ratio": ellipsis_lines_ratio(lines),
        "alpha_words_ratio": alpha_words_ratio(text),
        "duplicate_line_fraction": duplicate_line_fraction(lines),
        "top_2gram_fraction": top_2gram_fraction(tokens),
        "line_punct_ratio": line_punct_ratio(lines),
        "short_line_ratio": short_line_ratio(lines, cjk_mode),
    }


# --- decision --------------------------------------------------------------------------------------


def failed_rules(signals: Mapping[str, float], config: HeuristicsConfig) -> list[str]:
    """Names of every applicable rule the signals break, in rule order."""
    cjk_mode = bool(signals["cjk_mode"])
    return [
        rule.name
        for rule in RULES
        if rule.applies_to(cjk_mode) and not rule.passes(signals[rule.signal], config)
    ]


class HeuristicFilter:
    """Evaluates all rules on a document; ``decide`` re-thresholds stored signals without re-measuring."""

    def __init__(self, config: HeuristicsConfig) -> None:
        self.config = config

    def evaluate(self, text: str, lang: str | None) -> Verdict:
        return self.decide(compute_signals(text, lang))

    def decide(self, signals: Mapping[str, float]) -> Verdict:
        failed = failed_rules(signals, self.config)
        if not failed:
            return Verdict(keep=True, reason=None, signals=dict(signals))
        value = signals[RULES_BY_NAME[failed[0]].signal]
        return Verdict(keep=False, reason=failed[0], signals=dict(signals), value=value)
