"""Heuristic rule sets (Gopher quality + repetition, C4, FineWeb): each rule on a document that passes it and one
that fails it, per-language settings, CJK text, and keep rates on real and demo data."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from datafactory.app.demo import read_ground_truth, write_demo_corpus
from datafactory.factory.config import ConfigError, HeuristicRules, HeuristicsConfig, parse_config
from datafactory.filters.heuristics import RULES, HeuristicFilter, Verdict, rule_names, settings_key
from datafactory.filters.rules_gopher import DUP_NGRAMS, TOP_NGRAMS, ngram_chars

ENGLISH_ARTICLE = """The History of the Printing Press

The printing press was invented in the fifteenth century by Johannes Gutenberg, a goldsmith from Mainz.
His machine combined movable metal type, oil-based ink and a wooden press adapted from those used to make wine.
Before this invention, books were copied by hand, which made them rare, expensive and often inaccurate.

Within a few decades, printing shops had opened in more than two hundred cities across Europe.
The spread of cheap books changed how people learned, argued and worshipped, and it helped scholars share
their discoveries quickly. Historians still debate how much the press caused the Reformation, but few doubt
that it made the rapid exchange of ideas possible.

Today the word "press" still refers to journalism, a reminder of how closely news and printing were linked.
"""
PARAGRAPHS = ENGLISH_ARTICLE.split("\n\n")

CHINESE_ARTICLE = """印刷术的历史

