"""Word splitting for the heuristic rules: spaCy-compatible tokens, counts, jieba and character modes, sentences."""

from __future__ import annotations

import pytest

from datafactory.filters.segment import SYMBOLS, clear_caches, count_sentences, split_chunk, split_words

# Expected tokens as spaCy 3.8's blank English tokenizer (datatrove's word splitter) yields them.
SPACY_CASES = [
    (
        "Don't stop (well-known) U.S. policy, e.g., at 10km/h: see https://example.com/a-b. It's 8) done...",
        ["Do", "n't", "stop", "(", "well", "-", "known", ")", "U.S.", "policy", ",", "e.g.", ",", "at", "10", "km/h",
         ":", "see", "https://example.com/a-b", ".", "It", "'s", "8)", "done", "..."],
    ),
    (
        "Mr. Smith paid $5.99 for 3-4 apples; and/or (Calif.) cannot go.",
        ["Mr.", "Smith", "paid", "$", "5.99", "for", "3", "-", "4", "apples", ";", "and/or", "(", "Calif.", ")",
         "can", "not", "go", "."],
    ),
    ('"Hello," she said—quietly.', ['"', "Hello", ",", '"', "she", "said", "—", "quietly", "."]),
    ("Rep. Jane Doe (D-Calif.) spoke at 6pm.", ["Rep.", "Jane", "Doe", "(", "D", "-", "Calif.", ")", "spoke", "at",
                                               "6", "pm", "."]),
    ("Home|About -- COVID-19 J. USA. 1,000 2:30", ["Home|About", "--", "COVID-19", "J.", "USA", ".", "1,000",
                                                  "2:30"]),
]


@pytest.mark.parametrize(("text", "tokens"), SPACY_CASES)
def test_tokens_match_spacy(text: str, tokens: list[str]) -> None:
    clear_caches()
    assert split_words(text).tokens == tokens
    assert split_words(text).tokens == tokens  # the cached split gives the same


def test_counts() -> None:
    words = split_words('He said: "I like it... 100%!" #tag')
    assert words.tokens == ["He", "said", ":", '"', "I", "like", "it", "...", "100", "%", "!", '"', "#", "tag"]
    assert words.n_tokens == 14
    assert words.n_words == 7  # He said I like it 100 tag
    assert words.word_chars == 2 + 4 + 1 + 4 + 2 + 3 + 3
    assert words.n_alpha == 6  # "100" is a word without a letter
    assert words.mean_word_length == pytest.approx(19 / 7)


def test_symbols_are_punctuation_only() -> None:
    assert {".", "!", "。", "|", "#", "“", "—"} <= SYMBOLS
    assert not {"a", "1", "中", "•"} & SYMBOLS


def test_split_chunk_keeps_plain_words_whole() -> None:
    assert split_chunk("hello") == ("hello",)
    assert split_chunk("2024") == ("2024",)
    assert split_chunk("hello,") == ("hello", ",")
    assert split_chunk("(hello") == ("(", "hello")


def test_jieba_splits_chinese_into_words() -> None:
    words = split_words("我们今天去北京大学参观。", "jieba")
    assert "北京大学" in words.tokens
    assert words.tokens[-1] == "。"
    assert words.n_words == words.n_tokens - 1


def test_non_han_runs_split_as_jieba_splits_them() -> None:
    tokens = split_words("价格64-66元，网址245757.com，增长2.1%，满意度100%", "jieba").tokens
    assert ["64", "-", "66"] == tokens[1:4] and ["245757", ".", "com"] == tokens[7:10]
    assert "2.1%" in tokens and "100%" in tokens


def test_jieba_mode_gives_jieba_tokens_on_real_chinese(web_sample: list[dict]) -> None:
    """rjieba plus jieba's split of non-Han runs: jieba's own tokens on (nearly) every Chinese web document."""
    import logging
    import warnings

    with warnings.catch_warnings():  # jieba 0.42's sources hold invalid escapes that warn when compiled
        warnings.simplefilter("ignore", DeprecationWarning)
        import jieba
    jieba.setLogLevel(logging.WARNING)
    texts = [doc["text"] for doc in web_sample if doc.get("lang") == "zh"]
    reference = [[token for token in (raw.strip() for raw in jieba.cut(text)) if token] for text in texts]
    same = sum(split_words(text, "jieba").tokens == tokens for text, tokens in zip(texts, reference, strict=True))
    assert len(texts) > 2000 and same >= len(texts) - 2  # measured: 2,318 of 2,319 (the other splits "C++")


def test_chars_mode_splits_cjk_characters() -> None:
    words = split_words("東京に行きました。Tokyo trip", "chars")
    assert words.tokens == ["東", "京", "に", "行", "き", "ま", "し", "た", "。", "Tokyo", "trip"]
    assert words.n_alpha == 10


def test_empty_text() -> None:
    words = split_words("")
    assert (words.tokens, words.n_tokens, words.mean_word_length) == ([], 0, 0.0)


@pytest.mark.parametrize(
    ("lines", "mode", "expected"),
    [
        (["One sentence here."], "spaces", 1),
        (["First one. Second one! Third?"], "spaces", 3),
        (['He said "stop." Then left.', "Mr. Smith stayed."], "spaces", 3),  # "Mr." does not end a sentence
        (["Ends with dots... and goes on."], "spaces", 1),  # an ellipsis is not a sentence mark
        (["第一句。第二句！第三句？"], "chars", 3),
        ([], "spaces", 0),
    ],
)
def test_count_sentences(lines: list[str], mode: str, expected: int) -> None:
    assert count_sentences(lines, mode) == expected
