"""Heuristic rules: clean articles pass, boilerplate / spam / short text fail with the expected reason."""

from __future__ import annotations

import pytest

from factory.config import HeuristicsConfig
from filters.heuristics import RULES, HeuristicFilter, Verdict, compute_signals, rule_names

ENGLISH_ARTICLE = """The History of the Printing Press

The printing press was invented in the fifteenth century by Johannes Gutenberg, a goldsmith from Mainz.
His machine combined movable metal type, oil-based ink and a wooden press adapted from those used
to make wine.
Before this invention, books were copied by hand, which made them rare, expensive and often inaccurate.

Within a few decades, printing shops had opened in more than two hundred cities across Europe.
The spread of cheap books changed how people learned, argued and worshipped, and it helped scholars share
their discoveries quickly. Historians still debate how much the press caused the Reformation, but few doubt
that it made the rapid exchange of ideas possible.

Today the word "press" still refers to journalism, a reminder of how closely news and printing were linked.
"""

CHINESE_ARTICLE = """印刷术的历史

印刷术是中国古代的四大发明之一。早在唐朝，人们就开始使用雕版印刷来复制佛经和历书。
到了北宋时期，毕昇发明了活字印刷术，用胶泥制成单个的字，再把它们排列起来印刷。
这种方法比雕版印刷更加灵活，也大大降低了印书的成本。
活字印刷术后来传到朝鲜、日本以及欧洲，对世界文化的传播产生了深远的影响。
今天，虽然电子书越来越普及，但印刷品仍然在我们的生活中扮演着重要的角色。
"""

NAV_ITEMS = [
    "Home",
    "About us",
    "Our team",
    "Careers",
    "Press room",
    "Contact",
    "Sign in",
    "Register",
    "Privacy policy",
    "Terms of use",
    "Cookie settings",
    "Newsletter",
    "Shop",
    "Gift cards",
    "Store locator",
    "Help center",
    "Returns",
    "Shipping info",
    "Track order",
    "Size guide",
    "Sustainability",
    "Investors",
    "Blog",
    "Events",
]


@pytest.fixture(scope="module")
def rules() -> HeuristicFilter:
    return HeuristicFilter(HeuristicsConfig())


def test_clean_english_article_is_kept(rules: HeuristicFilter) -> None:
    verdict = rules.evaluate(ENGLISH_ARTICLE, "en")
    assert verdict == Verdict(True, None, verdict.signals)
    assert verdict.signals["cjk_mode"] == 0.0


def test_clean_chinese_article_is_kept(rules: HeuristicFilter) -> None:
    verdict = rules.evaluate(CHINESE_ARTICLE, "zh-Hans")
    assert verdict.keep, verdict
    assert verdict.signals["cjk_mode"] == 1.0
    assert verdict.signals["n_cjk_chars"] >= 100


def test_signals_are_all_measured(rules: HeuristicFilter) -> None:
    verdict = rules.evaluate(ENGLISH_ARTICLE, None)
    assert {rule.signal for rule in RULES} <= set(verdict.signals)
    assert all(isinstance(value, float) for value in verdict.signals.values())


@pytest.mark.parametrize(
    ("text", "lang", "reason"),
    [
        ("Hello world. This is short.", "en", "gopher_min_words"),
        ("今天天气很好。", "zh", "gopher_min_cjk_chars"),
        ("\n".join(NAV_ITEMS * 2 + ["Copyright 2024 Example Inc."]), "en", "gopher_duplicate_line_fraction"),
        ("\n".join(NAV_ITEMS + [f"{item} archive" for item in NAV_ITEMS]), "en", "fineweb_line_punct_ratio"),
        ("Buy cheap shoes online, " * 30 + "today.", "en", "gopher_top_2gram_fraction"),
        ("澳门赌场，" * 40 + "欢迎光临。", "zh", "gopher_top_2gram_fraction"),
        (
            "\n".join(f"• {item} and more of the same goods here." for item in NAV_ITEMS),
            "en",
            "gopher_bullet_lines_ratio",
        ),
        (
            "\n".join(f"{item} is the best place to find anything you want…" for item in NAV_ITEMS),
            "en",
            "gopher_ellipsis_lines_ratio",
        ),
        (
            " ".join(f"#{item.replace(' ', '')} #deal #sale" for item in NAV_ITEMS) + " great.",
            "en",
            "gopher_symbol_word_ratio",
        ),
        (
            "Results: " + " ".join(f"{i * 7919} {i * 104729} |" for i in range(40)) + " end.",
            "en",
            "gopher_alpha_words_ratio",
        ),
        (
            "Supercalifragilisticexpialidocious antidisestablishmentarianism " * 30 + "end.",
            "en",
            "gopher_max_mean_word_length",
        ),
        ("a b c d e f g h i j k l m n o p q r s t u v w x y z. " * 3, "en", "gopher_min_mean_word_length"),
    ],
)
def test_bad_documents_fail_with_reason(rules: HeuristicFilter, text: str, lang: str, reason: str) -> None:
    verdict = rules.evaluate(text, lang)
    assert not verdict.keep
    assert verdict.reason == reason, verdict.signals


def test_short_lines_rule() -> None:
    tokens = ENGLISH_ARTICLE.split()
    lines = [" ".join(tokens[i : i + 3]) + "." for i in range(0, len(tokens), 3)]
    verdict = HeuristicFilter(HeuristicsConfig()).evaluate("\n".join(lines), "en")
    assert verdict.reason == "fineweb_short_line_ratio", verdict.signals


def test_cjk_punctuation_ends_lines() -> None:
    signals = compute_signals("第一行。\n第二行！\n第三行？\n“引用。”\n没有标点", "zh")
    assert signals["line_punct_ratio"] == pytest.approx(0.8)


def test_language_hint_turns_on_cjk_rules() -> None:
    text = "日本語 " + "word " * 60
    assert compute_signals(text, None)["cjk_mode"] == 0.0
    assert compute_signals(text, "ja")["cjk_mode"] == 1.0


def test_decide_rethresholds_stored_signals(rules: HeuristicFilter) -> None:
    signals = rules.evaluate(ENGLISH_ARTICLE, "en").signals
    strict = HeuristicFilter(HeuristicsConfig(min_words=10_000))
    assert strict.decide(signals) == Verdict(False, "gopher_min_words", signals, value=signals["n_words"])
    assert rules.decide(signals).keep


def test_rule_names_cover_every_config_threshold() -> None:
    names = rule_names()
    assert names[0] == "gopher_min_words" and len(set(names)) == len(names)
    assert {rule.field for rule in RULES} == set(HeuristicsConfig.model_fields)


def test_empty_text_is_dropped(rules: HeuristicFilter) -> None:
    verdict = rules.evaluate("", None)
    assert verdict.reason == "gopher_min_words"


def test_web_sample_keep_rates(web_sample: list[dict], rules: HeuristicFilter) -> None:
    """Curated English (C4) is mostly kept; Chinese takeaway reviews (one short line each) mostly dropped."""
    kept: dict[str, list[bool]] = {}
    for row in web_sample:
        if row["source"] in {"c4-en-sample", "waimai10k-reviews"}:
            kept.setdefault(row["source"], []).append(rules.evaluate(row["text"], row["lang"]).keep)
    rates = {source: sum(flags) / len(flags) for source, flags in kept.items()}
    print(f"\nheuristics keep rates: {rates}")
    assert rates["c4-en-sample"] >= 0.85
    assert rates["waimai10k-reviews"] <= 0.05
