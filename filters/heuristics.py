"""Heuristic quality rules (Gopher quality + repetition, C4, FineWeb), per-language and CJK-aware.

Every signal is measured once per document; thresholds are applied after, so ``decide`` re-judges stored signals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import regex

from datafactory.factory.config import HeuristicRules, HeuristicsConfig
from datafactory.filters import rules_c4, rules_fineweb, rules_gopher
from datafactory.filters.langid import base_lang
from datafactory.filters.rules_base import Document, Rule

Measure = Callable[[Document], dict[str, float]]
RULE_SETS: dict[str, tuple[Measure, tuple[Rule, ...]]] = {
    "gopher_quality": (rules_gopher.measure_quality, rules_gopher.QUALITY_RULES),
    "gopher_repetition": (rules_gopher.measure_repetition, rules_gopher.REPETITION_RULES),
    "c4": (rules_c4.measure, rules_c4.RULES),
    "fineweb": (rules_fineweb.measure, rules_fineweb.RULES),
}
RULES: tuple[Rule, ...] = tuple(rule for _, rules in RULE_SETS.values() for rule in rules)
RULES_BY_NAME = {rule.name: rule for rule in RULES}

_KANA = regex.compile(r"[\p{Hiragana}\p{Katakana}]")
_HAN = regex.compile(r"\p{Han}")
_LETTERS = regex.compile(r"[\p{L}\p{N}]")
HAN_DOMINANT = 0.3  # share of letters above which an unlabelled text is judged as Chinese or Japanese


@dataclass(frozen=True)
class Measurement:
    signals: dict[str, float]
    settings_key: str | None  # the ``languages`` entry whose thresholds judge it (None: the top level)
    cleaned_text: str | None = None  # C4's cleaned text when config.c4_remove_lines changed it


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str | None  # the first failing rule
    signals: dict[str, float]
    value: float | None = None  # the failing rule's measured signal
    text: str | None = None  # the C4-cleaned text of a kept document, when config.c4_remove_lines changed it


def rule_names() -> list[str]:
    """Names of all rules in evaluation order; a failing rule's name is the drop reason."""
    return list(RULES_BY_NAME)


def settings_key(text: str, lang: str | None, config: HeuristicsConfig) -> str | None:
    """Which ``languages`` entry judges a text: its language's, else Japanese/Chinese for text written in
    kana or mostly Han (no word spaces whatever the label says), else none (the top-level values)."""
    base = base_lang(lang) if lang else None
    if base in config.languages:
        return base
    if text.isascii():
        return base
    if "ja" in config.languages and _KANA.search(text):
        return "ja"
    han = len(_HAN.findall(text))
    if "zh" in config.languages and han and han > HAN_DOMINANT * len(_LETTERS.findall(text)):
        return "zh"
    return base


class HeuristicFilter:
    """Measures the configured rule sets on a document and judges it with its language's thresholds."""

    def __init__(self, config: HeuristicsConfig) -> None:
        unknown = {
            name
            for rules in (config, *config.languages.values())
            for name in rules.disable or ()
            if name not in RULES_BY_NAME
        }
        if unknown:
            raise ValueError(f"heuristics: unknown rule names in disable: {sorted(unknown)}")
        self.config = config
        self.rule_sets = [RULE_SETS[name] for name in config.rule_sets]
        self._settings: dict[str | None, tuple[HeuristicRules, list[Rule]]] = {}

    def settings(self, key: str | None) -> tuple[HeuristicRules, list[Rule]]:
        """A language's settings and the rules that apply to it, in evaluation order."""
        if key not in self._settings:
            rules = self.config.for_language(key)
            active = [rule for _, rule_set in self.rule_sets for rule in rule_set if rule.applies(rules)]
            self._settings[key] = (rules, active)
        return self._settings[key]

    def measure(self, text: str, lang: str | None) -> tuple[Document, str | None]:
        """The measured Document (signals on ``doc.signals``) and the settings key it was measured with."""
        key = settings_key(text, lang, self.config)
        doc = Document(text, self.settings(key)[0])
        for measure, _ in self.rule_sets:
            doc.signals.update(measure(doc))
        return doc, key

    def measurement(self, text: str, lang: str | None) -> Measurement:
        """Every configured rule's signal, the settings key, and C4's cleaned text where it differs: all a later
        ``judge`` needs, so thresholds can change without measuring again."""
        doc, key = self.measure(text, lang)
        cleaned = None
        if self.config.c4_remove_lines and doc.kept_lines is not None:
            cleaned = "\n".join(doc.kept_lines).strip()
        return Measurement(doc.signals, key, cleaned if cleaned != text else None)

    def judge(self, measurement: Measurement) -> Verdict:
        """The verdict on a stored measurement; a kept document takes C4's cleaned text when there is one."""
        verdict = self.decide(measurement.signals, measurement.settings_key)
        if verdict.keep and measurement.cleaned_text is not None:
            return Verdict(True, None, verdict.signals, text=measurement.cleaned_text)
        return verdict

    def evaluate(self, text: str, lang: str | None) -> Verdict:
        return self.judge(self.measurement(text, lang))

    def failures(self, signals: Mapping[str, float], lang: str | None = None) -> list[str]:
        """Every rule the signals break under the thresholds of ``lang``, in evaluation order."""
        rules, active = self.settings(lang)
        return [rule.name for rule in active if not rule.passes(signals[rule.signal], rules)]

    def decide(self, signals: Mapping[str, float], lang: str | None = None) -> Verdict:
        """Judges measured signals with the thresholds of ``lang`` (a ``languages`` key; None: top level)."""
        rules, active = self.settings(lang)
        for rule in active:
            value = signals[rule.signal]
            if not rule.passes(value, rules):
                return Verdict(False, rule.name, dict(signals), value)
        return Verdict(True, None, dict(signals))

