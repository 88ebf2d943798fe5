"""Text normalisation and Unicode-aware word splitting shared by every filter.

"No-space" scripts (Han, Hiragana, Katakana, Hangul, Thai) are split into single characters.
"""

from __future__ import annotations

import unicodedata

import regex

_NO_SPACE = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}\u30fc\uff70"
_CJK_CHAR = regex.compile(rf"[{_NO_SPACE}]")
_CJK_RUN = regex.compile(rf"[{_NO_SPACE}]+")
# Same characters as words() covers (apostrophe joins included), so cjk_ratio agrees with its tokens.
_WORD_RUN = regex.compile(r"[\p{L}\p{M}\p{N}]+(?:['’][\p{L}\p{M}\p{N}]+)*")
# A token is one no-space-script character, or a run of letters/marks/digits of other scripts,
# optionally joined by an apostrophe ("don't", "l'homme").
_TOKEN = regex.compile(
    rf"[{_NO_SPACE}]"
    rf"|[[\p{{L}}\p{{M}}\p{{N}}]--[{_NO_SPACE}]]+(?:['’][[\p{{L}}\p{{M}}\p{{N}}]--[{_NO_SPACE}]]+)*",
    flags=regex.V1,
)
_TOKEN_OR_MARK = regex.compile(_TOKEN.pattern + r"|[^\s]", flags=regex.V1)
_HASH_DROP = regex.compile(r"[\p{P}\p{S}\p{Cf}]+")
_DIGITS = regex.compile(r"\p{Nd}+")

# Above this share of no-space-script characters a text is treated as CJK (character-level) text.
CJK_DOMINANT_RATIO = 0.3


def single_line(text: str) -> str:
    """All whitespace (newlines included) collapsed to single spaces; for fastText."""
    return " ".join(text.split())


def is_cjk(ch: str) -> bool:
    """True for a character of a script written without spaces (Han, kana, Hangul, Thai)."""
    return bool(_CJK_CHAR.fullmatch(ch))


def cjk_ratio(text: str, tokens: list[str] | None = None) -> float:
    """Share of the letters/marks/digits of ``text`` in a no-space script (0 when none).

    Pass ``words(text)`` as ``tokens`` when already computed: it saves one scan of the text.
    """
    if text.isascii():
        return 0.0
    total = sum(map(len, tokens if tokens is not None else _WORD_RUN.findall(text)))
    return count_cjk(text) / total if total else 0.0


def is_cjk_dominant(text: str, tokens: list[str] | None = None) -> bool:
    """True when no-space scripts make up more than CJK_DOMINANT_RATIO of the text's word characters."""
    return cjk_ratio(text, tokens) > CJK_DOMINANT_RATIO


def count_cjk(text: str) -> int:
    """Number of no-space-script characters in ``text``."""
    return 0 if text.isascii() else sum(map(len, _CJK_RUN.findall(text)))


def words(text: str) -> list[str]:
    """Words of ``text``: runs of letters/digits; no-space-script characters one by one; no punctuation."""
    return _TOKEN.findall(text)


def words_and_marks(text: str) -> list[str]:
    """words() plus every other non-space character (punctuation, symbols) as its own token."""
    return _TOKEN_OR_MARK.findall(text)


def normalize_for_hash(text: str) -> str:
    """NFKC, casefold, punctuation/symbols removed, digit runs -> "0", whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _HASH_DROP.sub("", text)
    text = _DIGITS.sub("0", text)
    return single_line(text)
