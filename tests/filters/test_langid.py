"""Language identification: accuracy on real gold sentences, Chinese script, keep decisions."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import pytest

from datafactory.factory.config import LangidConfig
from datafactory.filters.langid import (
    LangResult,
    LanguageIdentifier,
    base_lang,
    chinese_variety,
    clean_label,
    default_model_path,
    keep_language,
    sample_text,
    threshold_for,
)
from datafactory.filters.zh_script import SIMPLIFIED_ONLY, TRADITIONAL_ONLY, chinese_script

# lid.176 predicts the macro-language "no" for Norwegian Bokmål.
EQUIVALENT = {"nb": {"nb", "no"}}


def accuracy_by_lang(rows: list[dict], results: list[LangResult]) -> dict[str, float]:
    hits, totals = Counter(), Counter()
    for row, result in zip(rows, results, strict=True):
        gold = row["lang"]
        totals[gold] += 1
        hits[gold] += base_lang(result.lang) in EQUIVALENT.get(gold, {gold})
    return {lang: hits[lang] / totals[lang] for lang in totals}


def test_default_model_is_bundled_lid176() -> None:
    path = Path(default_model_path())
    assert path.name == "lid.176.ftz"
    assert path.is_file()


def test_accuracy_on_gold_sentences(langid_eval: list[dict], identifier: LanguageIdentifier) -> None:
    results = identifier.predict([row["text"] for row in langid_eval])
    accuracy = accuracy_by_lang(langid_eval, results)
    overall = sum(accuracy[row["lang"]] for row in langid_eval) / len(langid_eval)
    print(f"\nlangid accuracy: en {accuracy['en']:.3f} zh {accuracy['zh']:.3f} all {overall:.3f}")
    assert accuracy["en"] >= 0.95
    assert accuracy["zh"] >= 0.93
    assert overall >= 0.97  # bare lid.176: 0.947
    assert min(accuracy.values()) >= 0.85, accuracy  # Cantonese, Afrikaans, Slovak, Bokmål included
    assert all(0.0 <= r.score <= 1.0 and r.score >= r.score2 for r in results)


@pytest.mark.parametrize(("text", "fasttext_alone", "with_second_opinion"), [
    ("Die krisis het ons ekonomie ongeveer 900 000 werksgeleenthede gekos.", "nl", "af"),
    ("V teologickom kurze sa učil gréčtinu a hebrejčinu.", "cs", "sk"),
    ("我睇中呢個老世做唔嚟。我叫佢：「不如誒，呢啲檯檯凳凳頂畀我做。」喺度做，我先做咗一年半。", "zh-Hant", "yue"),
])
def test_second_opinion_settles_what_fasttext_confuses(text: str, fasttext_alone: str,
                                                       with_second_opinion: str) -> None:
    plain = LanguageIdentifier(LangidConfig(second_opinion=False, cantonese=False)).predict([text])[0]
    ours = LanguageIdentifier(LangidConfig()).predict([text])[0]
    assert (plain.lang, ours.lang) == (fasttext_alone, with_second_opinion)
    assert ours.score >= plain.score


def test_han_without_kana_is_chinese_and_mandarin_stays_zh() -> None:
    assert chinese_variety("ja", "東京大学", cantonese=True) == "zh"
    assert chinese_variety("ja", "東京の大学です", cantonese=True) == "ja"
    assert chinese_variety("zh", "我们今天去公园散步，天气很好。", cantonese=True) == "zh"
    assert chinese_variety("zh", "佢哋今日去咗公園。", cantonese=True) == "yue"
    assert chinese_variety("zh", "佢哋今日去咗公園。", cantonese=False) == "zh"


def test_chinese_script_on_gold_sentences(langid_eval: list[dict], identifier: LanguageIdentifier) -> None:
    """The same sentences in GSDSimp (Hans) and GSD (Hant): the variant must match the treebank's script."""
    rows = [row for row in langid_eval if row["lang"] == "zh"]
    results = identifier.predict([row["text"] for row in rows])
    predicted_zh = [(row, r) for row, r in zip(rows, results, strict=True) if base_lang(r.lang) == "zh"]
    right = sum(r.lang == f"zh-{row['script']}" for row, r in predicted_zh)
    wrong = sum(r.lang == f"zh-{'Hant' if row['script'] == 'Hans' else 'Hans'}" for row, r in predicted_zh)
    print(f"\nzh script: {right}/{len(predicted_zh)} right, {wrong} swapped")
    assert right / len(predicted_zh) >= 0.97
    assert wrong == 0


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("这是一个关于中国经济发展的报告，我们认为今年的增长会继续。", "zh-Hans"),
        ("這是一個關於中國經濟發展的報告，我們認為今年的增長會繼續。", "zh-Hant"),
        ("中文", "zh"),  # no script-specific character: plain "zh"
    ],
)
def test_zh_variants(identifier: LanguageIdentifier, text: str, lang: str) -> None:
    assert identifier.predict([text])[0].lang == lang


