"""Gopher's quality and repetition rules (Rae et al. 2021, "Scaling Language Models", appendix A.1.1, table A1)."""

from __future__ import annotations

import numpy as np

from datafactory.filters.rules_base import Document, Rule, duplicates, ratio

# Gopher's "bullet point": datatrove checks "•" and "-"; the other common bullet glyphs count too.
BULLETS = ("•", "-", "‣", "◦", "●", "○", "▪", "■", "►", "▶")
ELLIPSES = ("...", "…")
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)

QUALITY_RULES = (
    Rule("gopher_min_words", "n_words", "min", "min_words"),
    Rule("gopher_max_words", "n_words", "max", "max_words"),
    Rule("gopher_min_mean_word_length", "mean_word_length", "min", "min_mean_word_length"),
    Rule("gopher_max_mean_word_length", "mean_word_length", "max", "max_mean_word_length"),
    Rule("gopher_hash_ratio", "hash_ratio", "max", "max_hash_ratio"),
    Rule("gopher_ellipsis_ratio", "ellipsis_ratio", "max", "max_ellipsis_ratio"),
    Rule("gopher_bullet_lines", "bullet_lines_ratio", "max", "max_bullet_lines_ratio"),
    Rule("gopher_ellipsis_lines", "ellipsis_lines_ratio", "max", "max_ellipsis_lines_ratio"),
    Rule("gopher_alpha_words", "alpha_words_ratio", "min", "min_alpha_words_ratio"),
    Rule("gopher_stop_words", "stop_words", "min", "min_stop_words", needs="stop_words"),
)

REPETITION_RULES = (
    Rule("gopher_dup_para_frac", "dup_para_frac", "max", "max_dup_para_frac"),
    Rule("gopher_dup_para_char_frac", "dup_para_char_frac", "max", "max_dup_para_char_frac"),
    Rule("gopher_dup_line_frac", "dup_line_frac", "max", "max_dup_line_frac"),
    Rule("gopher_dup_line_char_frac", "dup_line_char_frac", "max", "max_dup_line_char_frac"),
    *(Rule(f"gopher_top_{n}gram", f"top_{n}gram_frac", "max", f"max_top_{n}gram_frac") for n in TOP_NGRAMS),
    *(Rule(f"gopher_dup_{n}gram", f"dup_{n}gram_frac", "max", f"max_dup_{n}gram_frac") for n in DUP_NGRAMS),
)


def measure_quality(doc: Document) -> dict[str, float]:
    """Word counts skip punctuation-only tokens; the symbol and alpha ratios are per token, punctuation included."""
    words, text, lines = doc.words, doc.text, doc.lines
    stop_words = doc.rules.stop_words
    return {
        "n_words": float(words.n_words),
        "mean_word_length": words.mean_word_length,
        "hash_ratio": ratio(text.count("#"), words.n_tokens),
        "ellipsis_ratio": ratio(text.count("...") + text.count("…"), words.n_tokens),
        "bullet_lines_ratio": ratio(sum(1 for line in lines if line.lstrip().startswith(BULLETS)), len(lines)),
        "ellipsis_lines_ratio": ratio(sum(1 for line in lines if line.rstrip().endswith(ELLIPSES)), len(lines)),
        "alpha_words_ratio": ratio(words.n_alpha, words.n_tokens),
        "stop_words": float(len(set(stop_words).intersection(words.tokens))),
    }


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier: n-gram hashes roll as h * MIX + next token


def _token_hashes(tokens: list[str]) -> np.ndarray:
    return np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens)).view(np.uint64)


def _extend(grams: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    """Hashes of the (n)-grams from those of the (n-1)-grams starting at the same positions."""
    return grams[: len(ids) - n + 1] * _MIX + ids[n - 1 :]


def top_ngram_chars(tokens: list[str], grams: np.ndarray, n: int) -> int:
    """Characters (space-joined) of the most frequent n-gram times its count; the first seen wins a tie."""
    if not len(grams):
        return 0
    order = np.argsort(grams, kind="stable")  # within a run of equal hashes, the first occurrence comes first
    ordered = grams[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    runs = np.concatenate((starts[1:], [len(ordered)])) - starts
    count = int(runs.max())
    first = int(order[starts[runs == count]].min())
    return count * (sum(map(len, tokens[first : first + n])) + n - 1)


def _shared(grams: np.ndarray) -> np.ndarray:
    """True where the hash occurs more than once in ``grams``."""
    order = np.argsort(grams)
    ordered = grams[order]
    same = ordered[1:] == ordered[:-1]
    shared = np.zeros(len(grams), dtype=bool)
    shared[order[1:][same]] = True
    shared[order[:-1][same]] = True
    return shared


def repeated_chars(
    tokens: list[str], grams: np.ndarray, starts: np.ndarray, n: int
) -> tuple[int, np.ndarray, np.ndarray]:
    """Characters of n-grams repeating one seen earlier, scanning left to right and jumping past each repeat
    (overlapping repeats count once); and the positions (with their hashes) whose n-gram occurs more than once.

    Positions whose n-gram occurs once can neither repeat nor be repeated, so only the others are scanned.
    """
    shared = _shared(grams)
    starts, grams = starts[shared], grams[shared]
    seen: set[int] = set()
    resume = chars = 0
    for i, gram in zip(starts.tolist(), grams.tolist(), strict=True):
        if i < resume:
            continue
        if gram in seen:
            chars += sum(map(len, tokens[i : i + n]))
            resume = i + n
        else:
            seen.add(gram)
    return chars, starts, grams


def ngram_chars(tokens: list[str]) -> tuple[dict[int, int], dict[int, int]]:
    """Top n-gram characters for n in TOP_NGRAMS and repeated n-gram characters for n in DUP_NGRAMS.

    N-grams are compared by rolling 64-bit hashes. An n-gram that occurs twice has an (n-1)-gram prefix that
    occurs twice, so each longer n is only hashed at the positions where the shorter one repeated.
    """
    top, dup = dict.fromkeys(TOP_NGRAMS, 0), dict.fromkeys(DUP_NGRAMS, 0)
    ids = _token_hashes(tokens)
    grams = ids
    for n in TOP_NGRAMS:
        grams = _extend(grams, ids, n)
        top[n] = top_ngram_chars(tokens, grams, n)
    starts = np.arange(len(grams))
    for n in DUP_NGRAMS:
        keep = starts + n <= len(ids)
        starts = starts[keep]
        grams = grams[keep] * _MIX + ids[starts + n - 1]
        if not len(starts):
            break
        dup[n], starts, grams = repeated_chars(tokens, grams, starts, n)
    return top, dup


def measure_repetition(doc: Document) -> dict[str, float]:
    """Duplicate paragraphs/lines by count and characters, top n-grams, duplicated n-grams; fractions of the text."""
    size = len(doc.text)
    para_dups, para_chars = duplicates(doc.paragraphs)
    line_dups, line_chars = duplicates(doc.line_runs)
    top, dup = ngram_chars(doc.words.tokens)
    signals = {
        "dup_para_frac": ratio(para_dups, len(doc.paragraphs)),
        "dup_para_char_frac": ratio(para_chars, size),
        "dup_line_frac": ratio(line_dups, len(doc.line_runs)),
        "dup_line_char_frac": ratio(line_chars, size),
    }
    signals.update({f"top_{n}gram_frac": ratio(chars, size) for n, chars in top.items()})
    signals.update({f"dup_{n}gram_frac": ratio(chars, size) for n, chars in dup.items()})
    return signals