印刷术是中国古代的四大发明之一。早在唐朝，人们就开始使用雕版印刷来复制佛经和历书。
到了北宋时期，毕昇发明了活字印刷术，用胶泥制成单个的字，再把它们排列起来印刷。
这种方法比雕版印刷更加灵活，也大大降低了印书的成本，使书籍在民间广泛流传。
活字印刷术后来传到朝鲜、日本以及欧洲，对世界文化的传播产生了深远的影响。
今天，虽然电子书越来越普及，但印刷品仍然在我们的生活中扮演着重要的角色。
"""

GAMBLING = "澳门赌场 真人百家乐 注册送彩金 首存优惠 老虎机 时时彩 体育投注 棋牌游戏 信誉平台 秒到账".split()
# keyword stuffing: the same few phrases again and again, in sentences
CHINESE_KEYWORD_STUFFING = "\n".join(
    f"{GAMBLING[i % 3]}官方网站，{GAMBLING[i % 3]}注册送彩金，最好的{GAMBLING[(i + 1) % 3]}就在这里。"
    for i in range(12)
)
# gambling SEO page: keyword lists, brackets and pipes, hardly a sentence
CHINESE_GAMBLING_SEO = "\n".join(
    [
        "【澳门赌场】【官方网站】【信誉平台】",
        *(" | ".join(GAMBLING[i:] + GAMBLING[:i]) for i in range(6)),
        "热门搜索：" + " ".join(GAMBLING),
        "加微信88888，日赚1000元，秒到账",
        "Copyright © 2024 澳门赌场 版权所有",
    ]
)

NAV_ITEMS = [
    "Home", "About us", "Our team", "Careers", "Press room", "Contact", "Sign in", "Register", "Privacy policy",
    "Terms of use", "Cookie settings", "Newsletter", "Shop", "Gift cards", "Store locator", "Help center",
    "Returns", "Shipping info", "Track order", "Size guide", "Sustainability", "Investors", "Blog", "Events",
]
WORDS_55 = " ".join(["the cat sat on a mat and looked at the dog"] * 5)


def judge(text: str, lang: str | None = "en", **settings: object) -> Verdict:
    return HeuristicFilter(HeuristicsConfig(**settings)).evaluate(text, lang)


def failures(text: str, lang: str | None = "en", **settings: object) -> list[str]:
    """Every rule of the four rule sets that ``text`` breaks."""
    rules = HeuristicFilter(HeuristicsConfig(**settings))
    doc, key = rules.measure(text, lang)
    return rules.failures(doc.signals, key)


@pytest.fixture(scope="module")
def rules() -> HeuristicFilter:
    return HeuristicFilter(HeuristicsConfig())


# --- the interface ----------------------------------------------------------------------------------------


def test_clean_articles_pass_every_rule(rules: HeuristicFilter) -> None:
    assert rules.evaluate(ENGLISH_ARTICLE, "en") == Verdict(True, None, rules.evaluate(ENGLISH_ARTICLE, "en").signals)
    assert failures(ENGLISH_ARTICLE, "en") == []
    assert failures(CHINESE_ARTICLE, "zh-Hans") == []


def test_verdict_names_the_first_failing_rule_and_its_value(rules: HeuristicFilter) -> None:
    verdict = rules.evaluate("Hello world. This is short.", "en")
    assert (verdict.keep, verdict.reason, verdict.value) == (False, "gopher_min_words", 5.0)
    assert verdict.value == verdict.signals["n_words"]


def test_decide_rethresholds_stored_signals(rules: HeuristicFilter) -> None:
    signals = rules.evaluate(ENGLISH_ARTICLE, "en").signals
    strict = HeuristicFilter(HeuristicsConfig(min_words=10_000))
    assert strict.decide(signals, "en") == Verdict(False, "gopher_min_words", signals, signals["n_words"])
    assert rules.decide(signals, "en").keep


def test_rules_and_settings_line_up() -> None:
    names = rule_names()
    assert len(set(names)) == len(names) == len(RULES)
    thresholds = {name for name in HeuristicRules.model_fields if name.startswith(("min_", "max_"))}
    assert {rule.field for rule in RULES} == thresholds
    signals = HeuristicFilter(HeuristicsConfig()).evaluate(ENGLISH_ARTICLE, "en").signals
    assert {rule.signal for rule in RULES} <= set(signals)
    assert all(isinstance(value, float) for value in signals.values())


def test_empty_text_is_dropped(rules: HeuristicFilter) -> None:
    assert rules.evaluate("", None).reason == "gopher_min_words"


def test_rule_sets_can_be_chosen() -> None:
    verdict = judge("Hello world. This is short.", "en", rule_sets=["c4", "fineweb"])
    assert verdict.reason == "c4_min_sentences" and "n_words" not in verdict.signals


# --- settings per language --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang", "key"),
    [
        (ENGLISH_ARTICLE, "en", "en"),
        (CHINESE_ARTICLE, "zh-Hans", "zh"),
        (CHINESE_ARTICLE, None, "zh"),
        (CHINESE_ARTICLE, "und", "zh"),  # Han text without a usable label is judged as Chinese
        ("東京に行きました。とても楽しかったです。", None, "ja"),
        ("서울은 한국의 수도입니다.", "ko", "ko"),  # Korean has spaces: the top-level settings
        ("Um gato brinca no jardim.", "pt", "pt"),
        (ENGLISH_ARTICLE, None, None),
    ],
)
def test_settings_key(text: str, lang: str | None, key: str | None) -> None:
    assert settings_key(text, lang, HeuristicsConfig()) == key


def test_language_entries_refine_the_builtin_ones() -> None:
    config = parse_config(
        {"inputs": [{"path": "x", "source": "s"}], "heuristics": {"languages": {"zh": {"min_words": 10}, "pt": {
            "stop_words": ["de", "que"]}}}}
    )
    zh = config.heuristics.for_language("zh")
    assert (zh.min_words, zh.word_split, zh.min_alpha_words_ratio) == (10, "jieba", 0.735)
    assert config.heuristics.for_language("pt").stop_words == ["de", "que"]
    assert config.heuristics.for_language("en").stop_words[:3] == ["the", "be", "to"]


def test_unknown_keys_and_rule_names_are_errors() -> None:
    with pytest.raises(ConfigError, match="languages.zh.min_wrods"):
        parse_config({"inputs": [{"path": "x", "source": "s"}], "heuristics": {"languages": {"zh": {"min_wrods": 1}}}})
    with pytest.raises(ConfigError, match="heuristics.max_word"):
        parse_config({"inputs": [{"path": "x", "source": "s"}], "heuristics": {"max_word": 1}})
    with pytest.raises(ValueError, match="gopher_nope"):
        HeuristicFilter(HeuristicsConfig(disable=["gopher_nope"]))


def test_disabled_rules_do_not_judge() -> None:
    assert judge("Hello world. This is short.", "en", disable=["gopher_min_words"]).reason != "gopher_min_words"
    assert "gopher_dup_para_frac" not in failures("\n\n".join([PARAGRAPHS[1]] * 4), "de")  # FineWeb-2 turns it off


# --- Gopher quality -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passing", "failing", "rule", "settings"),
    [
        (WORDS_55, "The cat sat on the mat.", "gopher_min_words", {}),
        (WORDS_55, WORDS_55 + " and more", "gopher_max_words", {"max_words": 56}),
        (ENGLISH_ARTICLE, "a b c d e f g h i j k l m n o p q r s t u v w x y z the of " * 3,
         "gopher_min_mean_word_length", {}),
        (ENGLISH_ARTICLE, "the of " + "incomprehensibilities " * 60, "gopher_max_mean_word_length", {}),
        (ENGLISH_ARTICLE, ENGLISH_ARTICLE + " #deal" * 30, "gopher_hash_ratio", {}),
        (ENGLISH_ARTICLE, ENGLISH_ARTICLE + " etc..." * 40, "gopher_ellipsis_ratio", {}),
        (ENGLISH_ARTICLE, "\n".join(f"• {item} of the shop, with more to see." for item in NAV_ITEMS),
         "gopher_bullet_lines", {}),
        (ENGLISH_ARTICLE, "\n".join(f"{item} is the best place to find what you want…" for item in NAV_ITEMS),
         "gopher_ellipsis_lines", {}),
        (ENGLISH_ARTICLE, "The results of the test: " + " ".join(f"{i * 7919} {i * 104729} |" for i in range(40)),
         "gopher_alpha_words", {}),
        (ENGLISH_ARTICLE, "A cat sat on a mat, looking at a dog. " * 8, "gopher_stop_words", {}),
    ],
)
def test_gopher_quality_rule(passing: str, failing: str, rule: str, settings: dict) -> None:
    assert rule not in failures(passing, "en", **settings)
    assert rule in failures(failing, "en", **settings)


def test_stop_words_are_per_language() -> None:
    german = " ".join(["Der Hund und die Katze spielen im Garten mit dem Ball."] * 6)
    assert "gopher_stop_words" in failures(german, "en")
    assert "gopher_stop_words" not in failures(german, "de")
    # a language without a stop-word list is not judged by that rule
    assert "gopher_stop_words" not in failures("Um gato e um cão brincam no jardim com a bola. " * 6, "pt")


def test_chinese_is_measured_in_jieba_words(rules: HeuristicFilter) -> None:
    signals = rules.evaluate(CHINESE_ARTICLE, "zh").signals
    assert 50 <= signals["n_words"] < len(CHINESE_ARTICLE) * 0.7  # words, not characters
    assert 1 < signals["mean_word_length"] < 3
    assert signals["stop_words"] >= 2


# --- Gopher repetition --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failing", "rule"),
    [
        ("\n\n".join([PARAGRAPHS[1]] * 3 + [ENGLISH_ARTICLE]), "gopher_dup_para_frac"),
        ("\n\n".join([ENGLISH_ARTICLE.strip(), PARAGRAPHS[2], PARAGRAPHS[2]]), "gopher_dup_para_char_frac"),
        ("\n".join(NAV_ITEMS * 2) + "\n" + ENGLISH_ARTICLE, "gopher_dup_line_frac"),
        (ENGLISH_ARTICLE + "\n" + "\n".join(ENGLISH_ARTICLE.splitlines()[2:5]), "gopher_dup_line_char_frac"),
        ("Buy cheap shoes online, " * 30 + "today.", "gopher_top_2gram"),
        (ENGLISH_ARTICLE + " extraordinary wonderful shoes." * 15, "gopher_top_3gram"),
        (ENGLISH_ARTICLE + " we deliver the shoes now." * 12, "gopher_top_4gram"),
        *((ENGLISH_ARTICLE + " " + PARAGRAPHS[2], f"gopher_dup_{n}gram") for n in DUP_NGRAMS),
    ],
)
def test_gopher_repetition_rule(failing: str, rule: str) -> None:
    assert rule in failures(failing, "en")


def _reference_ngrams(tokens: list[str]) -> tuple[dict[int, int], dict[int, int]]:
    """Gopher's n-gram statistics the slow, obvious way (as datatrove computes them)."""
    top = {}
    for n in TOP_NGRAMS:
        grams = [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        gram, count = Counter(grams).most_common(1)[0] if grams else ("", 0)
        top[n] = len(gram) * count
    dup = {}
    for n in DUP_NGRAMS:
        seen, chars, i = set(), 0, 0
        while i < len(tokens) - n + 1:
            gram = "".join(tokens[i : i + n])
            if gram in seen:
                chars, i = chars + len(gram), i + n
            else:
                seen.add(gram)
                i += 1
        dup[n] = chars
    return top, dup


def test_ngram_statistics_match_the_obvious_computation() -> None:
    rng = random.Random(0)
    for _ in range(300):
        tokens = [rng.choice(["a", "bb", "c", "dd"]) for _ in range(rng.randint(0, 60))]
        assert ngram_chars(tokens) == _reference_ngrams(tokens), tokens
    words = ENGLISH_ARTICLE.split() * 2
    assert ngram_chars(words) == _reference_ngrams(words)


# --- C4 -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failing", "rule"),
    [
        (ENGLISH_ARTICLE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", "c4_lorem_ipsum"),
        (ENGLISH_ARTICLE + "\nvar config = { the: 1 }; and that is all.", "c4_curly_bracket"),
        ("One short sentence is here. Another one follows.\nA third line ends here.\n" + WORDS_55, "c4_min_sentences"),
    ],
)
def test_c4_page_rule(failing: str, rule: str) -> None:
    assert rule not in failures(ENGLISH_ARTICLE, "en")
    assert rule in failures(failing, "en")


def test_c4_checks_a_line_only_after_it_survives_the_line_filters() -> None:
    # the brace sits in a line without terminal punctuation: C4 drops the line before looking for braces
    assert "c4_curly_bracket" not in failures(ENGLISH_ARTICLE + "\nvar config = { the: 1 }", "en")


def test_c4_terminal_punctuation_switch() -> None:
    unpunctuated = "\n".join(f"This is line number {i} of a page without any stops" for i in range(8))
    assert "c4_min_sentences" in failures(unpunctuated, "en")
    assert "c4_min_sentences" not in failures(unpunctuated, "en", c4_terminal_punct=False)


def test_c4_line_removal_is_a_transform_the_caller_chooses() -> None:
    page = "\n".join(
        [
            "Home | News | Sport",
            ENGLISH_ARTICLE,
            "Please enable JavaScript to view the comments below.",
            "By using this site you agree to our Privacy Policy and its terms.",
            "The war in the north ended in the spring of that year.[1]",
        ]
    )
    assert judge(page, "en").text is None
    verdict = judge(page, "en", c4_remove_lines=True)
    assert verdict.keep and verdict.text is not None
    assert "The printing press was invented" in verdict.text
    for removed in ("Home | News", "History of the Printing Press", "JavaScript", "Privacy Policy", "[1]"):
        assert removed not in verdict.text
    assert verdict.text.endswith("ended in the spring of that year.")
    # 13 non-blank lines: the menu, the title, two wrapped lines without an ending, JavaScript, policy go
    assert verdict.signals["c4_removed_lines_frac"] == pytest.approx(6 / 13)


def test_c4_reads_chinese_sentence_marks() -> None:
    c4_on = {"languages": {"zh": {"disable": []}}}  # FineWeb-2's Chinese settings leave C4 out
    verdict = judge(CHINESE_ARTICLE, "zh", c4_remove_lines=True, **c4_on)
    assert verdict.keep and verdict.signals["c4_sentences"] >= 5
    assert verdict.text == CHINESE_ARTICLE.split("\n\n", 1)[1].strip()  # only the title line goes


# --- FineWeb --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failing", "rule"),
    [
        ("\n".join(NAV_ITEMS + [f"{item} archive" for item in NAV_ITEMS]) + "\n" + PARAGRAPHS[1],
         "fineweb_line_punct_ratio"),
        ("\n".join(f"{item}." for item in NAV_ITEMS) + "\n" + PARAGRAPHS[1], "fineweb_short_line_ratio"),
        (ENGLISH_ARTICLE + "\n" + ENGLISH_ARTICLE.splitlines()[2], "fineweb_char_dup_ratio"),
        ("\n".join(NAV_ITEMS), "fineweb_list_ratio"),
    ],
)
def test_fineweb_rule(failing: str, rule: str) -> None:
    assert rule not in failures(ENGLISH_ARTICLE, "en")
    assert rule in failures(failing, "en")


