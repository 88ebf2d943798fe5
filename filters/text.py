"""Text normalisation and Unicode-aware word splitting shared by every filter.

"No-space" scripts (Han, Hiragana, Katakana, Hangul, Thai: NO_SPACE_RANGES) are split into single characters.
"""

from __future__ import annotations

import sys
import unicodedata
from functools import cache

import numpy as np
import regex

# Scripts written without spaces, by code point range: Thai, Hangul (jamo, compatibility jamo, syllables,
# half-width), kana (with the phonetic extensions, enclosed and squared forms, the kana supplements), Han (radicals,
# iteration marks, Extension A, the unified and compatibility ideographs, Extensions B and later). The one
# definition every filter uses; ranges, not \p{...} classes, so the stdlib `re` (2-3x faster here) can use it too.
NO_SPACE_RANGES = (
    (0x0E00, 0x0E7F), (0x1100, 0x11FF), (0x2E80, 0x2FDF), (0x3005, 0x3005), (0x3007, 0x3007), (0x3021, 0x3029),
    (0x302E, 0x302F), (0x3038, 0x303B), (0x3040, 0x30FF), (0x3130, 0x318F), (0x31F0, 0x31FF), (0x3200, 0x33FF),
    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0xFF66, 0xFFDC),
    (0x1AFF0, 0x1B16F), (0x20000, 0x3347F),
)
NO_SPACE_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in NO_SPACE_RANGES)  # the inside of a [...] class
# Tokens are letters, marks and digits: the ranges' punctuation and symbols (・, ㈱) stay separators, as elsewhere.
_NO_SPACE = rf"[{NO_SPACE_CLASS}]&&[\p{{L}}\p{{M}}\p{{N}}]"
_CJK_CHAR = regex.compile(rf"[{_NO_SPACE}]", flags=regex.V1)
_CJK_RUN = regex.compile(rf"[{_NO_SPACE}]+", flags=regex.V1)
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
    """NFKC, casefold, punctuation/symbols/format characters removed, digit runs -> "0", whitespace collapsed.

    After the case fold, each step is a lookup per code point in numpy (three regex/str passes over the text were a
    third of the dedup stage); the tables come from the same `regex` classes, so the result is the same."""
    codes = np.frombuffer(unicodedata.normalize("NFKC", text).casefold().encode("utf-32-le", "surrogatepass"),
                          dtype="<u4")
    dropped, digit, space = _hash_tables()
    codes = codes[~dropped[codes]]
    codes = _collapse_runs(codes, digit[codes], ord("0"))
    frame = np.array([ord(" ")], dtype="<u4")  # leading and trailing whitespace collapse into the frame
    framed = np.concatenate((frame, codes, frame))
    codes = _collapse_runs(framed, space[framed], ord(" "))
    return codes[1:-1].tobytes().decode("utf-32-le", "surrogatepass")


def _collapse_runs(codes: np.ndarray, member: np.ndarray, replacement: int) -> np.ndarray:
    """Every run of code points where ``member`` holds, as one ``replacement``."""
    starts = member & ~np.concatenate(([False], member[:-1]))
    return np.where(member, np.array(replacement, dtype=codes.dtype), codes)[~member | starts]


@cache
def _hash_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per code point: dropped by normalize_for_hash (_HASH_DROP), a decimal digit (_DIGITS), whitespace as str.split
    sees it."""
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    tables = []
    for pattern in (_HASH_DROP, _DIGITS):
        table = np.zeros(sys.maxunicode + 1, dtype=bool)
        for match in pattern.finditer(every):
            table[match.start():match.end()] = True
        tables.append(table)
    space = np.zeros(sys.maxunicode + 1, dtype=bool)
    space[[code for code, char in enumerate(every) if char.isspace()]] = True
    return tables[0], tables[1], space
