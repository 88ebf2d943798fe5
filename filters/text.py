"""Text normalisation and Unicode-aware word splitting shared by every filter.

"No-space" scripts (Han, Hiragana, Katakana, Hangul, Thai) are split into single characters.
"""

from __future__ import annotations

import unicodedata

import regex

_NO_SPACE = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}\u30fc\uff70"
_CJK_CHAR = regex.compile(rf"[{_NO_SPACE}]")
_WORD_CHAR = regex.compile(r"[\p{L}\p{M}\p{N}]")
# A token is one no-space-script character, or a run of letters/marks/digits of other scripts,
# optionally joined by an apostrophe ("don't", "l'homme").
_TOKEN = regex.compile(
    rf"[{_NO_SPACE}]"
    rf"|[[\p{{L}}\p{{M}}\p{{N}}]--[{_NO_SPACE}]]+(?:['’][[\p{{L}}\p{{M}}\p{{N}}]--[{_NO_SPACE}]]+)*",
    flags=regex.V1,
)
_LINE_BREAKS = regex.compile(r"\r\n|[\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_CONTROL = regex.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")
_HSPACE = regex.compile(r"[^\S\n]+")
_BLANK_RUNS = regex.compile(r"\n{4,}")
_ANY_SPACE = regex.compile(r"\s+")
_HASH_DROP = regex.compile(r"[\p{P}\p{S}\p{Cf}]+")
_DIGITS = regex.compile(r"\p{Nd}+")

MAX_BLANK_LINES = 2
# Above this share of no-space-script characters a text is treated as CJK (character-level) text.
CJK_DOMINANT_RATIO = 0.3


def normalize_whitespace(text: str) -> str:
    """NFC; unify line breaks; collapse spaces/tabs; strip lines; keep at most 2 blank lines in a row."""
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL.sub("", text)
    lines = [_HSPACE.sub(" ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = _BLANK_RUNS.sub("\n" * (MAX_BLANK_LINES + 1), text)
    return text.strip("\n")


def single_line(text: str) -> str:
    """All whitespace (newlines included) collapsed to single spaces; for fastText."""
    return _ANY_SPACE.sub(" ", text).strip()


def is_cjk(ch: str) -> bool:
    """True for a character of a script written without spaces (Han, kana, Hangul, Thai)."""
    return bool(_CJK_CHAR.fullmatch(ch))


def cjk_ratio(text: str) -> float:
    """Share of the letters/marks/digits of ``text`` that belong to a no-space script (0 when none)."""
    total = len(_WORD_CHAR.findall(text))
    if total == 0:
        return 0.0
    return len(_CJK_CHAR.findall(text)) / total


def is_cjk_dominant(text: str) -> bool:
    """True when no-space scripts make up more than CJK_DOMINANT_RATIO of the text's word characters."""
    return cjk_ratio(text) > CJK_DOMINANT_RATIO


def count_cjk(text: str) -> int:
    """Number of no-space-script characters in ``text``."""
    return len(_CJK_CHAR.findall(text))


def words(text: str) -> list[str]:
    """Words of ``text``: runs of letters/digits; no-space-script characters one by one; no punctuation."""
    return _TOKEN.findall(text)


def normalize_for_hash(text: str) -> str:
    """NFKC, casefold, punctuation/symbols removed, digit runs -> "0", whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _HASH_DROP.sub("", text)
    text = _DIGITS.sub("0", text)
    return single_line(text)