def test_fineweb_counts_cjk_sentence_marks(rules: HeuristicFilter) -> None:
    assert rules.evaluate(CHINESE_ARTICLE, "zh").signals["line_punct_ratio"] == pytest.approx(5 / 6)


# --- Chinese spam ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["zh", "zh-Hans", None])
@pytest.mark.parametrize(
    ("spam", "expected"),
    [
        (CHINESE_KEYWORD_STUFFING, {"gopher_top_2gram", "gopher_dup_5gram", "gopher_dup_line_frac"}),
        (CHINESE_GAMBLING_SEO, {"gopher_alpha_words", "gopher_stop_words", "fineweb_line_punct_ratio"}),
    ],
)
def test_chinese_spam_is_dropped(spam: str, expected: set[str], lang: str | None) -> None:
    assert expected <= set(failures(spam, lang))
    assert not judge(spam, lang).keep


# --- real and demo data ---------------------------------------------------------------------------------------


def test_web_sample_keep_rates(web_sample: list[dict], rules: HeuristicFilter) -> None:
    """Curated English (C4, already C4-filtered) mostly kept; one-line takeaway reviews and the Chinese gambling
    pages of the resiliparse WARCs (no language label) dropped. The English rules here are datatrove's, which
    keeps about as many of these C4 documents (its per-token alpha ratio counts punctuation tokens)."""
    sources = {"c4-en-sample": "en", "waimai10k-reviews": "zh", "resiliparse-test-warc": None}
    kept: dict[str, list[bool]] = defaultdict(list)
    for row in web_sample:
        if row["source"] in sources:
            kept[row["source"]].append(rules.evaluate(row["text"], row["lang"]).keep)
    rates = {source: sum(flags) / len(flags) for source, flags in kept.items()}
    print(f"\nheuristics keep rates: {rates}")
    assert rates["c4-en-sample"] >= 0.65
    assert rates["waimai10k-reviews"] <= 0.05
    assert rates["resiliparse-test-warc"] <= 0.1


