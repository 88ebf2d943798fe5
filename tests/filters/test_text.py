"""Text normalisation and CJK-aware word splitting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datafactory.filters.text import (
    cjk_ratio,
    count_cjk,
    is_cjk,
    is_cjk_dominant,
    normalize_for_hash,
    single_line,
    words,
    words_and_marks,
)


def test_words_english_keeps_apostrophes_drops_punctuation() -> None:
    assert words("Don't stop -- it's 2024, OK?") == ["Don't", "stop", "it's", "2024", "OK"]


def test_words_chinese_split_into_characters() -> None:
    assert words("我们在2024年去了北京。") == ["我", "们", "在", "2024", "年", "去", "了", "北", "京"]


def test_words_japanese_kana_and_kanji_split() -> None:
    assert words("東京タワーに行きました。") == [
        "東",
        "京",
        "タ",
        "ワ",
        "ー",
        "に",
        "行",
        "き",
        "ま",
        "し",
        "た",
    ]


def test_words_mixed_scripts() -> None:
    assert words("Python是一种语言") == ["Python", "是", "一", "种", "语", "言"]
    assert words("한국어 문장") == ["한", "국", "어", "문", "장"]


def test_words_keep_combining_marks_inside_words() -> None:
    assert words("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]
    assert words("café naïve") == ["café", "naïve"]


def test_words_and_marks_keeps_punctuation_as_tokens() -> None:
    assert words_and_marks("Hi, 你好！") == ["Hi", ",", "你", "好", "！"]


@pytest.mark.parametrize(
    ("ch", "expected"),
    [
        ("中", True),
        ("の", True),
        ("カ", True),
        ("한", True),
        ("ก", True),
        ("a", False),
        ("1", False),
        ("。", False),
    ],
)
def test_is_cjk(ch: str, expected: bool) -> None:
    assert is_cjk(ch) is expected


def test_cjk_ratio_counts_word_characters_only() -> None:
    assert cjk_ratio("") == 0.0
    assert cjk_ratio("plain ascii text") == 0.0
    assert cjk_ratio("中文。。。！！") == 1.0
    assert cjk_ratio("中文 ab") == pytest.approx(0.5)
    assert count_cjk("中文 ab") == 2
    assert cjk_ratio("中文 ab", words("中文 ab")) == pytest.approx(0.5)
    assert is_cjk_dominant("这是一个中文句子 with English")
    assert not is_cjk_dominant("English text with one 字")


def test_single_line() -> None:
    assert single_line(" a\n\nb\tc \r\n d ") == "a b c d"


def test_normalize_for_hash_merges_trivial_variants() -> None:
    a = normalize_for_hash("Hello,   World! Page 12 of 30.")
    b = normalize_for_hash("hello world\npage 7 of 31")
    assert a == b == "hello world page 0 of 0"
    assert normalize_for_hash("ＡＢＣ　１２３") == "abc 0"
    assert normalize_for_hash("你好，世界！") == "你好世界"


def test_no_space_ranges_cover_the_scripts_written_without_spaces():
    """The ranges every filter shares agree with Unicode's script properties on every letter, mark and digit of those
    scripts, except a few kana and Tangut iteration marks outside the ranges, which stay word characters."""
    import regex

    from datafactory.filters.text import is_cjk

    scripts = regex.compile(r"[[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}]&&[\p{L}\p{M}\p{N}]]", regex.V1)
    missed = [hex(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF
              and scripts.match(chr(cp)) and not is_cjk(chr(cp))]
    assert missed == ["0x16fe3", "0x16ff0", "0x16ff1", "0x16ff2", "0x16ff3", "0x16ff4", "0x16ff5",
                      "0x16ff6"], missed
    assert not any(is_cjk(ch) for ch in "aéßжΩ٣ 12,.!?;:")


def regex_normalize_for_hash(text: str) -> str:
    """The definition normalize_for_hash computes with numpy tables: the regex classes applied to the text."""
    import unicodedata

    import regex

    text = unicodedata.normalize("NFKC", text).casefold()
    text = regex.sub(r"[\p{P}\p{S}\p{Cf}]+", "", text)
    return " ".join(regex.sub(r"\p{Nd}+", "0", text).split())


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_normalize_for_hash_is_its_regex_definition(text: str) -> None:
    assert normalize_for_hash(text) == regex_normalize_for_hash(text)


def test_normalize_for_hash_on_edges() -> None:
    for text in ("", " ", "  \n\t ", "!!!", "1,000 and ２,５００", " a  b ", "x\u200by", "\x1cword\x1f", "١٢٣ ४५"):
        assert normalize_for_hash(text) == regex_normalize_for_hash(text), repr(text)
