"""Exact keys, shingling, MinHash signatures (equal to datasketch's), LSH parameters and band keys."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

import datafactory.filters.dedup as dedup
from datafactory.factory.config import DedupConfig
from datafactory.filters.dedup import (
    EMPTY,
    MinHasher,
    Shingler,
    band_keys,
    exact_key,
    fold_text,
    hash_shingle,
    jaccard,
    lsh_params,
    shingles,
    split_units,
    strip_units,
    unit_keys,
    word_count,
)
from datafactory.filters.text import words

ARTICLE = (
    "The city council met on Tuesday evening to discuss the new budget for public libraries. "
    "Several residents spoke in favour of longer opening hours, while others asked for more children's "
    "books and better internet access. The mayor promised to publish a revised plan within two weeks, "
    "after consulting the library staff and the finance committee. Local newspapers reported that the "
    "meeting lasted more than three hours and ended with a vote to extend the consultation period."
)
NEAR_DUPLICATE = ARTICLE.replace("Tuesday", "Wednesday").replace("three hours", "four hours") + " Share this."
UNRELATED = (
    "Photosynthesis converts light energy into chemical energy stored in glucose. Chlorophyll absorbs mostly "
    "blue and red light, and the reactions take place inside chloroplasts in the leaves of green plants."
)
ZH_ARTICLE = (
    "市议会周二晚上召开会议，讨论公共图书馆的新预算。几位居民发言支持延长开放时间，"
    "另一些人则希望增加儿童读物并改善网络服务。市长承诺在两周内公布修订后的计划。"
)


@pytest.fixture(scope="module")
def hasher() -> MinHasher:
    return MinHasher(DedupConfig())


def test_exact_key_ignores_case_whitespace_and_punctuation() -> None:
    key = exact_key("Hello, World!\n\nThis is   a test.")
    assert key == exact_key("hello world this is a test")
    assert key == exact_key("  HELLO WORLD -- THIS IS A TEST ")
    assert key != exact_key("hello world this is another test")
    assert len(key) == 32 and int(key, 16) >= 0


def test_exact_key_normalisations() -> None:
    assert exact_key("Price: 10 EUR") == exact_key("price 99 eur")  # standard: digit values do not count
    assert exact_key("a  b\nc", "whitespace") == exact_key("a b c", "whitespace") != exact_key("A b c", "whitespace")
    assert exact_key("a b", "none") != exact_key("a  b", "none")


def test_shingles_words_for_latin_text() -> None:
    grams = shingles("One two three four five six", ngram=5, cjk_ngram=3)
    assert grams == [b"one two three four five", b"two three four five six"]


def test_shingles_characters_for_cjk_text() -> None:
    grams = shingles("我们去北京。", ngram=5, cjk_ngram=3)
    assert grams == ["我 们 去".encode(), "们 去 北".encode(), "去 北 京".encode()]


def test_shingles_short_empty_and_repeated() -> None:
    assert shingles("Too short", ngram=5, cjk_ngram=5) == [b"too short"]
    assert shingles("", ngram=5, cjk_ngram=5) == []
    assert shingles("!!! ???", ngram=5, cjk_ngram=5) == []  # no word characters: never a near-duplicate
    assert shingles("a b a b a b", ngram=2, cjk_ngram=2) == [b"a b", b"b a"]


def test_shingles_fold_width_case_and_join_apostrophes() -> None:
    assert shingles("Ｆｕｌｌ ＷＩＤＴＨ Don't", ngram=5, cjk_ngram=5) == [b"full width don't"]
    assert fold_text("ＡＢＣ Straße") == "abc straße"  # multi-code-point folds (ß -> ss) are left alone


def test_fold_table_matches_nfkc_casefold() -> None:
    fold, _ = dedup._tables()
    for code in range(0x30000):
        folded = unicodedata.normalize("NFKC", chr(code)).casefold()
        if len(folded) == 1 and not 0xD800 <= code < 0xE000:
            assert fold[code] == ord(folded), hex(code)


def test_vectorised_tokens_equal_filters_text_words(web_sample: list[dict]) -> None:
    texts = [row["text"] for row in web_sample[::40]] + ["rock'n'roll ''x'' 'y", "l’homme et 東京タワー ไทย"]
    hashes, counts = Shingler(1, 1).hashes(texts)
    start = 0
    for text, count in zip(texts, counts, strict=True):
        tokens = words(fold_text(text))
        expected = [hash_shingle(token.encode()) for token in tokens]
        assert hashes[start : start + count].tolist() == expected
        start += count


@pytest.mark.parametrize("text", [ARTICLE, ZH_ARTICLE, "short", "", UNRELATED])
def test_signatures_equal_datasketch(hasher: MinHasher, text: str) -> None:
    signature = hasher.signatures([text])[0]
    reference = hasher.datasketch_minhash()
    reference.update_batch(hasher.shingles(text))
    assert signature.dtype == np.uint32
    np.testing.assert_array_equal(signature, reference.hashvalues)
    assert hasher.lean(signature).jaccard(reference) == 1.0


@pytest.mark.parametrize("ngram, cjk_ngram", [(5, 5), (3, 2), (1, 7)])
def test_signatures_equal_datasketch_on_the_web_sample(web_sample: list[dict], ngram: int, cjk_ngram: int) -> None:
    hasher = MinHasher(DedupConfig(ngram=ngram, cjk_ngram=cjk_ngram, num_perm=32))
    texts = [row["text"] for row in web_sample[::97]]
    for compiled in (True, False):
        for text, signature in zip(texts, hasher.signatures(texts, compiled=compiled), strict=True):
            reference = hasher.datasketch_minhash()
            reference.update_batch(hasher.shingles(text))
            np.testing.assert_array_equal(signature, reference.hashvalues)


def test_signatures_do_not_depend_on_batching(hasher: MinHasher, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [ARTICLE, "", ZH_ARTICLE, NEAR_DUPLICATE, UNRELATED]
    batch = hasher.signatures(texts)
    assert batch.shape == (5, 128)
    monkeypatch.setattr(dedup, "_CHUNK_POINTS", 300)  # chunks of a few texts each
    np.testing.assert_array_equal(hasher.signatures(texts), batch)
    for i, text in enumerate(texts):
        np.testing.assert_array_equal(hasher.signatures([text])[0], batch[i])
    assert (batch[1] == EMPTY).all()
    assert hasher.signatures([]).shape == (0, 128)


def test_jaccard_estimates(hasher: MinHasher) -> None:
    a, near, other, same = hasher.signatures([ARTICLE, NEAR_DUPLICATE, UNRELATED, ARTICLE.upper()])
    assert jaccard(a, same) == 1.0
    assert jaccard(a, near) >= 0.6
    assert jaccard(a, other) <= 0.1
    true_jaccard = len(set(hasher.shingles(ARTICLE)) & set(hasher.shingles(NEAR_DUPLICATE))) / len(
        set(hasher.shingles(ARTICLE)) | set(hasher.shingles(NEAR_DUPLICATE))
    )
    assert abs(jaccard(a, near) - true_jaccard) < 0.15


def test_lsh_params_are_sane() -> None:
    bands, rows = lsh_params(DedupConfig())
    assert (bands, rows) == (21, 6)
    assert 1 - (1 - 0.75**rows) ** bands >= 0.98  # a pair at the default threshold becomes a candidate
    assert lsh_params(DedupConfig(threshold=0.8, false_positive_weight=0.5, false_negative_weight=0.5)) == (9, 13)
    assert lsh_params(DedupConfig(bands=20, rows=6)) == (20, 6)
    for threshold in (0.5, 0.7, 0.9):
        b, r = lsh_params(DedupConfig(threshold=threshold, num_perm=64))
        assert b >= 2 and b * r <= 64
    assert lsh_params(DedupConfig(threshold=0.9))[1] > lsh_params(DedupConfig(threshold=0.5))[1]


def test_band_keys(hasher: MinHasher) -> None:
    bands, rows = lsh_params(hasher.config)
    a, same, other = hasher.signatures([ARTICLE, ARTICLE.lower(), UNRELATED])
    keys = band_keys(a, bands, rows)
    assert len(keys) == bands and keys[0].startswith("0:") and keys[-1].startswith(f"{bands - 1}:")
    assert keys == band_keys(same, bands, rows)
    assert not set(keys) & set(band_keys(other, bands, rows))
    assert band_keys(np.full(128, EMPTY, dtype=np.uint32), bands, rows) == []
    with pytest.raises(ValueError):
        band_keys(a, 20, 13)


def test_near_duplicates_collide_in_some_band(hasher: MinHasher) -> None:
    bands, rows = lsh_params(DedupConfig(threshold=0.5))
    a, near = hasher.signatures([ARTICLE, NEAR_DUPLICATE])
    assert set(band_keys(a, bands, rows)) & set(band_keys(near, bands, rows))


def test_exact_keys_on_web_sample(web_sample: list[dict]) -> None:
    """The sample holds 5,115 distinct texts in 5,178 docs; normalisation can only merge more."""
    texts = [row["text"] for row in web_sample]
    keys = {exact_key(text) for text in texts}
    assert len(keys) <= len(set(texts)) == 5115
    assert len(keys) >= 5000


def test_line_and_paragraph_units() -> None:
    text = "Title of the page\nBody line one.\n\nSecond paragraph here.\nSkip to main content"
    assert split_units(text, "line")[-1] == "Skip to main content"
    assert split_units(text, "paragraph") == [
        "Title of the page\nBody line one.", "Second paragraph here.\nSkip to main content"
    ]
    keys = unit_keys(text, "line", min_chars=10)
    assert len(keys) == 4 and unit_keys("Hi\nHi\nOK", "line", min_chars=10) == []
    assert unit_keys("Same line here!\nsame LINE here", "line", min_chars=10) == unit_keys("same line here", "line", 10)
    stripped, removed = strip_units(text, "line", {keys[-1]}, min_chars=10)
    assert (stripped, removed) == ("Title of the page\nBody line one.\n\nSecond paragraph here.", 1)
    footer = unit_keys("Second paragraph here.\nSkip to main content", "paragraph", min_chars=10)
    assert strip_units(text, "paragraph", set(footer), min_chars=10) == ("Title of the page\nBody line one.", 1)


def test_word_count_counts_cjk_characters() -> None:
    assert word_count("two words") == 2
    assert word_count("我们去北京") == 5


def test_numpy_kernel_blocks_long_texts(hasher: MinHasher, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [ARTICLE, UNRELATED, ZH_ARTICLE]
    whole = hasher.signatures(texts, compiled=False)
    monkeypatch.setattr(dedup, "_BLOCK_SHINGLES", 7)
    np.testing.assert_array_equal(hasher.signatures(texts, compiled=False), whole)