def test_script_table_is_consistent() -> None:
    assert not SIMPLIFIED_ONLY & TRADITIONAL_ONLY
    assert len(SIMPLIFIED_ONLY) > 500
    assert chinese_script("后天干活") is None  # 后 and 干 are deliberately not markers
    assert chinese_script("国国国國") is None  # mixed: no clear script


def test_empty_and_whitespace_are_undetermined(identifier: LanguageIdentifier) -> None:
    results = identifier.predict(["", "  \n\t ", "The quick brown fox jumps over the lazy dog."])
    assert results[0] == LangResult("und", 0.0, None, 0.0)
    assert results[1].lang == "und"
    assert results[2].lang == "en" and results[2].lang2 is not None
    assert identifier.predict([]) == []


def test_sample_text_takes_beginning_and_middle() -> None:
    text = "head " * 300 + "\n" + "middle " * 300 + "\n" + "tail " * 300
    sample = sample_text(text, 400)
    assert len(sample) <= 400 and "\n" not in sample
    assert sample.startswith("head") and "middle" in sample and "tail" not in sample
    assert sample_text("short\ntext", 400) == "short text"


def test_missing_model_fails_clearly(tmp_path: Path) -> None:
    identifier = LanguageIdentifier(LangidConfig(model=str(tmp_path / "nope.bin")))
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        identifier.predict(["hello world"])


def test_identifier_pickles_without_model(identifier: LanguageIdentifier) -> None:
    identifier.predict(["warm up"])
    clone = pickle.loads(pickle.dumps(identifier))
    assert clone.predict(["Bonjour tout le monde, comment allez-vous ?"])[0].lang == "fr"


def test_labels_glotlid_style() -> None:
    assert clean_label("__label__eng_Latn") == "eng_Latn"
    assert clean_label("__label__en") == "en"
    assert base_lang("eng_Latn") == "eng"
    assert base_lang("zh-Hant") == "zh"


def test_keep_language_allow_list_and_thresholds() -> None:
    config = LangidConfig(allow=["en", "zh"], min_score=0.5, thresholds={"zh": 0.8})
    assert keep_language(LangResult("zh-Hans", 0.9, None, 0.0), config) == (True, None)
    below = (False, "lang_score_below_threshold")
    assert keep_language(LangResult("zh-Hant", 0.7, None, 0.0), config) == below
    assert keep_language(LangResult("en", 0.42, None, 0.0), config) == below
    assert keep_language(LangResult("en", 0.4999, None, 0.0), config) == below
    assert keep_language(LangResult("en", 0.5, None, 0.0), config) == (True, None)
    assert keep_language(LangResult("de", 0.99, None, 0.0), config) == (False, "lang_not_allowed")
    assert keep_language(LangResult("und", 0.0, None, 0.0), config) == (False, "lang_undetermined")


def test_threshold_exact_key_beats_base_language() -> None:
    config = LangidConfig(thresholds={"zh": 0.8, "zh-Hant": 0.6})
    assert threshold_for("zh-Hant", config) == 0.6
    assert threshold_for("zh-Hans", config) == 0.8
    assert threshold_for("fr", config) == config.min_score
    assert keep_language(LangResult("eng_Latn", 0.9, None, 0.0), LangidConfig(allow=["eng"])) == (True, None)