def _demo_texts(files: list[Path]) -> dict[str, str]:
    """Document texts of the demo corpus's input files by id."""
    texts: dict[str, str] = {}
    for path in files:
        if path.suffix == ".parquet":
            table = pq.read_table(path, columns=["id", "content"])
            texts.update(zip(table["id"].to_pylist(), table["content"].to_pylist(), strict=True))
            continue
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        else:
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        for line in raw.decode("utf-8").split("\n"):
            if line.strip():
                row = json.loads(line)
                texts[row["id"]] = row["text"]
    return texts


def test_demo_corpus(tmp_path: Path, rules: HeuristicFilter) -> None:
    """Planted spam and boilerplate are dropped; clean documents are kept in every language."""
    corpus = write_demo_corpus(tmp_path, n_docs=1500, seed=0)
    texts = _demo_texts(corpus.data_files)
    kept: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for row in read_ground_truth(corpus.ground_truth):
        if row["kind"] in ("clean", "spam", "boilerplate"):
            kind = "clean" if row["kind"] == "clean" else "junk"
            kept[kind, row["lang"]].append(rules.evaluate(texts[row["id"]], row["lang"]).keep)
    junk = [flag for (kind, _), flags in kept.items() if kind == "junk" for flag in flags]
    clean = {lang: sum(flags) / len(flags) for (kind, lang), flags in kept.items() if kind == "clean"}
    print(f"\ndemo: junk kept {sum(junk)}/{len(junk)}, clean keep rates {clean}")
    assert 1 - sum(junk) / len(junk) > 0.85
    assert set(clean) == {"en", "zh", "de", "fr", "es", "ja", "ru"}
    assert min(clean.values()) > 0.9, clean
